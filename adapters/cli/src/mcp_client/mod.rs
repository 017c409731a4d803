//! `tether connect http://HOST:PORT/PATH`: a client of MCP's Streamable HTTP transport
//! (revision 2025-06-18 and later).
//!
//! The HTTP exchanges are made into a virtual byte stream, so that the session runs through
//! the same [`Connection`] and [`session::run`](crate::session::run) loop as every other URL:
//! linger, output modes, `--record` and signals behave alike. Two in-memory pipes carry one JSON text per line: the
//! connection writes each message it sends into one, and a task spawned on the runtime POSTs
//! each line to the URL; every message that comes back (a JSON body, or each event of an SSE
//! stream, from a POST or from the GET stream) is written as one line into the other pipe,
//! which the connection reads as its peer's output. When the connection closes its write side
//! (standard input ended and the answers came, `--linger` expired, or a signal), the task sends
//! `DELETE` for the session and ends the pipe: the connection's end of file, `disconnected`.
//!
//! HTTP/1.1 carries one exchange at a time per connection, and an SSE response keeps its
//! connection until it ends, so each request gets a TCP connection of its own.
//!
//! An HTTP refusal of a POST (401, 403, 400, …) is written into the pipe as one line of text,
//! `HTTP 401 Unauthorized from POST: …`: not JSON, so it comes out as a `malformed` event
//! whose reason quotes it, through the same output as everything else, and the session goes
//! on (the request it carried stays unanswered until `--linger`). A 404 once a session exists
//! means the server ended the session: the pipe ends with that reason, handed to the
//! connection as a read error, so the `disconnected` event names it.
//!
//! An event longer than `--max-frame` ends its stream (see `bounded.rs`), so that a server cannot
//! grow the client's memory without bound.

mod bounded;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::BufReader;
use futures_lite::{future, AsyncBufReadExt, AsyncRead, AsyncWriteExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use serde_json::Value;
use smol::channel::{self, Receiver};
use sse_stream::SseStream;
use tether_core::{Framing, Message};
use tether_io::{Connection, Options, Runtime};

use crate::args::{Connect, Token};
use crate::hyper_io::HyperIo;
use crate::Failure;
use bounded::Bounded;

/// Each in-memory pipe's capacity: a full pipe holds the writer back, as a socket would.
const PIPE: usize = 64 * 1024;

/// The session's id, from the initialize response, sent on every later request.
const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The negotiated protocol revision, sent on every request after initialization.
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The last event id seen on the GET stream, sent when reconnecting it.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// What a POST accepts: a JSON body, or an SSE stream of messages.
const ACCEPT_POST: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");

/// What the GET stream accepts.
const ACCEPT_SSE: HeaderValue = HeaderValue::from_static("text/event-stream");

/// How many times in a row the GET stream is reopened without receiving anything before the
/// client gives up on it (the POSTs go on).
const RECONNECTS: u32 = 5;

/// The wait before reopening the GET stream, unless the server said otherwise (`retry:`); it
/// doubles with each reconnection in a row that received nothing.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// How much of an error response's body is quoted.
const QUOTE: usize = 4096;

/// A connection to the Streamable HTTP endpoint at `args.url`, as lines over a pair of
/// in-memory pipes that a task of its own turns into HTTP requests. `options` are the
/// connection's (a recording included); the framing is always lines.
pub async fn open<R: Runtime>(
    args: &Connect,
    options: Options,
) -> Result<Connection<Message, R>, Failure> {
    let target = Target::parse(&args.url).map_err(Failure)?;
    let headers = extra_headers(args)?;
    // A server that cannot be reached fails at once, as for every other URL, rather than at
    // the first message; this connection is only a check.
    drop(R::connect_tcp(&target.addr).await.map_err(|source| {
        Failure::from(tether_io::Error::Connect {
            addr: target.addr.clone(),
            source,
        })
    })?);
    // The pipes carry lines whatever `--framing` says: that is how this module writes them.
    let options = options.framing(Framing::Lines).label(args.url.clone());
    let (inbound_reader, inbound_writer) = piper::pipe(PIPE);
    let (outbound_reader, outbound_writer) = piper::pipe(PIPE);
    let sink = Arc::new(Sink::new(inbound_writer));
    let reader = Inbound {
        pipe: inbound_reader,
        sink: Arc::clone(&sink),
    };
    let conn = Connection::<Message, R>::from_io(reader, outbound_writer, options)
        .map_err(Failure::from)?;
    let (stop_tx, stop_rx) = channel::bounded(1);
    let client = Arc::new(Client {
        target,
        headers,
        state: Mutex::default(),
        closing: AtomicBool::new(false),
        sink,
        max_body: args.common.max_frame,
        stop: stop_rx,
    });
    R::spawn(run::<R>(client, outbound_reader, stop_tx));
    Ok(conn)
}

/// `--header` and `--token-file`, as sent with every request.
fn extra_headers(args: &Connect) -> Result<Vec<(HeaderName, HeaderValue)>, Failure> {
    let mut headers = args.headers.clone();
    if let Some(Token(token)) = &args.token_file {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| Failure(format!("the token cannot go in a header: {e}")))?;
        headers.retain(|(name, _)| name != header::AUTHORIZATION);
        headers.push((header::AUTHORIZATION, bearer));
    }
    Ok(headers)
}

