//! Newline-delimited frames.

use memchr::memchr;

use super::{is_blank, InBuf, Next};
use crate::{Malformed, MalformedKind};

/// Splits input at `\n`. A trailing `\r` is dropped, blank lines are skipped, and a line longer
/// than the limit is reported once and then skipped up to its newline as it arrives.
#[derive(Debug)]
pub(crate) struct Lines {
    limit: usize,
    /// How much of the pending input is already known to hold no newline.
    scanned: usize,
    /// Inside an overlong line: everything up to the next newline is dropped.
    discarding: bool,
}

impl Lines {
    pub(crate) fn new(limit: usize) -> Self {
        Lines {
            limit,
            scanned: 0,
            discarding: false,
        }
    }

    pub(crate) fn absorb<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        if !self.discarding {
            return bytes;
        }
        match memchr(b'\n', bytes) {
            Some(i) => {
                self.discarding = false;
                &bytes[i + 1..]
            }
            None => &[],
        }
    }

    pub(crate) fn next(&mut self, buf: &mut InBuf, eof: bool) -> Next {
        loop {
            if self.discarding {
                // `absorb` drops a skipped line's bytes before they reach the buffer.
                debug_assert_eq!(buf.len(), 0);
                return Next::Pending;
            }
            let pending = buf.pending();
            let (line_len, consume) = match memchr(b'\n', &pending[self.scanned..]) {
                Some(i) => (self.scanned + i, self.scanned + i + 1),
                None if pending.len() > self.limit => {
                    // The line cannot fit whatever follows: report it now and drop its bytes
                    // as they come, so it never occupies more than the limit.
                    let malformed = self.too_large(pending);
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Next::Malformed(malformed);
                }
                None if eof && !pending.is_empty() => (pending.len(), pending.len()),
                None => {
                    self.scanned = pending.len();
                    return Next::Pending;
                }
            };
            self.scanned = 0;
            let line = &pending[..line_len];
            if line_len > self.limit {
                let malformed = self.too_large(line);
                buf.consume(consume);
                return Next::Malformed(malformed);
            }
            if is_blank(line) {
                buf.consume(consume);
                continue;
            }
            let len = if line.last() == Some(&b'\r') {
                line_len - 1
            } else {
                line_len
            };
            return Next::Frame {
                start: 0,
                len,
                consume,
            };
        }
    }

    fn too_large(&self, line: &[u8]) -> Malformed {
        // The excerpt must not depend on how much of the line had arrived when it was judged.
        let frame = &line[..line.len().min(self.limit + 1)];
        Malformed::new(
            MalformedKind::TooLarge {
                limit: self.limit,
                declared: None,
            },
            frame,
        )
    }
}
