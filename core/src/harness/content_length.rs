//! The `content_length` target: `Content-Length` stream framing.

use super::stream;
use crate::Framing;

/// `Content-Length` framing, checked exactly like `lines` and with the same layout.
pub fn content_length(data: &[u8]) {
    stream(Framing::ContentLength, data);
}