/// Where the requests go.
#[derive(Debug)]
struct Target {
    /// `host:port`, to connect to.
    addr: String,
    /// The `Host` header (HTTP/1.1 requires one; hyper's client connection adds none).
    host: HeaderValue,
    /// The path and query, as the request target.
    path: Uri,
}

impl Target {
    /// `http://HOST[:PORT][/PATH]`.
    fn parse(url: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid URL {url:?}: {why}");
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("expected http://HOST:PORT/PATH"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not sent; use --header or --token-file",
            ));
        }
        let port = authority.port_u16().unwrap_or(80);
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| bad(&e.to_string()))?;
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| bad(&format!("{e}")))?;
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            host,
            path,
        })
    }
}

/// The connection's read side: the inbound pipe, whose end becomes a read error when the
/// session ended for a reason (the server's 404, a failed request).
struct Inbound {
    pipe: piper::Reader,
    sink: Arc<Sink>,
}

impl AsyncRead for Inbound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.pipe).poll_read(cx, buf))?;
        if n == 0 && !buf.is_empty() {
            if let Some(reason) = self.sink.reason() {
                return Poll::Ready(Err(io::Error::other(reason)));
            }
        }
        Poll::Ready(Ok(n))
    }
}

/// The inbound pipe's write side, shared by every task that receives messages: each line is
/// written whole under the lock, so lines from concurrent streams never interleave.
struct Sink {
    writer: smol::lock::Mutex<Option<piper::Writer>>,
    /// Why the session ended, if not cleanly; set before the pipe ends.
    reason: Mutex<Option<String>>,
    /// The pipe has ended, or is about to.
    ended: AtomicBool,
}

impl Sink {
    fn new(writer: piper::Writer) -> Self {
        Sink {
            writer: smol::lock::Mutex::new(Some(writer)),
            reason: Mutex::new(None),
            ended: AtomicBool::new(false),
        }
    }

