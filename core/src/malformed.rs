//! What the peer got wrong: the reasons a frame is reported as malformed, and the decoding that
//! finds them.

use serde::de::DeserializeOwned;

/// How many bytes of a bad frame a [`Malformed`] keeps, so that a report never holds a whole
/// (possibly huge) frame.
pub const EXCERPT_LEN: usize = 96;

/// A frame that could not be decoded. The connection goes on with the next frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (frame starts {excerpt:?})")]
pub struct Malformed {
    /// What was wrong with the frame.
    pub kind: MalformedKind,
    /// The first bytes of the frame (at most [`EXCERPT_LEN`]), with invalid UTF-8 replaced.
    pub excerpt: String,
}

impl Malformed {
    pub(crate) fn new(kind: MalformedKind, frame: &[u8]) -> Self {
        Malformed {
            kind,
            excerpt: excerpt(frame),
        }
    }
}

/// Why a frame was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedKind {
    /// The frame is not UTF-8; `valid_up_to` bytes were.
    #[error("invalid UTF-8 after byte {valid_up_to}")]
    InvalidUtf8 {
        /// The length of the valid prefix.
        valid_up_to: usize,
    },
    /// The frame is not JSON (this includes nesting deeper than the parser's recursion limit
    /// and numbers out of the range of a double).
    #[error("invalid JSON: {detail}")]
    InvalidJson {
        /// 1-based line of the error within the frame.
        line: usize,
        /// 1-based column of the error within the frame.
        column: usize,
        /// The parser's description, with the position.
        detail: String,
    },
    /// The frame is JSON, but not a message of the connection's message type.
    #[error("not a JSON-RPC message: {detail}")]
    NotJsonRpc {
        /// 1-based line of the error within the frame.
        line: usize,
        /// 1-based column of the error within the frame.
        column: usize,
        /// What is wrong, with the position.
        detail: String,
    },
    /// The frame is longer than the connection's limit; its bytes were discarded.
    #[error("frame over the limit of {limit} bytes{}", declared.map(|n| format!(" (declared length {n})")).unwrap_or_default())]
    TooLarge {
        /// The limit in force.
        limit: usize,
        /// The length the frame's header announced, for `Content-Length` framing.
        declared: Option<u64>,
    },
    /// A `Content-Length` header block that cannot be used.
    #[error("bad header: {detail}")]
    BadHeader {
        /// What is wrong with it.
        detail: String,
    },
    /// The stream ended inside a frame whose length was announced.
    #[error("stream ended inside a frame: {received} of {expected} bytes")]
    Truncated {
        /// The announced length.
        expected: u64,
        /// How many bytes arrived.
        received: u64,
    },
}

/// Decodes one frame into a message, classifying any failure.
///
/// This is the decoder the connection uses; it is public so that a driver with frames from
/// elsewhere (a test, a replay tool) gets exactly the same verdicts.
pub fn decode<M: DeserializeOwned>(frame: &[u8]) -> Result<M, Malformed> {
    serde_json::from_slice(frame).map_err(|err| Malformed::new(classify(frame, &err), frame))
}

pub(crate) fn classify(frame: &[u8], err: &serde_json::Error) -> MalformedKind {
    // UTF-8 is checked only on the failure path, so valid frames pay nothing for it.
    if let Err(utf8) = std::str::from_utf8(frame) {
        return MalformedKind::InvalidUtf8 {
            valid_up_to: utf8.valid_up_to(),
        };
    }
    let (line, column, detail) = (err.line(), err.column(), err.to_string());
    match err.classify() {
        serde_json::error::Category::Data => MalformedKind::NotJsonRpc {
            line,
            column,
            detail,
        },
        _ => MalformedKind::InvalidJson {
            line,
            column,
            detail,
        },
    }
}

fn excerpt(frame: &[u8]) -> String {
    let head = &frame[..frame.len().min(EXCERPT_LEN)];
    String::from_utf8_lossy(head).into_owned()
}
