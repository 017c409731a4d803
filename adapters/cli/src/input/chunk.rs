//! A chunk of standard input cut into lines: checked into messages, or cut only, for another
//! thread to check.

use tether_core::framing::Frames;
use tether_core::{Verbatim, VerbatimBatch};

/// A chunk's non-blank lines, checked: its messages in order, as written, and the lines that
/// are not messages (or are over the frame limit), each with why and how many messages came
/// before it.
#[derive(Debug, Default)]
pub struct Lines {
    messages: Vec<Verbatim>,
    invalid: Vec<(usize, String)>,
}

impl Lines {
    /// The lines in order, as runs of messages each followed by the reason the line after it
    /// is not a message (none after the last run).
    pub fn runs(&self) -> impl Iterator<Item = (&[Verbatim], Option<&str>)> {
        let mut start = 0;
        let ends = self
            .invalid
            .iter()
            .map(|(at, why)| (*at, Some(why.as_str())));
        ends.chain([(self.messages.len(), None)])
            .map(move |(end, why)| {
                let run = &self.messages[start..end];
                start = end;
                (run, why)
            })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.invalid.is_empty()
    }

    /// The messages, when every line is one; `None` if some line is not.
    pub(super) fn only_messages(&self) -> Option<&[Verbatim]> {
        self.invalid.is_empty().then_some(&self.messages[..])
    }
}

/// A chunk's frames as the framer cut them, not checked yet, and the lines it refused (over
/// the frame limit), in their places.
#[derive(Debug, Default)]
pub struct Unchecked {
    /// The frames' bytes, one after another.
    bytes: Vec<u8>,
    /// Where each frame ends in `bytes`.
    ends: Vec<usize>,
    /// Each refused line, with how many frames came before it, and why.
    refused: Vec<(usize, String)>,
}

impl Unchecked {
    /// Cuts every frame the framer has whole, without checking them.
    pub(super) fn drain(frames: &mut Frames) -> Unchecked {
        let mut unchecked = Unchecked::default();
        while let Some(cut) = frames.poll_frame(|frame| unchecked.bytes.extend_from_slice(frame)) {
            match cut {
                Ok(()) => unchecked.ends.push(unchecked.bytes.len()),
                Err(malformed) => {
                    let before = unchecked.ends.len();
                    unchecked.refused.push((before, malformed.to_string()));
                }
            }
        }
        unchecked
    }

    /// Checks the frames with `checked`'s buffers, as the thread would have: the same lines,
    /// in the same order.
    pub fn check(self, checked: &mut Checked) -> Lines {
        let mut refused = self.refused.into_iter().peekable();
        let mut start = 0;
        for (before, end) in self.ends.into_iter().enumerate() {
            while let Some((_, why)) = refused.next_if(|(at, _)| *at == before) {
                checked.invalid.push((checked.batch.len(), why));
            }
            if let Err(malformed) = checked.batch.push(&self.bytes[start..end]) {
                checked
                    .invalid
                    .push((checked.batch.len(), malformed.to_string()));
            }
            start = end;
        }
        for (_, why) in refused {
            checked.invalid.push((checked.batch.len(), why));
        }
        checked.take()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty() && self.refused.is_empty()
    }
}

/// Checks standard input's lines a chunk at a time, reusing its buffers from chunk to chunk.
#[derive(Debug, Default)]
pub struct Checked {
    /// The chunk's messages, their bytes in one buffer.
    batch: VerbatimBatch,
    /// The chunk's lines that are not messages, each after how many messages.
    invalid: Vec<(usize, String)>,
}

impl Checked {
    /// Every line the framer has whole, each checked.
    pub(super) fn drain(&mut self, frames: &mut Frames) -> Lines {
        while let Some(line) = frames.poll_frame(|frame| self.batch.push(frame)) {
            if let Err(malformed) = line.and_then(|checked| checked) {
                self.invalid.push((self.batch.len(), malformed.to_string()));
            }
        }
        self.take()
    }

    /// The lines checked since the last take.
    fn take(&mut self) -> Lines {
        Lines {
            messages: self.batch.take().collect(),
            invalid: std::mem::take(&mut self.invalid),
        }
    }
}
