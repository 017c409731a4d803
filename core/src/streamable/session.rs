//! One Streamable HTTP session: its program's messages routed to the client's open streams,
//! the client's to the program, and the session's end.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::stream::{event_id, parse_event_id, sse_event, Kind, Stored, Stream};
use super::{Post, Status, SERVER_ERROR};
use crate::{ErrorObject, Id, Message, Response};

/// The stream a `GET` opens; request streams are numbered from 1.
const STANDALONE: u64 = 0;

/// How a session bounds itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Bytes of events a session keeps, sent or not, for clients that reconnect. Over it, the
    /// oldest events already sent are forgotten first, then the oldest that wait for a client
    /// that is gone (a resumption from before them is refused, never answered with a gap).
    /// Events waiting for a client that is connected are never dropped: the program is read
    /// no further ([`Session::wants_child_output`]) until the client has taken them.
    pub buffer: usize,
    /// A session with no stream open and no request unanswered for this long is ended, its
    /// program shut down. An HTTP client that goes away says nothing, so `None` (never)
    /// would keep its program forever.
    pub idle_timeout: Option<Duration>,
    /// Requests' streams open at once; a POST over it is refused with 429.
    pub max_streams: usize,
}

impl Default for Settings {
    /// 4 MiB of events, 30 minutes idle, 128 streams.
    fn default() -> Self {
        Settings {
            buffer: 4 << 20,
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            max_streams: 128,
        }
    }
}

impl Settings {
    /// Sets [`buffer`](Self::buffer).
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`max_streams`](Self::max_streams).
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }
}

/// The reader of one stream: a response body being sent. A stream has one reader at a time;
/// a resumption (or a new `GET`) takes the stream over, and the reader it replaced ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sink {
    stream: u64,
    generation: u64,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A status and maybe a JSON body: 202 for messages that need no answer, 200 for a
    /// `DELETE`, or a refusal.
    Status(Status),
    /// 200 with a body taken from the session through [`Session::take`]: server-sent events
    /// when `sse`, else one JSON document.
    Stream {
        /// The body's reader.
        sink: Sink,
        /// Whether the body is `text/event-stream` (else `application/json`).
        sse: bool,
    },
}

/// The next part of a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Bytes to send: one event, or the whole JSON body.
    Data(Vec<u8>),
    /// Nothing yet: take again once the session has changed.
    Wait,
    /// The body is complete (or was taken over by another reader).
    End,
}

/// What the program must be sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ToChild {
    /// A message from the client.
    Message(Message),
    /// The session is over: close the program's input and shut it down.
    Close,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Taking requests.
    Open,
    /// Ended by the client, the owner or the idle timeout; the program is being shut down.
    Closing,
    /// The program has ended.
    Ended,
}

/// A request the program has not answered yet.
#[derive(Debug)]
struct Pending {
    id: Id,
    stream: u64,
    progress: Option<String>,
}

/// One session's state machine. See the [module documentation](super).
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    state: State,
    streams: BTreeMap<u64, Stream>,
    next_stream: u64,
    next_seq: u64,
    generation: u64,
    /// Unanswered requests by their id (as JSON, so that `1` and `"1"` differ).
    pending: BTreeMap<String, Pending>,
    /// Request streams by the progress token their request asked for.
    progress: BTreeMap<String, u64>,
    to_child: VecDeque<ToChild>,
    /// Bytes of every stream's kept events.
    kept: usize,
    /// Events dropped before a reader took them.
    dropped: u64,
    /// Since when nothing is open or pending.
    quiet_since: Option<Instant>,
}

impl Session {
    /// A new session, before its first request (which the adapter hands to
    /// [`handle_post`](Self::handle_post) next).
    pub fn new(settings: Settings, now: Instant) -> Self {
        let mut streams = BTreeMap::new();
        streams.insert(STANDALONE, Stream::new(Kind::Standalone));
        Session {
            settings,
            state: State::Open,
            streams,
            next_stream: STANDALONE + 1,
            next_seq: 1,
            generation: 0,
            pending: BTreeMap::new(),
            progress: BTreeMap::new(),
            to_child: VecDeque::new(),
            kept: 0,
            dropped: 0,
            quiet_since: Some(now),
        }
    }

