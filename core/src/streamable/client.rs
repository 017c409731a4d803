//! The client side of the Streamable HTTP transport, with no HTTP in it: which request to
//! make when, with which headers, what a response means, when a dropped stream is resumed
//! and after what wait, and when the session is over. See [`Client`].
//!
//! Both eras of MCP go through the same client, chosen message by message by what the owner
//! sends: `initialize` starts a legacy session (`Mcp-Session-Id`, the `GET` stream,
//! resumption, `DELETE`); a message whose `params._meta` names a modern revision
//! ([`modern::is_modern`]) is an exchange of its own, without state.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::modern::{self, Mirror};
use super::Method;
use crate::{Id, Request};

/// How many times in a row a `GET` stream is reopened without receiving anything before the
/// client gives up on it (the POSTs go on).
pub const RECONNECTS: u32 = 5;

/// The wait before reopening a stream (a `GET` stream, or a POST's stream that ended before
/// its answer), unless the server said otherwise (`retry:`, which a client must respect); it
/// doubles with each reconnection in a row that received nothing.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// The longest wait before reopening a stream, whatever `retry:` says and however often it
/// has doubled: a server's wait of years would otherwise leave a stream closed for good (or,
/// past what a deadline can hold, reopen it at once).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(60);

/// How much of a refusal's body is quoted in the reason (or warning) that reports it.
pub const QUOTE: usize = 4096;

/// The JSON-RPC code of the error response a modern request gets when its exchange failed
/// without a JSON-RPC error of the server's to hand on: refused with a body that is not one,
/// unreachable, or cut before its answer (an implementation-defined server error; `data`
/// holds the HTTP status when there was one).
pub const EXCHANGE_FAILED: i64 = -32000;

/// One HTTP exchange: a request and its response. Each reconnection is a new exchange; input
/// about an exchange the client no longer wants is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Exchange(u64);

/// A request to make, each on a connection of its own (an SSE response keeps its HTTP/1.1
/// connection until it ends). The adapter adds the URL's headers, `Accept`
/// ([`JSON`](super::JSON) and [`EVENT_STREAM`](super::EVENT_STREAM) for a POST or a
/// `DELETE`, the latter for a `GET`) and, for a POST, `Content-Type: application/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Which exchange the response belongs to.
    pub exchange: Exchange,
    /// `POST` (a message), `GET` (a stream) or `DELETE` (the session's end).
    pub method: Method,
    /// `Mcp-Session-Id`, once the initialize response named one.
    pub session: Option<Vec<u8>>,
    /// `MCP-Protocol-Version`, once the initialize answer named one.
    pub protocol_version: Option<Vec<u8>>,
    /// `Last-Event-ID`, when a `GET` resumes a stream.
    pub last_event_id: Option<Vec<u8>>,
    /// For a modern message, the headers that mirror its body ([`Mirror::headers`]: the
    /// version, the method and, where the method names something, that name, each already
    /// in its `=?base64?…?=` form where HTTP needs it); a modern message carries no session
    /// and no negotiated version. Empty for the legacy era.
    pub mirrored: Vec<(&'static str, String)>,
    /// The message, for a POST; empty otherwise.
    pub body: Vec<u8>,
}

/// The parts of a response's head the transport decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The status code.
    pub status: u16,
    /// Its reason phrase, quoted in the reason (or warning) that reports a refusal.
    pub reason: Option<&'a str>,
    /// `Mcp-Session-Id`, if the response has one.
    pub session: Option<&'a [u8]>,
    /// `Content-Type`, if any.
    pub content_type: Option<&'a str>,
}

/// How to read a response's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Not at all: drop the response.
    Nothing,
    /// As one JSON text, up to the adapter's limit, into [`Client::handle_body`] (or, if it
    /// cannot be read, [`Client::handle_failure`]).
    Json,
    /// As server-sent events, each into [`Client::handle_event`], then
    /// [`Client::handle_end`] when the stream ends or fails.
    Events,
    /// Its first `limit` bytes (fewer if it ends or fails first), into
    /// [`Client::handle_body`]: the quote of a refusal.
    Quote {
        /// How many bytes are wanted.
        limit: usize,
    },
}

