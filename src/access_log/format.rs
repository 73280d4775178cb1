//! The access line's text: uvicorn's line by default, or `--access-log-format` with
//! gunicorn's atoms.
//!
//! Owns parsing the format once at startup (an unknown atom is an error naming it) and
//! rendering one [`AccessRecord`] into a line. Must not: allocate per atom beyond the output
//! string, or read anything the record does not carry (the engine captures exactly the
//! headers [`LineFormat::request_headers`] and [`LineFormat::response_headers`] name).

use std::fmt::Write as _;

use http::HeaderName;

use super::clock;
use crate::handoff::access_record::AccessRecord;
use crate::handoff::Peer;

/// How each access line is written.
#[derive(Debug)]
pub enum LineFormat {
    /// uvicorn's `<client> - "<METHOD> <path> HTTP/<version>" <status>`.
    Uvicorn,
    /// `--access-log-format`.
    Atoms(AtomFormat),
}

/// A parsed `--access-log-format`: text and atoms in order, and the headers they read.
#[derive(Debug)]
pub struct AtomFormat {
    pieces: Vec<Piece>,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
}

#[derive(Debug)]
enum Piece {
    Text(String),
    Atom(Atom),
}

/// gunicorn's access-log atoms (its docs, "access_log_format"), with the same letters.
#[derive(Debug, Clone, Copy)]
enum Atom {
    /// `h`: the client's address (after trusted proxy headers), no port.
    RemoteAddress,
    /// `l`: always `-` (RFC 1413 identity).
    Ident,
    /// `u`: the user name of HTTP Basic authorization, or `-`.
    User,
    /// `t`: `[03/Dec/2026:17:55:00 +0000]`, local time when the request started.
    Time,
    /// `r`: `GET /path?query HTTP/1.1`, the target as the client sent it.
    RequestLine,
    /// `m`, `U`, `q`, `H`: method, path, query, protocol.
    Method,
    UrlPath,
    Query,
    Protocol,
    /// `s`: the status code.
    Status,
    /// `b`: body bytes sent, `-` for none (CLF); `B`: the same as a number.
    BytesClf,
    Bytes,
    /// `f`, `a`: the Referer and User-Agent request headers, or `-`.
    Referer,
    UserAgent,
    /// `T`, `D`, `M`, `L`: the request's duration in whole seconds, microseconds,
    /// milliseconds, and decimal seconds.
    Seconds,
    Micros,
    Millis,
    DecimalSeconds,
    /// `p`: `<pid>`.
    Pid,
    /// `{name}i`, `{name}o`: a request or response header (index into the format's lists).
    RequestHeader(usize),
    ResponseHeader(usize),
}

/// The atoms `--help` and the error for an unknown atom list.
pub const ATOM_HELP: &str = "h l u t r m U q H s b B f a T D M L p {header}i {header}o";

impl AtomFormat {
    /// Parses a gunicorn-style format: `%(h)s`, `%({X-Request-ID}i)s`, `%%` for a percent sign.
    pub fn parse(text: &str) -> Result<AtomFormat, String> {
        let mut format = AtomFormat {
            pieces: Vec::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
        };
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                literal.push('%');
                rest = after;
                continue;
            }
            let Some(inner) = rest.strip_prefix('(') else {
                return Err(format!(
                    "a '%' not followed by '(name)s' at {:?}; write %% for a percent sign",
                    truncated(rest)
                ));
            };
            let Some(close) = inner.find(')') else {
                return Err(format!("an atom without its ')' at {:?}", truncated(rest)));
            };
            let name = &inner[..close];
            let after = &inner[close + 1..];
            let Some(after) = after.strip_prefix('s').or_else(|| after.strip_prefix('d')) else {
                return Err(format!(
                    "the atom %({name}) must end with 's', as in %({name})s"
                ));
            };
            let atom = format.atom(name)?;
            if !literal.is_empty() {
                format
                    .pieces
                    .push(Piece::Text(std::mem::take(&mut literal)));
            }
            format.pieces.push(Piece::Atom(atom));
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            format.pieces.push(Piece::Text(literal));
        }
        Ok(format)
    }

    fn atom(&mut self, name: &str) -> Result<Atom, String> {
        use Atom::*;
        Ok(match name {
            "h" => RemoteAddress,
            "l" => Ident,
            "u" => User,
            "t" => Time,
            "r" => RequestLine,
            "m" => Method,
            "U" => UrlPath,
            "q" => Query,
            "H" => Protocol,
            "s" => Status,
            "b" => BytesClf,
            "B" => Bytes,
            "f" => Referer,
            "a" => UserAgent,
            "T" => Seconds,
            "D" => Micros,
            "M" => Millis,
            "L" => DecimalSeconds,
            "p" => Pid,
            _ => {
                let header = name
                    .strip_prefix('{')
                    .and_then(|n| n.strip_suffix("}i").map(|h| (h, true)))
                    .or_else(|| {
                        name.strip_prefix('{')
                            .and_then(|n| n.strip_suffix("}o").map(|h| (h, false)))
                    });
                let Some((header, request)) = header else {
                    return Err(format!(
                        "unknown access log atom %({name})s; the atoms are {ATOM_HELP}"
                    ));
                };
                let header = HeaderName::try_from(header)
                    .map_err(|_| format!("%({name})s: {header:?} is not a header name"))?;
                if request {
                    RequestHeader(index_of(&mut self.request_headers, header))
                } else {
                    ResponseHeader(index_of(&mut self.response_headers, header))
                }
            }
        })
    }

    fn render(&self, record: &AccessRecord, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Atom(atom) => render_atom(*atom, record, out),
            }
        }
    }
}

