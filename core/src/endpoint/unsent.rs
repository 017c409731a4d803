//! Which of the owner's requests are still in the write queue, never handed to the driver.
//!
//! When a supervised child ends and another follows, a request the ended child could have
//! read is answered `-32603` (it may have been half done), while a request still queued was
//! never seen by anyone: it goes to the next child with the rest of the queue, and that child's
//! answer is its one answer. Answering it `-32603` as well would give it two.
//!
//! The write queue hands bytes to the driver in order and only whole messages at a time, so a
//! request is unsent exactly while the output position where its message ends lies beyond the
//! bytes handed out so far.

use std::collections::VecDeque;

use crate::correlator::Key;
use crate::{Id, Message};

/// The owner's requests still queued, each with the output position where its message ends.
#[derive(Debug, Default)]
pub(crate) struct Unsent {
    /// Bytes handed to the driver since the first child started.
    handed_out: u64,
    /// Oldest first; positions never decrease.
    requests: VecDeque<(u64, Key)>,
}

impl Unsent {
    /// Requests `ids` were just queued, and `queued` bytes now wait to be handed out: their
    /// message ends at the end of the queue.
    pub(crate) fn queued<'a>(&mut self, queued: usize, ids: impl IntoIterator<Item = &'a Id>) {
        let end = self.handed_out.saturating_add(queued as u64);
        self.requests
            .extend(ids.into_iter().map(|id| (end, Key::from(id))));
    }

    /// `n` more bytes were handed to the driver: the requests wholly within them are sent.
    pub(crate) fn handed_out(&mut self, n: usize) {
        self.handed_out = self.handed_out.saturating_add(n as u64);
        while self
            .requests
            .front()
            .is_some_and(|(end, _)| *end <= self.handed_out)
        {
            self.requests.pop_front();
        }
    }

    /// Whether request `id` is still queued.
    pub(crate) fn contains(&self, id: &Id) -> bool {
        let key = Key::from(id);
        self.requests.iter().any(|(_, k)| *k == key)
    }
}

/// The ids of the requests in `message` (a batch's included).
pub(crate) fn request_ids(message: &Message) -> Vec<&Id> {
    match message {
        Message::Request(request) => vec![&request.id],
        Message::Batch(items) => items.iter().flat_map(request_ids).collect(),
        _ => Vec::new(),
    }
}