    /// Writes `payload` as one line; blank payloads are skipped. A JSON text has no line
    /// break outside its strings (a break inside one is escaped), so breaks become spaces and
    /// the text means the same. `false` once the pipe has ended.
    async fn line(&self, payload: &[u8]) -> bool {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return !self.is_ended();
        }
        let mut line: Vec<u8> = payload
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect();
        line.push(b'\n');
        let mut writer = self.writer.lock().await;
        match writer.as_mut() {
            Some(writer) => writer.write_all(&line).await.is_ok(),
            None => false,
        }
    }

    /// Ends the pipe; with a reason, the connection sees a read error rather than a clean end
    /// of file. The first reason given is kept.
    async fn end(&self, reason: Option<String>) {
        if let Some(reason) = reason {
            self.reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(reason);
        }
        self.ended.store(true, Ordering::SeqCst);
        drop(self.writer.lock().await.take());
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the server told us about the session.
#[derive(Debug, Default)]
struct State {
    /// `Mcp-Session-Id` from the initialize response.
    session: Option<HeaderValue>,
    /// `protocolVersion` from the initialize result.
    protocol: Option<HeaderValue>,
}

/// The client's shared state: where to send, what to send with every request, and where
/// received messages go.
struct Client {
    target: Target,
    /// `--header` and `--token-file`.
    headers: Vec<(HeaderName, HeaderValue)>,
    state: Mutex<State>,
    /// The session is being closed: streams that end now are not reopened or reported.
    closing: AtomicBool,
    sink: Arc<Sink>,
    /// The largest JSON response body read.
    max_body: usize,
    /// Closed once the client is done: every stream and HTTP connection still open ends.
    stop: Receiver<()>,
}

/// What a line from the connection is, as far as the transport cares.
enum Kind {
    /// An `initialize` request, with its id: its answer carries the session id and the
    /// protocol revision every later request needs, so nothing else goes before it.
    Initialize(Value),
    /// A response or error, our answer to the server's request: sent at once, concurrently,
    /// since what the server does next may wait for it.
    Answer,
    /// A request, with its id (an SSE stream that drops before its answer is resumed), a
    /// notification (`None`) or a batch: sent in order, each once the server has started to
    /// answer the one before, so the server sees them in the order they were written.
    Other(Option<Value>),
}

impl Kind {
    fn of(message: &Value) -> Kind {
        let id = message.get("id").cloned();
        match message.get("method") {
            Some(Value::String(method)) if method == "initialize" => {
                id.map_or(Kind::Other(None), Kind::Initialize)
            }
            Some(_) => Kind::Other(id),
            None if message.is_object() => Kind::Answer,
            None => Kind::Other(None),
        }
    }
}

/// Where an SSE stream stands, to resume it: the last event id seen, and the wait before
/// reconnecting (the server's `retry:`, else [`RECONNECT_DELAY`]).
#[derive(Debug)]
struct Cursor {
    last_id: Option<HeaderValue>,
    delay: Duration,
}

impl Cursor {
    fn new() -> Self {
        Cursor {
            last_id: None,
            delay: RECONNECT_DELAY,
        }
    }
}

/// How reading an SSE stream ended.
enum Pumped {
    /// The answer awaited was handed on.
    Answered,
    /// The stream ended first; `received` says whether it carried anything (an event id or a
    /// message), which makes it worth reopening again.
    Ended { received: bool },
    /// The inbound pipe has ended: nothing more is wanted.
    Closed,
}

/// How a response's body is to be read.
enum Body {
    /// A JSON text: one message or a batch.
    Json,
    /// An SSE stream, each event's data one message.
    Events,
    /// Anything else (or nothing).
    Other,
}

impl Body {
    fn of(response: &Response<Incoming>) -> Body {
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            Body::Events
        } else if content_type.starts_with("application/json") {
            Body::Json
        } else {
            Body::Other
        }
    }
}

/// Reads the connection's lines and sends them, until the connection closes its write side or
/// the session ends; then ends the session with `DELETE` and ends the inbound pipe.
async fn run<R: Runtime>(client: Arc<Client>, outbound: piper::Reader, stop: channel::Sender<()>) {
    let mut lines = BufReader::new(outbound);
    let mut line = String::new();
    let mut listening = false;
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if client.sink.is_ended() {
            break;
        }
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        let body = Bytes::copy_from_slice(text.as_bytes());
        match Kind::of(&serde_json::from_str(text).unwrap_or(Value::Null)) {
            Kind::Answer => {
                let client = Arc::clone(&client);
                let stop = client.stop.clone();
                R::spawn(async move {
                    future::or(client.post::<R>(body, None, false), async {
                        let _ = stop.recv().await;
                    })
                    .await;
                });
            }
            Kind::Initialize(id) => {
                client.post::<R>(body, Some(id), true).await;
                if !listening && client.session().is_some() {
                    listening = true;
                    let stop = client.stop.clone();
                    let listen = Arc::clone(&client).get::<R>(Cursor::new(), None, false);
                    R::spawn(future::or(listen, async move {
                        let _ = stop.recv().await;
                    }));
                }
            }
            Kind::Other(id) => client.post::<R>(body, id, false).await,
        }
    }
    client.closing.store(true, Ordering::SeqCst);
    if !client.sink.is_ended() && client.session().is_some() {
        client.delete::<R>().await;
    }
    // Every stream and connection still open ends.
    drop(stop);
    client.sink.end(None).await;
}

impl Client {
    fn session(&self) -> Option<HeaderValue> {
        self.lock().session.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request to the URL with every header the session needs.
    fn request(&self, method: Method, accept: HeaderValue, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.target.path.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.target.host.clone());
        headers.insert(header::ACCEPT, accept);
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        let state = self.lock();
        if let Some(session) = &state.session {
            headers.insert(SESSION_ID, session.clone());
        }
        if let Some(protocol) = &state.protocol {
            headers.insert(PROTOCOL_VERSION, protocol.clone());
        }
        request
    }

