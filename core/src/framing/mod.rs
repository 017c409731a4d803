//! Byte streams to frames: newline-delimited JSON and `Content-Length` headers.
//!
//! A framer never copies a frame out: it finds the frame's span in the connection's input
//! buffer, the connection decodes it in place, and the bytes are then consumed. Each framer
//! enforces the frame limit itself, discarding an overlong frame's bytes as they arrive, so
//! the buffer never holds more than the limit plus the last chunk handed in (a header block may
//! take up to [`MAX_HEADER`] bytes where that is more than the limit).

mod content_length;
mod frames;
mod lines;

use crate::Malformed;

pub(crate) use content_length::ContentLength;
pub use content_length::MAX_HEADER;
pub use frames::Frames;
pub(crate) use lines::Lines;

/// How messages are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// One JSON text per line (MCP, Codex exec-server, most stdio tools). The default.
    #[default]
    Lines,
    /// `Content-Length: N` headers, a blank line, then N bytes of JSON (the Language Server
    /// Protocol).
    ContentLength,
    /// The transport carries whole messages (websocket): every frame handed in with
    /// [`Connection::handle_frame`](crate::Connection::handle_frame) is one message.
    Messages,
}

/// The input bytes not yet consumed.
#[derive(Debug, Default)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    start: usize,
}

/// Capacity kept after the buffer empties; a larger one (left by a big frame) is released.
const KEEP_CAPACITY: usize = 1 << 20;

impl InBuf {
    /// Appends `bytes`. `limit` is the frame limit: the buffer never needs to hold more than
    /// that plus one chunk, so it never grows past it (doubling would overshoot by up to 2x).
    pub(crate) fn extend(&mut self, bytes: &[u8], limit: usize) {
        // Consumed bytes are moved out of the way only when the new ones would not fit
        // behind them: most chunks are then copied once, never moved again.
        if self.data.len() + bytes.len() > self.data.capacity() {
            if self.start > 0 {
                self.data.drain(..self.start);
                self.start = 0;
            }
            let needed = self.data.len() + bytes.len();
            if needed > self.data.capacity() {
                let doubled = (self.data.capacity() * 2).min(limit.saturating_add(bytes.len()));
                self.data
                    .reserve_exact(needed.max(doubled) - self.data.len());
            }
        }
        self.data.extend_from_slice(bytes);
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.data.len());
        if self.start >= self.data.len() {
            self.clear();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
        if self.data.capacity() > KEEP_CAPACITY {
            self.data.shrink_to(KEEP_CAPACITY);
        }
    }
}

/// What a framer found at the front of the buffer.
#[derive(Debug)]
pub(crate) enum Next {
    /// A frame: `len` bytes at offset `start` of the pending input; after decoding it,
    /// `consume` bytes are done with.
    Frame {
        start: usize,
        len: usize,
        consume: usize,
    },
    /// A framing error; its bytes are already consumed.
    Malformed(Malformed),
    /// Nothing more until more input (or the end of input) arrives.
    Pending,
}

/// A framer for a byte-stream transport.
#[derive(Debug)]
pub(crate) enum StreamFramer {
    Lines(Lines),
    ContentLength(ContentLength),
}

impl StreamFramer {
    /// Finds the next frame. `eof` says no more input will come, so a final partial frame is
    /// decided now.
    pub(crate) fn next(&mut self, buf: &mut InBuf, eof: bool) -> Next {
        match self {
            StreamFramer::Lines(f) => f.next(buf, eof),
            StreamFramer::ContentLength(f) => f.next(buf, eof),
        }
    }

    /// Bytes that arrived while an overlong frame is being skipped are dropped here, without
    /// being buffered.
    pub(crate) fn absorb<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        match self {
            StreamFramer::Lines(f) => f.absorb(bytes),
            StreamFramer::ContentLength(f) => f.absorb(bytes),
        }
    }
}

/// Is this JSON whitespace (the bytes a blank line may hold)?
pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}
