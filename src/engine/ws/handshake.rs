//! The WebSocket upgrade: recognising it, handing it to the app as a `Session`, and turning
//! the app's decision into a 101 (with the negotiated subprotocol and permessage-deflate), a
//! 403, or the app's own denial response. Must not: read or write frames (`pump` does).

use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use http::{HeaderValue, Request, Response as HttpResponse, StatusCode};
use yawc::WebSocket;

use super::pump::{run, Socket};
use super::{options, WsConfig};
use crate::engine::activity::Busy;
use crate::engine::body::{RequestBody, ResponseBody};
use crate::engine::h2::TunnelSlot;
use crate::engine::service::simple_response;
use crate::engine::Shared;
use crate::handoff::ws_session::{Decision, Session};
use crate::handoff::{header_has_token, IncomingWebSocket, LogLevel, Peer, RequestHead};

/// An HTTP/1.1 `GET` asking to become a WebSocket (RFC 6455 4.2.1), or an HTTP/2 extended
/// `CONNECT` with `:protocol` websocket (RFC 8441 4), which the builder enables.
pub(in crate::engine) fn is_upgrade<B>(req: &Request<B>) -> bool {
    if req.version() == http::Version::HTTP_2 {
        return req.method() == http::Method::CONNECT
            && req
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    }
    req.method() == http::Method::GET
        && req.version() == http::Version::HTTP_11
        && header_has_token(req.headers(), UPGRADE, "websocket")
        && header_has_token(req.headers(), CONNECTION, "upgrade")
}

/// Hands the upgrade request to the app and answers with its decision. The returned
/// response is the 101 when the app accepted; the socket's task is then already spawned.
pub(in crate::engine) async fn handshake(
    shared: &Arc<Shared>,
    config: &WsConfig,
    mut req: Request<RequestBody>,
    head: RequestHead,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    busy: Option<Busy>,
) -> HttpResponse<ResponseBody> {
    if config.per_message_deflate {
        choose_deflate_offer(req.headers_mut());
    }
    // Over HTTP/2 the stream becomes the socket once the 200 is out (`h2::stream`).
    let tunnel = req.extensions_mut().remove::<TunnelSlot>();
    let (switching, upgrade) = match WebSocket::upgrade_with_options(&mut req, options(config)) {
        Ok(pair) => pair,
        Err(e) => {
            shared.dispatcher.log(
                LogLevel::Debug,
                format!("rejected a WebSocket handshake (400): {e}"),
            );
            return simple_response(StatusCode::BAD_REQUEST, "Bad WebSocket handshake\n");
        }
    };
    let id = shared
        .stats
        .next_exchange_id
        .fetch_add(1, Ordering::Relaxed);
    let session = Arc::new(Session::new(
        id,
        shared.dispatcher.clone(),
        shared.stats.requests_in_flight.clone(),
        config.max_queue,
        shared.config.response_high_water,
    ));
    session.hold(permit);
    // uvicorn's line for a handshake, on the error logger: `client - "WebSocket /path" 403`.
    let label = format!(
        "{} - \"WebSocket {}\"",
        head.client.address().unwrap_or_else(|| "unix".to_string()),
        head.uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .escape_default()
    );
    let guard = GoneIfDropped(Some(session.clone()));
    shared.dispatcher.dispatch_websocket(IncomingWebSocket {
        session: session.clone(),
        head,
    });
    let decision = poll_fn(|cx| session.poll_decision(cx)).await;
    guard.disarm();
    if !matches!(decision, Decision::Accept { .. }) {
        // No socket follows: an app still waiting in `receive()` hears it is over.
        session.finish(1006, "");
    }
    let outcome = match &decision {
        Decision::Accept { .. } => "[accepted]",
        Decision::Reject => "403",
        Decision::Deny(..) => "[denied]",
        Decision::Failed => "500",
    };
    shared
        .dispatcher
        .log(LogLevel::Info, format!("{label} {outcome}"));
    match decision {
        Decision::Accept {
            subprotocol,
            headers,
        } => {
            let (parts, _) = switching.into_parts();
            let mut response = HttpResponse::from_parts(parts, ResponseBody::full(Bytes::new()));
            let out = response.headers_mut();
            if let Some(p) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
                out.insert(SEC_WEBSOCKET_PROTOCOL, p);
            }
            for (name, value) in &headers {
                out.append(name.clone(), value.clone());
            }
            shared
                .stats
                .websocket_sessions
                .fetch_add(1, Ordering::Relaxed);
            let socket = match tunnel.and_then(|slot| slot.take()) {
                Some(tunnel) => Socket::Http2 {
                    tunnel,
                    extensions: out
                        .get(http::header::SEC_WEBSOCKET_EXTENSIONS)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                },
                None => Socket::Http1(upgrade),
            };
            let (shared, config) = (shared.clone(), config.clone());
            tokio::spawn(async move {
                run(shared, config, socket, session).await;
                drop(busy);
            });
            response
        }
        Decision::Reject => simple_response(StatusCode::FORBIDDEN, "Forbidden\n"),
        Decision::Deny(head, body) => {
            let mut response = HttpResponse::new(ResponseBody::full(body));
            *response.status_mut() = head.status;
            let mut headers = head.headers;
            // The whole body is here: it is framed by its own length (hyper writes the
            // Content-Length), never by one the app declared, which could make the client
            // read part of the body as the next response.
            headers.remove(http::header::CONTENT_LENGTH);
            headers.remove(http::header::TRANSFER_ENCODING);
            *response.headers_mut() = headers;
            response
        }
        Decision::Failed => {
            simple_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
        }
    }
}