/// One server-sent event's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Event<'a> {
    /// `id:`, the cursor a resumption starts after.
    pub id: Option<&'a str>,
    /// `data:`, a message (or nothing, for a priming event).
    pub data: Option<&'a str>,
    /// `retry:`, the server's wait before reconnecting, in milliseconds.
    pub retry: Option<u64>,
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// Why, if not cleanly (the connection closed): the server ended the session, refused a
    /// POST (`HTTP 401 Unauthorized from POST: …`, with the start of its body), or a request
    /// failed. The transport hands it to the connection as a read error, so that the owner's
    /// `Disconnected` names it: a refusal is the end of the conversation, never a message.
    pub reason: Option<String>,
}

/// What a flow of exchanges is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The `initialize` request: nothing else goes before its answer.
    Initialize,
    /// Another request, a notification or a batch: the next waits until the server started
    /// answering this one.
    Other,
    /// Our answer to the server's request: waits for nothing and holds nothing back.
    Answer,
    /// The server's own stream, opened with `GET` once the session exists.
    Listen,
    /// The session's end.
    Delete,
    /// A modern message (its `_meta` names a modern revision): a POST of its own, no session,
    /// no resumption; waits for nothing and holds nothing back. A request's failures are
    /// answered to the owner as that request's error response, never the session's end.
    Modern,
}

/// How the current exchange's body is being read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    /// The response has not come yet.
    Head,
    /// A JSON body.
    Json,
    /// Server-sent events.
    Events,
    /// The quote of a refusal by `method`, with the status as text: the end of the session
    /// for a POST, a warning for a `GET`.
    Refusal(&'static str, String),
    /// The quote of a body that is neither JSON nor SSE.
    Unknown(String),
    /// A modern exchange that brought no answer: the JSON-RPC error in the body (or, for a
    /// body that has none, the quote) becomes the request's answer.
    Unanswered {
        /// What happened: `HTTP 400 Bad Request from POST`.
        what: String,
        /// The status.
        status: u16,
    },
}

/// One message's exchanges, or one stream's: a POST, then, if its stream drops before the
/// answer, the `GET`s that resume it; or the `GET` stream and its reopenings.
#[derive(Debug)]
struct Flow {
    role: Role,
    /// The current exchange, if one is under way (none while waiting to reopen).
    exchange: Option<Exchange>,
    reading: Reading,
    /// The request whose answer ends the stream.
    until: Option<Value>,
    /// Whether it has gone on to `GET`s.
    resuming: bool,
    /// The last event id seen, for `Last-Event-ID`.
    last_id: Option<Vec<u8>>,
    /// The wait before reopening: the server's `retry:`, else [`RECONNECT_DELAY`].
    delay: Duration,
    /// Reopenings in a row that received nothing.
    failures: u32,
    /// Whether the current stream carried anything (an event id or a message).
    received: bool,
    /// When to (re)open its `GET`.
    reopen_at: Option<Instant>,
    /// Whether the next message waits for it.
    blocking: bool,
}

impl Flow {
    fn new(role: Role, until: Option<Value>) -> Self {
        Flow {
            role,
            exchange: None,
            reading: Reading::Head,
            until,
            resuming: false,
            last_id: None,
            delay: RECONNECT_DELAY,
            failures: 0,
            received: false,
            reopen_at: None,
            blocking: matches!(role, Role::Initialize | Role::Other),
        }
    }
}

/// What happens to a flow after an input.
enum Next {
    /// It goes on.
    Stay,
    /// It is over.
    Done,
}

