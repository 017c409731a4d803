//! What the caller got wrong, or asked for at the wrong time.

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No frame could ever be accepted.
    #[error("max_frame must be at least 1 byte")]
    ZeroMaxFrame,
    /// No message could ever be queued.
    #[error("send_budget must be at least 1 byte")]
    ZeroSendBudget,
    /// Nothing could ever be read ahead of the owner.
    #[error("read_ahead must allow at least 1 event and 1 byte")]
    ZeroReadAhead,
}

/// An input given to a connection whose transport cannot produce it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// `handle_input` on a connection built with `Framing::Messages`: use `handle_frame`.
    #[error("this connection carries whole messages: hand them in with handle_frame")]
    BytesOnMessageTransport,
    /// `handle_frame` on a byte-stream connection: use `handle_input`.
    #[error("this connection reads a byte stream: hand bytes in with handle_input")]
    FrameOnStreamTransport,
}

/// Why a message was not queued. Nothing of it was queued in any case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message could not be encoded as JSON.
    #[error("the message cannot be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    /// The send budget is used up; try again once queued bytes have been written.
    #[error("the send queue is full")]
    Full,
    /// The connection was asked to close; it accepts no more messages.
    #[error("the connection is closing")]
    Closed,
    /// The connection has ended, or can no longer write.
    #[error("the connection is disconnected")]
    Disconnected,
}
