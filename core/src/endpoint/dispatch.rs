//! Requests and responses as the endpoint decides them: which response answers which request,
//! what the peer is owed when nobody answers it, and when a batch's answer is complete.
//!
//! Every decision here produces messages for the endpoint to send (automatic replies, cancel
//! notifications, a batch's answers as one array) rather than sending them itself, so that the
//! endpoint keeps the one write queue.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::correlator::Key;
use crate::{
    Correlator, ErrorObject, Id, Malformed, MalformedKind, Message, Notification, Response,
    RpcError,
};

/// Builds the notification sent when a request is given up, such as MCP's
/// `notifications/cancelled` with `{"requestId": id}` or LSP's `$/cancelRequest`.
pub type CancelNotification = Arc<dyn Fn(&Id) -> Notification + Send + Sync>;

/// How much of the request layer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Messages pass through untouched.
    Off,
    /// Requests the owner sends are tracked and their responses noted, but every message is
    /// still delivered (the `tether` command prints them all).
    Track,
    /// The request layer: responses to our requests are consumed and become results, the
    /// peer's requests are owed an answer.
    Serve,
}

/// Where a request of the peer came from, so its answer goes out the right way.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Single,
    Batch(u64),
}

/// The answers collected for one batch of the peer's.
#[derive(Debug, Default)]
struct Batch {
    waiting: usize,
    answers: Vec<Message>,
}

/// Why [`Endpoint::respond`](crate::Endpoint::respond) could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// No request of the peer's with this id is waiting for an answer (it was answered
    /// already, or never came).
    #[error("no request {0} is waiting for an answer")]
    NotPending(Id),
}

pub(crate) struct Dispatch {
    pub(crate) mode: Mode,
    pub(crate) correlator: Correlator,
    /// Results of our requests, until their callers take them.
    results: BTreeMap<Key, Result<Value, RpcError>>,
    /// The peer's requests that are owed an answer.
    owed: BTreeMap<Key, Origin>,
    batches: BTreeMap<u64, Batch>,
    next_batch: u64,
    /// Whether anyone serves the peer's requests; when not, they are answered `-32601`.
    pub(crate) serving: bool,
    pub(crate) cancel: Option<CancelNotification>,
    /// Messages decided here, for the endpoint to send in order.
    pub(crate) outbox: VecDeque<Message>,
    /// The goodbye request under way, whose answer is not a caller's result.
    pub(crate) goodbye: Option<Id>,
    /// Results arrived since the driver last asked.
    pub(crate) results_ready: bool,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("mode", &self.mode)
            .field("pending", &self.correlator.pending())
            .field("owed", &self.owed.len())
            .field("serving", &self.serving)
            .finish_non_exhaustive()
    }
}

impl Dispatch {
    pub(crate) fn new() -> Self {
        Dispatch {
            mode: Mode::Off,
            correlator: Correlator::new(),
            results: BTreeMap::new(),
            owed: BTreeMap::new(),
            batches: BTreeMap::new(),
            next_batch: 0,
            serving: true,
            cancel: None,
            outbox: VecDeque::new(),
            goodbye: None,
            results_ready: false,
        }
    }

    /// Tracks every request in a message the owner sends (`Track` mode).
    pub(crate) fn track(&mut self, now: std::time::Instant, message: &Message) {
        match message {
            Message::Request(request) => self.track_one(now, &request.id),
            Message::Batch(items) => items.iter().for_each(|item| self.track(now, item)),
            _ => {}
        }
        self.collect();
    }