/// A Streamable HTTP client's state machine.
///
/// The adapter owns the HTTP connections and the clock. It hands the client each message the
/// owner wants sent ([`Client::handle_message`]), makes every request
/// [`poll_request`](Client::poll_request) returns, reads each response's head into a
/// [`ResponseHead`] for [`handle_response`](Client::handle_response) and then reads the body
/// the way the answer ([`Read`]) says: server-sent events one by one into
/// [`handle_event`](Client::handle_event), or the whole body into
/// [`handle_body`](Client::handle_body). The messages received come out of
/// [`poll_message`](Client::poll_message), whole, one JSON text (or batch) each; the session's
/// end out of [`poll_end`](Client::poll_end). Time is an argument: when a dropped stream is due
/// to be reopened is [`poll_timeout`](Client::poll_timeout), acted on by
/// [`handle_timeout`](Client::handle_timeout); the adapter only sleeps until then.
///
/// The decisions are the transport's: nothing is sent before the initialize answer (it
/// carries the session id and the protocol revision every later request needs); answers to
/// the server's requests go at once (what the server does next may wait for them); other
/// messages go in the order written, each once the server has started to answer the one
/// before; a stream dropped before its answer is resumed with `GET` and `Last-Event-ID` after
/// the server's `retry:` wait (else [`RECONNECT_DELAY`]), reopened after a backoff a bounded
/// number of times; a 404 once the session exists means the server ended it; any other
/// refusal of a POST ends the session with the status and the start of the body as the
/// reason; a refused `GET` stream is given up with a warning, and the POSTs go on.
///
/// A modern message (its `params._meta` names a modern revision) is none of that: it goes at
/// its turn in a POST of its own, with its mirrored headers ([`HttpRequest::mirrored`]) and
/// no session, and holds nothing back, so that requests in flight together each have their
/// own exchange and their answers come in any order. Its answer is the JSON body or the last
/// event of its own stream, after the stream's notifications; a notification expects 202. A
/// modern request that fails never ends the session: a refusal's JSON-RPC error is handed on
/// as the request's answer (with its id), and a refusal without one, a failed POST or a
/// stream cut before the answer become an error response with [`EXCHANGE_FAILED`]. A
/// `notifications/cancelled` naming a modern request in flight drops that exchange instead
/// of being sent: closing the stream is the modern era's cancellation.
#[derive(Debug, Default)]
pub struct Client {
    /// Messages not sent yet, in order.
    queue: VecDeque<Vec<u8>>,
    flows: Vec<Flow>,
    next_exchange: u64,
    requests: VecDeque<HttpRequest>,
    /// Received messages for the connection, in order.
    messages: VecDeque<Vec<u8>>,
    /// What is worth a warning in the log and reaches the owner by no other way.
    warnings: VecDeque<String>,
    end: Option<End>,
    /// Whether the session has ended (its end may not have been polled yet).
    ended: bool,
    /// `Mcp-Session-Id` from the initialize response.
    session: Option<Vec<u8>>,
    /// `protocolVersion` from the initialize answer.
    protocol: Option<Vec<u8>>,
    /// Whether the `GET` stream has been opened.
    listening: bool,
    /// The connection closed its write side.
    input_closed: bool,
    /// The session is being closed: streams that end now are neither reopened nor reported.
    closing: bool,
}

impl Client {
    /// A client with no session yet; the first message is normally `initialize`.
    pub fn new() -> Self {
        Client::default()
    }

    /// A message the owner wants sent: one JSON text or batch, whole. A blank one is
    /// ignored. It is sent once the messages before it allow
    /// ([`wants_message`](Self::wants_message) says when the client takes the next without
    /// holding it).
    ///
    /// A `notifications/cancelled` whose `requestId` names a modern request in flight is not
    /// sent: that request's exchange is dropped (closing its stream is how the modern era
    /// cancels), and nothing more of it is received.
    pub fn handle_message(&mut self, message: &[u8], now: Instant) {
        let message = trim_end(message);
        if message.is_empty() || self.ended || self.closing {
            return;
        }
        // With nothing queued the message is looked at at once below; behind a queue, a
        // cancellation of a request already under way must not wait for the queue.
        if !self.queue.is_empty() && self.flows.iter().any(|f| f.role == Role::Modern) {
            let parsed = serde_json::from_slice(message).unwrap_or(Value::Null);
            if self.cancels(&parsed) {
                return;
            }
        }
        self.queue.push_back(message.to_vec());
        self.advance(now);
    }

    /// Whether the next message would be sent at once: taking messages no faster than they
    /// can be sent leaves the owner held back by its send budget, as a socket would.
    pub fn wants_message(&self) -> bool {
        self.queue.is_empty() && !self.blocked() && !self.ended && !self.closing
    }

    /// The owner closed its write side: once the messages before are sent, the session is
    /// ended with `DELETE` if there is one (and ends when that is answered), else at once.
    pub fn handle_close(&mut self, now: Instant) {
        self.input_closed = true;
        self.advance(now);
    }

    /// The next request to make.
    pub fn poll_request(&mut self) -> Option<HttpRequest> {
        self.requests.pop_front()
    }

    /// The next message received, whole, as the server sent it: one JSON text or batch.
    pub fn poll_message(&mut self) -> Option<Vec<u8>> {
        self.messages.pop_front()
    }

