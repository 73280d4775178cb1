//! The settings Python hands to Rust, typed.
//!
//! Owns the two structs the bridge receives: [`EngineSettings`] (one worker's engine and
//! ASGI adapter) and [`SupervisorSettings`] (the supervisor). Both are read by attribute from
//! the `ferricorn.config.Config` object: a field is an option of the table in
//! `python/ferricorn/config.py` under the same name, or a value `Config` derives from options
//! (named on the field). Must not: validate ranges or parse text (the table does that once,
//! for the command line, the environment and `run()` alike), or hold engine types; the
//! bridge turns these into the engine's own configuration.
//!
//! Each struct also lists its field names (`FIELDS`), exported to Python as
//! `_ferricorn.ENGINE_SETTINGS` / `SUPERVISOR_SETTINGS`, so that a test holds the option
//! table and these structs equal.

use pyo3::prelude::*;

/// Declares a settings struct read by attribute, and the list of its field names.
macro_rules! settings {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(FromPyObject, Debug, Clone)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The `Config` attributes this struct reads.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];
        }
    };
}

settings! {
    /// What one worker's engine and ASGI adapter run with.
    pub struct EngineSettings {
        /// Derived: `engine_threads`, or 0 (1 for a WSGI app).
        engine_thread_count: usize,
        timeout_keep_alive: f64,
        timeout_header_read: f64,
        /// Derived: `h11_max_incomplete_event_size`, or its default.
        max_head_bytes: usize,
        /// Derived: `limit_concurrency`, or for a WSGI app its thread count.
        admission_limit: Option<usize>,
        /// Derived: `limit_queue`, or for a WSGI app without `limit_concurrency` the backlog.
        admission_queue: usize,
        timeout_queue: Option<f64>,
        retry_after: u64,
        cancel_on_disconnect: bool,
        timeout_request: Option<f64>,
        limit_request_body: u64,
        limit_request_line: usize,
        limit_request_fields: usize,
        limit_request_field_size: usize,
        timeout_request_body: f64,
        limit_min_send_rate: u64,
        timeout_slow_send: f64,
        date_header: bool,
        access_log_format: Option<String>,
        request_id_header: Option<String>,
        proxy_headers: bool,
        /// Derived: `forwarded_allow_ips`, else `$FORWARDED_ALLOW_IPS`, else 127.0.0.1.
        forwarded_allow_ips_list: Vec<String>,
        root_path: String,
        /// Derived: `headers` and, with `server_header`, `server: ferricorn`.
        response_headers: Vec<(String, String)>,
        /// Derived: `ws`, or `none` for a WSGI app (WSGI has no WebSockets).
        ws_mode: String,
        ws_max_size: usize,
        ws_max_queue: usize,
        ws_ping_interval: f64,
        ws_ping_timeout: f64,
        ws_per_message_deflate: bool,
        ssl_certfile: Option<String>,
        ssl_keyfile: Option<String>,
        ssl_keyfile_password: Option<String>,
        ssl_cert_reqs: u8,
        ssl_ca_certs: Option<String>,
        ssl_ciphers: String,
        /// Derived: `ssl_version` and `ssl_protocol_min`, as "1.3" / "1.2".
        tls_versions: Vec<String>,
        /// `auto` (HTTP/1.1 and HTTP/2), `h11` or `httptools` (HTTP/1.1), `h2` (HTTP/2).
        http: String,
        h2_max_concurrent_streams: u32,
        h2_max_header_list_size: u32,
        h2_initial_stream_window_size: u32,
        h2_initial_connection_window_size: u32,
        h2_keep_alive_interval: Option<f64>,
        h2_max_pending_reset_streams: usize,
        /// Derived from the process: a supervised worker's slot in the shared metrics file.
        metrics_slot: Option<(String, usize)>,
        /// Derived: `metrics_host`/`metrics_port` when this process serves them itself.
        engine_metrics_addr: Option<(String, u16)>,
        /// Constant of `Config`: response bytes buffered before `send()` waits.
        response_high_water: usize,
        /// Constant of `Config`: request bytes read ahead of `receive()`.
        request_read_ahead: usize,
    }
}

settings! {
    /// What the supervisor runs with.
    pub struct SupervisorSettings {
        /// Derived: 1 with `reload`, else `workers`, `$WEB_CONCURRENCY` or 1.
        worker_processes: usize,
        reload: bool,
        /// Derived: `reload_dirs` made absolute, or the current directory.
        reload_watch_dirs: Vec<String>,
        /// Derived: `reload_includes`, or the default globs.
        reload_include_globs: Vec<String>,
        /// Derived: `reload_excludes`, or the default globs.
        reload_exclude_globs: Vec<String>,
        reload_delay: f64,
        timeout_worker_healthcheck: f64,
        /// Derived: `metrics_host`/`metrics_port` when `metrics_port` is set.
        supervisor_metrics_addr: Option<(String, u16)>,
    }
}
