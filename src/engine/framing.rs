//! A watch over request framing on the raw byte stream, for the checks hyper cannot do for
//! us: a request carrying both `Content-Length` and `Transfer-Encoding` must get 400 and the
//! connection closed (RFC 9112 6.1, a request-smuggling vector). hyper accepts such a request,
//! reads it as chunked and silently drops `Content-Length`, so no service can see it. And a
//! request line longer than the head limit must get 414 (RFC 9112 3), where hyper's buffer
//! limit answers 431 before it has read the target.
//!
//! Owns: following message boundaries (head, fixed or chunked body, trailers) over the bytes
//! the connection reads, and spoiling the end of an offending head so hyper's own parser
//! rejects it with 400. Must not: buffer or delay bytes, or judge anything hyper judges itself
//! (malformed lines, sizes, header limits): where it cannot follow the stream it stops
//! watching and leaves the verdict to hyper.

/// Longest head line kept for inspection; longer ones are not `Content-Length` or
/// `Transfer-Encoding` lines we need to read (hyper limits the head size itself).
const MAX_LINE: usize = 256;

#[derive(Debug, PartialEq)]
enum State {
    /// Reading a request head; `lines` counts the lines seen so far.
    Head { lines: usize },
    /// Skipping a body of known length.
    Fixed(u64),
    /// A chunk-size line of a chunked body.
    ChunkSize,
    /// Chunk data still to skip.
    ChunkData(u64),
    /// The CRLF after chunk data.
    ChunkEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers,
    /// No longer following: an upgraded connection, or a stream hyper will reject anyway.
    Off,
}

/// What the watch found in the bytes it was shown.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    Pass,
    /// It spoiled the end of a head that had both framing headers: hyper answers 400.
    Spoiled,
    /// A request line reached the limit without ending: the caller answers 414.
    TargetTooLong,
}

pub(super) struct FramingWatch {
    state: State,
    line: Vec<u8>,
    /// Bytes of the current line so far, across reads.
    line_len: usize,
    /// A request line this long (without its end) is refused with 414.
    request_line_limit: usize,
    content_length: Option<u64>,
    chunked: bool,
    upgrade: bool,
}

impl FramingWatch {
    pub(super) fn new(request_line_limit: usize) -> Self {
        FramingWatch {
            state: State::Head { lines: 0 },
            line: Vec::new(),
            line_len: 0,
            request_line_limit,
            content_length: None,
            chunked: false,
            upgrade: false,
        }
    }

    /// A watch that checks nothing (an HTTP/2 connection).
    pub(super) fn off() -> Self {
        FramingWatch {
            state: State::Off,
            ..FramingWatch::new(0)
        }
    }

