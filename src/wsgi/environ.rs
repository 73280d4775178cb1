//! Building the PEP 3333 `environ` dict from a request head.
//!
//! A template holds the keys that never change (`wsgi.version`, `wsgi.errors`, `SCRIPT_NAME`
//! and the like); each request gets a copy plus its own keys. Every value is a native `str`
//! made from the request's bytes read as latin-1, as PEP 3333 requires, so no byte is lost
//! and the app decodes with the charset it knows.

use std::collections::HashMap;

use http::{HeaderName, Method, Version};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::handoff::{percent_decode_bytes, Peer, RequestHead};

/// `HTTP_*` key names cached per thread; past this many distinct header names, new ones are
/// made per request so a hostile client cannot grow the cache.
const HEADER_KEY_CACHE_LIMIT: usize = 512;

/// What every request's environ shares.
pub struct EnvironTemplate {
    pub root_path: String,
    pub multiprocess: bool,
    pub errors: Py<PyAny>,
    pub file_wrapper: Py<PyAny>,
}

/// One thread's environ builder (each WSGI thread has its own, so its caches need no lock).
pub struct EnvironBuilder {
    template: Py<PyDict>,
    header_keys: HashMap<HeaderName, Py<PyString>>,
}

impl EnvironBuilder {
    pub fn new(py: Python<'_>, t: &EnvironTemplate) -> PyResult<Self> {
        let d = PyDict::new(py);
        d.set_item("wsgi.version", (1, 0))?;
        d.set_item("wsgi.multithread", true)?;
        d.set_item("wsgi.multiprocess", t.multiprocess)?;
        d.set_item("wsgi.run_once", false)?;
        d.set_item("wsgi.input_terminated", true)?;
        d.set_item("wsgi.errors", t.errors.bind(py))?;
        d.set_item("wsgi.file_wrapper", t.file_wrapper.bind(py))?;
        d.set_item("SCRIPT_NAME", latin1(py, t.root_path.as_bytes()))?;
        Ok(EnvironBuilder {
            template: d.unbind(),
            header_keys: HashMap::new(),
        })
    }

    /// The environ of `req`, without `wsgi.input` (the caller adds it).
    pub fn build<'py>(
        &mut self,
        py: Python<'py>,
        req: &RequestHead,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        env.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, &req.method))?;
        env.set_item(
            intern!(py, "PATH_INFO"),
            latin1(py, &percent_decode_bytes(req.uri.path().as_bytes())),
        )?;
        let query = req.uri.query().unwrap_or("");
        env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query.as_bytes()))?;
        let raw_uri = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        env.set_item(intern!(py, "RAW_URI"), latin1(py, raw_uri.as_bytes()))?;
        env.set_item(intern!(py, "REQUEST_URI"), latin1(py, raw_uri.as_bytes()))?;
        if let Some(id) = &req.request_id {
            env.set_item(
                intern!(py, "ferricorn.request_id"),
                latin1(py, id.as_bytes()),
            )?;
        }
        env.set_item(
            intern!(py, "SERVER_PROTOCOL"),
            protocol_str(py, req.version),
        )?;
        env.set_item(
            intern!(py, "wsgi.url_scheme"),
            if matches!(req.scheme, "https" | "wss") {
                intern!(py, "https")
            } else {
                intern!(py, "http")
            },
        )?;
        let (server_name, server_port) = match &req.server {
            Peer::Socket(a) => (a.ip().to_string(), a.port().to_string()),
            _ => {
                // A Unix socket has no address: the Host header names the server.
                let host = req
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
                let port = if req.scheme == "https" { "443" } else { "80" };
                (name.to_string(), port.to_string())
            }
        };
        env.set_item(intern!(py, "SERVER_NAME"), server_name)?;
        env.set_item(intern!(py, "SERVER_PORT"), server_port)?;
        match &req.client {
            Peer::Socket(a) => {
                env.set_item(intern!(py, "REMOTE_ADDR"), a.ip().to_string())?;
                env.set_item(intern!(py, "REMOTE_PORT"), a.port().to_string())?;
            }
            Peer::Forwarded(host, port) => {
                env.set_item(intern!(py, "REMOTE_ADDR"), host.as_str())?;
                env.set_item(intern!(py, "REMOTE_PORT"), port.to_string())?;
            }
            Peer::Unix => {}
        }
        self.add_headers(py, &env, req)?;
        Ok(env)
    }

    /// CONTENT_TYPE and CONTENT_LENGTH under their CGI names, every other field as
    /// `HTTP_<NAME>`; repeated fields joined with ", " (cookies with "; ", RFC 9113 8.2.3).
    /// A field whose name has an underscore is left out: it would share a key with the
    /// dashed name, and a client could pass one off as the other (X_Forwarded_For).
    fn add_headers(
        &mut self,
        py: Python<'_>,
        env: &Bound<'_, PyDict>,
        req: &RequestHead,
    ) -> PyResult<()> {
        let headers = &req.headers;
        for name in headers.keys() {
            let key = match *name {
                http::header::CONTENT_TYPE => intern!(py, "CONTENT_TYPE").clone(),
                http::header::CONTENT_LENGTH => intern!(py, "CONTENT_LENGTH").clone(),
                _ if name.as_str().contains('_') => continue,
                _ => self.header_key(py, name),
            };
            let mut values = headers.get_all(name).iter();
            let first = values.next().map_or(&[][..], |v| v.as_bytes());
            let value = match values.next() {
                None => latin1(py, first),
                Some(second) => {
                    let sep: &[u8] = if *name == http::header::COOKIE {
                        b"; "
                    } else {
                        b", "
                    };
                    let mut joined = first.to_vec();
                    for v in std::iter::once(second).chain(values) {
                        joined.extend_from_slice(sep);
                        joined.extend_from_slice(v.as_bytes());
                    }
                    latin1(py, &joined)
                }
            };
            env.set_item(key, value)?;
        }
        Ok(())
    }

    fn header_key<'py>(&mut self, py: Python<'py>, name: &HeaderName) -> Bound<'py, PyString> {
        if let Some(k) = self.header_keys.get(name) {
            return k.clone_ref(py).into_bound(py);
        }
        let mut key = String::with_capacity(5 + name.as_str().len());
        key.push_str("HTTP_");
        key.extend(name.as_str().chars().map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        }));
        let k = PyString::new(py, &key);
        if self.header_keys.len() < HEADER_KEY_CACHE_LIMIT {
            self.header_keys.insert(name.clone(), k.clone().unbind());
        }
        k
    }
}

/// Bytes as a `str` of the same code points (latin-1), as PEP 3333 wants request data.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if bytes.is_ascii() {
        // The common case: ASCII reads the same either way, no per-char conversion.
        return PyString::new(py, std::str::from_utf8(bytes).unwrap_or_default());
    }
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    PyString::new(py, &text)
}

fn method_str<'py>(py: Python<'py>, m: &Method) -> Bound<'py, PyString> {
    match *m {
        Method::GET => intern!(py, "GET").clone(),
        Method::POST => intern!(py, "POST").clone(),
        Method::HEAD => intern!(py, "HEAD").clone(),
        Method::PUT => intern!(py, "PUT").clone(),
        Method::DELETE => intern!(py, "DELETE").clone(),
        _ => PyString::new(py, m.as_str()),
    }
}

fn protocol_str(py: Python<'_>, v: Version) -> &Bound<'_, PyString> {
    match v {
        Version::HTTP_10 => intern!(py, "HTTP/1.0"),
        Version::HTTP_2 => intern!(py, "HTTP/2"),
        _ => intern!(py, "HTTP/1.1"),
    }
}
