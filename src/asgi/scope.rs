//! Building the ASGI `http` scope from a request head.
//!
//! A template dict holds what never changes (`type`, `asgi`, `root_path`); each request
//! gets a C-level copy of it plus its own keys. Method, version and scheme strings and the
//! common header names are created once and shared.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;

use http::{HeaderName, Method, Version};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::handoff::{percent_decode_bytes, Peer, RequestHead, TlsInfo};

/// Header names kept as shared `bytes` objects; past this many distinct names, new ones
/// are created per request so a hostile client cannot grow the cache.
const HEADER_NAME_CACHE_LIMIT: usize = 512;

/// Distinct client addresses remembered; the cache is simply emptied when full.
const CLIENT_CACHE_LIMIT: usize = 4096;

pub struct ScopeBuilder {
    template: Py<PyDict>,
    /// `--root-path`, prepended to `path` and `raw_path` as uvicorn does: behind a proxy that
    /// strips the prefix, the app still sees (and builds URLs from) the full path.
    root_path: String,
    state: Option<Py<PyDict>>,
    header_names: HashMap<HeaderName, Py<PyBytes>>,
    /// The scope's `server` for the last local address seen (usually the only one).
    last_server: Option<(SocketAddr, Py<PyAny>)>,
    /// `client` tuples of recent peers: a keep-alive connection sends many requests.
    clients: HashMap<SocketAddr, Py<PyAny>>,
    /// `server` for a Unix socket: `(path, None)`.
    unix_server: Py<PyAny>,
    /// `scope["extensions"]` before the per-connection ones (`tls`, the request id), one for
    /// each combination of [`ExtensionSet`]: a request gets a C-level copy, cheaper than a
    /// new dict filled key by key. The extensions without parameters all map to one shared
    /// `{}`: two dicts less per request, about 130 bytes beside every open stream.
    extension_templates: [Py<PyDict>; 4],
}

/// Which of the response extensions that depend on the request reach this client.
struct ExtensionSet {
    trailers: bool,
    early_hint: bool,
}

impl ExtensionSet {
    fn of(req: &RequestHead) -> Self {
        ExtensionSet {
            trailers: trailers_reach_client(req),
            // 103 Early Hints: HTTP/1.0 clients take no 1xx (RFC 9110 15.2).
            early_hint: matches!(req.version, http::Version::HTTP_11 | http::Version::HTTP_2),
        }
    }

    /// Where its template is in `ScopeBuilder::extension_templates`.
    fn index(&self) -> usize {
        usize::from(self.trailers) * 2 + usize::from(self.early_hint)
    }

    /// The set whose template is at `index`: the inverse of [`ExtensionSet::index`].
    fn at(index: usize) -> Self {
        ExtensionSet {
            trailers: index & 2 != 0,
            early_hint: index & 1 != 0,
        }
    }

    /// The extensions that work here (asgiref docs/extensions.rst), all without parameters.
    fn dict<'py>(
        &self,
        py: Python<'py>,
        no_parameters: &Py<PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let extensions = PyDict::new(py);
        let no_parameters = no_parameters.bind(py);
        extensions.set_item("http.response.pathsend", no_parameters)?;
        if self.trailers {
            extensions.set_item("http.response.trailers", no_parameters)?;
        }
        if self.early_hint {
            extensions.set_item("http.response.early_hint", no_parameters)?;
        }
        Ok(extensions)
    }
}

impl ScopeBuilder {
    pub fn new(
        py: Python<'_>,
        root_path: &str,
        state: Option<Py<PyDict>>,
        unix_path: Option<&str>,
    ) -> PyResult<Self> {
        let template = PyDict::new(py);
        template.set_item("type", "http")?;
        let asgi = PyDict::new(py);
        asgi.set_item("version", "3.0")?;
        asgi.set_item("spec_version", "2.5")?;
        template.set_item("asgi", asgi)?;
        template.set_item("root_path", root_path)?;
        // Every per-request key is present already, in the order `build` sets them, so the
        // copy is allocated at its final size and `build` only replaces values.
        for key in [
            "http_version",
            "method",
            "scheme",
            "path",
            "raw_path",
            "query_string",
            "headers",
            "client",
            "server",
        ] {
            template.set_item(key, py.None())?;
        }
        if state.is_some() {
            template.set_item("state", py.None())?;
        }
        let unix_server = match unix_path {
            Some(p) => PyTuple::new(
                py,
                [p.into_pyobject(py)?.into_any(), py.None().into_bound(py)],
            )?
            .into_any()
            .unbind(),
            None => py.None(),
        };
        let no_parameters = PyDict::new(py).unbind();
        let extension_templates: [_; 4] = std::array::from_fn(|index| {
            ExtensionSet::at(index)
                .dict(py, &no_parameters)
                .map(Bound::unbind)
        });
        let [a, b, c, d] = extension_templates;
        Ok(ScopeBuilder {
            template: template.unbind(),
            root_path: root_path.to_string(),
            state,
            header_names: HashMap::new(),
            last_server: None,
            clients: HashMap::new(),
            unix_server,
            extension_templates: [a?, b?, c?, d?],
        })
    }

