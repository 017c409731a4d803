//! `tether connect http://HOST:PORT/PATH`: a client of MCP's Streamable HTTP transport
//! (revision 2025-06-18 and later).
//!
//! The HTTP exchanges are made into a virtual byte stream, so that the session runs through
//! the same [`Connection`] and [`session::run`](crate::session::run) loop as every other URL:
//! linger, output modes, `--record` and signals behave alike. Two in-memory pipes carry one
//! JSON text per line: the connection writes each message it sends into one, and a task
//! spawned on the runtime POSTs each line to the URL; every message that comes back (a JSON
//! body, or each event of an SSE stream, from a POST or from the GET stream) is written as one
//! line into the other pipe, which the connection reads as its peer's output. When the
//! connection closes its write side (standard input ended and the answers came, `--linger`
//! expired, or a signal), the task sends `DELETE` for the session and ends the pipe: the
//! connection's end of file, `disconnected`.
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
//! An event longer than `--max-frame` ends its stream (see `bounded.rs`), so that a server
//! cannot grow the client's memory without bound.
//!
//! Every decision about the protocol (which request to make when, with which headers, what a
//! response means, when a stream is resumed, when the session is over) is made by
//! [`tether_core::streamable::Client`]; this module only makes its requests with hyper, reads
//! their bodies the way it says, and feeds back what came, on one task that owns the machine.

mod bounded;

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_lite::io::BufReader;
use futures_lite::{future, AsyncBufReadExt, AsyncRead, AsyncWriteExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, Uri};
use smol::channel::{self, Receiver, Sender};
use sse_stream::SseStream;
use tether_core::streamable::{
    self, Client, Event, Exchange, HttpRequest, Read, ResponseHead, LAST_EVENT_ID_HEADER,
    SESSION_HEADER,
};
use tether_core::{Framing, Message};
use tether_io::{Connection, Options, Runtime};

use crate::args::{Connect, Token};
use crate::hyper_io::HyperIo;
use crate::Failure;
use bounded::Bounded;

/// Each in-memory pipe's capacity: a full pipe holds the writer back, as a socket would.
const PIPE: usize = 64 * 1024;

/// The session's id, from the initialize response, sent on every later request.
const SESSION_ID: HeaderName = HeaderName::from_static(SESSION_HEADER);

/// The negotiated protocol revision, sent on every request after initialization.
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The last event id seen on a stream, sent when resuming it.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static(LAST_EVENT_ID_HEADER);

/// What a POST (or a `DELETE`) accepts: a JSON body, or an SSE stream of messages.
const ACCEPT_POST: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");

/// What a `GET` stream accepts.
const ACCEPT_SSE: HeaderValue = HeaderValue::from_static("text/event-stream");

/// Reports from the exchanges waiting for the driver: a bound, so that a driver held back by
/// a full pipe holds the streams back too.
const REPORTS: usize = 16;

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
    let reason = Arc::new(Mutex::new(None));
    let reader = Inbound {
        pipe: inbound_reader,
        reason: Arc::clone(&reason),
    };
    let conn = Connection::<Message, R>::from_io(reader, outbound_writer, options)
        .map_err(Failure::from)?;
    // One line read ahead at most: the connection's writes are held back while the client
    // cannot send.
    let (lines_tx, lines_rx) = channel::bounded(1);
    R::spawn(read_lines(outbound_reader, lines_tx));
    let http = Arc::new(Http {
        target,
        headers,
        max_body: args.common.max_frame,
    });
    R::spawn(drive::<R>(http, lines_rx, inbound_writer, reason));
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

/// Whether `url` is an MCP endpoint this client can reach (`http://HOST[:PORT][/PATH]`, no
/// credentials in it): checked as the command line is parsed, so that a bad one is a usage
/// error.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    Target::parse(url).map(drop)
}

/// The connection's read side: the inbound pipe, whose end becomes a read error when the
/// session ended for a reason (the server's 404, a failed request).
struct Inbound {
    pipe: piper::Reader,
    reason: Arc<Mutex<Option<String>>>,
}

impl AsyncRead for Inbound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.pipe).poll_read(cx, buf))?;
        if n == 0 && !buf.is_empty() {
            let reason = self
                .reason
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(reason) = reason {
                return Poll::Ready(Err(io::Error::other(reason)));
            }
        }
        Poll::Ready(Ok(n))
    }
}

/// Reads the lines the connection writes, one at a time, for the driver; ends (closing the
/// channel, the driver's sign that the write side closed) at the pipe's end.
async fn read_lines(outbound: piper::Reader, lines: Sender<Vec<u8>>) {
    let mut reader = BufReader::new(outbound);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if lines.send(line.as_bytes().to_vec()).await.is_err() {
            return;
        }
    }
}

