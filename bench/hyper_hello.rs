//! A pure-Rust hyper 1.x "Hello, world!" server: the ceiling for ferricorn's benchmarks.
//!
//! It answers every HTTP/1.1 request with `200 OK`, `content-type: text/plain` and the 13-byte
//! body `Hello, world!`, the same reply as `bench/apps/hello.py`, with no Python involved. The
//! gap between this and ferricorn on the "hello" scenario is the cost of the ASGI bridge.
//!
//! Build and run:
//!
//! ```text
//! cargo build --release --example hyper_hello
//! target/release/examples/hyper_hello --port 8000 [--threads 1] [--host 127.0.0.1]
//! ```
//!
//! `--threads 1` (the default) uses tokio's current-thread runtime, matching "one worker";
//! `--threads N` with N > 1 uses the multi-thread runtime with N workers. `--delay-ms D` waits
//! D milliseconds (a tokio timer) before each reply: the ceiling for the `slow-100ms` scenario,
//! which shows how much of that scenario's gap to its ideal is the load generator and the
//! kernel rather than the server. A request whose query has `n=N&interval=S` (the
//! `sse-tokens` app's parameters) gets N chunked `data: tokK` events S seconds apart instead:
//! the ceiling for the token-stream scenarios. The listen backlog is 2048, as ferricorn's and
//! uvicorn's, so that 1,000 clients connecting at once do not wait for SYN retries.
//!
//! `--h2` serves HTTP/2 by prior knowledge (h2c, as h2load speaks it) instead of HTTP/1.1,
//! with ferricorn's default of 100 streams per connection: the ceiling for `h2-hello`.
//! `--ssl-certfile C --ssl-keyfile K` serves HTTP/1.1 over TLS with rustls (ring, ALPN
//! `http/1.1`, its default versions and suites): the ceiling for `tls-hello` and
//! `tls-handshakes`.

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{Either, Full, StreamBody};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;

const BODY: &[u8] = b"Hello, world!";
/// As ferricorn's and uvicorn's default `--backlog`.
const BACKLOG: u32 = 2048;

/// A token stream's chunks, produced as its timer fires.
type EventStream = futures::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>;
type Reply = Response<Either<Full<Bytes>, StreamBody<EventStream>>>;

const USAGE: &str = "usage: hyper_hello [--host HOST] [--port PORT] [--threads N] [--delay-ms D] \
[--h2] [--ssl-certfile CERT.pem --ssl-keyfile KEY.pem]";

/// Command-line options.
struct Options {
    host: String,
    port: u16,
    threads: usize,
    delay: Duration,
    h2: bool,
    certfile: Option<String>,
    keyfile: Option<String>,
}

/// Parses `--host`, `--port` and `--threads`, as `--flag value` or `--flag=value`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        host: "127.0.0.1".to_string(),
        port: 8000,
        threads: 1,
        delay: Duration::ZERO,
        h2: false,
        certfile: None,
        keyfile: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--host" => options.host = take_value(&flag, inline_value, &mut args)?,
            "--port" => {
                let value = take_value(&flag, inline_value, &mut args)?;
                options.port = value
                    .parse()
                    .map_err(|_| format!("--port: not a port number: {value:?}"))?;
            }
            "--threads" => {
                let value = take_value(&flag, inline_value, &mut args)?;
                options.threads = match value.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("--threads: not a positive integer: {value:?}")),
                };
            }
            "--delay-ms" => {
                let value = take_value(&flag, inline_value, &mut args)?;
                let millis = value
                    .parse::<u64>()
                    .map_err(|_| format!("--delay-ms: not a whole number of ms: {value:?}"))?;
                options.delay = Duration::from_millis(millis);
            }
            "--h2" => options.h2 = true,
            "--ssl-certfile" => {
                options.certfile = Some(take_value(&flag, inline_value, &mut args)?)
            }
            "--ssl-keyfile" => options.keyfile = Some(take_value(&flag, inline_value, &mut args)?),
            _ => return Err(format!("unknown argument: {flag:?}")),
        }
    }
    if options.certfile.is_some() != options.keyfile.is_some() {
        return Err("--ssl-certfile and --ssl-keyfile go together".to_string());
    }
    if options.h2 && options.certfile.is_some() {
        return Err("--h2 is h2c (plain text); TLS serves HTTP/1.1".to_string());
    }
    Ok(options)
}

