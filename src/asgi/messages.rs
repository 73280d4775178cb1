//! The checks every `send()` message goes through, for HTTP and WebSocket cycles alike.
//!
//! Owns the ASGI message forms (specs/www.rst): a dict with a str `type`; a final status;
//! headers as any iterable of two-item iterables of bytes-like values; bytes-like bodies (as
//! uvicorn accepts); the Content-Length rules of a response head. Refuses only what the spec
//! forbids, with a `RuntimeError` that names the message and the field. Must not: keep state
//! or talk to the engine.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyList, PyMemoryView, PyString, PyTuple};

use crate::handoff::exchange::ResponseHead;
use crate::handoff::fields::{self, DeclaredLengthError};

/// A `send()` argument checked to be a dict with a str `type`: the dict and the type.
pub(crate) fn message_and_type<'py>(
    message: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyString>)> {
    let py = message.py();
    let msg = message.cast::<PyDict>().map_err(|_| {
        PyRuntimeError::new_err(format!(
            "ASGI send() takes a dict message, got {}.",
            type_name(message)
        ))
    })?;
    let kind = msg.get_item(intern!(py, "type"))?.ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "ASGI message has no 'type' key: {}.",
            repr(message)
        ))
    })?;
    let kind = kind.cast_into::<PyString>().map_err(|e| {
        PyRuntimeError::new_err(format!(
            "ASGI message 'type' must be a str, got {}.",
            type_name(e.into_inner().as_any())
        ))
    })?;
    Ok((msg.clone(), kind))
}

/// A str of the app's message as UTF-8. A lone surrogate has no UTF-8 form; Python would
/// raise UnicodeEncodeError from inside the server, but it is the app's message that is
/// wrong, so it is a RuntimeError like every other bad message.
pub(crate) fn utf8<'a>(text: &'a Bound<'_, PyString>, what: &str) -> PyResult<&'a str> {
    text.to_str().map_err(|_| {
        PyRuntimeError::new_err(format!(
            "ASGI {what} holds a lone surrogate, which has no UTF-8 form: {}.",
            repr(text.as_any())
        ))
    })
}

/// The status and headers of a response-start message of type `kind`. The status must be a
/// final one, 200-599: a 1xx is interim (RFC 9110 15.2), the rest are not HTTP statuses.
pub(crate) fn response_head(msg: &Bound<'_, PyDict>, kind: &str) -> PyResult<(u16, ResponseHead)> {
    let py = msg.py();
    let status = msg.get_item(intern!(py, "status"))?.ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "ASGI message '{kind}' is missing the required key 'status'."
        ))
    })?;
    if !status.is_instance_of::<PyInt>() {
        return Err(PyRuntimeError::new_err(format!(
            "ASGI '{kind}' status must be an int, got {}.",
            type_name(&status)
        )));
    }
    let status = status
        .extract::<u16>()
        .ok()
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| {
            PyRuntimeError::new_err(format!(
                "ASGI '{kind}' status {} is not a final HTTP status code (200-599).",
                repr(&status)
            ))
        })?;
    let headers = parse_headers(msg, kind)?;
    Ok((
        status.as_u16(),
        ResponseHead {
            status,
            headers,
            reason: None,
        },
    ))
}

/// The `body` of a response-body message of type `kind`, if it has one: bytes, or any other
/// bytes-like object (bytearray, memoryview), as uvicorn accepts.
pub(crate) fn body_bytes(msg: &Bound<'_, PyDict>, kind: &str) -> PyResult<Option<Bytes>> {
    match msg.get_item(intern!(msg.py(), "body"))? {
        None => Ok(None),
        Some(b) => match b.cast::<PyBytes>() {
            Ok(bytes) => Ok(Some(Bytes::copy_from_slice(bytes.as_bytes()))),
            Err(_) => bytes_like(&b).map(|v| Some(Bytes::from(v))).ok_or_else(|| {
                PyRuntimeError::new_err(format!(
                    "ASGI '{kind}' body must be bytes, got {}.",
                    type_name(&b)
                ))
            }),
        },
    }
}

/// The bytes of a bytes-like object other than `bytes` (which callers take without a copy);
/// `None` for anything else, str and int included.
pub(crate) fn bytes_like(obj: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(array) = obj.cast::<PyByteArray>() {
        return Some(array.to_vec());
    }
    let view = PyMemoryView::from(obj).ok()?;
    let copy = view.call_method0(intern!(obj.py(), "tobytes")).ok()?;
    Some(copy.cast::<PyBytes>().ok()?.as_bytes().to_vec())
}

/// A response-body message's `more_body` (absent: false).
pub(crate) fn more_body(msg: &Bound<'_, PyDict>) -> PyResult<bool> {
    match msg.get_item(intern!(msg.py(), "more_body"))? {
        None => Ok(false),
        Some(m) => m.is_truthy(),
    }
}

