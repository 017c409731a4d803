//! A byte stream cut into frames that are handed out as bytes, not decoded.

use super::{ContentLength, Framing, InBuf, Lines, Next, StreamFramer};
use crate::{ConfigError, Malformed};

/// Frames cut from a byte stream by the same framers, under the same limit and with the same
/// verdicts as a [`Connection`](crate::Connection)'s input, but handed out as bytes: for a
/// driver that checks or forwards each frame itself (the command's standard input, whose
/// lines go to the peer as they were written).
///
/// Memory is bounded as for a connection: the buffer holds at most the frame limit plus the
/// last chunk handed in, and an overlong frame is reported once and its bytes dropped as they
/// arrive. There is no read-ahead: take the frames after each chunk.
#[derive(Debug)]
pub struct Frames {
    framer: StreamFramer,
    buf: InBuf,
    limit: usize,
    eof: bool,
}

impl Frames {
    /// Frames of at most `max_frame` bytes, delimited as `framing` says. A zero limit is
    /// [`ConfigError::ZeroMaxFrame`]; [`Framing::Messages`] has no delimiters to cut at and
    /// is cut as [`Framing::Lines`].
    pub fn new(framing: Framing, max_frame: usize) -> Result<Self, ConfigError> {
        if max_frame == 0 {
            return Err(ConfigError::ZeroMaxFrame);
        }
        let framer = match framing {
            Framing::Lines | Framing::Messages => StreamFramer::Lines(Lines::new(max_frame)),
            Framing::ContentLength => StreamFramer::ContentLength(ContentLength::new(max_frame)),
        };
        Ok(Frames {
            framer,
            buf: InBuf::default(),
            limit: max_frame,
            eof: false,
        })
    }

    /// Bytes read from the stream. Ignored after [`handle_eof`](Self::handle_eof).
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.eof {
            return;
        }
        let rest = if self.buf.len() == 0 {
            self.framer.absorb(bytes)
        } else {
            bytes
        };
        if !rest.is_empty() {
            self.buf.extend(rest, self.limit);
        }
    }

    /// The stream ended: a last frame without its delimiter is still handed out.
    pub fn handle_eof(&mut self) {
        self.eof = true;
    }

    /// Hands the next whole frame to `take` and returns what it made of it, or the reason the
    /// next frame was malformed; `None` until more input (or the end) arrives. Blank lines are
    /// skipped.
    pub fn poll_frame<T>(&mut self, take: impl FnOnce(&[u8]) -> T) -> Option<Result<T, Malformed>> {
        match self.framer.next(&mut self.buf, self.eof) {
            Next::Frame {
                start,
                len,
                consume,
            } => {
                let made = take(&self.buf.pending()[start..start + len]);
                self.buf.consume(consume);
                Some(Ok(made))
            }
            Next::Malformed(malformed) => Some(Err(malformed)),
            Next::Pending => None,
        }
    }

    /// How many bytes are buffered: at most the frame limit plus the last chunk.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
