//! The access log line, as both adapters (ASGI and WSGI) write it: uvicorn's format,
//! `<client> - "<METHOD> <path> HTTP/<version>" <status>`, through Python `logging`.
//!
//! Owns what a line needs from the request ([`AccessInfo`], taken when the request starts,
//! only with access logging on) and the escaping that keeps a request from forging lines.
//! Must not: decide whether to log (the adapters hold the logger only when it is enabled).

use pyo3::intern;
use pyo3::prelude::*;

use crate::asgi::scope::{percent_decode, version_text};
use crate::handoff::RequestHead;

/// What the access log line needs, kept only when access logging is on.
pub struct AccessInfo {
    pub client: String,
    pub method: String,
    pub path: String,
    pub version: &'static str,
}

impl AccessInfo {
    pub fn of(req: &RequestHead) -> Box<AccessInfo> {
        let path = percent_decode(req.uri.path());
        let path = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        Box::new(AccessInfo {
            client: req.client.address().unwrap_or_default(),
            method: req.method.as_str().to_string(),
            path,
            version: version_text(req.version),
        })
    }

    /// Writes the line through `log` (the `ferricorn.access` logger's `info`).
    pub fn log(&self, py: Python<'_>, log: &Py<PyAny>, status: u16) -> PyResult<()> {
        log.call1(
            py,
            (
                intern!(py, "%s - \"%s %s HTTP/%s\" %d"),
                escape_control(&self.client),
                escape_control(&self.method),
                escape_control(&self.path),
                self.version,
                status,
            ),
        )?;
        Ok(())
    }
}

/// Escapes control characters so a request line cannot forge log lines.
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::escape_control;

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("/ok", "/ok"),
            ("/a\r\nINFO: forged", "/a\\r\\nINFO: forged"),
            ("/tab\there", "/tab\\there"),
        ];
        for (raw, logged) in cases {
            assert_eq!(escape_control(raw), logged);
        }
    }
}