/// The `headers` of a response-start message of type `kind`: any iterable of two-item
/// iterables (lists, tuples, ...) of bytes-like name and value (`Iterable[[byte string, byte
/// string]]` in the spec).
pub(crate) fn parse_headers(msg: &Bound<'_, PyDict>, kind: &str) -> PyResult<HeaderMap> {
    let py = msg.py();
    let mut headers = HeaderMap::new();
    let Some(list) = msg.get_item(intern!(py, "headers"))? else {
        return Ok(headers);
    };
    let items = list.try_iter().map_err(|_| {
        PyRuntimeError::new_err(format!(
            "ASGI '{kind}' headers must be an iterable of [name, value] pairs, got {}.",
            type_name(&list)
        ))
    })?;
    for item in items {
        let item = item?;
        let (name, value) = header_pair(&item)?.ok_or_else(|| {
            PyRuntimeError::new_err(format!(
                "ASGI '{kind}' headers must be [name, value] pairs of bytes, got {}.",
                repr(&item)
            ))
        })?;
        let name = with_header_bytes(&name, kind, "name", |bytes| {
            HeaderName::from_bytes(bytes).map_err(|_| {
                PyRuntimeError::new_err(format!(
                    "Invalid HTTP header name {:?} in ASGI '{kind}'.",
                    String::from_utf8_lossy(bytes)
                ))
            })
        })?;
        let value = with_header_bytes(&value, kind, "value", |bytes| {
            fields::field_value(bytes).map_err(|_| {
                PyRuntimeError::new_err(format!(
                    "Invalid value for HTTP header {name:?} in ASGI '{kind}': control characters such as CR, LF or NUL are not allowed."
                ))
            })
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The `links` of an `http.response.early_hint` message (asgiref docs/extensions.rst): an
/// iterable of `Link` field values, each bytes-like (or an ASCII str, as header values).
pub(crate) fn early_hint_links(msg: &Bound<'_, PyDict>) -> PyResult<HeaderMap> {
    const KIND: &str = "http.response.early_hint";
    let Some(links) = msg.get_item(intern!(msg.py(), "links"))? else {
        return Err(PyRuntimeError::new_err(
            "ASGI 'http.response.early_hint' has no 'links'; give an iterable of Link field values as bytes, e.g. [b'</style.css>; rel=preload; as=style'].",
        ));
    };
    // One value on its own would iterate as ints or characters.
    let iterable = !(links.is_instance_of::<PyBytes>()
        || links.is_instance_of::<PyString>()
        || links.is_instance_of::<PyByteArray>());
    let items = match iterable.then(|| links.try_iter()) {
        Some(Ok(items)) => items,
        _ => {
            return Err(PyRuntimeError::new_err(format!(
                "ASGI 'http.response.early_hint' links must be an iterable of Link field values (bytes), got {}: {}.",
                type_name(&links),
                repr(&links)
            )))
        }
    };
    let mut fields = HeaderMap::new();
    for link in items {
        let value = with_header_bytes(&link?, KIND, "link value", |bytes| {
            fields::field_value(bytes).map_err(|_| {
                PyRuntimeError::new_err(format!(
                    "Invalid Link value {:?} in ASGI '{KIND}': control characters such as CR, LF or NUL are not allowed.",
                    String::from_utf8_lossy(bytes)
                ))
            })
        })?;
        fields.append(http::header::LINK, value);
    }
    Ok(fields)
}

/// The two items of one header, whatever two-item iterable holds them; `None` when it does
/// not hold exactly two.
fn header_pair<'py>(
    item: &Bound<'py, PyAny>,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    if let Ok(pair) = item.cast::<PyTuple>() {
        if pair.len() != 2 {
            return Ok(None);
        }
        return Ok(Some((pair.get_item(0)?, pair.get_item(1)?)));
    }
    if let Ok(pair) = item.cast::<PyList>() {
        if pair.len() != 2 {
            return Ok(None);
        }
        return Ok(Some((pair.get_item(0)?, pair.get_item(1)?)));
    }
    if item.is_instance_of::<PyBytes>() || item.is_instance_of::<PyString>() {
        return Ok(None);
    }
    let Ok(iter) = item.try_iter() else {
        return Ok(None);
    };
    let mut parts = Vec::with_capacity(2);
    for part in iter {
        if parts.len() == 2 {
            return Ok(None);
        }
        parts.push(part?);
    }
    let mut parts = parts.into_iter();
    Ok(match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    })
}

/// Runs `f` on the bytes of a header name or value (bytes without a copy, other bytes-like
/// objects copied); anything else is refused with an error naming the field.
fn with_header_bytes<R>(
    obj: &Bound<'_, PyAny>,
    kind: &str,
    what: &str,
    f: impl FnOnce(&[u8]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return f(bytes.as_bytes());
    }
    // uvicorn's h11 protocol (its default without httptools) takes ASCII str as well.
    if let Ok(text) = obj.cast::<PyString>() {
        // A lone surrogate has no UTF-8 form: it is as non-ASCII as any other.
        if let Ok(text) = text.to_str() {
            if text.is_ascii() {
                return f(text.as_bytes());
            }
        }
        return Err(PyRuntimeError::new_err(format!(
            "ASGI '{kind}' header {what} must be bytes (or an ASCII str), got {}.",
            repr(obj)
        )));
    }
    match bytes_like(obj) {
        Some(copy) => f(&copy),
        None => Err(PyRuntimeError::new_err(format!(
            "ASGI '{kind}' header {what} must be bytes, got {}: {}.",
            type_name(obj),
            repr(obj)
        ))),
    }
}

/// The Content-Length a response head declares, if any (see `handoff::fields`); a response
/// must not carry both Content-Length and Transfer-Encoding (RFC 9112 6.2).
pub(crate) fn declared_length(headers: &HeaderMap) -> PyResult<Option<u64>> {
    let declared = fields::declared_length(headers).map_err(|e| match e {
        DeclaredLengthError::NotANumber(value) => PyRuntimeError::new_err(format!(
            "ASGI 'http.response.start' header content-length must be a number of bytes, got {value:?}."
        )),
        DeclaredLengthError::Disagree => PyRuntimeError::new_err(
            "ASGI 'http.response.start' has several content-length headers that disagree.",
        ),
    })?;
    if declared.is_some() && headers.contains_key(http::header::TRANSFER_ENCODING) {
        return Err(PyRuntimeError::new_err(
            "ASGI 'http.response.start' has both content-length and transfer-encoding headers; a response may carry only one of them (RFC 9112 6.2).",
        ));
    }
    Ok(declared)
}

pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into())
}