/// What an exchange's task tells the driver.
enum Report {
    /// The response's head.
    Head {
        exchange: Exchange,
        status: hyper::StatusCode,
        session: Option<HeaderValue>,
        content_type: Option<String>,
    },
    /// One server-sent event.
    Event {
        exchange: Exchange,
        event: sse_stream::Sse,
    },
    /// A whole JSON body, or a quote.
    Body { exchange: Exchange, body: Bytes },
    /// An SSE stream ended.
    End { exchange: Exchange },
    /// The request failed, or a JSON body could not be read.
    Failure { exchange: Exchange, error: String },
}

/// One exchange under way, as the driver holds it: dropping it stops the exchange's task.
struct Running {
    /// How to read the body, once the head came.
    read: Sender<Read>,
    /// Never sent on: closed when the exchange is no longer wanted.
    _stop: Sender<()>,
}

/// What the driver waits for.
enum Input {
    Report(Report),
    Line(Vec<u8>),
    Closed,
    Timeout,
}

/// The only owner of the [`Client`]: makes its requests, feeds back what comes of them and of
/// the connection, writes its lines into the inbound pipe, and ends the pipe at its end.
async fn drive<R: Runtime>(
    http: Arc<Http>,
    lines: Receiver<Vec<u8>>,
    mut inbound: piper::Writer,
    reason: Arc<Mutex<Option<String>>>,
) {
    let mut client = Client::new();
    let (reports_tx, reports) = channel::bounded(REPORTS);
    let mut running: BTreeMap<Exchange, Running> = BTreeMap::new();
    let mut input_closed = false;
    loop {
        // The lines first: what came is handed on before what it allows goes out (the
        // initialize answer before the GET stream it opens), as a peer would see it.
        while let Some(line) = client.poll_line() {
            if line.notice {
                tracing::warn!("{}", String::from_utf8_lossy(line.bytes.trim_ascii_end()));
            }
            // A connection that stopped reading is closing: its end comes as `Closed`.
            let _ = inbound.write_all(&line.bytes).await;
        }
        while let Some(request) = client.poll_request() {
            let (read_tx, read_rx) = channel::bounded(1);
            let (stop_tx, stop_rx) = channel::bounded(1);
            running.insert(
                request.exchange,
                Running {
                    read: read_tx,
                    _stop: stop_tx,
                },
            );
            let exchange = run_exchange::<R>(
                Arc::clone(&http),
                request,
                reports_tx.clone(),
                read_rx,
                stop_rx,
            );
            R::spawn(exchange);
        }
        while let Some(warning) = client.poll_warning() {
            tracing::warn!("{warning}");
        }
        if let Some(end) = client.poll_end() {
            if let Some(why) = end.reason {
                tracing::debug!("{why}");
                reason
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(why);
            }
            break;
        }
        running.retain(|exchange, _| client.wants(*exchange));
        let deadline = client.poll_timeout();
        let want_line = !input_closed && client.wants_line();
        // The driver holds a sender itself: the channel never closes.
        let report = async {
            match reports.recv().await {
                Ok(report) => Input::Report(report),
                Err(_) => future::pending().await,
            }
        };
        let line = async {
            if want_line {
                lines.recv().await.map_or(Input::Closed, Input::Line)
            } else {
                future::pending().await
            }
        };
        let timeout = async {
            match deadline {
                Some(at) => {
                    R::sleep(at.saturating_duration_since(tether_io::now())).await;
                    Input::Timeout
                }
                None => future::pending().await,
            }
        };
        let input = future::or(report, future::or(line, timeout)).await;
        let now = tether_io::now();
        match input {
            Input::Line(line) => client.handle_line(&line, now),
            Input::Closed => {
                input_closed = true;
                client.handle_close(now);
            }
            Input::Timeout => client.handle_timeout(now),
            Input::Report(report) => match report {
                Report::Head {
                    exchange,
                    status,
                    session,
                    content_type,
                } => {
                    let head = ResponseHead {
                        status: status.as_u16(),
                        reason: status.canonical_reason(),
                        session: session.as_ref().map(HeaderValue::as_bytes),
                        content_type: content_type.as_deref(),
                    };
                    let read = client.handle_response(exchange, head, now);
                    if let Some(running) = running.get(&exchange) {
                        let _ = running.read.try_send(read);
                    }
                }
                Report::Event { exchange, event } => {
                    let event = Event {
                        id: event.id.as_deref(),
                        data: event.data.as_deref(),
                        retry: event.retry,
                    };
                    client.handle_event(exchange, event, now);
                }
                Report::Body { exchange, body } => client.handle_body(exchange, &body, now),
                Report::End { exchange } => client.handle_end(exchange, now),
                Report::Failure { exchange, error } => {
                    tracing::debug!(?exchange, %error, "an exchange failed");
                    client.handle_failure(exchange, &error, now);
                }
            },
        }
    }
    // Every exchange still under way stops; the pipe ends (with the reason, if any).
    drop(running);
    drop(inbound);
}