/// Leaves in the request only the first permessage-deflate offer we can honour (RFC 7692
/// 5.1: a client may list several, best first; the codec reads a single one). Offers with
/// unknown or repeated parameters, or window sizes outside 9-15, are declined.
fn choose_deflate_offer(headers: &mut http::HeaderMap) {
    use http::header::SEC_WEBSOCKET_EXTENSIONS;
    let offers: Vec<String> = headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|o| o.trim().to_string())
        .collect();
    headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    if let Some(offer) = offers.iter().find(|o| acceptable_deflate_offer(o)) {
        if let Ok(value) = HeaderValue::from_str(offer) {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }
}

fn acceptable_deflate_offer(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if parts.next() != Some("permessage-deflate") {
        return false;
    }
    let mut seen = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.contains(&name) {
            return false;
        }
        seen.push(name);
        let ok = match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => true,
            ("client_max_window_bits", None) => true,
            ("server_max_window_bits" | "client_max_window_bits", Some(v)) => {
                v.parse::<u8>().is_ok_and(|bits| (9..=15).contains(&bits))
            }
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The client left during the handshake: the app sees a disconnect.
struct GoneIfDropped(Option<Arc<Session>>);

impl GoneIfDropped {
    /// The decision came: nothing to tell the app. Releases the guard's reference (a
    /// forgotten guard kept every session alive: 2.4 KiB per WebSocket, found by the soak).
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GoneIfDropped {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.finish(1006, "");
        }
    }
}

/// The engine's view of who asked: the head without the exchange, for the scope.
pub(in crate::engine) fn request_head(
    req: &Request<RequestBody>,
    client: Peer,
    server: Peer,
    scheme: &'static str,
) -> RequestHead {
    let mut headers = req.headers().clone();
    if let Some(authority) = req
        .uri()
        .authority()
        .filter(|_| !headers.contains_key(HOST))
    {
        // HTTP/2: the app sees `:authority` as `host`, as for any request.
        if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(HOST, value);
        }
    }
    RequestHead {
        // An extended CONNECT is the HTTP/2 form of the same handshake: the app sees a GET.
        method: http::Method::GET,
        uri: req.uri().clone(),
        version: req.version(),
        headers,
        client,
        server,
        scheme,
        tls: None,
        request_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::SEC_WEBSOCKET_EXTENSIONS;

    fn chosen(offers: &[&str]) -> Option<String> {
        let mut headers = http::HeaderMap::new();
        for o in offers {
            headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(o).unwrap());
        }
        choose_deflate_offer(&mut headers);
        let mut values = headers.get_all(SEC_WEBSOCKET_EXTENSIONS).iter();
        let first = values.next().map(|v| v.to_str().unwrap().to_string());
        assert!(values.next().is_none(), "one offer at most is left");
        first
    }

    #[test]
    fn the_first_acceptable_offer_of_several_is_kept() {
        let offer = "permessage-deflate; server_max_window_bits=8, \
                     permessage-deflate; client_no_context_takeover; client_max_window_bits, \
                     permessage-deflate";
        assert_eq!(
            chosen(&[offer]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover; client_max_window_bits")
        );
    }

    #[test]
    fn offers_across_header_lines_count_in_order() {
        assert_eq!(
            chosen(&[
                "x-webkit-deflate-frame",
                "permessage-deflate; server_max_window_bits=10"
            ])
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
    }

    #[test]
    fn unknown_repeated_or_out_of_range_parameters_decline_the_offer() {
        assert_eq!(chosen(&["permessage-deflate; mystery"]), None);
        assert_eq!(
            chosen(&["permessage-deflate; client_no_context_takeover; client_no_context_takeover"]),
            None
        );
        assert_eq!(
            chosen(&["permessage-deflate; client_max_window_bits=16"]),
            None
        );
        assert_eq!(
            chosen(&["permessage-deflate; server_no_context_takeover=1"]),
            None
        );
        assert_eq!(chosen(&[]), None);
    }
}
