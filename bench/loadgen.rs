//! A load generator for what wrk cannot measure: token streams (`sse`), many idle
//! connections (`idle`) and WebSocket echo (`ws`). Prints one JSON object on stdout.
//!
//!     cargo run --release --example loadgen -- sse  --port 8000 --path /sse --clients 1000
//!     cargo run --release --example loadgen -- idle --port 8000 --connections 10000 --hold 5
//!     cargo run --release --example loadgen -- ws --port 8000 --path /ws --clients 100 --hold 5
//!
//! `sse`: each client sends one GET and reads the streamed response; an event ends with a
//! blank line ("\n\n"). It reports events per second, the inter-event delay percentiles and
//! how many streams completed. `idle`: opens the connections without sending anything,
//! keeps them open for `--hold` seconds while timing one request every 100 ms on a fresh
//! connection, then reports those latencies. `ws`: each client upgrades to a WebSocket and
//! sends a `--size`-byte text message, waits for the echo, and again, for `--hold` seconds;
//! it reports messages per second and round-trip percentiles.

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

/// One stream: returns the inter-event delays in ms, and whether it ended cleanly.
async fn one_stream(host: &str, port: u16, path: &str) -> (Vec<f64>, usize, bool) {
    let Ok(mut s) = TcpStream::connect((host, port)).await else {
        return (Vec::new(), 0, false);
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (Vec::new(), 0, false);
    }
    let mut buf = vec![0u8; 16384];
    let mut delays = Vec::new();
    let mut events = 0usize;
    let mut last: Option<Instant> = None;
    let mut prev_newline = false;
    let mut in_body = false;
    let mut head = Vec::new();
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return (delays, events, in_body),
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
            head.clear();
            &rest
        };
        for &b in data {
            count(
                b,
                &mut prev_newline,
                &mut events,
                &mut last,
                &mut delays,
                now,
            );
        }
        if buf[..n].ends_with(b"0\r\n\r\n") {
            return (delays, events, true);
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
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(a.clients);
    for _ in 0..a.clients {
        let (host, path, port) = (a.host.clone(), a.path.clone(), a.port);
        tasks.push(tokio::spawn(
            async move { one_stream(&host, port, &path).await },
        ));
    }
    let mut delays = Vec::new();
    let (mut events, mut completed) = (0usize, 0usize);
    for t in tasks {
        if let Ok((d, e, ok)) = t.await {
            delays.extend(d);
            events += e;
            completed += ok as usize;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    delays.sort_by(|x, y| x.total_cmp(y));
    println!(
        "{{\"mode\":\"sse\",\"clients\":{},\"completed\":{completed},\"events\":{events},\"seconds\":{elapsed:.3},\"events_per_s\":{:.1},\"delay_p50_ms\":{:.2},\"delay_p99_ms\":{:.2},\"delay_max_ms\":{:.2}}}",
        a.clients,
        events as f64 / elapsed,
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0.0)
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
            eprintln!("usage: loadgen sse|idle|ws --port P [--path /x] [--clients N] [--hold S] [--size B]");
            std::process::exit(2);
        }
    }
}