/// Where the requests go, and what goes with each.
struct Http {
    target: Target,
    /// `--header` and `--token-file`.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The largest JSON response body, or server-sent event, read.
    max_body: usize,
}

impl Http {
    /// The request the client asked for, with every header it needs.
    fn request(&self, asked: HttpRequest) -> Request<Full<Bytes>> {
        let (method, accept) = match asked.method {
            streamable::Method::Get => (hyper::Method::GET, ACCEPT_SSE),
            streamable::Method::Delete => (hyper::Method::DELETE, ACCEPT_POST),
            streamable::Method::Post | streamable::Method::Other => {
                (hyper::Method::POST, ACCEPT_POST)
            }
        };
        let post = method == hyper::Method::POST;
        let mut request = Request::new(Full::new(Bytes::from(asked.body)));
        *request.method_mut() = method;
        *request.uri_mut() = self.target.path.clone();
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.target.host.clone());
        headers.insert(header::ACCEPT, accept);
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        let fields = [
            (SESSION_ID, asked.session),
            (PROTOCOL_VERSION, asked.protocol_version),
            (LAST_EVENT_ID, asked.last_event_id),
        ];
        for (name, value) in fields {
            if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                headers.insert(name, value);
            }
        }
        if post {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(streamable::JSON),
            );
        }
        request
    }

    /// Sends `request` over a TCP connection of its own, which ends with `stop` unless
    /// `to_the_end` (a `DELETE` is not cut short by the session's end it brings).
    async fn send<R: Runtime>(
        &self,
        request: Request<Full<Bytes>>,
        stop: Receiver<()>,
        to_the_end: bool,
    ) -> Result<Response<Incoming>, String> {
        let addr = &self.target.addr;
        let stream = R::connect_tcp(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(HyperIo(stream))
            .await
            .map_err(|e| e.to_string())?;
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
}

/// One exchange: makes the request, reports the head, reads the body as the client says and
/// reports it, until done or no longer wanted (`stop` closed).
async fn run_exchange<R: Runtime>(
    http: Arc<Http>,
    request: HttpRequest,
    reports: Sender<Report>,
    read: Receiver<Read>,
    stop: Receiver<()>,
) {
    let exchange = request.exchange;
    let to_the_end = request.method == streamable::Method::Delete;
    let work = async {
        let request = http.request(request);
        let response = match http.send::<R>(request, stop.clone(), to_the_end).await {
            Ok(response) => response,
            Err(error) => {
                let _ = reports.send(Report::Failure { exchange, error }).await;
                return;
            }
        };
        let head = Report::Head {
            exchange,
            status: response.status(),
            session: response.headers().get(&SESSION_ID).cloned(),
            content_type: response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        if reports.send(head).await.is_err() {
            return;
        }
        let Ok(how) = read.recv().await else { return };
        let body = response.into_body();
        let last = match how {
            Read::Nothing => return,
            Read::Json => match Limited::new(body, http.max_body).collect().await {
                Ok(body) => Report::Body {
                    exchange,
                    body: body.to_bytes(),
                },
                Err(err) => Report::Failure {
                    exchange,
                    error: err.to_string(),
                },
            },
            Read::Quote { limit } => Report::Body {
                exchange,
                body: quote(body, limit).await,
            },
            Read::Events => {
                let mut events = SseStream::new(Bounded::new(body, http.max_body));
                while let Some(event) = events.next().await {
                    match event {
                        Ok(event) => {
                            if reports
                                .send(Report::Event { exchange, event })
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(%err, "SSE stream failed");
                            break;
                        }
                    }
                }
                Report::End { exchange }
            }
        };
        let _ = reports.send(last).await;
    };
    future::or(work, async {
        let _ = stop.recv().await;
    })
    .await;
}

/// The first `limit` bytes of a body (fewer if it ends or fails first).
async fn quote(mut body: Incoming, limit: usize) -> Bytes {
    let mut text = Vec::new();
    while text.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    text.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    text.truncate(limit);
    Bytes::from(text)
}