    /// Sends `request` over a TCP connection of its own. Unless `to_the_end`, the connection
    /// is dropped once the client is done (a stream still open then is not wanted).
    async fn send<R: Runtime>(
        &self,
        request: Request<Full<Bytes>>,
        to_the_end: bool,
    ) -> Result<Response<Incoming>, String> {
        let addr = &self.target.addr;
        let stream = R::connect_tcp(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(HyperIo(stream))
            .await
            .map_err(|e| e.to_string())?;
        let stop = self.stop.clone();
        R::spawn(async move {
            let connection = async {
                if let Err(err) = connection.await {
                    tracing::debug!(%err, "HTTP connection failed");
                }
            };
            match to_the_end {
                true => connection.await,
                false => {
                    future::or(connection, async {
                        let _ = stop.recv().await;
                    })
                    .await
                }
            }
        });
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    }

    /// POSTs one message (or batch) and hands on what comes back. Returns once the server has
    /// started to answer; an SSE stream is then read on a task of its own, except for
    /// `initialize`, whose answer is awaited. `id` is the request's, if it is one.
    async fn post<R: Runtime>(self: &Arc<Self>, body: Bytes, id: Option<Value>, initialize: bool) {
        let mut request = self.request(Method::POST, ACCEPT_POST, body);
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let response = match self.send::<R>(request, false).await {
            Ok(response) => response,
            Err(err) => {
                if !self.closing.load(Ordering::SeqCst) {
                    self.sink.end(Some(format!("POST failed: {err}"))).await;
                }
                return;
            }
        };
        let status = response.status();
        if initialize && status.is_success() {
            if let Some(session) = response.headers().get(SESSION_ID) {
                self.lock().session = Some(session.clone());
            }
        }
        if status == StatusCode::ACCEPTED {
            return;
        }
        if !status.is_success() {
            self.refused("POST", response).await;
            return;
        }
        match Body::of(&response) {
            Body::Json => {
                let id = id.filter(|_| initialize);
                self.json(response, id.as_ref()).await
            }
            Body::Events => {
                let events = SseStream::new(Bounded::new(response.into_body(), self.max_body));
                let follow = Arc::clone(self).follow::<R>(events, id, initialize);
                if initialize {
                    follow.await;
                } else {
                    let stop = self.stop.clone();
                    R::spawn(future::or(follow, async move {
                        let _ = stop.recv().await;
                    }));
                }
            }
            Body::Other => {
                let body = quote(response).await;
                if !body.trim().is_empty() {
                    let line =
                        format!("HTTP {status}: a body that is neither JSON nor SSE: {body}");
                    tracing::warn!("{line}");
                    self.sink.line(line.as_bytes()).await;
                }
            }
        }
    }

    /// A JSON response: one message or a batch, as one line.
    async fn json(&self, response: Response<Incoming>, initialize: Option<&Value>) {
        match Limited::new(response.into_body(), self.max_body)
            .collect()
            .await
        {
            Ok(body) => {
                let body = body.to_bytes();
                if let Some(id) = initialize {
                    self.answers(&body, id, true);
                }
                self.sink.line(&body).await;
            }
            Err(err) => {
                let line = format!("the JSON response could not be read: {err}");
                tracing::warn!("{line}");
                self.sink.line(line.as_bytes()).await;
            }
        }
    }

    /// Reads a POST's SSE stream until the answer to `id`; a stream that drops before it, once
    /// an event id was seen, is resumed with `GET` and `Last-Event-ID`, as the transport says.
    async fn follow<R: Runtime>(
        self: Arc<Self>,
        mut events: SseStream<Bounded>,
        id: Option<Value>,
        initialize: bool,
    ) {
        let mut cursor = Cursor::new();
        let ended = self
            .pump(&mut events, id.as_ref(), initialize, &mut cursor)
            .await;
        drop(events);
        if matches!(ended, Pumped::Ended { .. }) && id.is_some() && cursor.last_id.is_some() {
            tracing::debug!(?cursor, "resuming a POST's stream");
            self.get::<R>(cursor, id, initialize).await;
        }
    }

    /// Hands on each event of an SSE stream until it ends or, with `until`, until the answer
    /// to that request id has been handed on; keeps the stream's cursor.
    async fn pump(
        &self,
        events: &mut SseStream<Bounded>,
        until: Option<&Value>,
        initialize: bool,
        cursor: &mut Cursor,
    ) -> Pumped {
        let mut received = false;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    tracing::warn!(%err, "SSE stream failed");
                    break;
                }
            };
            if let Some(id) = event.id.and_then(|id| HeaderValue::from_str(&id).ok()) {
                cursor.last_id = Some(id);
                received = true;
            }
            if let Some(retry) = event.retry {
                cursor.delay = Duration::from_millis(retry);
            }
            // A priming event carries an id and no message.
            let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
                continue;
            };
            received = true;
            let answered = until.is_some_and(|id| self.answers(data.as_bytes(), id, initialize));
            if !self.sink.line(data.as_bytes()).await {
                return Pumped::Closed;
            }
            if answered {
                return Pumped::Answered;
            }
        }
        Pumped::Ended { received }
    }

    /// Whether `payload` answers the request `id`; for `initialize`, its `protocolVersion` is
    /// kept, to go with every later request.
    fn answers(&self, payload: &[u8], id: &Value, initialize: bool) -> bool {
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
            .and_then(|v| HeaderValue::from_str(v).ok());
        if let (true, Some(version)) = (initialize, version) {
            self.lock().protocol = Some(version);
        }
        true
    }

    /// An HTTP refusal: the end of the session for a 404 once one exists, else one line of
    /// text through the connection, reported as malformed, that names the status.
    async fn refused(&self, method: &str, response: Response<Incoming>) {
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        let status = response.status();
        if status == StatusCode::NOT_FOUND && self.session().is_some() {
            let reason = format!("the server ended the session (HTTP 404 to {method})");
            tracing::debug!("{reason}");
            self.sink.end(Some(reason)).await;
            return;
        }
        let body = quote(response).await;
        let line = format!("HTTP {status} from {method}: {body}");
        tracing::warn!("{line}");
        self.sink.line(line.trim_end().as_bytes()).await;
    }

    /// A `GET` stream, reopened with `Last-Event-ID` when it drops, a bounded number of times
    /// in a row: with `until`, the resumption of a POST's stream up to that request's answer;
    /// without, the server's own stream of requests and notifications (which a 405 says the
    /// server does not offer).
    async fn get<R: Runtime>(
        self: Arc<Self>,
        mut cursor: Cursor,
        until: Option<Value>,
        initialize: bool,
    ) {
        let mut failures = 0;
        loop {
            let mut request = self.request(Method::GET, ACCEPT_SSE, Bytes::new());
            if let Some(id) = &cursor.last_id {
                request.headers_mut().insert(LAST_EVENT_ID, id.clone());
            }
            let mut received = false;
            match self.send::<R>(request, false).await {
                Err(err) => tracing::debug!(%err, "the GET stream failed"),
                Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => return,
                Ok(response) if !response.status().is_success() => {
                    return self.refused("GET", response).await
                }
                Ok(response) => {
                    let mut events =
                        SseStream::new(Bounded::new(response.into_body(), self.max_body));
                    match self
                        .pump(&mut events, until.as_ref(), initialize, &mut cursor)
                        .await
                    {
                        Pumped::Answered | Pumped::Closed => return,
                        Pumped::Ended { received: r } => received = r,
                    }
                }
            }
            if self.closing.load(Ordering::SeqCst) || self.sink.is_ended() {
                return;
            }
            failures = if received { 0 } else { failures + 1 };
            if failures > RECONNECTS {
                tracing::warn!(?until, "a GET stream keeps failing; no longer reopened");
                return;
            }
            tracing::debug!(?cursor, "reopening a GET stream");
            R::sleep(cursor.delay.saturating_mul(1 << failures)).await;
        }
    }

    /// Ends the session on the server; a server that cannot (405) or will not is logged.
    async fn delete<R: Runtime>(&self) {
        let request = self.request(Method::DELETE, ACCEPT_POST, Bytes::new());
        match self.send::<R>(request, true).await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::debug!(status = %response.status(), "DELETE refused"),
            Err(err) => tracing::debug!(%err, "DELETE failed"),
        }
    }
}

/// The start of a response's body, as one line of text.
async fn quote(response: Response<Incoming>) -> String {
    let mut body = response.into_body();
    let mut text = Vec::new();
    while text.len() < QUOTE {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    text.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    text.truncate(QUOTE);
    String::from_utf8_lossy(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
