//! Response header fields as an app gives them, read the same way by both adapters (ASGI
//! and WSGI): a field value without its surrounding whitespace, and the Content-Length the
//! head declares. The adapters turn the errors into their own exceptions and wording.

use http::header::InvalidHeaderValue;
use http::{HeaderMap, HeaderValue};

/// A field value as it goes on the wire. RFC 9110 5.5: leading and trailing whitespace is
/// not part of a field value. HTTP/1.1 clients drop it, but over HTTP/2 a value that starts
/// or ends with it makes the whole response malformed (RFC 9113 8.2.1), so it is trimmed
/// here for every protocol. Control characters (CR, LF, NUL) are refused.
pub fn field_value(bytes: &[u8]) -> Result<HeaderValue, InvalidHeaderValue> {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    HeaderValue::from_bytes(&bytes[start..end])
}

/// Why a head's Content-Length cannot be held to.
#[derive(Debug, PartialEq, Eq)]
pub enum DeclaredLengthError {
    /// A Content-Length field that is not a number of bytes (its value, lossily decoded).
    NotANumber(String),
    /// Several Content-Length fields with different numbers.
    Disagree,
}

/// The Content-Length a response head declares, if any. Several fields must agree (RFC 9110
/// 8.6). Whether Transfer-Encoding may stand beside it is the adapter's rule.
pub fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, DeclaredLengthError> {
    let mut declared = None;
    for value in headers.get_all(http::header::CONTENT_LENGTH) {
        let bytes = value.as_bytes();
        let length = std::str::from_utf8(bytes)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                DeclaredLengthError::NotANumber(String::from_utf8_lossy(bytes).into_owned())
            })?;
        if declared.is_some_and(|d| d != length) {
            return Err(DeclaredLengthError::Disagree);
        }
        declared = Some(length);
    }
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_lose_surrounding_whitespace_only() {
        assert_eq!(field_value(b" padded\t").unwrap(), "padded");
        assert_eq!(field_value(b"a b\tc").unwrap(), "a b\tc");
        assert_eq!(field_value(b" \t ").unwrap(), "");
        assert_eq!(field_value(b"").unwrap(), "");
        assert!(field_value(b"a\r\nb").is_err());
        assert!(field_value(b" a\0").is_err());
    }

    #[test]
    fn declared_length_agrees_or_fails() {
        let mut headers = HeaderMap::new();
        assert_eq!(declared_length(&headers), Ok(None));
        headers.append(http::header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.append(http::header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(declared_length(&headers), Ok(Some(5)));
        headers.append(http::header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert_eq!(
            declared_length(&headers),
            Err(DeclaredLengthError::Disagree)
        );
        for bad in ["", "+5", "5 ", "0x5", "99999999999999999999"] {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from_str(bad).unwrap(),
            );
            assert_eq!(
                declared_length(&headers),
                Err(DeclaredLengthError::NotANumber(bad.to_string()))
            );
        }
    }
}
