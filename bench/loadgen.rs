//! A load generator for what wrk cannot measure: token streams (`sse`), many idle
//! connections (`idle`) and WebSocket echo (`ws`). Prints one JSON object on stdout.
//!
//!     cargo run --release --example loadgen -- sse  --port 8000 --path /sse --clients 1000
//!     cargo run --release --example loadgen -- sse  --port 8000 --path /v1/completions \
//!         --clients 1000 --method POST --body-file req.json --content-type application/json
//!     cargo run --release --example loadgen -- idle --port 8000 --connections 10000 --hold 5
//!     cargo run --release --example loadgen -- ws --port 8000 --path /ws --clients 100 --hold 5
//!
//! `sse`: each client sends one request and reads the streamed response. The request is a
//! GET with no body unless `--method`, `--body-file` (the body, sent with its Content-Length)
//! and `--content-type` say otherwise. It reports two counts:
//!
//! - events: every blank line ("\n\n", CRs ignored) in the raw bytes after the response
//!   head, chunk framing included, so the last chunk of a chunked body ("0\r\n\r\n") counts
//!   as one more event per stream. It gives events per second, the delays between
//!   consecutive events of a stream and the streams completed (a head, then the connection
//!   closed or a read ended with the last chunk, or the body ended as framed).
//! - tokens: the body is decoded (chunked or Content-Length) and parsed as an event stream;
//!   a token is an event with a `data:` field other than `data: [DONE]`, so neither the
//!   `[DONE]` event nor the chunk framing counts. It gives tokens per second, the time to
//!   first token (from just before the connect to the read that ends the first token event:
//!   connecting and sending the request are in it), the delays between consecutive tokens
//!   of a stream, the streams that ended (status 200, the body read to its end), those of
//!   them that had a `data: [DONE]` event, and the time from the connect to the end of the
//!   body of each stream that ended (keys `tokens`, `tokens_per_s`, `ttft_*_ms`,
//!   `token_delay_*_ms`, `ended`, `done`, `stream_*_ms`; `status_errors` counts the
//!   responses with a status other than 200, `failed` the clients that got no response).
//!
//! `idle`: opens the connections without sending anything, keeps them open for `--hold`
//! seconds while timing one request every 100 ms on a fresh connection, then reports those
//! latencies. `ws`: each client upgrades to a WebSocket and sends a `--size`-byte text
//! message, waits for the echo, and again, for `--hold` seconds; it reports messages per
//! second and round-trip percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    mode: String,
    host: String,
    port: u16,
    path: String,
    clients: usize,
    hold: f64,
    size: usize,
    method: String,
    body: Vec<u8>,
    content_type: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        mode: String::new(),
        host: "127.0.0.1".into(),
        port: 8000,
        path: "/".into(),
        clients: 100,
        hold: 5.0,
        size: 32,
        method: "GET".into(),
        body: Vec::new(),
        content_type: None,
    };
    let mut it = std::env::args().skip(1);
    a.mode = it.next().unwrap_or_default();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--host" => a.host = value,
            "--port" => a.port = value.parse().expect("--port"),
            "--path" => a.path = value,
            "--clients" | "--connections" => a.clients = value.parse().expect("--clients"),
            "--hold" => a.hold = value.parse().expect("--hold"),
            "--size" => a.size = value.parse().expect("--size"),
            "--method" => a.method = value,
            "--body-file" => {
                a.body =
                    std::fs::read(&value).unwrap_or_else(|e| panic!("--body-file {value}: {e}"))
            }
            "--content-type" => a.content_type = Some(value),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// p50, p99 and max of sorted values (all 0 when there are none).
fn quantiles(sorted: &[f64]) -> (f64, f64, f64) {
    (
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        sorted.last().copied().unwrap_or(0.0),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The request every `sse` client sends: the head, then the `--body-file` bytes. A GET with
/// no body has no Content-Length and no Content-Type unless `--content-type` is given.
fn sse_request(a: &Args) -> Vec<u8> {
    let content_type = a
        .content_type
        .as_ref()
        .map(|t| format!("Content-Type: {t}\r\n"))
        .unwrap_or_default();
    let length = if a.method == "GET" && a.body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", a.body.len())
    };
    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{content_type}{length}\r\n",
        a.method, a.path, a.host
    )
    .into_bytes();
    request.extend_from_slice(&a.body);
    request
}

