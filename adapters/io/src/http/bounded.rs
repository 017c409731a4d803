//! A bound on one server-sent event: the SSE decoder keeps an event's lines until the blank
//! line that ends it, however long that takes, so a server that never ends one would grow
//! the client's memory without limit. This body passes bytes through unchanged and fails once
//! more than the limit arrive with no event boundary among them.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};

/// A response body whose events may not exceed a limit each.
#[derive(Debug)]
pub(super) struct Bounded {
    body: Incoming,
    events: Events,
}

impl Bounded {
    pub(super) fn new(body: Incoming, limit: usize) -> Self {
        Bounded {
            body,
            events: Events::new(limit),
        }
    }
}

/// Where event boundaries fall in a byte stream, and how long the current event is.
#[derive(Debug)]
struct Events {
    limit: usize,
    /// Bytes since the last event boundary.
    since: usize,
    /// Line ends in a row just before (a CRLF counts once), and whether the last byte was CR.
    line_ends: u8,
    after_cr: bool,
}

impl Events {
    fn new(limit: usize) -> Self {
        Events {
            limit,
            since: 0,
            line_ends: 0,
            after_cr: false,
        }
    }

    /// Counts `bytes`; false once an event has grown past the limit.
    fn count(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.line_ends = self.line_ends.saturating_add(1);
                    self.after_cr = byte == b'\r';
                }
                _ => {
                    self.line_ends = 0;
                    self.after_cr = false;
                }
            }
            // Two line ends in a row: a blank line, the end of an event.
            if self.line_ends >= 2 {
                self.since = 0;
            } else {
                self.since += 1;
                if self.since > self.limit {
                    return false;
                }
            }
        }
        true
    }
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        Poll::Ready(frame.map(|frame| {
            let frame = frame.map_err(io::Error::other)?;
            if let Some(data) = frame.data_ref() {
                if !self.events.count(data) {
                    let limit = self.events.limit;
                    return Err(io::Error::other(format!(
                        "a server-sent event over {limit} bytes (the frame limit)"
                    )));
                }
            }
            Ok(frame)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::Events;

    #[test]
    fn a_blank_line_ends_an_event_whatever_the_line_ends() {
        for blank in ["\n\n", "\r\n\r\n", "\r\r", "\n\r\n"] {
            let mut events = Events::new(14);
            assert!(events.count(b"data: 1234"), "{blank:?}");
            assert!(events.count(blank.as_bytes()), "{blank:?}");
            // A new event starts from nothing, however the bytes are split.
            assert!(events.count(b"data: "), "{blank:?}");
            assert!(events.count(b"12345678"), "{blank:?}");
            assert!(!events.count(b"\n9"), "{blank:?}");
        }
    }

    #[test]
    fn an_event_past_the_limit_fails_even_across_lines_and_chunks() {
        let mut events = Events::new(10);
        assert!(events.count(b"data: 12\n"));
        assert!(!events.count(b"data: 34\n"));
        let mut events = Events::new(10);
        assert!(events.count(b"data: 1234"));
        assert!(!events.count(b"5"));
    }
}