    pub fn build<'py>(
        &mut self,
        py: Python<'py>,
        req: &RequestHead,
    ) -> PyResult<Bound<'py, PyDict>> {
        let RequestHead {
            method,
            uri,
            version,
            headers,
            client,
            server,
            scheme,
            ..
        } = req;
        let (version, scheme) = (*version, *scheme);
        let scope = self.template.bind(py).copy()?;
        scope.set_item(intern!(py, "http_version"), version_str(py, version))?;
        scope.set_item(intern!(py, "method"), method_str(py, method))?;
        scope.set_item(intern!(py, "scheme"), scheme_str(py, scheme))?;
        let raw_path = uri.path();
        let (path, raw) = if self.root_path.is_empty() {
            (
                PyString::new(py, &percent_decode(raw_path)),
                PyBytes::new(py, raw_path.as_bytes()),
            )
        } else {
            let root = self.root_path.as_str();
            (
                PyString::new(py, &format!("{root}{}", percent_decode(raw_path))),
                PyBytes::new(py, format!("{root}{raw_path}").as_bytes()),
            )
        };
        scope.set_item(intern!(py, "path"), path)?;
        scope.set_item(intern!(py, "raw_path"), raw)?;
        let query = uri.query().unwrap_or("");
        scope.set_item(
            intern!(py, "query_string"),
            PyBytes::new(py, query.as_bytes()),
        )?;

        let list = PyList::empty(py);
        for (name, value) in headers {
            let name = self.header_name(py, name);
            let pair = PyTuple::new(
                py,
                [
                    name.into_any(),
                    PyBytes::new(py, value.as_bytes()).into_any(),
                ],
            )?;
            list.append(pair)?;
        }
        scope.set_item(intern!(py, "headers"), list)?;

        let client = match client {
            Peer::Socket(addr) => match self.clients.get(addr) {
                Some(t) => t.clone_ref(py).into_bound(py),
                None => {
                    if self.clients.len() >= CLIENT_CACHE_LIMIT {
                        self.clients.clear();
                    }
                    let t = peer_tuple(py, client)?;
                    self.clients.insert(*addr, t.clone().unbind());
                    t
                }
            },
            other => peer_tuple(py, other)?,
        };
        scope.set_item(intern!(py, "client"), client)?;
        let server = match server {
            Peer::Socket(addr) => match &self.last_server {
                Some((a, t)) if a == addr => t.clone_ref(py).into_bound(py),
                _ => {
                    let t = peer_tuple(py, server)?;
                    self.last_server = Some((*addr, t.clone().unbind()));
                    t
                }
            },
            _ => self.unix_server.clone_ref(py).into_bound(py),
        };
        scope.set_item(intern!(py, "server"), server)?;
        if let Some(state) = &self.state {
            scope.set_item(intern!(py, "state"), state.bind(py).copy()?)?;
        }
        // `tls` only on TLS connections, as its spec requires.
        let template = &self.extension_templates[ExtensionSet::of(req).index()];
        let extensions = template.bind(py).copy()?;
        if let Some(tls) = &req.tls {
            extensions.set_item(intern!(py, "tls"), tls_extension(py, tls)?)?;
        }
        if let Some(id) = &req.request_id {
            // `--request-id-header`; ours, so under our name (the key is documented).
            extensions.set_item(
                intern!(py, "ferricorn.request_id"),
                String::from_utf8_lossy(id.as_bytes()),
            )?;
        }
        scope.set_item(intern!(py, "extensions"), extensions)?;
        Ok(scope)
    }

    /// A `websocket` scope: the HTTP scope of the upgrade request, with `ws`/`wss`, the
    /// offered subprotocols, no `method`, and the denial-response extension. Built rarely
    /// (once per socket), so it reuses `build` instead of a template of its own.
    pub fn build_websocket<'py>(
        &mut self,
        py: Python<'py>,
        req: &RequestHead,
    ) -> PyResult<Bound<'py, PyDict>> {
        let scope = self.build(py, req)?;
        scope.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
        scope.del_item(intern!(py, "method"))?;
        let scheme = if matches!(req.scheme, "https" | "wss") {
            "wss"
        } else {
            "ws"
        };
        scope.set_item(intern!(py, "scheme"), scheme)?;
        let subprotocols = PyList::empty(py);
        for value in req.headers.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
            for p in String::from_utf8_lossy(value.as_bytes()).split(',') {
                let p = p.trim();
                if !p.is_empty() {
                    subprotocols.append(p)?;
                }
            }
        }
        scope.set_item(intern!(py, "subprotocols"), subprotocols)?;
        let extensions = match scope.get_item(intern!(py, "extensions"))? {
            Some(shared) => shared.cast_into::<PyDict>()?,
            None => PyDict::new(py),
        };
        // The HTTP scope's extensions minus those that only a response body can use.
        for name in [
            "http.response.pathsend",
            "http.response.trailers",
            "http.response.early_hint",
        ] {
            if extensions.contains(name)? {
                extensions.del_item(name)?;
            }
        }
        extensions.set_item("websocket.http.response", PyDict::new(py))?;
        scope.set_item(intern!(py, "extensions"), extensions)?;
        Ok(scope)
    }

    fn header_name<'py>(&mut self, py: Python<'py>, name: &HeaderName) -> Bound<'py, PyBytes> {
        if let Some(b) = self.header_names.get(name) {
            return b.clone_ref(py).into_bound(py);
        }
        let b = PyBytes::new(py, name.as_str().as_bytes());
        if self.header_names.len() < HEADER_NAME_CACHE_LIMIT {
            self.header_names.insert(name.clone(), b.clone().unbind());
        }
        b
    }
}