/// Where a response body ends (RFC 9112, section 6.3).
enum Body {
    /// Transfer-Encoding: chunked, decoded as the bytes come.
    Chunked(Chunk),
    /// Content-Length: the bytes still to come.
    Length(usize),
    /// Neither: the body ends when the server closes the connection.
    Close,
}

impl Body {
    /// Appends the payload in `input` (body bytes as read) to `out`; true once the body has
    /// ended.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        match self {
            Body::Chunked(chunk) => chunk.feed(input, out),
            Body::Length(left) => {
                let take = (*left).min(input.len());
                out.extend_from_slice(&input[..take]);
                *left -= take;
                *left == 0
            }
            Body::Close => {
                out.extend_from_slice(input);
                false
            }
        }
    }
}

/// Where the chunked decoder stands.
#[derive(Clone, Copy)]
enum Chunk {
    /// In a chunk-size line: the size so far, and whether its hex digits are over (an
    /// extension or the line end follows).
    Size(usize, bool),
    /// In a chunk's data: the bytes left.
    Data(usize),
    /// In the line end after a chunk's data.
    DataEnd,
    /// After the last chunk, in the trailer section: whether the current line is empty so far.
    Trailer(bool),
    /// The body has ended.
    Done,
}

impl Chunk {
    /// Appends the chunk data in `input` to `out`; true once the last chunk (and the trailer
    /// section after it) has been read.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let mut i = 0;
        while i < input.len() {
            let state = *self;
            match state {
                Chunk::Size(size, digits_over) => {
                    let b = input[i];
                    i += 1;
                    let digit = if digits_over {
                        None
                    } else {
                        char::from(b).to_digit(16)
                    };
                    *self = match (b, digit) {
                        (b'\n', _) if size == 0 => Chunk::Trailer(true),
                        (b'\n', _) => Chunk::Data(size),
                        (_, Some(d)) => {
                            Chunk::Size(size.saturating_mul(16).saturating_add(d as usize), false)
                        }
                        _ => Chunk::Size(size, true),
                    };
                }
                Chunk::Data(left) => {
                    let take = left.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    *self = if take == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - take)
                    };
                }
                Chunk::DataEnd => {
                    if input[i] == b'\n' {
                        *self = Chunk::Size(0, false);
                    }
                    i += 1;
                }
                Chunk::Trailer(empty) => {
                    let b = input[i];
                    i += 1;
                    if b == b'\n' && empty {
                        *self = Chunk::Done;
                    } else if b == b'\n' {
                        *self = Chunk::Trailer(true);
                    } else if b != b'\r' {
                        *self = Chunk::Trailer(false);
                    }
                }
                Chunk::Done => return true,
            }
        }
        matches!(*self, Chunk::Done)
    }
}

/// The status code and the body framing of a response head (the bytes before its blank line).
fn parse_head(head: &[u8]) -> (u16, Body) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let mut body = Body::Close;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().ends_with("chunked")
        {
            body = Body::Chunked(Chunk::Size(0, false));
        } else if name.eq_ignore_ascii_case("content-length") && !matches!(body, Body::Chunked(_)) {
            body = Body::Length(value.parse().unwrap_or(0));
        }
    }
    (status, body)
}

/// Splits a decoded `text/event-stream` body into events (a blank line ends one) and tells
/// the events with a `data:` field apart: tokens, and `data: [DONE]`.
#[derive(Default)]
struct Events {
    /// The current line, without its line end.
    line: Vec<u8>,
    /// The current event has a `data:` field.
    has_data: bool,
    /// The current event's (last) `data:` field is `[DONE]`.
    is_done: bool,
}