/// The value of a flag: the part after `=`, or else the next argument.
fn take_value(
    flag: &str,
    inline_value: Option<String>,
    args: &mut impl Iterator<Item = String>,
) -> Result<String, String> {
    inline_value
        .or_else(|| args.next())
        .ok_or_else(|| format!("{flag} needs a value"))
}

/// The whole application: a token stream when the query asks for one, else the same reply to
/// every request, after `delay` when it is not zero.
async fn hello(request: Request<Incoming>, delay: Duration) -> Result<Reply, Infallible> {
    if let Some((count, interval)) = request.uri().query().and_then(stream_parameters) {
        let mut response = Response::new(Either::Right(StreamBody::new(events(count, interval))));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        return Ok(response);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(BODY))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// `n` and `interval` (seconds) from a query string such as `n=40&interval=0.05`.
fn stream_parameters(query: &str) -> Option<(usize, Duration)> {
    let (mut count, mut interval) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("n", value)) => count = value.parse().ok(),
            Some(("interval", value)) => {
                interval = value
                    .parse()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
            }
            _ => {}
        }
    }
    Some((count?, interval?))
}

/// `count` events `data: tokK`, the first at once and each next one `interval` later, as the
/// Python app sends them (send, then sleep).
fn events(count: usize, interval: Duration) -> EventStream {
    use futures::StreamExt;
    futures::stream::unfold(0, move |k| async move {
        if k == count {
            return None;
        }
        if k > 0 {
            tokio::time::sleep(interval).await;
        }
        let chunk = Bytes::from(format!("data: tok{k}\n\n"));
        Some((Ok(Frame::data(chunk)), k + 1))
    })
    .boxed()
}

/// The TLS acceptor of `--ssl-certfile` / `--ssl-keyfile`.
fn tls_acceptor(certfile: &str, keyfile: &str) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(certfile)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{certfile}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| format!("{keyfile}: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// Accepts connections forever, serving each on its own task.
async fn serve(options: Options) -> std::io::Result<()> {
    let listener = listen(&options)?;
    let tls = match (&options.certfile, &options.keyfile) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key).map_err(std::io::Error::other)?),
        _ => None,
    };
    eprintln!(
        "hyper_hello: listening on {}://{} ({}, {} runtime thread(s), {} ms delay)",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        if options.h2 { "h2c" } else { "HTTP/1.1" },
        options.threads,
        options.delay.as_millis()
    );
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    let mut h2_builder = http2::Builder::new(TokioExecutor::new());
    h2_builder.max_concurrent_streams(100);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Typically EMFILE under overload: back off briefly instead of spinning.
                eprintln!("hyper_hello: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Best effort: a failure here only costs latency.
        let _ = stream.set_nodelay(true);
        let delay = options.delay;
        let service = service_fn(move |request| hello(request, delay));
        // Errors below are clients going away mid-request (e.g. wrk stopping): not ours.
        if let Some(tls) = &tls {
            let (tls, builder) = (tls.clone(), builder.clone());
            tokio::spawn(async move {
                if let Ok(stream) = tls.accept(stream).await {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            });
        } else if options.h2 {
            let connection = h2_builder.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        } else {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    }
}

/// A listener with ferricorn's backlog (tokio's `TcpListener::bind` uses 128).
fn listen(options: &Options) -> std::io::Result<TcpListener> {
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(options.host.as_str(), options.port))?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{}: no address", options.host)))?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("hyper_hello: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = if options.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hyper_hello: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hyper_hello: {err}");
            ExitCode::FAILURE
        }
    }
}