fn version_str(py: Python<'_>, v: Version) -> &Bound<'_, PyString> {
    match v {
        Version::HTTP_10 => intern!(py, "1.0"),
        Version::HTTP_2 => intern!(py, "2"),
        Version::HTTP_3 => intern!(py, "3"),
        _ => intern!(py, "1.1"),
    }
}

/// The `http_version` without the `HTTP/` prefix, for the access log.
pub fn version_text(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

fn method_str<'py>(py: Python<'py>, m: &Method) -> Bound<'py, PyString> {
    let s = match *m {
        Method::GET => intern!(py, "GET"),
        Method::POST => intern!(py, "POST"),
        Method::PUT => intern!(py, "PUT"),
        Method::DELETE => intern!(py, "DELETE"),
        Method::HEAD => intern!(py, "HEAD"),
        Method::PATCH => intern!(py, "PATCH"),
        Method::OPTIONS => intern!(py, "OPTIONS"),
        _ => return PyString::new(py, m.as_str()),
    };
    s.clone()
}

/// The ASGI `tls` extension's dict (asgiref `specs/tls.rst`). A client certificate that fails
/// verification ends the handshake, so `client_cert_error` is always `None`.
fn tls_extension<'py>(py: Python<'py>, tls: &TlsInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("server_cert", &tls.server_cert)?;
    d.set_item(
        "client_cert_chain",
        PyList::new(py, &tls.client_cert_chain)?,
    )?;
    d.set_item("client_cert_name", &tls.client_cert_name)?;
    d.set_item("client_cert_error", py.None())?;
    d.set_item("tls_version", tls.tls_version)?;
    d.set_item("cipher_suite", tls.cipher_suite)?;
    Ok(d)
}

fn scheme_str<'py>(py: Python<'py>, s: &'static str) -> Bound<'py, PyString> {
    match s {
        "http" => intern!(py, "http").clone(),
        "https" => intern!(py, "https").clone(),
        other => PyString::new(py, other),
    }
}

fn peer_tuple<'py>(py: Python<'py>, peer: &Peer) -> PyResult<Bound<'py, PyAny>> {
    Ok(match peer {
        Peer::Socket(addr) => (addr.ip().to_string(), addr.port())
            .into_pyobject(py)?
            .into_any(),
        Peer::Forwarded(host, port) => (host.as_str(), *port).into_pyobject(py)?.into_any(),
        Peer::Unix => py.None().into_bound(py),
    })
}

/// `/a%20b` -> `/a b`; invalid UTF-8 after decoding is replaced, as uvicorn does.
pub fn percent_decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(String::from_utf8_lossy(&percent_decode_bytes(raw.as_bytes())).into_owned())
}

/// Whether trailers would reach this client: always over HTTP/2; over HTTP/1.1 only when
/// the request said `TE: trailers` (RFC 9110 10.1.4), since hyper drops them otherwise.
fn trailers_reach_client(req: &RequestHead) -> bool {
    req.version == http::Version::HTTP_2
        || crate::handoff::header_has_token(&req.headers, http::header::TE, "trailers")
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, ExtensionSet};

    #[test]
    fn extension_sets_and_their_template_slots_match() {
        for index in 0..4 {
            assert_eq!(ExtensionSet::at(index).index(), index);
        }
    }

    #[test]
    fn decodes_percent_escapes_as_utf8() {
        assert_eq!(percent_decode("/plain"), "/plain");
        assert_eq!(percent_decode("/a%20b"), "/a b");
        assert_eq!(percent_decode("/caf%C3%A9"), "/café");
        assert_eq!(percent_decode("/bad%zz%4"), "/bad%zz%4");
        assert_eq!(percent_decode("/%ff"), "/\u{fffd}");
    }
}