    /// The next warning for the log: a stream given up on or refused, a body that is neither
    /// JSON nor SSE; what the owner is not otherwise told about.
    pub fn poll_warning(&mut self) -> Option<String> {
        self.warnings.pop_front()
    }

    /// The session's end, once: after it, nothing more is wanted (every exchange may be
    /// dropped) and every input is ignored. The messages received before it are still polled
    /// first.
    pub fn poll_end(&mut self) -> Option<End> {
        self.end.take()
    }

    /// Whether the session has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether `exchange` is still wanted; once not, the adapter drops its connection.
    pub fn wants(&self, exchange: Exchange) -> bool {
        !self.ended && self.flows.iter().any(|f| f.exchange == Some(exchange))
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due: the next stream to reopen (or to
    /// resume, after the server's `retry:`).
    /// Nothing once the session has ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        self.flows.iter().filter_map(|f| f.reopen_at).min()
    }

    /// Reopens the streams whose wait is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        for index in 0..self.flows.len() {
            if self.flows[index].reopen_at.is_some_and(|at| at <= now) {
                self.flows[index].reopen_at = None;
                self.get(index);
            }
        }
    }

    /// A request could not be made or its response not read: the connection failed, or a
    /// JSON body was unreadable (`error` says why). A failed POST, or an unreadable answer to
    /// one, ends the session; a failed `GET` is tried again.
    pub fn handle_failure(&mut self, exchange: Exchange, error: &str, now: Instant) {
        let Some(index) = self.flow(exchange) else {
            return;
        };
        let flow = &self.flows[index];
        let next = match (&flow.reading, flow.role, flow.resuming) {
            (Reading::Head, Role::Modern, _) => {
                self.unanswered(index, failed(format!("POST failed: {error}"), None));
                Next::Done
            }
            (Reading::Json, Role::Modern, _) => {
                let what = format!("the JSON response could not be read: {error}");
                self.unanswered(index, failed(what, None));
                Next::Done
            }
            (Reading::Head, Role::Delete, _) => {
                self.finish(None);
                Next::Done
            }
            (Reading::Head, Role::Listen, _) | (Reading::Head, _, true) => self.dropped(index, now),
            (Reading::Head, _, false) => {
                if !self.closing {
                    self.finish(Some(format!("POST failed: {error}")));
                }
                Next::Done
            }
            (Reading::Json, _, _) => {
                if !self.closing {
                    self.finish(Some(format!(
                        "the JSON response could not be read: {error}"
                    )));
                }
                Next::Done
            }
            (Reading::Events, _, _) => return self.handle_end(exchange, now),
            (Reading::Refusal(..) | Reading::Unknown(_) | Reading::Unanswered { .. }, _, _) => {
                return self.handle_body(exchange, b"", now)
            }
        };
        self.settle(index, next, now);
    }

    /// A response's head: says how to read its body.
    pub fn handle_response(
        &mut self,
        exchange: Exchange,
        head: ResponseHead<'_>,
        now: Instant,
    ) -> Read {
        let Some(index) = self.flow(exchange) else {
            return Read::Nothing;
        };
        let success = (200..300).contains(&head.status);
        let flow = &mut self.flows[index];
        let (read, next) = match flow.role {
            Role::Modern => {
                let kind = content_kind(head.content_type);
                match (success, kind) {
                    // A notification's 202: delivered.
                    (true, _) if flow.until.is_none() => (Read::Nothing, Next::Done),
                    (true, Some(true)) => {
                        flow.reading = Reading::Events;
                        (Read::Events, Next::Stay)
                    }
                    (true, Some(false)) => {
                        flow.reading = Reading::Json;
                        (Read::Json, Next::Stay)
                    }
                    // A refusal, or a success with no answer: the body's JSON-RPC error, if
                    // it is JSON (read whole: the server's error data is the user's), else
                    // its quote.
                    _ => {
                        flow.reading = Reading::Unanswered {
                            what: format!("HTTP {} from POST", status_text(head)),
                            status: head.status,
                        };
                        match kind {
                            Some(false) => (Read::Json, Next::Stay),
                            _ => (Read::Quote { limit: QUOTE }, Next::Stay),
                        }
                    }
                }
            }
            Role::Delete => {
                self.finish(None);
                (Read::Nothing, Next::Done)
            }
            _ if flow.role == Role::Listen || flow.resuming => match head.status {
                405 => (Read::Nothing, Next::Done),
                _ if !success => self.refused(index, "GET", head),
                _ => {
                    flow.reading = Reading::Events;
                    flow.received = false;
                    (Read::Events, Next::Stay)
                }
            },
            role => {
                if role == Role::Initialize && success {
                    if let Some(session) = head.session {
                        self.session = Some(session.to_vec());
                    }
                }
                let flow = &mut self.flows[index];
                match head.status {
                    202 => (Read::Nothing, Next::Done),
                    _ if !success => self.refused(index, "POST", head),
                    _ => match content_kind(head.content_type) {
                        Some(true) => {
                            flow.reading = Reading::Events;
                            // The server has the message: the next may go.
                            flow.blocking &= role == Role::Initialize;
                            (Read::Events, Next::Stay)
                        }
                        Some(false) => {
                            flow.reading = Reading::Json;
                            (Read::Json, Next::Stay)
                        }
                        None => {
                            flow.reading = Reading::Unknown(status_text(head));
                            (Read::Quote { limit: QUOTE }, Next::Stay)
                        }
                    },
                }
            }
        };
        self.settle(index, next, now);
        read
    }

    /// A whole body read as [`Read::Json`], or the quote read as [`Read::Quote`].
    pub fn handle_body(&mut self, exchange: Exchange, body: &[u8], now: Instant) {
        let Some(index) = self.flow(exchange) else {
            return;
        };
        let flow = &self.flows[index];
        match &flow.reading {
            Reading::Json if flow.role == Role::Modern => {
                let answered = flow
                    .until
                    .clone()
                    .is_some_and(|id| self.answers(body, &id, false));
                self.message(body);
                if !answered {
                    let what = "the JSON response does not answer the request".to_owned();
                    self.unanswered(index, failed(what, None));
                }
            }
            Reading::Unanswered { what, status } => {
                let error = rpc_error(body).unwrap_or_else(|| {
                    let body = quote(body);
                    let what = match body.is_empty() {
                        true => what.clone(),
                        false => format!("{what}: {body}"),
                    };
                    failed(what, Some(*status))
                });
                self.unanswered(index, error);
            }
            Reading::Json => {
                if let (Role::Initialize, Some(id)) = (flow.role, flow.until.clone()) {
                    self.answers(body, &id, true);
                }
                self.message(body);
            }
            Reading::Refusal(method, status) => {
                let text = format!("HTTP {status} from {method}: {}", quote(body));
                let text = text.trim_end().to_owned();
                match *method {
                    // The GET stream is optional: the POSTs go on without it.
                    "GET" => self
                        .warnings
                        .push_back(format!("{text}; the stream is not reopened")),
                    _ => self.finish(Some(text)),
                }
            }
            Reading::Unknown(status) => {
                let body = quote(body);
                if !body.trim().is_empty() {
                    self.warnings.push_back(format!(
                        "HTTP {status}: a body that is neither JSON nor SSE: {body}"
                    ));
                }
            }
            Reading::Head | Reading::Events => return,
        }
        self.settle(index, Next::Done, now);
    }

    /// One server-sent event. A stream that carried the answer it was waiting for is done
    /// ([`wants`](Self::wants) turns false).
    pub fn handle_event(&mut self, exchange: Exchange, event: Event<'_>, now: Instant) {
        let Some(index) = self.flow(exchange) else {
            return;
        };
        let flow = &mut self.flows[index];
        if flow.reading != Reading::Events {
            return;
        }
        if let Some(id) = event.id.filter(|id| is_header_value(id.as_bytes())) {
            flow.last_id = Some(id.as_bytes().to_vec());
            flow.received = true;
        }
        if let Some(retry) = event.retry {
            flow.delay = Duration::from_millis(retry);
        }
        // A priming event carries an id and no message.
        let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
            return;
        };
        flow.received = true;
        let initialize = flow.role == Role::Initialize;
        let answered = flow
            .until
            .clone()
            .is_some_and(|id| self.answers(data.as_bytes(), &id, initialize));
        self.message(data.as_bytes());
        if answered {
            self.settle(index, Next::Done, now);
        }
    }

    /// A stream read as [`Read::Events`] ended (or failed). A POST's stream that ended
    /// before its answer is resumed with `GET` if it gave an event id to resume from, once the
    /// server's `retry:` wait (else [`RECONNECT_DELAY`]) has passed; a `GET` stream is
    /// reopened after the same wait, doubled for each reopening in a row that received
    /// nothing, up to [`RECONNECTS`] of them.
    pub fn handle_end(&mut self, exchange: Exchange, now: Instant) {
        let Some(index) = self.flow(exchange) else {
            return;
        };
        let flow = &mut self.flows[index];
        if flow.reading != Reading::Events {
            return;
        }
        let next = if flow.role == Role::Modern {
            // The modern era resumes nothing: a stream that ends before its answer is the
            // request's failure, answered to the owner.
            if flow.until.is_some() {
                let what = "the stream ended before the answer".to_owned();
                self.unanswered(index, failed(what, None));
            }
            Next::Done
        } else if flow.role == Role::Listen || flow.resuming {
            self.dropped(index, now)
        } else if flow.until.is_some() && flow.last_id.is_some() && !self.closing {
            // The server's wait holds for this reconnection as for any other: a client that
            // comes back at once finds nothing ready, and defeats the server's pacing.
            flow.resuming = true;
            flow.exchange = None;
            flow.reading = Reading::Head;
            let wait = flow.delay.min(MAX_RECONNECT_DELAY);
            flow.reopen_at = now.checked_add(wait).or(Some(now));
            Next::Stay
        } else {
            Next::Done
        };
        self.settle(index, next, now);
    }

    fn flow(&self, exchange: Exchange) -> Option<usize> {
        if self.ended {
            return None;
        }
        self.flows.iter().position(|f| f.exchange == Some(exchange))
    }

    fn blocked(&self) -> bool {
        self.flows.iter().any(|f| f.blocking)
    }

    /// Sends what the queue holds as far as the order allows; once the input closed and
    /// everything went, closes the session.
    fn advance(&mut self, _now: Instant) {
        while !self.ended && !self.closing && !self.blocked() {
            let Some(body) = self.queue.pop_front() else {
                // A notification's POST is not cut short: it has no answer to linger for.
                let posting = self
                    .flows
                    .iter()
                    .any(|f| f.role == Role::Modern && f.until.is_none());
                if self.input_closed && !posting {
                    self.close();
                }
                return;
            };
            let message = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if self.cancels(&message) {
                continue;
            }
            let mirror = mirror(&message);
            let (role, until) = match mirror {
                Some(_) => (Role::Modern, message.get("id").cloned()),
                None => classify(&message),
            };
            let mut flow = Flow::new(role, until);
            let exchange = match mirror {
                Some(mirror) => self.modern_request(&mirror, body),
                None => self.request(Method::Post, None, body),
            };
            flow.exchange = Some(exchange);
            self.flows.push(flow);
        }
    }

    /// Whether `message` cancels a modern request in flight; if so, that request's exchange
    /// is dropped, which closes its stream.
    fn cancels(&mut self, message: &Value) -> bool {
        if message.get("method").and_then(Value::as_str) != Some("notifications/cancelled") {
            return false;
        }
        let Some(id) = message.pointer("/params/requestId") else {
            return false;
        };
        let named = self
            .flows
            .iter()
            .position(|f| f.role == Role::Modern && f.until.as_ref() == Some(id));
        match named {
            Some(index) => {
                self.flows.remove(index);
                true
            }
            None => false,
        }
    }

    /// Queues a modern message's POST: no session, no negotiated version, its own mirrored
    /// headers.
    fn modern_request(&mut self, mirror: &Mirror, body: Vec<u8>) -> Exchange {
        let mirrored = mirror.headers();
        let exchange = self.next_exchange();
        self.requests.push_back(HttpRequest {
            exchange,
            method: Method::Post,
            session: None,
            protocol_version: None,
            last_event_id: None,
            body,
            mirrored,
        });
        exchange
    }

    /// A modern exchange is over without its answer: the owner gets one, an error response
    /// to its request with `error` (a notification's failure is a warning). Nothing once the
    /// session is closing: the owner is waiting for no answer then.
    fn unanswered(&mut self, index: usize, error: Value) {
        if self.closing {
            return;
        }
        match self.flows[index].until.clone() {
            Some(id) => {
                let response = json!({"jsonrpc": "2.0", "id": id, "error": error});
                self.message(response.to_string().as_bytes());
            }
            None => {
                let what = error.get("message").and_then(Value::as_str).unwrap_or("");
                self.warnings
                    .push_back(format!("a notification was not delivered: {what}"));
            }
        }
    }

    /// The input closed and every message went: `DELETE` if there is a session, else the end.
    fn close(&mut self) {
        self.closing = true;
        if self.session.is_some() {
            let mut flow = Flow::new(Role::Delete, None);
            flow.exchange = Some(self.request(Method::Delete, None, Vec::new()));
            self.flows.push(flow);
        } else {
            self.finish(None);
        }
    }

    /// Queues a request with the session's headers.
    fn request(
        &mut self,
        method: Method,
        last_event_id: Option<Vec<u8>>,
        body: Vec<u8>,
    ) -> Exchange {
        let exchange = self.next_exchange();
        self.requests.push_back(HttpRequest {
            exchange,
            method,
            session: self.session.clone(),
            protocol_version: self.protocol.clone(),
            last_event_id,
            body,
            mirrored: Vec::new(),
        });
        exchange
    }

    /// A new exchange's name.
    fn next_exchange(&mut self) -> Exchange {
        self.next_exchange += 1;
        Exchange(self.next_exchange - 1)
    }

    /// Opens (or reopens) flow `index`'s `GET` stream.
    fn get(&mut self, index: usize) {
        let last_id = self.flows[index].last_id.clone();
        let exchange = self.request(Method::Get, last_id, Vec::new());
        let flow = &mut self.flows[index];
        flow.exchange = Some(exchange);
        flow.reading = Reading::Head;
        flow.received = false;
    }

    /// A `GET` stream ended or could not be opened: reopened after the wait, unless the
    /// session is closing or the stream keeps coming back empty.
    fn dropped(&mut self, index: usize, now: Instant) -> Next {
        if self.closing {
            return Next::Done;
        }
        let flow = &mut self.flows[index];
        flow.exchange = None;
        flow.reading = Reading::Head;
        flow.failures = if flow.received { 0 } else { flow.failures + 1 };
        if flow.failures > RECONNECTS {
            let what = match &flow.until {
                Some(id) => format!("the resumption of the stream of request {id}"),
                None => "the GET stream".to_owned(),
            };
            self.warnings
                .push_back(format!("{what} keeps failing; no longer reopened"));
            return Next::Done;
        }
        let wait = flow
            .delay
            .saturating_mul(1 << flow.failures)
            .min(MAX_RECONNECT_DELAY);
        flow.reopen_at = now.checked_add(wait).or(Some(now));
        Next::Stay
    }

    /// An HTTP refusal: the end of the session for a 404 once one exists; else its body's
    /// start is read next, for the reason the session ends with (a POST) or the warning (a
    /// `GET`); nothing while closing.
    fn refused(
        &mut self,
        index: usize,
        method: &'static str,
        head: ResponseHead<'_>,
    ) -> (Read, Next) {
        if self.closing {
            return (Read::Nothing, Next::Done);
        }
        if head.status == 404 && self.session.is_some() {
            self.finish(Some(format!(
                "the server ended the session (HTTP 404 to {method})"
            )));
            return (Read::Nothing, Next::Done);
        }
        self.flows[index].reading = Reading::Refusal(method, status_text(head));
        (Read::Quote { limit: QUOTE }, Next::Stay)
    }

    /// Forgets a flow that is done; the initialize request's end opens the `GET` stream once
    /// there is a session. Then sends what may go.
    fn settle(&mut self, index: usize, next: Next, now: Instant) {
        if let Next::Done = next {
            let flow = self.flows.remove(index);
            if flow.role == Role::Initialize && !self.listening && self.session.is_some() {
                self.listening = true;
                let mut listen = Flow::new(Role::Listen, None);
                listen.exchange = Some(self.request(Method::Get, None, Vec::new()));
                self.flows.push(listen);
            }
        }
        self.advance(now);
    }

    /// Whether `payload` answers the request `id`; for `initialize`, its `protocolVersion` is
    /// kept, to go with every later request.
    fn answers(&mut self, payload: &[u8], id: &Value, initialize: bool) -> bool {
        let Ok(message) = serde_json::from_slice::<Value>(payload) else {
            return false;
        };
        let answers = |m: &Value| m.get("id") == Some(id) && m.get("method").is_none();
        let answer = match &message {
            Value::Array(batch) => batch.iter().find(|m| answers(m)),
            m => Some(m).filter(|m| answers(m)),
        };
        let Some(answer) = answer else { return false };
        let version = answer
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .filter(|v| is_header_value(v.as_bytes()));
        if let (true, Some(version)) = (initialize, version) {
            self.protocol = Some(version.as_bytes().to_vec());
        }
        true
    }

    /// A received message, whole; blank ones are skipped.
    fn message(&mut self, payload: &[u8]) {
        if self.ended || payload.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.messages.push_back(payload.to_vec());
    }

    /// Ends the session: every exchange is dropped, the messages not yet polled still go.
    fn finish(&mut self, reason: Option<String>) {
        if !self.ended {
            self.ended = true;
            self.end = Some(End { reason });
            self.queue.clear();
            self.requests.clear();
        }
    }
}

