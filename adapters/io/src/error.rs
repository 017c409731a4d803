//! Why a connection could not be made.

use std::io;

/// A connection that could not be set up. Once set up, a connection reports its problems as
/// events instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options cannot work.
    #[error("invalid options: {0}")]
    Config(#[from] tether_core::ConfigError),
    /// The child could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program that was to run.
        program: String,
        /// Why it could not.
        source: io::Error,
    },
    /// The peer could not be reached, or a listener could not be bound.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address or path.
        addr: String,
        /// Why not.
        source: io::Error,
    },
    /// The websocket handshake failed.
    #[error("websocket handshake with {addr} failed: {detail}")]
    Handshake {
        /// The URL or peer address.
        addr: String,
        /// What went wrong.
        detail: String,
    },
    /// A URL that is not `ws://HOST:PORT/PATH`.
    #[error("invalid websocket URL {0:?}: expected ws://HOST:PORT/PATH")]
    Url(String),
    /// A Streamable HTTP URL that cannot work: not `http://HOST[:PORT][/PATH]`, or with
    /// credentials in it (which would not be sent).
    #[error("invalid URL {url:?}: {detail}")]
    HttpUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
}
