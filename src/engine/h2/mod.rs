//! HTTP/2 on the `h2` crate, driven by us rather than by hyper's HTTP/2 server: the
//! connection (`server`), each stream's request and response (`stream`), request bodies
//! (`body`) and RFC 8441 WebSocket streams (`tunnel`).
//!
//! Why not hyper's: its server gives a request's service no way to send a 1xx on the
//! stream, and `http.response.early_hint` needs a 103 there (browsers act on early hints
//! over HTTP/2 only). The requests themselves go through the same `RequestService` as
//! HTTP/1.1's, so admission, deadlines, cancellation, metrics and the access log apply alike.
//!
//! Must not: parse or frame HTTP/2 (the `h2` crate does), or take the GIL.

mod body;
mod server;
mod stream;
mod tunnel;

pub(super) use body::H2Body;
pub(super) use server::H2Server;
pub(super) use stream::{Informational, TunnelSlot};
pub(in crate::engine) use tunnel::Tunnel;