impl Events {
    /// Feeds decoded body bytes; returns how many token events ended in them, and whether a
    /// `data: [DONE]` event did.
    fn feed(&mut self, bytes: &[u8]) -> (usize, bool) {
        let (mut tokens, mut done) = (0usize, false);
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if self.line.is_empty() {
                if self.is_done {
                    done = true;
                } else if self.has_data {
                    tokens += 1;
                }
                self.has_data = false;
                self.is_done = false;
            } else if let Some(data) = self.line.strip_prefix(b"data:") {
                let data = data.strip_prefix(b" ").unwrap_or(data);
                self.has_data = true;
                self.is_done = data == b"[DONE]";
            }
            self.line.clear();
        }
        (tokens, done)
    }
}

/// What one `sse` stream saw (see the module's doc for the two counts).
#[derive(Default)]
struct Stream {
    /// Blank lines in the raw bytes after the head.
    events: usize,
    /// Delays between consecutive raw events, in ms.
    delays: Vec<f64>,
    /// A head arrived, then the connection closed or the body ended.
    completed: bool,
    /// The response's status code; 0 when no head arrived.
    status: u16,
    /// Token events in the decoded body.
    tokens: usize,
    /// From just before the connect to the end of the first token event, in ms.
    ttft_ms: Option<f64>,
    /// Delays between consecutive token events, in ms.
    token_delays: Vec<f64>,
    /// Status 200 and the body read to its end: from just before the connect to that end, in
    /// ms.
    ended_ms: Option<f64>,
    /// Ended (as above) after a `data: [DONE]` event.
    done: bool,
}

impl Stream {
    /// The body has ended, `took` after the connect began.
    fn end(&mut self, took: Duration, saw_done: bool) {
        if self.status == 200 {
            self.ended_ms = Some(ms(took));
            self.done = saw_done;
        }
    }
}

/// One stream: connects, sends `request` and reads the response to its end.
async fn one_stream(host: &str, port: u16, request: &[u8]) -> Stream {
    let mut st = Stream::default();
    let start = Instant::now();
    let Ok(mut s) = TcpStream::connect((host, port)).await else {
        return st;
    };
    if s.write_all(request).await.is_err() {
        return st;
    }
    let mut buf = vec![0u8; 16384];
    let mut last: Option<Instant> = None;
    let mut last_token: Option<Instant> = None;
    let mut prev_newline = false;
    let mut in_body = false;
    let mut head = Vec::new();
    let mut body = Body::Close;
    let mut decoded = Vec::new();
    let mut events = Events::default();
    let mut saw_done = false;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) => {
                // The server closed the connection: the end of a body with no framing.
                if in_body && matches!(body, Body::Close) {
                    st.end(start.elapsed(), saw_done);
                }
                st.completed = in_body;
                return st;
            }
            Err(_) => {
                st.completed = in_body;
                return st;
            }
            Ok(n) => n,
        };
        let now = Instant::now();
        // Until the head ends, bytes go to `head`; what follows it in the same read is body.
        let rest;
        let data: &[u8] = if in_body {
            &buf[..n]
        } else {
            head.extend_from_slice(&buf[..n]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            in_body = true;
            rest = head.split_off(end + 4);
            let (status, framing) = parse_head(&head);
            st.status = status;
            body = framing;
            head.clear();
            &rest
        };
        for &b in data {
            count(
                b,
                &mut prev_newline,
                &mut st.events,
                &mut last,
                &mut st.delays,
                now,
            );
        }
        decoded.clear();
        let ended = body.feed(data, &mut decoded);
        let (tokens, done) = events.feed(&decoded);
        for _ in 0..tokens {
            match last_token {
                Some(l) => st.token_delays.push(ms(now - l)),
                None => st.ttft_ms = Some(ms(now - start)),
            }
            last_token = Some(now);
        }
        st.tokens += tokens;
        saw_done |= done;
        if ended {
            st.end(now - start, saw_done);
            st.completed = true;
            return st;
        }
        if buf[..n].ends_with(b"0\r\n\r\n") {
            st.completed = true;
            return st;
        }
    }
}