    /// A POST's messages. Without requests they go to the program and the answer is 202.
    /// With requests, they go to the program and the answer is a stream that carries each
    /// request's response (and, for events, what the program says meanwhile). Refused with
    /// 400 if a request reuses the id of one still unanswered, 429 over
    /// [`Settings::max_streams`], 404 once the session is over.
    pub fn handle_post(&mut self, post: Post, now: Instant) -> Reply {
        if self.state != State::Open {
            return Reply::Status(Status::unknown_session());
        }
        let mut ids = Vec::new();
        for message in &post.messages {
            if let Message::Request(request) = message {
                let key = id_key(&request.id);
                if self.pending.contains_key(&key) || ids.iter().any(|(k, _, _)| *k == key) {
                    return Reply::Status(Status::error(
                        400,
                        ErrorObject::INVALID_REQUEST,
                        &format!("request id {} is already in use", request.id),
                    ));
                }
                ids.push((key, request.id.clone(), progress_token(&request.params)));
            }
        }
        if ids.is_empty() {
            self.forward(post.messages);
            self.settle(now);
            return Reply::Status(Status::empty(202));
        }
        let open = self
            .streams
            .values()
            .filter(|s| s.kind != Kind::Standalone && !s.done)
            .count();
        if open >= self.settings.max_streams {
            return Reply::Status(Status::error(
                429,
                SERVER_ERROR,
                "too many requests in progress in this session",
            ));
        }
        let number = self.next_stream;
        self.next_stream += 1;
        let kind = if post.sse {
            Kind::Events
        } else {
            Kind::Json { batch: post.batch }
        };
        let mut stream = Stream::new(kind);
        stream.open_requests = ids.len();
        self.generation += 1;
        stream.reader = Some(self.generation);
        self.streams.insert(number, stream);
        for (key, id, token) in ids {
            if let Some(token) = &token {
                self.progress.insert(token.clone(), number);
            }
            self.pending.insert(
                key,
                Pending {
                    id,
                    stream: number,
                    progress: token,
                },
            );
        }
        self.forward(post.messages);
        self.settle(now);
        Reply::Stream {
            sink: Sink {
                stream: number,
                generation: self.generation,
            },
            sse: post.sse,
        }
    }

    /// A GET: the stream for messages outside any request (taking it over from an earlier
    /// GET), or, with `Last-Event-ID`, the stream that event was on, from the event after it.
    /// A resumption is refused with 400 if the id is not one of this session's or if events
    /// after it are no longer kept; 404 once the session is over.
    pub fn handle_get(&mut self, last_event_id: Option<&str>, now: Instant) -> Reply {
        if self.state != State::Open {
            return Reply::Status(Status::unknown_session());
        }
        let number = match last_event_id {
            None => STANDALONE,
            Some(id) => {
                let resumable = parse_event_id(id).filter(|&(number, seq)| {
                    self.streams.get(&number).is_some_and(|stream| {
                        !matches!(stream.kind, Kind::Json { .. })
                            && stream.lost <= seq
                            && seq < self.next_seq
                    })
                });
                if let Some((number, seq)) = resumable {
                    if let Some(stream) = self.streams.get_mut(&number) {
                        stream.cursor = seq;
                    }
                }
                match resumable {
                    Some((number, _)) => number,
                    None => {
                        return Reply::Status(Status::error(
                            400,
                            SERVER_ERROR,
                            &format!("cannot resume after event {id}: it is unknown or the events after it are no longer kept"),
                        ))
                    }
                }
            }
        };
        self.generation += 1;
        if let Some(stream) = self.streams.get_mut(&number) {
            stream.reader = Some(self.generation);
        }
        self.settle(now);
        Reply::Stream {
            sink: Sink {
                stream: number,
                generation: self.generation,
            },
            sse: true,
        }
    }

    /// A DELETE: the session ends, its program is shut down; 200, or 404 if it was over.
    pub fn handle_delete(&mut self, now: Instant) -> Reply {
        if self.state != State::Open {
            return Reply::Status(Status::unknown_session());
        }
        self.close(now);
        Reply::Status(Status::empty(200))
    }

    /// Ends the session (its owner is stopping, say): requests still unanswered are answered
    /// with an error, every stream ends once read, and the program is to be shut down.
    pub fn close(&mut self, now: Instant) {
        if self.state == State::Open {
            self.state = State::Closing;
            self.abandon_requests("the session was closed");
            self.to_child.push_back(ToChild::Close);
            self.settle(now);
        }
    }

