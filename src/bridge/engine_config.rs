//! From the typed settings Python hands over (`crate::settings::EngineSettings`) to the
//! engine's own `EngineConfig`: seconds become durations, header strings become header
//! types, addresses resolve, the metrics block is mapped. Also maps engine errors to Python
//! exceptions. Must not: validate what the option table already validated.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use super::seconds;
use crate::engine::{
    AdmissionConfig, EngineConfig, Error as EngineError, H2Limits, RequestLimits, Tls, TlsSettings,
    TrustedProxies, WsConfig,
};
use crate::metrics::MetricsBlock;
use crate::settings::EngineSettings;

/// The Python exception for an engine error: `ValueError` for a bad setting, `OSError` for
/// what the system refused.
pub(super) fn engine_error(e: EngineError) -> PyErr {
    if e.is_setting() {
        PyValueError::new_err(e.to_string())
    } else {
        PyOSError::new_err(e.to_string())
    }
}

/// This process's metrics: its slot in the workers' shared file, or its own block.
fn metrics_block(s: &EngineSettings) -> PyResult<&'static MetricsBlock> {
    match &s.metrics_slot {
        Some((path, slot)) => {
            crate::metrics::shared::worker_block(std::path::Path::new(path), *slot).map_err(|e| {
                PyOSError::new_err(format!("cannot map the workers' metrics file {path}: {e}"))
            })
        }
        None => Ok(MetricsBlock::leaked()),
    }
}

/// The engine's configuration from the typed settings: durations, header types, addresses.
pub(super) fn engine_config(s: &EngineSettings) -> PyResult<EngineConfig> {
    let mut default_headers = Vec::new();
    for (name, value) in &s.response_headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            PyValueError::new_err(format!("--header: {name:?} is not a valid header name"))
        })?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            PyValueError::new_err(format!(
                "--header: the value for {name:?} is not a valid header value"
            ))
        })?;
        default_headers.push((n, v));
    }
    Ok(EngineConfig {
        threads: s.engine_thread_count,
        keep_alive: seconds(s.timeout_keep_alive, "--timeout-keep-alive")?,
        header_read_timeout: seconds(s.timeout_header_read, "--timeout-header-read")?,
        max_header_bytes: s.max_head_bytes,
        admission: AdmissionConfig {
            limit: s.admission_limit,
            queue: s.admission_queue,
            queue_timeout: s
                .timeout_queue
                .map(|v| seconds(v, "--timeout-queue"))
                .transpose()?,
        },
        retry_after: s.retry_after,
        cancel_on_disconnect: s.cancel_on_disconnect,
        metrics: metrics_block(s)?,
        metrics_addr: s
            .engine_metrics_addr
            .as_ref()
            .map(|(host, port)| {
                use std::net::ToSocketAddrs;
                (host.as_str(), *port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        PyValueError::new_err(format!("--metrics-host {host:?} does not resolve"))
                    })
            })
            .transpose()?,
        default_headers,
        date_header: s.date_header,
        proxy_headers: s.proxy_headers,
        trusted_proxies: TrustedProxies::parse(&s.forwarded_allow_ips_list.join(","))
            .map_err(engine_error)?,
        response_high_water: s.response_high_water,
        request_read_ahead: s.request_read_ahead,
        websocket: websocket_config(s)?,
        tls: tls_config(s)?,
        http1: s.http != "h2",
        http2: matches!(s.http.as_str(), "auto" | "h2"),
        limits: RequestLimits {
            body: (s.limit_request_body > 0).then_some(s.limit_request_body),
            line: s.limit_request_line,
            fields: s.limit_request_fields,
            field_size: s.limit_request_field_size,
            body_timeout: seconds(s.timeout_request_body, "--timeout-request-body")?,
            min_send_rate: (s.limit_min_send_rate > 0).then_some(s.limit_min_send_rate),
            slow_send_grace: seconds(s.timeout_slow_send, "--timeout-slow-send")?,
        },
        h2: H2Limits {
            max_concurrent_streams: s.h2_max_concurrent_streams,
            max_header_list_size: s.h2_max_header_list_size,
            initial_stream_window_size: s.h2_initial_stream_window_size,
            initial_connection_window_size: s.h2_initial_connection_window_size,
            keep_alive_interval: s
                .h2_keep_alive_interval
                .map(|v| seconds(v, "--h2-keep-alive-interval"))
                .transpose()?,
            max_pending_reset_streams: s.h2_max_pending_reset_streams,
        },
        // The bridge starts it, with the logger Python hands over.
        access_log: None,
        request_id_header: s
            .request_id_header
            .as_deref()
            .map(|name| {
                http::HeaderName::try_from(name).map_err(|_| {
                    PyValueError::new_err(format!(
                        "--request-id-header {name:?} is not a header name"
                    ))
                })
            })
            .transpose()?,
    })
}

/// TLS when both `--ssl-certfile` and `--ssl-keyfile` are given; the files are loaded here,
/// so a bad certificate or key stops startup with a message that names it.
fn tls_config(s: &EngineSettings) -> PyResult<Option<Arc<Tls>>> {
    let (certfile, keyfile) = match (&s.ssl_certfile, &s.ssl_keyfile) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            return Err(PyValueError::new_err(
                "TLS needs both --ssl-certfile and --ssl-keyfile (one of them is missing)",
            ))
        }
    };
    let settings = TlsSettings {
        certfile,
        keyfile,
        password: s.ssl_keyfile_password.clone(),
        cert_reqs: s.ssl_cert_reqs,
        ca_certs: s.ssl_ca_certs.clone(),
        ciphers: s.ssl_ciphers.clone(),
        versions: s.tls_versions.clone(),
        alpn: match s.http.as_str() {
            "auto" => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            "h2" => vec![b"h2".to_vec()],
            _ => vec![b"http/1.1".to_vec()],
        },
    };
    Tls::load(&settings)
        .map(Arc::new)
        .map(Some)
        .map_err(engine_error)
}

/// WebSocket settings, or `None` with `--ws none`.
fn websocket_config(s: &EngineSettings) -> PyResult<Option<WsConfig>> {
    if s.ws_mode == "none" {
        return Ok(None);
    }
    // Zero turns pings (or the wait for their answer) off.
    let optional_secs = |value: f64, what: &str| -> PyResult<Option<Duration>> {
        (value > 0.0).then(|| seconds(value, what)).transpose()
    };
    Ok(Some(WsConfig {
        max_size: s.ws_max_size,
        max_queue: s.ws_max_queue,
        ping_interval: optional_secs(s.ws_ping_interval, "--ws-ping-interval")?,
        ping_timeout: optional_secs(s.ws_ping_timeout, "--ws-ping-timeout")?,
        per_message_deflate: s.ws_per_message_deflate,
    }))
}