fn count(
    b: u8,
    prev_newline: &mut bool,
    events: &mut usize,
    last: &mut Option<Instant>,
    delays: &mut Vec<f64>,
    now: Instant,
) {
    if b == b'\n' {
        if *prev_newline {
            *events += 1;
            if let Some(l) = *last {
                delays.push((now - l).as_secs_f64() * 1000.0);
            }
            *last = Some(now);
            *prev_newline = false;
            return;
        }
        *prev_newline = true;
    } else if b != b'\r' {
        *prev_newline = false;
    }
}

async fn sse(a: &Args) {
    let request: Arc<[u8]> = sse_request(a).into();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.clients);
    for _ in 0..a.clients {
        let (host, port, request) = (a.host.clone(), a.port, Arc::clone(&request));
        tasks.push(tokio::spawn(async move {
            one_stream(&host, port, &request).await
        }));
    }
    let mut delays: Vec<f64> = Vec::new();
    let mut token_delays: Vec<f64> = Vec::new();
    let mut ttfts: Vec<f64> = Vec::new();
    let mut streams: Vec<f64> = Vec::new();
    let (mut events, mut completed, mut tokens) = (0usize, 0usize, 0usize);
    let (mut ended, mut done, mut status_errors, mut failed) = (0usize, 0usize, 0usize, 0usize);
    for t in tasks {
        let Ok(st) = t.await else {
            failed += 1;
            continue;
        };
        events += st.events;
        completed += usize::from(st.completed);
        tokens += st.tokens;
        ended += usize::from(st.ended_ms.is_some());
        done += usize::from(st.done);
        match st.status {
            0 => failed += 1,
            200 => {}
            _ => status_errors += 1,
        }
        ttfts.extend(st.ttft_ms);
        streams.extend(st.ended_ms);
        delays.extend(st.delays);
        token_delays.extend(st.token_delays);
    }
    let elapsed = started.elapsed().as_secs_f64();
    for values in [&mut delays, &mut token_delays, &mut ttfts, &mut streams] {
        values.sort_by(|x, y| x.total_cmp(y));
    }
    let clients = a.clients;
    let events_per_s = events as f64 / elapsed;
    let tokens_per_s = tokens as f64 / elapsed;
    let (delay_p50, delay_p99, delay_max) = quantiles(&delays);
    let (ttft_p50, ttft_p99, ttft_max) = quantiles(&ttfts);
    let (token_p50, token_p99, token_max) = quantiles(&token_delays);
    let (stream_p50, stream_p99, stream_max) = quantiles(&streams);
    println!(
        "{{\"mode\":\"sse\",\"clients\":{clients},\"completed\":{completed},\"events\":{events},\"seconds\":{elapsed:.3},\"events_per_s\":{events_per_s:.1},\"delay_p50_ms\":{delay_p50:.2},\"delay_p99_ms\":{delay_p99:.2},\"delay_max_ms\":{delay_max:.2},\"tokens\":{tokens},\"tokens_per_s\":{tokens_per_s:.1},\"ttft_p50_ms\":{ttft_p50:.2},\"ttft_p99_ms\":{ttft_p99:.2},\"ttft_max_ms\":{ttft_max:.2},\"token_delay_p50_ms\":{token_p50:.2},\"token_delay_p99_ms\":{token_p99:.2},\"token_delay_max_ms\":{token_max:.2},\"ended\":{ended},\"done\":{done},\"status_errors\":{status_errors},\"failed\":{failed},\"stream_p50_ms\":{stream_p50:.1},\"stream_p99_ms\":{stream_p99:.1},\"stream_max_ms\":{stream_max:.1}}}"
    );
}

