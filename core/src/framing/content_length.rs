//! `Content-Length` framing, as the Language Server Protocol uses it.

use memchr::{memchr, memmem};

use super::{InBuf, Next};
use crate::{Malformed, MalformedKind};

/// The longest header block accepted. LSP peers send one or two short headers.
pub const MAX_HEADER: usize = 8 * 1024;

const TOO_LONG: &str = "header block over 8192 bytes";

/// What a resynchronising framer looks for: the start of the next header block.
const NEEDLE: &[u8] = b"Content-Length:";

/// Reads `Content-Length: N` headers (other headers are ignored), a blank line, then N bytes.
///
/// A bad header block is reported once, then the framer resynchronises at the next
/// `Content-Length:` in the stream; a frame over the limit is reported once and its bytes are
/// skipped as they arrive.
#[derive(Debug)]
pub(crate) struct ContentLength {
    limit: usize,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Expecting a header block.
    Headers,
    /// Expecting a body of this many bytes.
    Body(usize),
    /// Dropping the rest of an overlong body.
    Skip(u64),
    /// Dropping bytes up to the next `Content-Length:`.
    Seek,
}

impl ContentLength {
    pub(crate) fn new(limit: usize) -> Self {
        ContentLength {
            limit,
            state: State::Headers,
        }
    }

    pub(crate) fn absorb<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let State::Skip(remaining) = self.state else {
            return bytes;
        };
        let n = usize::try_from(remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
        self.skip(remaining, n);
        &bytes[n..]
    }

    fn skip(&mut self, remaining: u64, n: usize) {
        let left = remaining - n as u64;
        self.state = if left == 0 {
            State::Headers
        } else {
            State::Skip(left)
        };
    }

    pub(crate) fn next(&mut self, buf: &mut InBuf, eof: bool) -> Next {
        loop {
            match self.state {
                State::Skip(remaining) => {
                    let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    buf.consume(n);
                    self.skip(remaining, n);
                    if matches!(self.state, State::Skip(_)) {
                        return Next::Pending;
                    }
                }
                State::Seek => match memmem::find(buf.pending(), NEEDLE) {
                    Some(i) => {
                        buf.consume(i);
                        self.state = State::Headers;
                    }
                    None => {
                        // Keep only what could be the start of a needle split across reads.
                        let keep = if eof { 0 } else { NEEDLE.len() - 1 };
                        buf.consume(buf.len().saturating_sub(keep));
                        return Next::Pending;
                    }
                },
                State::Body(len) => {
                    if buf.len() >= len {
                        self.state = State::Headers;
                        return Next::Frame {
                            start: 0,
                            len,
                            consume: len,
                        };
                    }
                    if eof {
                        let received = buf.len() as u64;
                        let malformed = Malformed::new(
                            MalformedKind::Truncated {
                                expected: len as u64,
                                received,
                            },
                            buf.pending(),
                        );
                        buf.clear();
                        self.state = State::Headers;
                        return Next::Malformed(malformed);
                    }
                    return Next::Pending;
                }
                State::Headers => {
                    let skip = buf
                        .pending()
                        .iter()
                        .position(|b| !matches!(b, b'\r' | b'\n'))
                        .unwrap_or(buf.len());
                    buf.consume(skip);
                    if buf.len() == 0 {
                        return Next::Pending;
                    }
                    let pending = buf.pending();
                    let Some(end) = header_end(pending) else {
                        if pending.len() > MAX_HEADER {
                            return self.bad_header(buf, MAX_HEADER + 1, TOO_LONG);
                        }
                        if eof {
                            let len = buf.len();
                            return self.bad_header(buf, len, "stream ended inside a header block");
                        }
                        return Next::Pending;
                    };
                    if end > MAX_HEADER {
                        return self.bad_header(buf, MAX_HEADER + 1, TOO_LONG);
                    }
                    match parse_headers(&pending[..end]) {
                        Err(detail) => return self.bad_header(buf, end, &detail),
                        Ok(declared) => {
                            buf.consume(end);
                            match usize::try_from(declared) {
                                Ok(len) if len <= self.limit => self.state = State::Body(len),
                                _ => {
                                    self.state = State::Skip(declared);
                                    return Next::Malformed(Malformed::new(
                                        MalformedKind::TooLarge {
                                            limit: self.limit,
                                            declared: Some(declared),
                                        },
                                        b"",
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reports a header block that cannot be used and starts looking for the next one just
    /// past its first byte, so a good header hidden behind garbage is still found.
    ///
    /// `block` is how much of the input the report may quote: never more than the verdict
    /// rests on, so the report does not depend on how much input had arrived.
    fn bad_header(&mut self, buf: &mut InBuf, block: usize, detail: &str) -> Next {
        let block = &buf.pending()[..block];
        let malformed = Malformed::new(
            MalformedKind::BadHeader {
                detail: detail.to_owned(),
            },
            block,
        );
        buf.consume(1);
        self.state = State::Seek;
        Next::Malformed(malformed)
    }
}

/// The length of the header block including its terminating blank line, once it has arrived.
fn header_end(pending: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let nl = pos + memchr(b'\n', &pending[pos..])?;
        let line = &pending[pos..nl];
        if line.is_empty() || line == b"\r" {
            return Some(nl + 1);
        }
        pos = nl + 1;
        if pos > MAX_HEADER {
            // Already too long; the caller reports it without scanning further.
            return Some(pos);
        }
    }
}

/// The declared body length of a complete header block.
fn parse_headers(block: &[u8]) -> Result<u64, String> {
    let mut length = None;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let Some(colon) = memchr(b':', line) else {
            return Err("a header line without a colon".to_owned());
        };
        let name = &line[..colon];
        if name.is_empty()
            || !name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err("an invalid header name".to_owned());
        }
        if !name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if length.is_some() {
            return Err("a duplicate Content-Length header".to_owned());
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "Content-Length {:?} is not a number",
                String::from_utf8_lossy(value)
            ));
        }
        // Digits only, so the one failure left is overflow.
        let n = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| "Content-Length out of range".to_owned())?;
        length = Some(n);
    }
    length.ok_or_else(|| "no Content-Length header".to_owned())
}
