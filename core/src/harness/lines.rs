//! The `lines` target: newline-delimited stream framing.

use super::stream;
use crate::Framing;

/// Newline-delimited framing: the bytes split anywhere give exactly the events of the bytes
/// handed in at once, and the input buffer stays within the frame limit plus one chunk.
///
/// Layout: frame limit (2 bytes, taken modulo 4096, plus 1); how the input ends (1 byte: even
/// for end of stream, odd for a read error); how many chunk sizes follow (1 byte, modulo 8);
/// the chunk sizes (1 byte each, used in turn; none, or all zero, means byte by byte); then
/// the stream itself.
pub fn lines(data: &[u8]) {
    stream(Framing::Lines, data);
}
