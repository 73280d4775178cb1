//! The hand-off between the engine and the ASGI adapter: the types both sides hold.
//!
//! Owns what crosses that boundary and nothing else: a parsed request head and who sent it
//! ([`RequestHead`], [`Peer`]), the per-request [`Exchange`] and per-socket
//! [`ws_session::Session`] both sides read and write, how each side wakes the other
//! ([`AppWaker`]), how both adapters read an app's header fields ([`fields`]), the [`Dispatcher`] through which the engine hands over requests and
//! log lines, and the [`access_record::AccessSink`] it hands finished access records to. Must not: import pyo3 or hyper's connection types, or block either side (every
//! lock here is short and never held across an await or a Python call).

pub mod access_record;
pub mod body_length;
pub mod detach;
pub mod exchange;
pub mod fields;
pub mod in_flight;
pub mod ws_session;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri, Version};

pub use exchange::{AppWaker, Exchange};

/// Where a request came from, as the scope will show it.
#[derive(Clone, Debug)]
pub enum Peer {
    Socket(SocketAddr),
    /// From a trusted proxy's forwarding headers.
    Forwarded(String, u16),
    /// A Unix socket: no address.
    Unix,
}

impl Peer {
    /// `host:port` for log lines; `None` for a Unix socket.
    pub fn address(&self) -> Option<String> {
        match self {
            Peer::Socket(a) => Some(format!("{}:{}", a.ip(), a.port())),
            Peer::Forwarded(h, p) => Some(format!("{h}:{p}")),
            Peer::Unix => None,
        }
    }
}

/// Whether a comma-separated token header (`Connection`, `Upgrade`, `TE`) lists `token`,
/// in any case, parameters after `;` aside (RFC 9110 5.6.1).
pub fn header_has_token(headers: &HeaderMap, name: http::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|item| {
                item.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(token)
            })
        })
    })
}

/// What the app's scope is built from: a parsed request head and who sent it.
pub struct RequestHead {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub client: Peer,
    pub server: Peer,
    pub scheme: &'static str,
    /// The connection's TLS details; `None` on a plain-text connection.
    pub tls: Option<Arc<TlsInfo>>,
    /// `--request-id-header`: the request's id, taken or made by the engine.
    pub request_id: Option<http::HeaderValue>,
}

/// What the ASGI `tls` scope extension reports about a TLS connection (asgiref
/// `specs/tls.rst`); computed once per connection, after the handshake.
#[derive(Debug, Default)]
pub struct TlsInfo {
    /// The server's certificate as PEM.
    pub server_cert: Option<String>,
    /// The client's certificates as PEM, leaf first; empty without one.
    pub client_cert_chain: Vec<String>,
    /// The client certificate's subject, RFC 4514.
    pub client_cert_name: Option<String>,
    /// 0x0303 for TLS 1.2, 0x0304 for TLS 1.3.
    pub tls_version: Option<u16>,
    /// The IANA number of the cipher suite.
    pub cipher_suite: Option<u16>,
}

/// A parsed request head and its exchange, handed to the dispatcher.
pub struct IncomingRequest {
    pub exchange: Arc<Exchange>,
    pub head: RequestHead,
}

impl std::ops::Deref for IncomingRequest {
    type Target = RequestHead;
    fn deref(&self) -> &RequestHead {
        &self.head
    }
}

/// A WebSocket upgrade request and its session, handed to the dispatcher.
pub struct IncomingWebSocket {
    pub session: Arc<ws_session::Session>,
    pub head: RequestHead,
}

/// Severity of an engine log line, mapped to Python logging levels by the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

/// The engine's way out: the bridge implements it.
pub trait Dispatcher: AppWaker {
    fn dispatch(&self, request: IncomingRequest);
    fn dispatch_websocket(&self, websocket: IncomingWebSocket);
    fn log(&self, level: LogLevel, message: String);
}

/// `/a%2Fb` -> `/a/b` as bytes; an escape that is not two hex digits stays as it is.
pub fn percent_decode_bytes(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::percent_decode_bytes;

    #[test]
    fn decodes_to_bytes_and_keeps_broken_escapes() {
        assert_eq!(percent_decode_bytes(b"/a%2Fb"), b"/a/b");
        assert_eq!(percent_decode_bytes(b"/caf%C3%A9"), b"/caf\xc3\xa9");
        assert_eq!(percent_decode_bytes(b"/%ff"), b"/\xff");
        assert_eq!(percent_decode_bytes(b"/bad%zz%4"), b"/bad%zz%4");
        assert_eq!(percent_decode_bytes(b"/end%41"), b"/endA");
        assert_eq!(percent_decode_bytes(b"%"), b"%");
    }
}