    /// The program ended (its output closed, or it exited): requests still unanswered are
    /// answered with an error, and the session is over.
    pub fn handle_child_end(&mut self, now: Instant) {
        if self.state != State::Ended {
            self.abandon_requests("the program ended");
            self.state = State::Ended;
            self.to_child.clear();
            self.settle(now);
        }
    }

    /// A message from the program. A response goes to the stream of its request. A progress
    /// notification goes to the stream of the request that asked for it by its token.
    /// Anything else goes to the `GET` stream while one is open, else to the newest open
    /// request stream, else is kept for the next `GET`.
    ///
    /// Once the session is over, every stream has ended and nobody can read a message any
    /// more: what the program says while it shuts down is counted in
    /// [`dropped`](Self::dropped) and goes nowhere.
    pub fn handle_child(&mut self, message: Message, now: Instant) {
        if self.state != State::Open {
            self.dropped += 1;
            return;
        }
        self.deliver(message);
        self.settle(now);
    }

    /// The next thing to do to the program.
    pub fn poll_child(&mut self) -> Option<ToChild> {
        self.to_child.pop_front()
    }

    /// The next part of the body `sink` is sending.
    pub fn take(&mut self, sink: Sink) -> Take {
        let Some(stream) = self.streams.get_mut(&sink.stream) else {
            return Take::End;
        };
        if stream.reader != Some(sink.generation) {
            return Take::End;
        }
        if let Some(body) = stream.body.take() {
            return Take::Data(body);
        }
        let cursor = stream.cursor;
        if let Some(event) = stream.events.iter().find(|e| e.seq > cursor) {
            stream.cursor = event.seq;
            let bytes = event.bytes.clone();
            // What was just taken may be forgotten, if the buffer is over.
            self.enforce();
            return Take::Data(bytes);
        }
        if stream.done {
            Take::End
        } else {
            Take::Wait
        }
    }

    /// `sink`'s response is over (sent, or its connection gone). Events it did not take stay
    /// for a resumption.
    pub fn detach(&mut self, sink: Sink, now: Instant) {
        if let Some(stream) = self.streams.get_mut(&sink.stream) {
            if stream.reader == Some(sink.generation) {
                stream.reader = None;
            }
        }
        self.settle(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due: the idle deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.state, self.quiet_since, self.settings.idle_timeout) {
            (State::Open, Some(since), Some(idle)) => since.checked_add(idle),
            _ => None,
        }
    }

