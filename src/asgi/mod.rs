//! The ASGI adapter: scopes, `receive`/`send` and their awaitables, run on the loop thread.
//!
//! It speaks ASGI to the app and `Exchange` / WebSocket `Session` operations to the engine. It must not import
//! hyper nor spawn threads; it is only ever called by the bridge with the GIL held.

pub mod awaitable;
pub mod context;
pub mod http;
pub mod messages;
pub mod scope;
pub mod tracking;
pub mod websocket;

pub use self::context::Context;
pub use self::http::HttpCycle;
pub use scope::ScopeBuilder;
pub use tracking::TrackingConfig;
pub use websocket::WebSocketCycle;
