//! WebSocket: the upgrade handshake and the life of an accepted socket.
//!
//! Owns: recognising an upgrade request, handing it to the app as a [`Session`], turning the
//! app's decision into a 101 (or a 403, or the app's own denial response), and then one task
//! per socket that moves messages between the wire and the session, answers pings, sends
//! keepalive pings, enforces the size limit and closes with 1001 on shutdown.
//! The frame codec, fragmentation, UTF-8 checks of text frames and permessage-deflate are
//! the `yawc` crate's. Must not: touch Python or hold a message the app has not asked for
//! beyond `--ws-max-queue`.

mod handshake;
mod pump;
mod reassembly;

use std::time::Duration;

use yawc::{DeflateOptions, DeflatePool, Options};

pub(super) use handshake::{handshake, is_upgrade, request_head};

/// `--ws-*` settings.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Largest message accepted, in bytes (`--ws-max-size`): bigger ones close with 1009.
    pub max_size: usize,
    /// Messages read ahead of the app (`--ws-max-queue`).
    pub max_queue: usize,
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Option<Duration>,
    pub per_message_deflate: bool,
}

/// How long a closing socket waits for the peer's close frame before it is dropped.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn options(config: &WsConfig) -> Options {
    // The codec's limits are exclusive; ours is "at most max_size".
    let limit = config.max_size.saturating_add(1);
    let options = Options::default().with_limits(limit, limit).with_no_delay();
    if !config.per_message_deflate {
        return options.without_compression();
    }
    // Our compressor keeps no context between messages (RFC 7692 lets the server impose
    // that), so its state (about 300 KiB with a 32 KiB window) lives in a process-wide pool
    // only while a message is being compressed: an open socket costs tens of KiB, not
    // hundreds. What the client sends keeps its context (a small window, 9 bits, unless
    // the client asks otherwise).
    static POOL: std::sync::OnceLock<DeflatePool> = std::sync::OnceLock::new();
    options
        .with_compression_level(DeflateOptions::default().level)
        .server_no_context_takeover()
        .with_deflate_pool(POOL.get_or_init(|| DeflatePool::new(64)).clone())
}