    /// Ends the session if it has been idle for the idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            self.close(now);
        }
    }

    /// Whether the session takes requests; once not, it answers 404 and its id may be
    /// forgotten.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the program has ended ([`handle_child_end`](Self::handle_child_end)).
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Whether to read more from the program: false while the events kept are over the
    /// buffer because connected clients have not taken them yet. Once the session is over it
    /// is always true: what the program says then goes nowhere, and reading on lets it end
    /// however slowly a client reads what it was sent before.
    pub fn wants_child_output(&self) -> bool {
        self.state != State::Open || self.kept <= self.settings.buffer
    }

    /// Events dropped: over the buffer before the client they were for came back, or said by
    /// the program once the session was over.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes of events kept.
    pub fn kept(&self) -> usize {
        self.kept
    }

    fn forward(&mut self, messages: Vec<Message>) {
        self.to_child
            .extend(messages.into_iter().map(ToChild::Message));
    }

    fn deliver(&mut self, message: Message) {
        match message {
            Message::Batch(items) => items.into_iter().for_each(|m| self.deliver(m)),
            Message::Response(response) => match self.pending.remove(&id_key(&response.id)) {
                Some(pending) => self.answer(pending, response),
                None => self.push_unrelated(Message::Response(response)),
            },
            Message::Notification(note) => {
                let target = (note.method == "notifications/progress")
                    .then(|| note.params.as_ref()?.get("progressToken").map(token_key))
                    .flatten()
                    .and_then(|token| self.progress.get(&token).copied())
                    .filter(|n| self.streams.get(n).is_some_and(|s| s.kind == Kind::Events));
                match target {
                    Some(number) => self.push(number, &Message::Notification(note)),
                    None => self.push_unrelated(Message::Notification(note)),
                }
            }
            request @ Message::Request(_) => self.push_unrelated(request),
        }
    }

    /// Gives `response` to the stream of its request, which is done once all are answered.
    fn answer(&mut self, pending: Pending, response: Response) {
        if let Some(token) = &pending.progress {
            self.progress.remove(token);
        }
        let Some(stream) = self.streams.get_mut(&pending.stream) else {
            return;
        };
        stream.open_requests = stream.open_requests.saturating_sub(1);
        let last = stream.open_requests == 0;
        if stream.kind == Kind::Events {
            self.push(pending.stream, &Message::Response(response));
            if let Some(stream) = self.streams.get_mut(&pending.stream) {
                stream.done |= last;
            }
        } else {
            stream.answer(response);
        }
    }

    fn push_unrelated(&mut self, message: Message) {
        let standalone = self.streams.get(&STANDALONE);
        let target = if standalone.is_some_and(|s| s.reader.is_some()) {
            STANDALONE
        } else {
            self.streams
                .iter()
                .rev()
                .find(|(_, s)| s.is_open_events())
                .map_or(STANDALONE, |(n, _)| *n)
        };
        self.push(target, &message);
    }

    fn push(&mut self, number: u64, message: &Message) {
        let seq = self.next_seq;
        // A stream that ended takes nothing more: its reader has been told it is complete.
        let Some(stream) = self.streams.get_mut(&number).filter(|s| !s.done) else {
            self.dropped += 1;
            return;
        };
        self.next_seq += 1;
        let bytes = sse_event(&event_id(number, seq), message);
        self.kept += bytes.len();
        stream.events.push_back(Stored { seq, bytes });
    }

    /// Answers every unanswered request with an error, and ends every stream.
    fn abandon_requests(&mut self, why: &str) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            let error = ErrorObject::new(ErrorObject::INTERNAL_ERROR, why);
            let id = pending.id.clone();
            self.answer(pending, Response::error(id, error));
        }
        self.progress.clear();
        for stream in self.streams.values_mut() {
            stream.done = true;
        }
    }

    /// Keeps the buffer's bound, forgets streams with nothing left, and notes whether the
    /// session is idle.
    fn settle(&mut self, now: Instant) {
        self.enforce();
        let quiet = self.pending.is_empty() && self.streams.values().all(|s| s.reader.is_none());
        self.quiet_since = match (quiet, self.quiet_since) {
            (true, since) => Some(since.unwrap_or(now)),
            (false, _) => None,
        };
    }

    /// Forgets events over the buffer: the oldest already taken first, then the oldest whose
    /// reader is gone; then streams with nothing left.
    fn enforce(&mut self) {
        while self.kept > self.settings.buffer {
            let taken = self
                .streams
                .iter()
                .filter_map(|(n, s)| Some((s.events.front()?.seq, *n, s)))
                .filter(|(seq, _, s)| *seq <= s.cursor)
                .min_by_key(|(seq, _, _)| *seq);
            let victim = taken.map(|(_, n, _)| (n, false)).or_else(|| {
                self.streams
                    .iter()
                    .filter(|(_, s)| s.reader.is_none())
                    .filter_map(|(n, s)| Some((s.events.front()?.seq, *n)))
                    .min()
                    .map(|(_, n)| (n, true))
            });
            let Some((number, unsent)) = victim else {
                break;
            };
            if let Some(stream) = self.streams.get_mut(&number) {
                if let Some(event) = stream.events.pop_front() {
                    stream.lost = stream.lost.max(event.seq);
                    stream.cursor = stream.cursor.max(event.seq);
                    self.kept -= event.bytes.len();
                    self.dropped += u64::from(unsent);
                }
            }
        }
        self.streams.retain(|&n, s| {
            n == STANDALONE
                || !s.done
                || s.reader.is_some()
                || s.body.is_some()
                || !s.events.is_empty()
        });
    }
}

/// An id as a map key: its JSON, so that the number 1 and the string "1" stay apart.
fn id_key(id: &Id) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

fn token_key(token: &Value) -> String {
    token.to_string()
}

/// The progress token a request's `params._meta.progressToken` asks for.
fn progress_token(params: &Option<Value>) -> Option<String> {
    params
        .as_ref()?
        .get("_meta")?
        .get("progressToken")
        .map(token_key)
}
