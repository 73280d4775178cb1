//! One response, as the access log sees it: taken by the engine when the request arrives,
//! completed when the last body byte is handed to the connection (or the client left).
//!
//! Owns [`AccessRecord`], [`Pending`] (the half the engine holds while the response is being
//! sent) and [`AccessSink`], what the engine hands finished records to (the bridge's
//! `access_log` module implements it). Must not: format anything (that is the writer
//! thread's work, off the connection's path), or hold Python objects.

use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use super::{Peer, RequestHead};

/// Where the engine hands finished records: a queue, never a write on the caller's thread.
pub trait AccessSink: Send + Sync {
    fn submit(&self, record: AccessRecord);
    /// The request headers each record must carry, in the format's slot order.
    fn request_headers(&self) -> &[HeaderName];
    /// The response headers each record must carry, in the format's slot order.
    fn response_headers(&self) -> &[HeaderName];
    /// Whether records need the wall-clock time the request started (`%(t)s`).
    fn wants_start_time(&self) -> bool;
}

/// Everything one access line or log record can show.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// Who sent the request, after trusted proxy headers.
    pub client: Peer,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub status: u16,
    /// Body bytes handed to the connection (0 for HEAD).
    pub body_bytes: u64,
    /// When the request arrived, if the sink wants it (else the epoch).
    pub started_at: SystemTime,
    pub duration: Duration,
    pub request_id: Option<HeaderValue>,
    /// The request headers the line format names, in its slot order.
    pub request_headers: Vec<Option<HeaderValue>>,
    /// The response headers the line format names, in its slot order.
    pub response_headers: Vec<Option<HeaderValue>>,
}

impl AccessRecord {
    pub fn request_header(&self, slot: usize) -> Option<&HeaderValue> {
        self.request_headers.get(slot).and_then(Option::as_ref)
    }

    /// The request target as the client sent it, origin form (`/path?query`).
    pub fn target(&self) -> &str {
        self.uri.path_and_query().map_or("/", |pq| pq.as_str())
    }

    pub fn duration_ms(&self) -> f64 {
        self.duration.as_secs_f64() * 1000.0
    }
}

/// The fields of a request its log records carry (client, method, target, version, id),
/// kept apart from the request where a record about it may come later (a deadline).
#[derive(Debug, Clone)]
pub struct RequestFields {
    pub client: Peer,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub request_id: Option<HeaderValue>,
}

impl RequestFields {
    pub fn of(head: &RequestHead) -> RequestFields {
        RequestFields {
            client: head.client.clone(),
            method: head.method.clone(),
            uri: head.uri.clone(),
            version: head.version,
            request_id: head.request_id.clone(),
        }
    }
}

/// What the engine keeps of a request for its access line until the response ends.
pub struct Pending {
    record: AccessRecord,
    started: Instant,
}

impl Pending {
    /// Taken when the request arrives; `client` is the address after trusted proxy headers.
    pub fn begin(
        sink: &dyn AccessSink,
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
        client: &Peer,
        request_id: Option<HeaderValue>,
    ) -> Box<Pending> {
        Box::new(Pending {
            record: AccessRecord {
                client: client.clone(),
                method: method.clone(),
                uri: uri.clone(),
                version,
                status: 0,
                body_bytes: 0,
                started_at: if sink.wants_start_time() {
                    SystemTime::now()
                } else {
                    SystemTime::UNIX_EPOCH
                },
                duration: Duration::ZERO,
                request_id,
                request_headers: sink
                    .request_headers()
                    .iter()
                    .map(|name| headers.get(name).map(super::detach::header_value))
                    .collect(),
                response_headers: Vec::new(),
            },
            started: Instant::now(),
        })
    }

    /// The response's head is known: its status and the headers the format names.
    pub fn responded(&mut self, status: u16, headers: &HeaderMap, wanted_headers: &[HeaderName]) {
        self.record.status = status;
        self.record.response_headers = wanted_headers
            .iter()
            .map(|name| headers.get(name).cloned())
            .collect();
    }

    /// The response is over after `body_bytes` bytes.
    pub fn finish(self, body_bytes: u64) -> AccessRecord {
        let mut record = self.record;
        record.body_bytes = body_bytes;
        record.duration = self.started.elapsed();
        record
    }
}