/// What a legacy message is, as far as the transport cares, and the request id whose answer
/// ends its stream. An `initialize` request's answer carries the session id and the protocol
/// revision every later request needs; a response or error is our answer to the server; a
/// request, a notification or a batch goes in order.
fn classify(message: &Value) -> (Role, Option<Value>) {
    let id = message.get("id").cloned();
    match message.get("method") {
        Some(Value::String(method)) if method == "initialize" => match id {
            Some(id) => (Role::Initialize, Some(id)),
            None => (Role::Other, None),
        },
        Some(_) => (Role::Other, id),
        None if message.is_object() => (Role::Answer, None),
        None => (Role::Other, None),
    }
}

/// The mirror of a modern request or notification: one object with a method, whose `_meta`
/// names a modern revision. `None` for anything of the legacy era (a batch included: the
/// modern era has none).
fn mirror(message: &Value) -> Option<Mirror> {
    let method = message.get("method")?.as_str()?;
    let params = message.get("params");
    // Most messages name no version at all: their parameters are not copied.
    modern::meta_version(params)?;
    let request = Request {
        id: Id::Null,
        method: method.to_owned(),
        params: params.cloned(),
    };
    modern::is_modern(&request)
        .then(|| Mirror::of(&request))
        .flatten()
}

/// The error a modern request is answered with when its exchange brought no JSON-RPC error
/// of the server's: [`EXCHANGE_FAILED`], what happened, and the HTTP status if one came.
fn failed(what: String, status: Option<u16>) -> Value {
    let mut error = json!({"code": EXCHANGE_FAILED, "message": what});
    if let Some(status) = status {
        error["data"] = json!({"status": status});
    }
    error
}