    /// Follows freshly read bytes.
    pub(super) fn observe(&mut self, bytes: &mut [u8]) -> Verdict {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Off => return Verdict::Pass,
                State::Fixed(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        State::Head { lines: 0 }
                    } else {
                        State::Fixed(left - take)
                    };
                }
                State::ChunkData(left) => {
                    let take = left.min((bytes.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left - take)
                    };
                }
                _ => {
                    let rest = &bytes[i..];
                    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                        self.keep_partial_line(rest);
                        self.line_len += rest.len();
                        if self.request_line_too_long() {
                            return Verdict::TargetTooLong;
                        }
                        return Verdict::Pass;
                    };
                    self.line_len += newline;
                    if self.request_line_too_long() {
                        return Verdict::TargetTooLong;
                    }
                    self.line_len = 0;
                    let refuse = if self.line.is_empty() {
                        self.end_of_line(&rest[..newline])
                    } else {
                        self.keep_partial_line(&rest[..newline]);
                        let line = std::mem::take(&mut self.line);
                        let refuse = self.end_of_line(&line);
                        self.line = line;
                        self.line.clear();
                        refuse
                    };
                    i += newline;
                    if refuse {
                        // The head's final LF becomes a byte no parser accepts there
                        // (after CR it must be LF; at a line start it is no header name),
                        // so hyper answers 400 and closes.
                        bytes[i] = 0;
                        self.state = State::Off;
                        return Verdict::Spoiled;
                    }
                    i += 1;
                }
            }
        }
        Verdict::Pass
    }

    /// Whether the request line being read has reached the limit (then the watch stops).
    fn request_line_too_long(&mut self) -> bool {
        let too_long =
            self.state == (State::Head { lines: 0 }) && self.line_len >= self.request_line_limit;
        if too_long {
            self.state = State::Off;
        }
        too_long
    }

    /// A line split over reads is kept (its first `MAX_LINE` bytes) until its end arrives.
    fn keep_partial_line(&mut self, piece: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        self.line.extend_from_slice(&piece[..piece.len().min(room)]);
    }

    /// Acts on a complete line (without its LF); true when the head that just ended must be
    /// refused.
    fn end_of_line(&mut self, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.state {
            State::Head { lines } if line.is_empty() => {
                // Blank lines before a request line are tolerated.
                lines > 0 && self.end_of_head()
            }
            State::Head { lines } => {
                if lines > 0 {
                    self.header_line(line);
                }
                if let State::Head { .. } = self.state {
                    self.state = State::Head { lines: lines + 1 };
                }
                false
            }
            State::ChunkSize => {
                let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
                self.state = match parse_number(trim(digits), 16) {
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n),
                    None => State::Off, // hyper rejects the body itself
                };
                false
            }
            State::ChunkEnd => {
                self.state = if line.is_empty() {
                    State::ChunkSize
                } else {
                    State::Off
                };
                false
            }
            State::Trailers => {
                if line.is_empty() {
                    self.state = State::Head { lines: 0 };
                }
                false
            }
            State::Fixed(_) | State::ChunkData(_) | State::Off => false,
        }
    }

    fn header_line(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            match parse_number(value, 10) {
                Some(n) => self.content_length = Some(n),
                None => self.state = State::Off, // hyper answers 400 itself
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        }
    }

    fn end_of_head(&mut self) -> bool {
        let (length, chunked, upgrade) = (
            self.content_length.take(),
            std::mem::take(&mut self.chunked),
            std::mem::take(&mut self.upgrade),
        );
        if chunked && length.is_some() {
            return true;
        }
        self.state = if upgrade {
            // What follows may be another protocol's bytes (WebSocket frames).
            State::Off
        } else if chunked {
            State::ChunkSize
        } else {
            match length {
                Some(n) if n > 0 => State::Fixed(n),
                _ => State::Head { lines: 0 },
            }
        };
        false
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

fn parse_number(digits: &[u8], radix: u32) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the bytes as hyper would see them and
    /// whether a head was spoiled.
    fn feed(input: &[u8], step: usize) -> (Vec<u8>, bool) {
        let mut watch = FramingWatch::new(8192);
        let mut out = Vec::new();
        let mut spoiled = false;
        for piece in input.chunks(step) {
            let mut piece = piece.to_vec();
            spoiled |= watch.observe(&mut piece) == Verdict::Spoiled;
            out.extend_from_slice(&piece);
        }
        (out, spoiled)
    }

    #[test]
    fn a_request_line_reaching_the_limit_is_too_long() {
        let mut watch = FramingWatch::new(64);
        let mut line = b"GET /".to_vec();
        assert_eq!(watch.observe(&mut line), Verdict::Pass);
        let mut rest = vec![b'a'; 58];
        assert_eq!(watch.observe(&mut rest), Verdict::Pass);
        assert_eq!(watch.observe(&mut b"b".to_vec()), Verdict::TargetTooLong);
    }

    #[test]
    fn a_whole_request_line_over_the_limit_in_one_read_is_too_long() {
        let mut watch = FramingWatch::new(64);
        let mut request = b"GET /".to_vec();
        request.extend(vec![b'a'; 100]);
        request.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(watch.observe(&mut request), Verdict::TargetTooLong);
    }

    #[test]
    fn long_header_lines_and_bodies_are_not_request_lines() {
        let mut watch = FramingWatch::new(64);
        let mut head = b"POST / HTTP/1.1\r\nContent-Length: 200\r\nX-Long: ".to_vec();
        head.extend(vec![b'h'; 100]);
        assert_eq!(watch.observe(&mut head), Verdict::Pass);
        let mut rest = b"\r\n\r\n".to_vec();
        rest.extend(vec![b'x'; 200]);
        rest.extend_from_slice(b"GET /short HTTP/1.1\r\n");
        assert_eq!(watch.observe(&mut rest), Verdict::Pass);
    }

    const BOTH: &[u8] =
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn both_framing_headers_spoil_the_end_of_the_head() {
        for step in [1, 3, 7, BOTH.len()] {
            let (out, spoiled) = feed(BOTH, step);
            assert!(spoiled, "step {step}");
            assert_eq!(&out[..out.len() - 1], &BOTH[..BOTH.len() - 1]);
            assert_eq!(out.last(), Some(&0));
        }
    }

    #[test]
    fn header_names_match_in_any_case_and_order() {
        let req = b"POST / HTTP/1.1\r\ntransfer-ENCODING: chunked\r\nCONTENT-length:  3 \r\n\r\n";
        assert!(feed(req, 5).1);
    }

    #[test]
    fn a_smuggled_request_after_a_fixed_body_is_caught() {
        let mut input = b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello\r\nx: 1".to_vec();
        input.extend_from_slice(BOTH);
        let (_, spoiled) = feed(&input, 4);
        assert!(spoiled);
    }

    #[test]
    fn a_smuggled_request_after_a_chunked_body_with_trailers_is_caught() {
        let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\na\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"
            .to_vec();
        input.extend_from_slice(BOTH);
        for step in [1, 2, 9, input.len()] {
            assert!(feed(&input, step).1, "step {step}");
        }
    }

    #[test]
    fn body_bytes_that_look_like_headers_are_not_read_as_a_head() {
        let body = b"x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut input =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let (out, spoiled) = feed(&input, 6);
        assert!(!spoiled);
        assert_eq!(out, input);
    }

    #[test]
    fn ordinary_pipelined_requests_pass_untouched() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let (out, spoiled) = feed(input, 1);
        assert!(!spoiled);
        assert_eq!(&out[..], &input[..]);
    }

    #[test]
    fn an_upgraded_connection_is_no_longer_followed() {
        let mut input =
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec();
        input.extend_from_slice(BOTH);
        let (out, spoiled) = feed(&input, 8);
        assert!(!spoiled);
        assert_eq!(out, input);
    }

    /// A request stream for the fuzzer: heads with random fields (Content-Length and
    /// Transfer-Encoding in every combination, odd spacing and case), fixed or chunked
    /// bodies, and now and then raw garbage; returns it and whether some head carried both
    /// framing headers before any garbage.
    fn random_stream(rng: &mut crate::fuzzing::Rng) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut both_seen = false;
        for _ in 0..1 + rng.below(4) {
            if rng.chance(8) {
                let n = rng.below(64);
                out.extend(rng.bytes(n));
                return (out, both_seen);
            }
            const METHODS: [&[u8]; 3] = [b"GET", b"POST", b"PUT"];
            let method = rng.pick(&METHODS[..]);
            out.extend_from_slice(method);
            out.extend_from_slice(b" /");
            let n = rng.below(40);
            out.extend(std::iter::repeat_n(b'p', n));
            out.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n");
            let length = rng.below(300) as u64;
            let with_length = rng.chance(2);
            let chunked = rng.chance(3);
            let mut fields: Vec<Vec<u8>> = (0..rng.below(4))
                .map(|i| format!("X-F{i}: {}\r\n", "v".repeat(rng.below(30))).into_bytes())
                .collect();
            if with_length {
                let name = rng.pick(&["Content-Length", "content-length", "CONTENT-LENGTH"]);
                let pad = rng.pick(&["", " ", "  "]);
                fields.insert(
                    rng.below(fields.len() + 1),
                    format!("{name}:{pad}{length}{pad}\r\n").into_bytes(),
                );
            }
            if chunked {
                let name = rng.pick(&["Transfer-Encoding", "transfer-encoding"]);
                fields.insert(
                    rng.below(fields.len() + 1),
                    format!("{name}: chunked\r\n").into_bytes(),
                );
            }
            for f in fields {
                out.extend(f);
            }
            out.extend_from_slice(b"\r\n");
            if with_length && chunked {
                // The watch spoils this head; nothing after it is followed.
                both_seen = true;
                return (out, both_seen);
            }
            if chunked {
                for _ in 0..rng.below(3) {
                    let n = 1 + rng.below(50);
                    out.extend(format!("{n:x}\r\n").into_bytes());
                    out.extend(rng.bytes(n));
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            } else if with_length {
                out.extend(rng.bytes(length as usize));
            }
        }
        (out, both_seen)
    }

    /// Split anywhere, the stream gets the same verdict and the same bytes as read whole;
    /// a head with both framing headers is always spoiled; nothing panics.
    #[test]
    fn fuzz_the_watch_does_not_depend_on_how_reads_split_the_stream() {
        crate::fuzzing::run("framing", |rng| {
            let (stream, both) = random_stream(rng);
            let whole = feed(&stream, stream.len().max(1));
            let step = 1 + rng.below(stream.len().max(1));
            assert_eq!(feed(&stream, step), whole, "step {step} of {stream:?}");
            if both {
                assert!(
                    whole.1,
                    "a head with both framing headers passed: {stream:?}"
                );
            }
        });
    }

    /// Pure garbage, and garbage after a valid request: never a panic, never a spoiled byte
    /// that is not the end of a head.
    #[test]
    fn fuzz_garbage_never_panics() {
        crate::fuzzing::run("framing-garbage", |rng| {
            let mut stream = if rng.chance(2) {
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec()
            } else {
                Vec::new()
            };
            let n = rng.below(400);
            stream.extend(rng.bytes(n));
            let mut watch = FramingWatch::new(1 + rng.below(300));
            for piece in stream.chunks(1 + rng.below(64)) {
                let mut piece = piece.to_vec();
                if watch.observe(&mut piece) != Verdict::Pass {
                    break;
                }
            }
        });
    }
}
