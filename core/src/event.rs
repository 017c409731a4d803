//! What a connection reports to its owner.

use crate::Malformed;

/// One thing that happened on a connection, in the order it happened.
///
/// Every connection yields any number of `Message` and `Malformed` events and then exactly one
/// `Disconnected`, after which it yields nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<M> {
    /// A message arrived.
    Message(M),
    /// A frame arrived that is not a message. The connection goes on.
    Malformed(Malformed),
    /// The connection ended: `None` for a clean end (end of stream, a websocket Close), or what
    /// failed. Always the last event.
    Disconnected(Option<Disconnect>),
}

/// Why a connection ended other than cleanly. A clean end (end of stream, websocket Close) is
/// reported as `Disconnected(None)` instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection {label}: {kind}")]
pub struct Disconnect {
    /// The connection's label, so that a log line names the peer.
    pub label: String,
    /// What failed.
    pub kind: DisconnectKind,
}

/// What ended a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectKind {
    /// Reading from the peer failed.
    #[error("read failed: {0}")]
    Read(String),
    /// Writing to the peer failed.
    #[error("write failed: {0}")]
    Write(String),
    /// The peer stopped answering: a keepalive ping went unanswered, or it did not end within
    /// the close timeout.
    #[error("timed out: {0}")]
    Timeout(String),
}