/// The JSON-RPC error a refusal's body holds, if it holds one: an object with an integer
/// `code` and a string `message`, in a response (not a batch).
fn rpc_error(body: &[u8]) -> Option<Value> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let error = body.get("error")?;
    (error.get("code")?.is_i64() && error.get("message")?.is_string()).then(|| error.clone())
}

/// Whether a response body is server-sent events (`Some(true)`), JSON (`Some(false)`) or
/// neither.
fn content_kind(content_type: Option<&str>) -> Option<bool> {
    let content_type = content_type.unwrap_or("").trim().to_ascii_lowercase();
    if content_type.starts_with(super::EVENT_STREAM) {
        Some(true)
    } else if content_type.starts_with(super::JSON) {
        Some(false)
    } else {
        None
    }
}

/// `404 Not Found`, as HTTP libraries write a status.
fn status_text(head: ResponseHead<'_>) -> String {
    format!(
        "{} {}",
        head.status,
        head.reason.unwrap_or("<unknown status code>")
    )
}

/// The start of a body, as one line of text.
fn quote(body: &[u8]) -> String {
    let body = &body[..body.len().min(QUOTE)];
    String::from_utf8_lossy(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `bytes` may be a header's value (visible characters, spaces and tabs), so that
/// what the server said can be sent back to it.
fn is_header_value(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

/// `message` without its trailing whitespace (a line break included).
fn trim_end(message: &[u8]) -> &[u8] {
    match std::str::from_utf8(message) {
        Ok(text) => text.trim_end().as_bytes(),
        Err(_) => {
            let end = message
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1);
            &message[..end]
        }
    }
}