    /// Tracks the requests of a message sent as its bytes, by their ids.
    pub(crate) fn track_ids<'a>(
        &mut self,
        now: std::time::Instant,
        ids: impl IntoIterator<Item = &'a Id>,
    ) {
        ids.into_iter().for_each(|id| self.track_one(now, id));
        self.collect();
    }

    fn track_one(&mut self, now: std::time::Instant, id: &Id) {
        // An id reused while pending is tracked once: its first answer counts.
        let _ = self.correlator.track(now, id.clone(), None);
    }

    /// Routes one message from the peer. Returns what the owner still gets to see, if
    /// anything.
    pub(crate) fn route(&mut self, message: Message) -> Option<Message> {
        match self.mode {
            // Nothing is tracked but a goodbye, if one is under way.
            Mode::Off if self.correlator.pending() == 0 => Some(message),
            Mode::Off | Mode::Track => {
                self.note_responses(&message);
                Some(message)
            }
            Mode::Serve => match message {
                Message::Batch(items) => {
                    let batch = self.next_batch;
                    self.next_batch += 1;
                    let kept: Vec<Message> = items
                        .into_iter()
                        .filter_map(|item| self.route_one(item, Origin::Batch(batch)))
                        .collect();
                    self.finish_batch(batch);
                    match kept.len() {
                        0 => None,
                        _ => Some(Message::Batch(kept)),
                    }
                }
                single => self.route_one(single, Origin::Single),
            },
        }
    }

    /// Marks the requests a message answers, leaving the message to the owner.
    fn note_responses(&mut self, message: &Message) {
        match message {
            Message::Response(response) => {
                self.correlator.settle(&response.id);
            }
            Message::Batch(items) => items.iter().for_each(|item| self.note_responses(item)),
            _ => {}
        }
    }

    /// Whether the goodbye request under way has been answered (or given up on).
    pub(crate) fn goodbye_settled(&self) -> bool {
        self.goodbye
            .as_ref()
            .is_some_and(|id| !self.correlator.is_pending(id))
    }

    fn route_one(&mut self, message: Message, origin: Origin) -> Option<Message> {
        match message {
            Message::Response(response) if self.goodbye.as_ref() == Some(&response.id) => {
                self.correlator.settle(&response.id);
                Some(Message::Response(response))
            }
            Message::Response(response) => {
                let unmatched = self.correlator.handle_response(response);
                self.collect();
                unmatched.map(Message::Response)
            }
            Message::Request(request) => {
                let key = Key::from(&request.id);
                if self.owed.contains_key(&key) {
                    // Its answer could not be told apart from the other's.
                    let error = ErrorObject::new(
                        ErrorObject::INVALID_REQUEST,
                        format!("request id {} is already waiting for an answer", request.id),
                    );
                    self.answer(origin, Response::error(request.id, error));
                    return None;
                }
                if !self.serving {
                    let error = ErrorObject::new(
                        ErrorObject::METHOD_NOT_FOUND,
                        format!("no handler for {}", request.method),
                    );
                    self.answer(origin, Response::error(request.id, error));
                    return None;
                }
                if let Origin::Batch(batch) = origin {
                    self.batches.entry(batch).or_default().waiting += 1;
                }
                self.owed.insert(key, origin);
                Some(Message::Request(request))
            }
            other => Some(other),
        }
    }

    /// Queues an answer: at once for a single request, into its batch otherwise.
    fn answer(&mut self, origin: Origin, response: Response) {
        match origin {
            Origin::Single => self.outbox.push_back(response.into()),
            Origin::Batch(batch) => {
                self.batches
                    .entry(batch)
                    .or_default()
                    .answers
                    .push(response.into());
            }
        }
    }

    /// Sends a batch's answers as one array once none is outstanding (JSON-RPC 2.0 §6); a
    /// batch of notifications only gets nothing.
    fn finish_batch(&mut self, batch: u64) {
        if self.batches.get(&batch).is_some_and(|b| b.waiting == 0) {
            if let Some(done) = self.batches.remove(&batch) {
                if !done.answers.is_empty() {
                    self.outbox.push_back(Message::Batch(done.answers));
                }
            }
        }
    }

    /// The owner's answer to a request of the peer's.
    pub(crate) fn respond(
        &mut self,
        id: Id,
        result: Result<Value, ErrorObject>,
    ) -> Result<(), RespondError> {
        let Some(origin) = self.owed.remove(&Key::from(&id)) else {
            return Err(RespondError::NotPending(id));
        };
        self.answer(origin, Response { id, result });
        if let Origin::Batch(batch) = origin {
            if let Some(b) = self.batches.get_mut(&batch) {
                b.waiting -= 1;
            }
            self.finish_batch(batch);
        }
        Ok(())
    }

    /// The owner will not answer `id` (its responder was dropped): the peer gets `-32603`
    /// rather than wait for ever.
    pub(crate) fn decline(&mut self, id: Id) {
        let error = ErrorObject::new(ErrorObject::INTERNAL_ERROR, "the request was not answered");
        let _ = self.respond(id, Err(error));
    }

    /// The answer owed to a frame that was not a message, when malformed frames are answered.
    pub(crate) fn answer_malformed(&mut self, malformed: &Malformed) {
        let code = match malformed.kind {
            MalformedKind::NotJsonRpc { .. } => ErrorObject::INVALID_REQUEST,
            _ => ErrorObject::PARSE_ERROR,
        };
        let error = ErrorObject::new(code, malformed.kind.to_string());
        self.outbox
            .push_back(Response::error(Id::Null, error).into());
    }

    /// Takes the correlator's completions: each becomes a result for its caller, and one that
    /// timed out tells the peer to stop. Called after every call into the correlator, which
    /// may complete requests whose deadline has passed whatever the call was for.
    pub(crate) fn collect(&mut self) {
        while let Some(done) = self.correlator.poll_completion() {
            if self.goodbye.as_ref() == Some(&done.id) {
                // The goodbye's answer is the owner's to see as a message; a goodbye that
                // timed out needs no cancelling, the ladder follows.
                continue;
            }
            match done.result {
                // Only its caller cancels a request, and it no longer waits for a result.
                Err(RpcError::Cancelled) => continue,
                Err(RpcError::TimedOut) => self.notify_cancel(&done.id),
                _ => {}
            }
            if self.mode == Mode::Serve {
                self.results.insert(Key::from(&done.id), done.result);
                self.results_ready = true;
            }
        }
    }

    fn notify_cancel(&mut self, id: &Id) {
        if let Some(build) = &self.cancel {
            self.outbox.push_back(build(id).into());
        }
    }

    /// The caller gave up on `id`: the peer is told to stop if it was still pending.
    pub(crate) fn cancel(&mut self, id: &Id) {
        self.results.remove(&Key::from(id));
        if self.correlator.cancel(id) {
            self.notify_cancel(id);
        }
        self.collect();
    }

    pub(crate) fn take_result(&mut self, id: &Id) -> Option<Result<Value, RpcError>> {
        self.results.remove(&Key::from(id))
    }

    /// The connection ended: every pending request fails, and nothing more is owed to the
    /// peer.
    pub(crate) fn disconnect(&mut self) {
        self.correlator.handle_disconnect();
        self.collect();
        self.owed.clear();
        self.batches.clear();
        self.outbox.clear();
    }

    /// A new peer takes the old one's place (a restarted child): the old one's requests are
    /// owed nothing any more.
    pub(crate) fn new_peer(&mut self) {
        self.owed.clear();
        self.batches.clear();
    }

    /// The requests of ours still waiting for an answer, the goodbye aside.
    pub(crate) fn unanswered(&self) -> Vec<Id> {
        let mut ids = self.correlator.pending_ids();
        ids.retain(|id| self.goodbye.as_ref() != Some(id));
        ids
    }

    /// How many requests of ours wait for an answer.
    pub(crate) fn pending(&self) -> usize {
        self.correlator.pending()
    }
}
