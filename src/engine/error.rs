//! The engine's one error type, as hyper has `hyper::Error`: what went wrong, with a message
//! that says what happened and what to do. The bridge maps it to a Python exception; inside
//! the engine, errors that concern one connection or one request become log lines instead.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// The runtime or its I/O driver could not be set up.
    Start(io::Error),
    /// A `--forwarded-allow-ips` entry is neither an IP address, `*` nor `unix:`.
    TrustedProxy(String),
    /// A request body could not be read (malformed chunk or client gone).
    RequestBody(String),
    /// A request body stopped arriving before it was whole.
    RequestBodyTimeout,
    /// The client closed the connection before the whole request body came.
    ClientLeftMidBody,
    /// The TLS certificate, key or settings could not be loaded; the message names the file
    /// or option and the reason.
    Tls(String),
}

impl Error {
    /// Whether the fault is in the settings (the user fixes a flag) rather than the system.
    pub fn is_setting(&self) -> bool {
        matches!(self, Error::TrustedProxy(_) | Error::Tls(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Start(e) => write!(
                f,
                "could not start the engine: {e} (check the process's limits on threads and open files)"
            ),
            Error::TrustedProxy(entry) => write!(
                f,
                "--forwarded-allow-ips: {entry:?} is not an IP address or network; give addresses or networks (10.0.0.0/8) separated by commas, '*' for all or 'unix:' for Unix-socket peers"
            ),
            Error::RequestBody(why) | Error::Tls(why) => write!(f, "{why}"),
            Error::RequestBodyTimeout => write!(f, "timed out reading the request body"),
            Error::ClientLeftMidBody => {
                write!(f, "the client left before sending the whole request body")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Start(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Start(e)
    }
}