fn render_atom(atom: Atom, r: &AccessRecord, out: &mut String) {
    use Atom::*;
    match atom {
        RemoteAddress => match &r.client {
            Peer::Socket(addr) => push_ip(out, addr.ip()),
            Peer::Forwarded(host, _) => push_escaped(out, host),
            Peer::Unix => out.push('-'),
        },
        Ident => out.push('-'),
        User => match r.request_header(AUTHORIZATION_SLOT).and_then(basic_user) {
            Some(user) => push_escaped(out, &user),
            None => out.push('-'),
        },
        Time => clock::push_clf_time(out, r.started_at),
        RequestLine => {
            push_escaped(out, r.method.as_str());
            out.push(' ');
            push_escaped(out, r.target());
            out.push_str(" HTTP/");
            out.push_str(version_text(r.version));
        }
        Method => push_escaped(out, r.method.as_str()),
        UrlPath => push_escaped(out, r.uri.path()),
        Query => push_escaped(out, r.uri.query().unwrap_or("")),
        Protocol => {
            out.push_str("HTTP/");
            out.push_str(version_text(r.version));
        }
        Status => push_number(out, u64::from(r.status)),
        BytesClf if r.body_bytes == 0 => out.push('-'),
        BytesClf | Bytes => push_number(out, r.body_bytes),
        Referer => push_header(out, r.request_header(REFERER_SLOT)),
        UserAgent => push_header(out, r.request_header(USER_AGENT_SLOT)),
        Seconds => push_number(out, r.duration.as_secs()),
        Micros => push_number(out, r.duration.as_micros() as u64),
        Millis => push_number(out, r.duration.as_millis() as u64),
        DecimalSeconds => {
            let _ = write!(out, "{:.6}", r.duration.as_secs_f64());
        }
        Pid => {
            let _ = write!(out, "<{}>", std::process::id());
        }
        RequestHeader(i) => push_header(out, r.request_header(FIXED_REQUEST_HEADERS + i)),
        ResponseHeader(i) => push_header(out, r.response_headers.get(i).and_then(Option::as_ref)),
    }
}

/// The request headers every atom format captures ahead of its `{name}i` ones, in this order
/// (their slots below): cheap to keep, and `u`, `f`, `a` need them.
const FIXED_REQUEST_HEADERS: usize = 3;
const AUTHORIZATION_SLOT: usize = 0;
const REFERER_SLOT: usize = 1;
const USER_AGENT_SLOT: usize = 2;

impl LineFormat {
    /// The request headers a record must carry for this format, in slot order.
    pub fn request_headers(&self) -> Vec<HeaderName> {
        match self {
            LineFormat::Uvicorn => Vec::new(),
            LineFormat::Atoms(f) => {
                let mut names = vec![
                    http::header::AUTHORIZATION,
                    http::header::REFERER,
                    http::header::USER_AGENT,
                ];
                names.extend(f.request_headers.iter().cloned());
                names
            }
        }
    }

    /// Whether a line shows when its request started (`%(t)s`).
    pub fn shows_start_time(&self) -> bool {
        match self {
            LineFormat::Uvicorn => false,
            LineFormat::Atoms(f) => f
                .pieces
                .iter()
                .any(|p| matches!(p, Piece::Atom(Atom::Time))),
        }
    }

    /// The response headers a record must carry for this format, in slot order.
    pub fn response_headers(&self) -> Vec<HeaderName> {
        match self {
            LineFormat::Uvicorn => Vec::new(),
            LineFormat::Atoms(f) => f.response_headers.clone(),
        }
    }

    /// Appends the line for `record` to `out`, without a newline. `phrases` gives uvicorn's
    /// "200 OK" (Python's `http.HTTPStatus` phrases, so that this line and the one
    /// `AccessFormatter` writes are the same).
    pub fn render(&self, record: &AccessRecord, phrases: &StatusPhrases, out: &mut String) {
        match self {
            LineFormat::Uvicorn => {
                match &record.client {
                    Peer::Socket(addr) => {
                        push_ip(out, addr.ip());
                        out.push(':');
                        push_number(out, u64::from(addr.port()));
                    }
                    Peer::Forwarded(host, port) => {
                        push_escaped(out, host);
                        let _ = write!(out, ":{port}");
                    }
                    Peer::Unix => out.push('-'),
                }
                out.push_str(" - \"");
                push_escaped(out, record.method.as_str());
                out.push(' ');
                push_full_path(out, record);
                out.push_str(" HTTP/");
                out.push_str(version_text(record.version));
                out.push_str("\" ");
                push_number(out, u64::from(record.status));
                if let Some(phrase) = phrases.get(record.status) {
                    out.push(' ');
                    out.push_str(phrase);
                }
            }
            LineFormat::Atoms(f) => f.render(record, out),
        }
    }
}