async fn idle(a: &Args) {
    let mut conns = Vec::with_capacity(a.clients);
    let mut failed = 0usize;
    for _ in 0..a.clients {
        match TcpStream::connect((a.host.as_str(), a.port)).await {
            Ok(c) => conns.push(c),
            Err(_) => failed += 1,
        }
    }
    // Tell the harness the connections are open (it measures the server's RSS now).
    eprintln!("open {}", conns.len());
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(a.hold);
    while Instant::now() < deadline {
        let t = Instant::now();
        if let Ok(mut s) = TcpStream::connect((a.host.as_str(), a.port)).await {
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                a.path
            );
            let mut out = Vec::new();
            if s.write_all(req.as_bytes()).await.is_ok()
                && s.read_to_end(&mut out).await.is_ok()
                && out.starts_with(b"HTTP/1.1 200")
            {
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still open? A server that dropped idle connections early shows it here.
    let mut still_open = 0usize;
    for c in &conns {
        let mut b = [0u8; 1];
        match c.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => still_open += 1,
            _ => {}
        }
    }
    latencies.sort_by(|x, y| x.total_cmp(y));
    println!(
        "{{\"mode\":\"idle\",\"connections\":{},\"failed\":{failed},\"still_open\":{still_open},\"requests\":{},\"latency_p50_ms\":{:.2},\"latency_max_ms\":{:.2}}}",
        conns.len(),
        latencies.len(),
        percentile(&latencies, 0.5),
        latencies.last().copied().unwrap_or(0.0)
    );
}

/// One WebSocket client: handshake, then echo round trips of one text message until the
/// deadline. Returns the round-trip times in ms, or `None` if the handshake failed.
async fn one_socket(
    host: &str,
    port: u16,
    path: &str,
    size: usize,
    until: Instant,
) -> Option<Vec<f64>> {
    use tokio::io::BufReader;
    let stream = TcpStream::connect((host, port)).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let handshake = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    write.write_all(handshake.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(read.read_u8().await.ok()?);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return None;
    }
    // A masked client text frame (RFC 6455 5.3), built once: the payload never changes.
    let mask = [0x1a, 0x2b, 0x3c, 0x4d];
    let mut frame = vec![0x81];
    match size {
        0..=125 => frame.push(0x80 | size as u8),
        126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend((0..size).map(|i| b'x' ^ mask[i % 4]));
    let mut times = Vec::new();
    let mut payload = vec![0u8; size];
    while Instant::now() < until {
        let t = Instant::now();
        write.write_all(&frame).await.ok()?;
        let first = read.read_u8().await.ok()?;
        let len = match read.read_u8().await.ok()? & 0x7f {
            126 => read.read_u16().await.ok()? as usize,
            127 => read.read_u64().await.ok()? as usize,
            n => n as usize,
        };
        payload.resize(len, 0);
        read.read_exact(&mut payload).await.ok()?;
        if first & 0x0f != 0x1 || len != size {
            return None;
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Some(times)
}

async fn ws(a: &Args) {
    let until = Instant::now() + Duration::from_secs_f64(a.hold);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.clients);
    for _ in 0..a.clients {
        let (host, path, port, size) = (a.host.clone(), a.path.clone(), a.port, a.size);
        tasks.push(tokio::spawn(async move {
            one_socket(&host, port, &path, size, until).await
        }));
    }
    let (mut times, mut failed) = (Vec::new(), 0usize);
    for t in tasks {
        match t.await {
            Ok(Some(d)) => times.extend(d),
            _ => failed += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    times.sort_by(|x, y| x.total_cmp(y));
    println!(
        "{{\"mode\":\"ws\",\"clients\":{},\"failed\":{failed},\"messages\":{},\"seconds\":{elapsed:.3},\"messages_per_s\":{:.1},\"latency_p50_ms\":{:.3},\"latency_p99_ms\":{:.3}}}",
        a.clients,
        times.len(),
        times.len() as f64 / elapsed,
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
}

fn main() {
    raise_fd_limit();
    let a = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match a.mode.as_str() {
        "sse" => rt.block_on(sse(&a)),
        "idle" => rt.block_on(idle(&a)),
        "ws" => rt.block_on(ws(&a)),
        _ => {
            eprintln!("usage: loadgen sse|idle|ws --port P [--path /x] [--clients N] [--hold S] [--size B] [--method M] [--body-file F] [--content-type T]");
            std::process::exit(2);
        }
    }
}
