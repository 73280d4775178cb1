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
//! `--threads N` with N > 1 uses the multi-thread runtime with N workers.

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"Hello, world!";

const USAGE: &str = "usage: hyper_hello [--host HOST] [--port PORT] [--threads N]";

/// Command-line options.
struct Options {
    host: String,
    port: u16,
    threads: usize,
}

/// Parses `--host`, `--port` and `--threads`, as `--flag value` or `--flag=value`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        host: "127.0.0.1".to_string(),
        port: 8000,
        threads: 1,
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
            _ => return Err(format!("unknown argument: {flag:?}")),
        }
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

/// The whole application: the same reply to every request.
async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// Accepts connections forever, serving each on its own task.
async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind((options.host.as_str(), options.port)).await?;
    eprintln!(
        "hyper_hello: listening on http://{} ({} runtime thread(s))",
        listener.local_addr()?,
        options.threads
    );
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
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
        let connection = builder.serve_connection(TokioIo::new(stream), service_fn(hello));
        tokio::spawn(async move {
            // Errors here are clients going away mid-request (e.g. wrk stopping): not ours.
            let _ = connection.await;
        });
    }
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
