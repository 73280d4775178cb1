//! Copies of a request's pieces that do not keep the connection's read buffer alive.
//!
//! hyper parses a request head in place: its URI and header values are slices of the
//! connection's 8 KiB read buffer. Whatever outlives the head (the access log's pending
//! record, the ASGI cycle's method and path, a request id) would keep that whole buffer
//! alive, and hyper allocates a second one for its next read: 8 KiB more per open stream,
//! and a fresh buffer per keep-alive request. A copy of the few bytes kept is cheaper than
//! either. Must not: be used on the hot path for what dies with the head (the headers the
//! scope is built from are read once and dropped).

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Uri};

/// `uri` with its parts copied out of any shared buffer; the original if a part would not
/// parse again (it always does: each was parsed once already).
pub fn uri(uri: Uri) -> Uri {
    copied(&uri).unwrap_or(uri)
}

fn copied(uri: &Uri) -> Option<Uri> {
    let copy = |part: &str| Bytes::copy_from_slice(part.as_bytes());
    let mut parts = Parts::default();
    parts.scheme = uri.scheme_str().map(Scheme::try_from).transpose().ok()?;
    parts.authority = uri
        .authority()
        .map(|a| Authority::from_maybe_shared(copy(a.as_str())))
        .transpose()
        .ok()?;
    parts.path_and_query = uri
        .path_and_query()
        .map(|p| PathAndQuery::from_maybe_shared(copy(p.as_str())))
        .transpose()
        .ok()?;
    Uri::from_parts(parts).ok()
}

/// Every value of `headers` copied into one buffer of their own (one allocation for all).
pub fn header_values(headers: &mut HeaderMap) {
    let total = headers.values().map(HeaderValue::len).sum();
    let mut buffer = BytesMut::with_capacity(total);
    for value in headers.values() {
        buffer.extend_from_slice(value.as_bytes());
    }
    let buffer = buffer.freeze();
    let mut at = 0;
    for value in headers.values_mut() {
        let len = value.len();
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(buffer.slice(at..at + len)) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
        at += len;
    }
}

/// `value` in a buffer of its own.
pub fn header_value(value: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
    copy.set_sensitive(value.is_sensitive());
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_every_form_of_target() {
        for target in [
            "/",
            "/a/b?x=1&y=%20",
            "http://example.com:8080/p?q",
            "https://example.com",
            "example.com:443",
            "*",
        ] {
            let parsed: Uri = target.parse().unwrap();
            let copy = uri(parsed.clone());
            assert_eq!(copy, parsed, "{target}");
            assert_eq!(copy.to_string(), parsed.to_string(), "{target}");
        }
    }

    #[test]
    fn a_copied_target_no_longer_shares_its_buffer() {
        let buffer = Bytes::from_static(b"/stream?n=40").slice(..);
        let shared = Uri::from_maybe_shared(buffer.clone()).unwrap();
        let copy = uri(shared);
        let path = copy.path_and_query().unwrap().as_str();
        assert_eq!(path, "/stream?n=40");
        assert_ne!(path.as_ptr(), buffer.as_ptr());
    }

    #[test]
    fn a_header_map_copies_every_value_in_order() {
        let buffer = Bytes::from_static(b"text/plainabcdefgh");
        let mut headers = HeaderMap::new();
        let shared = |range: std::ops::Range<usize>| {
            HeaderValue::from_maybe_shared(buffer.slice(range)).unwrap()
        };
        headers.insert("content-type", shared(0..10));
        headers.append("x-a", shared(10..13));
        headers.append("x-a", shared(13..18));
        headers.insert("x-empty", HeaderValue::from_static(""));
        let before = headers.clone();
        header_values(&mut headers);
        assert_eq!(headers, before);
        let all: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(all, ["abc", "defgh"]);
        for value in headers.values() {
            let inside = buffer.as_ptr_range().contains(&value.as_bytes().as_ptr());
            assert!(!inside || value.is_empty());
        }
    }

    #[test]
    fn header_values_copy_with_their_sensitivity() {
        let mut value = HeaderValue::from_static("abc");
        value.set_sensitive(true);
        let copy = header_value(&value);
        assert_eq!(copy, value);
        assert!(copy.is_sensitive());
    }
}
