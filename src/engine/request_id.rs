//! Request ids (`--request-id-header`): taken from the request when it carries a
//! well-formed one (a proxy in front made it), generated otherwise; the engine adds it to
//! the response, the adapters to the scope or environ, the access log to its records.
//!
//! Owns what "well-formed" means and how ids are made. Must not: trust an id that could
//! forge a log line or a header (only a short run of visible, unquoted ASCII passes).

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use http::{HeaderMap, HeaderName, HeaderValue};

/// Longest id taken from a request; longer ones are replaced.
const MAX_LEN: usize = 200;

/// The id of a request: the client's, when `header` carries a well-formed one, else new.
pub fn take_or_make(header: &HeaderName, headers: &HeaderMap) -> HeaderValue {
    let mut given = headers.get_all(header).iter();
    if let (Some(value), None) = (given.next(), given.next()) {
        if well_formed(value.as_bytes()) {
            return crate::handoff::detach::header_value(value);
        }
    }
    generate()
}

fn well_formed(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:+/=@~".contains(&b))
}

thread_local! {
    /// xorshift128+ state, seeded per thread from the process's random hasher keys.
    static STATE: Cell<(u64, u64)> = Cell::new(seed());
}

fn seed() -> (u64, u64) {
    let random = std::collections::hash_map::RandomState::new();
    let mut a = random.build_hasher();
    a.write_u64(std::process::id().into());
    let mut b = random.build_hasher();
    b.write_u64(a.finish());
    (a.finish() | 1, b.finish() | 1)
}

fn next_u64() -> u64 {
    STATE.with(|state| {
        let (mut s1, s0) = state.get();
        let result = s0.wrapping_add(s1);
        s1 ^= s1 << 23;
        s1 = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
        state.set((s0, s1));
        result
    })
}

/// A random (version 4) UUID in its usual text form: what log tools and proxies expect of
/// `X-Request-ID`.
fn generate() -> HeaderValue {
    let high = (next_u64() & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let low = (next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let text = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&text).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_well_formed_id_and_replaces_others() {
        let name = HeaderName::from_static("x-request-id");
        let mut headers = HeaderMap::new();
        headers.insert(&name, HeaderValue::from_static("abc-123_DEF.x"));
        assert_eq!(take_or_make(&name, &headers), "abc-123_DEF.x");
        for bad in ["has space", "quote\"d", "a,b", ""] {
            headers.insert(&name, HeaderValue::from_str(bad).unwrap());
            let made = take_or_make(&name, &headers);
            assert_ne!(made, bad);
            assert_eq!(made.len(), 36);
        }
        headers.insert(&name, HeaderValue::from_str(&"a".repeat(201)).unwrap());
        assert_eq!(take_or_make(&name, &headers).len(), 36);
        // Two ids: neither is the request's.
        headers.insert(&name, HeaderValue::from_static("one"));
        headers.append(&name, HeaderValue::from_static("two"));
        assert_eq!(take_or_make(&name, &headers).len(), 36);
    }

    #[test]
    fn generated_ids_are_version_4_uuids_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
    }
}
