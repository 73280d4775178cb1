//! Raw-bytes protocol tests against the engine alone: no Python, a fake app in Rust.
//!
//! Each test starts an `Engine` on a loopback port with a `FakeApp` dispatcher, writes
//! request bytes on a real socket and reads what comes back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use _ferricorn::engine::{
    AdmissionConfig, Engine, EngineConfig, H2Limits, Listener, RequestLimits, TrustedProxies,
    WsConfig,
};
use _ferricorn::handoff::exchange::{BodyRead, Response, ResponseHead};
use _ferricorn::handoff::ws_session::Decision;
use _ferricorn::handoff::{
    AppWaker, Dispatcher, Exchange, IncomingRequest, IncomingWebSocket, LogLevel,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

/// Answers by path: `/hold` keeps the request unanswered, `/stream` streams three chunks,
/// `/echo` echoes a prefetched body, anything else says hello.
#[derive(Default)]
struct FakeApp {
    held: Mutex<Vec<Arc<Exchange>>>,
}

impl AppWaker for FakeApp {
    fn wake_app(&self, _exchange_id: u64) {}
}

fn head(status: u16) -> ResponseHead {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    ResponseHead {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        reason: None,
    }
}

impl Dispatcher for FakeApp {
    fn dispatch(&self, req: IncomingRequest) {
        let ex = req.exchange.clone();
        match req.uri.path() {
            "/hold" => self.held.lock().unwrap().push(ex),
            "/stream" => {
                ex.respond(Response::Streaming(head(200)), false);
                for part in ["one,", "two,"] {
                    ex.push_chunk(Bytes::from_static(part.as_bytes()), false);
                }
                ex.push_chunk(Bytes::from_static(b"three"), true);
            }
            "/echo" => {
                let body = match ex.read_body() {
                    BodyRead::Chunk(b, false) => b.to_bytes(),
                    _ => Bytes::from_static(b"<not prefetched>"),
                };
                ex.respond(Response::Full(head(200), body), true);
            }
            _ => {
                ex.respond(
                    Response::Full(head(200), Bytes::from_static(b"Hello, world!")),
                    true,
                );
            }
        }
    }

    /// `/ws-reject` is refused (403); any other socket is accepted with a subprotocol.
    fn dispatch_websocket(&self, ws: IncomingWebSocket) {
        let decision = if ws.head.uri.path() == "/ws-reject" {
            Decision::Reject
        } else {
            Decision::Accept {
                subprotocol: Some("chat".into()),
                headers: HeaderMap::new(),
            }
        };
        ws.session.decide(decision);
    }

    fn log(&self, _level: LogLevel, _message: String) {}
}

fn config() -> EngineConfig {
    EngineConfig {
        threads: 1,
        keep_alive: Duration::from_secs(5),
        header_read_timeout: Duration::from_secs(5),
        max_header_bytes: 8192,
        admission: AdmissionConfig::default(),
        retry_after: 1,
        cancel_on_disconnect: false,
        metrics: _ferricorn::metrics::MetricsBlock::leaked(),
        metrics_addr: None,
        default_headers: vec![],
        date_header: false,
        proxy_headers: false,
        trusted_proxies: TrustedProxies::default(),
        response_high_water: 64 * 1024,
        request_read_ahead: 64 * 1024,
        websocket: Some(WsConfig {
            max_size: 1 << 20,
            max_queue: 4,
            ping_interval: None,
            ping_timeout: None,
            per_message_deflate: true,
        }),
        tls: None,
        http1: true,
        http2: false,
        h2: H2Limits {
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            initial_stream_window_size: 1 << 20,
            initial_connection_window_size: 2 << 20,
            keep_alive_interval: None,
            max_pending_reset_streams: 20,
        },
        limits: RequestLimits {
            body: Some(1 << 30),
            line: 8190,
            fields: 100,
            field_size: 8190,
            body_timeout: Duration::from_secs(5),
            min_send_rate: None,
            slow_send_grace: Duration::from_secs(30),
        },
        access_log: None,
        request_id_header: None,
    }
}

struct Running {
    engine: Engine,
    app: Arc<FakeApp>,
    port: u16,
}

fn start(config: EngineConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Arc::new(FakeApp::default());
    let engine = Engine::start(Listener::Tcp(listener), config, app.clone()).unwrap();
    Running { engine, app, port }
}

/// Sends `request` and reads until the server closes or `wait` passes without data.
fn exchange_bytes(port: u16, request: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

const SHORT: Duration = Duration::from_millis(500);

#[test]
fn hello_has_content_length() {
    let r = start(config());
    let (out, _) = exchange_bytes(r.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", SHORT);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("content-length: 13\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nHello, world!"), "{out}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let r = start(config());
    let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\npingGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    let (out, _) = exchange_bytes(r.port, req, SHORT);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    let hello = out.find("Hello, world!").unwrap();
    let ping = out.find("ping").unwrap();
    assert!(hello < ping, "{out}");
}

#[test]
fn streaming_response_is_chunked() {
    let r = start(config());
    let (out, _) = exchange_bytes(r.port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", SHORT);
    assert!(out.contains("transfer-encoding: chunked\r\n"), "{out}");
    assert!(
        out.contains("4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn http10_streaming_response_is_close_delimited() {
    let r = start(config());
    let (out, closed) = exchange_bytes(r.port, b"GET /stream HTTP/1.0\r\n\r\n", SHORT);
    assert!(!out.contains("chunked"), "{out}");
    assert!(out.ends_with("one,two,three"), "{out}");
    assert!(closed);
}

#[test]
fn oversized_head_gets_431_and_server_keeps_serving() {
    let r = start(config());
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20_000));
    req.extend_from_slice(b"\r\n\r\n");
    let (out, _) = exchange_bytes(r.port, &req, SHORT);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let (out, _) = exchange_bytes(r.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", SHORT);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[test]
fn garbage_gets_400() {
    let r = start(config());
    let (out, closed) = exchange_bytes(r.port, b"NOT HTTP AT ALL\r\n\r\n", SHORT);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(closed);
}

#[test]
fn content_length_with_transfer_encoding_gets_400_and_close() {
    let r = start(config());
    let req = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nping\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let (out, closed) = exchange_bytes(r.port, req, SHORT);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
    assert!(closed, "{out}");
}

const UPGRADE: &str = "HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";

#[test]
fn websocket_upgrade_gets_101_with_the_rfc_accept_key_and_deflate() {
    let r = start(config());
    let (out, _) = exchange_bytes(r.port, format!("GET /ws {UPGRADE}").as_bytes(), SHORT);
    assert!(
        out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{out}"
    );
    // The example key and answer of RFC 6455 section 1.3.
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{out}"
    );
    assert!(lower.contains("sec-websocket-protocol: chat\r\n"), "{out}");
    assert!(
        lower.contains("sec-websocket-extensions: permessage-deflate"),
        "{out}"
    );
}

#[test]
fn websocket_closed_before_accept_gets_403() {
    let r = start(config());
    let (out, _) = exchange_bytes(
        r.port,
        format!("GET /ws-reject {UPGRADE}").as_bytes(),
        SHORT,
    );
    assert!(out.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{out}");
}

#[test]
fn bad_chunk_size_gets_400_and_close() {
    let r = start(config());
    let req = b"POST /hold HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nping\r\n0\r\n\r\n";
    // The held exchange never reads the body, so drive the pump by reading ourselves.
    let port = r.port;
    let app = r.app.clone();
    let reader = std::thread::spawn(move || exchange_bytes(port, req, Duration::from_secs(2)));
    let deadline = Instant::now() + Duration::from_secs(2);
    while app.held.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ex = app.held.lock().unwrap().pop().expect("request dispatched");
    assert!(matches!(ex.read_body(), BodyRead::Wait));
    let (out, closed) = reader.join().unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(closed);
}

#[test]
fn limit_counts_requests_not_connections() {
    let mut cfg = config();
    cfg.admission.limit = Some(1);
    let r = start(cfg);
    // An idle connection costs nothing against the limit.
    let _idle = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    let (out, _) = exchange_bytes(r.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", SHORT);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // One request held in flight: the next is refused with 503 + Retry-After.
    let mut held = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    held.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while r.engine.requests_in_flight() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (out, _) = exchange_bytes(r.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", SHORT);
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("retry-after: 1\r\n"), "{out}");
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let mut cfg = config();
    cfg.keep_alive = Duration::from_millis(300);
    let r = start(cfg);
    let started = Instant::now();
    let (out, closed) = exchange_bytes(
        r.port,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(closed, "idle connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn client_leaving_marks_exchange_gone() {
    let r = start(config());
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while r.app.held.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ex = r
        .app
        .held
        .lock()
        .unwrap()
        .pop()
        .expect("request dispatched");
    assert!(!ex.wait_disconnect());
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !ex.is_client_gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ex.is_client_gone(), "disconnect not seen");
}

/// The local mode: the test thread plays the event loop, turning the engine whenever its
/// poll fd is readable (and on a short tick, as the bridge does for timers).
#[cfg(target_os = "linux")]
#[test]
fn local_mode_serves_when_turned_by_its_poll_fd() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut cfg = config();
    cfg.threads = 0;
    let running = Arc::new(start(cfg));
    let fd = running
        .engine
        .poll_fd()
        .expect("local mode exposes a poll fd");
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let (running, stop) = (running.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, 10 ms timeout.
                unsafe { libc::poll(&mut p, 1, 10) };
                running.engine.turn(Vec::new());
            }
        })
    };
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    let (out, _) = exchange_bytes(running.port, req, SHORT);
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(
        out.contains("Hello, world!") && out.contains("three"),
        "{out}"
    );
}
