//! Messages from frames (RFC 6455 5.4): fragments joined in order, `--ws-max-size` enforced
//! as they arrive, and text checked as UTF-8 fragment by fragment, so that invalid text fails
//! at the fragment that breaks it (Autobahn 6.*), while a character cut between two
//! fragments is not an error.
//!
//! Owns the partial message only; the pump decides what to do with a whole one or a
//! violation. Pure: no I/O, so the fuzz tests below drive it directly.

use bytes::{Bytes, BytesMut};
use yawc::frame::OpCode;

/// How a message broke the protocol: the close code and the reason for the peer.
pub(super) type Violation = (u16, &'static str);

pub(super) struct Reassembly {
    message: Option<Partial>,
    max_size: usize,
}

struct Partial {
    text: bool,
    data: BytesMut,
    /// Bytes of `data` known to be valid UTF-8 so far (text only).
    checked: usize,
}

impl Reassembly {
    pub(super) fn new(max_size: usize) -> Self {
        Reassembly {
            message: None,
            max_size,
        }
    }

    /// Takes one data frame (text, binary or continuation); returns a whole message, with
    /// whether it is text, once its last fragment came.
    pub(super) fn push(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: Bytes,
    ) -> Result<Option<(bool, Bytes)>, Violation> {
        let mut partial = match (opcode, self.message.take()) {
            (OpCode::Continuation, Some(p)) => p,
            (OpCode::Continuation, None) => return Err((1002, "continuation without a message")),
            (_, Some(_)) => return Err((1002, "new message inside a fragmented one")),
            (_, None) if fin => {
                let text = opcode == OpCode::Text;
                if payload.len() > self.max_size {
                    return Err((1009, "message too big"));
                }
                if text && std::str::from_utf8(&payload).is_err() {
                    return Err((1007, "invalid UTF-8 in a text message"));
                }
                return Ok(Some((text, payload)));
            }
            (_, None) => Partial {
                text: opcode == OpCode::Text,
                data: BytesMut::new(),
                checked: 0,
            },
        };
        if partial.data.len() + payload.len() > self.max_size {
            return Err((1009, "message too big"));
        }
        partial.data.extend_from_slice(&payload);
        if partial.text {
            match std::str::from_utf8(&partial.data[partial.checked..]) {
                Ok(_) => partial.checked = partial.data.len(),
                // A sequence cut at the end of this fragment may go on in the next one.
                Err(e) if e.error_len().is_none() && !fin => partial.checked += e.valid_up_to(),
                Err(_) => return Err((1007, "invalid UTF-8 in a text message")),
            }
        }
        if fin {
            return Ok(Some((partial.text, partial.data.freeze())));
        }
        self.message = Some(partial);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{run, Rng};

    /// A message for the fuzzer: text (valid, or with one invalid byte) or binary.
    fn message(rng: &mut Rng) -> (bool, Vec<u8>, bool) {
        const PIECES: [&str; 5] = ["a", "é", "€", "𝄞", " "];
        if rng.chance(3) {
            let n = rng.below(40);
            return (false, rng.bytes(n), true);
        }
        let mut text: Vec<u8> = (0..rng.below(20))
            .flat_map(|_| rng.pick(&PIECES).as_bytes().to_vec())
            .collect();
        let valid = !rng.chance(5);
        if !valid {
            if rng.chance(2) {
                // A character cut short at the very end: fine inside a fragment, not at the
                // message's end.
                let cut = rng.pick(&PIECES[1..4]).as_bytes();
                text.extend_from_slice(&cut[..1 + rng.below(cut.len() - 1)]);
            } else {
                let at = rng.below(text.len() + 1);
                text.insert(at, *rng.pick(&[0xff, 0xc0, 0x80]));
            }
        }
        (true, text, valid)
    }

    /// Messages cut into fragments at random bytes (inside characters too) come out whole
    /// and in order; invalid text ends in 1007 no later than its last fragment; a message
    /// over the limit in 1009; a stray continuation or an interleaved start in 1002.
    #[test]
    fn fuzz_fragments_reassemble_or_fail_with_the_right_code() {
        run("ws-reassembly", |rng| {
            let max_size = 1 + rng.below(60);
            let mut r = Reassembly::new(max_size);
            for _ in 0..1 + rng.below(4) {
                let (text, data, valid) = message(rng);
                let mut cuts: Vec<usize> = (0..rng.below(4))
                    .map(|_| rng.below(data.len() + 1))
                    .collect();
                cuts.sort_unstable();
                cuts.push(data.len());
                let mut start = 0;
                let mut got = None;
                for (i, &end) in cuts.iter().enumerate() {
                    let fin = i == cuts.len() - 1;
                    let opcode = match (i, text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    let piece = Bytes::copy_from_slice(&data[start..end]);
                    start = end;
                    match r.push(opcode, fin, piece) {
                        Ok(Some(m)) => got = Some(m),
                        Ok(None) => assert!(!fin),
                        Err((code, _)) => {
                            if data.len() > max_size && code == 1009 {
                                return;
                            }
                            assert_eq!(code, 1007, "{data:?}");
                            assert!(text && !valid, "valid data refused: {data:?}");
                            return;
                        }
                    }
                }
                assert!(data.len() <= max_size, "over the limit and accepted");
                assert!(valid, "invalid text accepted: {data:?}");
                assert_eq!(got, Some((text, Bytes::from(data))));
            }
            // A continuation with nothing to continue, or a new message inside one.
            assert_eq!(
                r.push(OpCode::Continuation, true, Bytes::new())
                    .unwrap_err()
                    .0,
                1002
            );
            if r.push(OpCode::Binary, false, Bytes::new()).is_ok() {
                assert_eq!(
                    r.push(OpCode::Text, true, Bytes::new()).unwrap_err().0,
                    1002
                );
            }
        });
    }
}
