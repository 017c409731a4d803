//! Matching responses to requests, without I/O: ids, pending requests, deadlines, cancellation.
//!
//! The correlator never leaves a caller waiting for ever: every request it tracks ends in
//! exactly one [`Completion`] — the peer's answer, a timeout, a cancellation, or the
//! connection's end. A response nobody asked for is handed back to the caller as unmatched,
//! never a panic and never silently dropped.
//!
//! Drive it like the rest of the core: hand it responses ([`Correlator::handle_response`]),
//! the end of the connection ([`Correlator::handle_disconnect`]) and the time
//! ([`Correlator::handle_timeout`], when [`Correlator::poll_timeout`] says), then take the
//! outcomes with [`Correlator::poll_completion`].

use std::collections::{btree_map, BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{ErrorObject, Id, Request, Response};

/// Why a request did not get a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The peer answered with an error.
    #[error("the peer answered {0}")]
    Response(ErrorObject),
    /// The connection ended before the answer came.
    #[error("the connection ended before the response arrived")]
    Disconnected,
    /// The deadline passed first.
    #[error("no response within the deadline")]
    TimedOut,
    /// The request was cancelled by its caller.
    #[error("the request was cancelled")]
    Cancelled,
    /// The request could not be sent.
    #[error("the request could not be sent: {0}")]
    Send(String),
    /// The result did not have the type asked for.
    #[error("unexpected result: {0}")]
    Decode(String),
}

/// How one tracked request ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The request's id.
    pub id: Id,
    /// Its result, or why there is none.
    pub result: Result<Value, RpcError>,
}

/// An id as a map key: integers by value, strings, null.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Int(i128),
    Str(String),
    Other(String),
    Null,
}

impl From<&Id> for Key {
    fn from(id: &Id) -> Self {
        match id {
            Id::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Key::Int(i128::from(i)),
                (None, Some(u)) => Key::Int(i128::from(u)),
                _ => Key::Other(n.to_string()),
            },
            Id::String(s) => Key::Str(s.clone()),
            Id::Null => Key::Null,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    id: Id,
    deadline: Option<Instant>,
}

/// Tracks requests until each has completed exactly once.
#[derive(Debug, Clone, Default)]
pub struct Correlator {
    next_id: u64,
    pending: BTreeMap<Key, Entry>,
    deadlines: BTreeSet<(Instant, Key)>,
    completions: VecDeque<Completion>,
    disconnected: bool,
    last_now: Option<Instant>,
}

impl Correlator {
    /// A correlator with nothing pending; the ids it allocates start at 1.
    pub fn new() -> Self {
        Correlator::default()
    }

    /// Builds a request with a fresh numeric id and tracks it; with `timeout`, it fails with
    /// [`RpcError::TimedOut`] unless answered by `now + timeout`. After the connection's end
    /// it refuses with [`RpcError::Disconnected`].
    pub fn request(
        &mut self,
        now: Instant,
        method: impl Into<String>,
        params: Option<Value>,
        timeout: Option<Duration>,
    ) -> Result<Request, RpcError> {
        let id = loop {
            self.next_id += 1;
            let id = Id::from(self.next_id);
            // Ids tracked with `track` may already use this number.
            if !self.pending.contains_key(&Key::from(&id)) {
                break id;
            }
        };
        self.track(now, id.clone(), timeout)?;
        Ok(Request::new(id, method, params))
    }

    /// Tracks a request whose id the caller chose. An id already pending is refused, since
    /// its response could not be told apart.
    pub fn track(
        &mut self,
        now: Instant,
        id: Id,
        timeout: Option<Duration>,
    ) -> Result<(), RpcError> {
        let now = self.observe(now);
        if self.disconnected {
            return Err(RpcError::Disconnected);
        }
        let key = Key::from(&id);
        let deadline = timeout.and_then(|t| now.checked_add(t));
        // One search of the pending map, not two: a sender that never hears back (a peer
        // that only echoes) can leave many requests pending.
        match self.pending.entry(key) {
            btree_map::Entry::Occupied(_) => {
                Err(RpcError::Send(format!("id {id} is already pending")))
            }
            btree_map::Entry::Vacant(slot) => {
                if let Some(deadline) = deadline {
                    self.deadlines.insert((deadline, slot.key().clone()));
                }
                slot.insert(Entry { id, deadline });
                Ok(())
            }
        }
    }

    /// A response arrived. If it answers a pending request, that request completes and
    /// `None` is returned; otherwise the response is handed back, unmatched, for the caller to
    /// report.
    pub fn handle_response(&mut self, response: Response) -> Option<Response> {
        match self.remove(&Key::from(&response.id)) {
            Some(id) => {
                let result = response.result.map_err(RpcError::Response);
                self.completions.push_back(Completion { id, result });
                None
            }
            None => Some(response),
        }
    }

    /// The answer to `id` arrived and its caller sees it elsewhere: it stops being pending,
    /// with no completion. Returns whether it was pending.
    pub(crate) fn settle(&mut self, id: &Id) -> bool {
        self.remove(&Key::from(id)).is_some()
    }

    /// The caller gave up on `id`. Returns whether it was still pending (and so whether a
    /// cancel notification is worth sending); it completes with [`RpcError::Cancelled`].
    pub fn cancel(&mut self, id: &Id) -> bool {
        match self.remove(&Key::from(id)) {
            Some(id) => {
                self.completions.push_back(Completion {
                    id,
                    result: Err(RpcError::Cancelled),
                });
                true
            }
            None => false,
        }
    }

    /// The ids of the requests still pending, in key order.
    pub(crate) fn pending_ids(&self) -> Vec<Id> {
        self.pending
            .values()
            .map(|entry| entry.id.clone())
            .collect()
    }

    /// The connection ended: every pending request fails at once, and later ones are refused.
    pub fn handle_disconnect(&mut self) {
        self.disconnected = true;
        self.deadlines.clear();
        for (_, entry) in std::mem::take(&mut self.pending) {
            self.completions.push_back(Completion {
                id: entry.id,
                result: Err(RpcError::Disconnected),
            });
        }
    }

    /// Time has passed: requests whose deadline is due fail with [`RpcError::TimedOut`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
    }

    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        while self
            .deadlines
            .first()
            .is_some_and(|(deadline, _)| *deadline <= now)
        {
            let Some((_, key)) = self.deadlines.pop_first() else {
                break;
            };
            if let Some(entry) = self.pending.remove(&key) {
                self.completions.push_back(Completion {
                    id: entry.id,
                    result: Err(RpcError::TimedOut),
                });
            }
        }
        now
    }

    fn remove(&mut self, key: &Key) -> Option<Id> {
        let entry = self.pending.remove(key)?;
        if let Some(deadline) = entry.deadline {
            self.deadlines.remove(&(deadline, key.clone()));
        }
        Some(entry.id)
    }

    /// The next request that has completed, in the order they completed.
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// The earliest deadline of a pending request.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// How many requests are waiting for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether `id` is waiting for an answer.
    pub fn is_pending(&self, id: &Id) -> bool {
        self.pending.contains_key(&Key::from(id))
    }
}