/// Reason phrases by status code, as Python's `http.HTTPStatus` has them.
#[derive(Debug, Default)]
pub struct StatusPhrases(Vec<Option<Box<str>>>);

impl StatusPhrases {
    pub fn new(pairs: impl IntoIterator<Item = (u16, String)>) -> Self {
        let mut table = vec![None; 600];
        for (code, phrase) in pairs {
            if let Some(slot) = table.get_mut(usize::from(code)) {
                *slot = Some(phrase.into_boxed_str());
            }
        }
        StatusPhrases(table)
    }

    fn get(&self, code: u16) -> Option<&str> {
        self.0.get(usize::from(code)).and_then(|p| p.as_deref())
    }
}

pub fn version_text(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        http::Version::HTTP_09 => "0.9",
        _ => "1.1",
    }
}

fn index_of(names: &mut Vec<HeaderName>, name: HeaderName) -> usize {
    match names.iter().position(|n| *n == name) {
        Some(i) => i,
        None => {
            names.push(name);
            names.len() - 1
        }
    }
}

/// Decimal digits without `fmt` (the writer formats every line: this is its hot path).
fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
}

fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_number(out, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn push_header(out: &mut String, value: Option<&http::HeaderValue>) {
    match value {
        Some(v) => push_escaped(out, &String::from_utf8_lossy(v.as_bytes())),
        None => out.push('-'),
    }
}

/// The user name of `Authorization: Basic <base64(user:password)>`.
fn basic_user(value: &http::HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(encoded.trim())?;
    let user = decoded.split(|&b| b == b':').next()?;
    Some(String::from_utf8_lossy(user).into_owned())
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in bytes {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// uvicorn's `full_path`, escaped: the percent-decoded path, then `?query` as sent.
pub fn push_full_path(out: &mut String, record: &AccessRecord) {
    push_decoded_path(out, record.uri.path());
    if let Some(query) = record.uri.query() {
        out.push('?');
        push_escaped(out, query);
    }
}

/// Appends the percent-decoded `path` (uvicorn logs the scope's path), escaped.
fn push_decoded_path(out: &mut String, path: &str) {
    if !path.contains('%') {
        push_escaped(out, path);
        return;
    }
    let decoded = crate::handoff::percent_decode_bytes(path.as_bytes());
    push_escaped(out, &String::from_utf8_lossy(&decoded));
}

/// Appends `s` with control characters escaped, so that a request cannot forge log lines.
fn push_escaped(out: &mut String, s: &str) {
    // Paths and addresses are ASCII without controls nearly always: one pass over bytes.
    let clean = s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if clean || !s.chars().any(char::is_control) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// `s` with control characters escaped (for lines written through Python's `logging`).
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped(&mut out, s);
    out
}

fn truncated(s: &str) -> &str {
    match s.char_indices().nth(20) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("/ok", "/ok"),
            ("/a\r\nINFO: forged", "/a\\r\\nINFO: forged"),
            ("/tab\there", "/tab\\there"),
        ];
        for (raw, expected) in cases {
            assert_eq!(escape_control(raw), expected);
        }
    }

    #[test]
    fn parses_atoms_text_and_percent_signs() {
        let f = AtomFormat::parse("%(h)s 100%% %({X-Trace}i)s %({x-trace}i)d %({etag}o)s").unwrap();
        assert_eq!(f.request_headers, vec![HeaderName::from_static("x-trace")]);
        assert_eq!(f.response_headers, vec![http::header::ETAG]);
        assert_eq!(f.pieces.len(), 7);
        assert!(matches!(&f.pieces[1], Piece::Text(t) if t == " 100% "));
    }

    #[test]
    fn refuses_unknown_and_broken_atoms() {
        for (text, says) in [
            ("%(z)s", "unknown access log atom %(z)s"),
            ("%(h", "without its ')'"),
            ("%(h)x", "must end with 's'"),
            ("50% off", "write %% for a percent sign"),
            ("%({bad header}i)s", "is not a header name"),
        ] {
            let err = AtomFormat::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn numbers_and_addresses_are_written_as_fmt_would() {
        for n in [0u64, 7, 10, 65535, 1_000_000, u64::MAX] {
            let mut out = String::new();
            push_number(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.20.3.4",
            "::1",
            "fe80::1:2",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn basic_user_is_decoded() {
        let v = http::HeaderValue::from_static("Basic YWxpY2U6czNjcmV0");
        assert_eq!(basic_user(&v).as_deref(), Some("alice"));
        let v = http::HeaderValue::from_static("Bearer abc");
        assert_eq!(basic_user(&v), None);
    }
}
