//! MCP's Streamable HTTP transport, client side: a connection whose messages travel as HTTP
//! requests and responses, in both eras (revisions 2025-06-18 to 2025-11-25 in a session;
//! 2026-07-28, stateless, one POST per message with its mirrored headers).
//!
//! It is a transport like the websocket one: each message the endpoint sends is taken whole
//! (`poll_transmit_frame`) and handed to the core [`Client`] machine, and each message that
//! comes back — a JSON body, or one server-sent event's data, from a POST or from the `GET`
//! stream — is handed to the endpoint whole (`handle_frame`): one encoding, one parse, no
//! byte pipes. Every decision is the [`Client`]'s: which request to make when and with which
//! headers (`Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`, or a modern message's
//! `Mcp-Method` and `Mcp-Name`), what a status means,
//! when a dropped stream is resumed and after what wait (the server's `retry:`), when the
//! session is over. This driver makes the requests with hyper, reads the bodies the way the
//! machine says, sleeps until its [`poll_timeout`](Client::poll_timeout), and turns its end
//! into the endpoint's: a clean end of input, or a read error naming why (the server ended
//! the session, refused a POST — `HTTP 401 Unauthorized from POST: …` — or a request failed).
//!
//! HTTP/1.1 carries one exchange at a time per connection, and an SSE response keeps its
//! connection until it ends, so each request gets a TCP connection of its own. An event longer
//! than the frame limit ends its stream (see `bounded.rs`), so that a server cannot grow the
//! client's memory without bound.

mod bounded;
mod hyper_io;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use futures_lite::{future, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sse_stream::SseStream;
use tether_core::streamable::{
    self, modern, Client, Event, Exchange, HttpRequest, Read, ResponseHead, LAST_EVENT_ID_HEADER,
    SESSION_HEADER,
};
use tether_core::Control;

use crate::shared::Shared;
use crate::{clock, Error, Runtime};
use bounded::Bounded;
pub use hyper_io::HyperIo;

/// The session's id, from the initialize response, sent on every later request.
const SESSION_ID: HeaderName = HeaderName::from_static(SESSION_HEADER);

/// The negotiated protocol revision, sent on every request after initialization.
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static(modern::VERSION_HEADER);

/// The last event id seen on a stream, sent when resuming it.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static(LAST_EVENT_ID_HEADER);

/// What a POST (or a `DELETE`) accepts: a JSON body, or an SSE stream of messages.
const ACCEPT_POST: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");

/// What a `GET` stream accepts.
const ACCEPT_SSE: HeaderValue = HeaderValue::from_static("text/event-stream");

/// Reports from the exchanges waiting for the driver: a bound, so that a driver held back by
/// a full read-ahead holds the streams back too.
const REPORTS: usize = 16;

/// The exchanges' reports, in two channels. A response's head (or a request that failed before
/// one) carries no message and is taken whenever it comes: the next POST may wait for it, and
/// sending must not wait on the owner's reading. What a body brings (events, a JSON body, its
/// end or failure) is taken, in order, only while the endpoint has room for the messages.
struct Channels {
    heads: Sender<Report>,
    bodies: Sender<Report>,
}

/// Where the requests go.
#[derive(Debug)]
pub(crate) struct Target {
    /// `host:port`, to connect to.
    pub(crate) addr: String,
    /// The `Host` header (HTTP/1.1 requires one; hyper's client connection adds none).
    host: HeaderValue,
    /// The path and query, as the request target.
    path: Uri,
}

impl Target {
    /// `http://HOST[:PORT][/PATH]`, with no credentials in it.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let bad = |detail: String| Error::HttpUrl {
            url: url.to_owned(),
            detail,
        };
        let uri: Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("expected http://HOST:PORT/PATH".to_owned()));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host".to_owned()))?;
        if authority.host().is_empty() {
            return Err(bad("no host".to_owned()));
        }
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not sent; use a header".to_owned()
            ));
        }
        let port = authority.port_u16().unwrap_or(80);
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| bad(e.to_string()))?;
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| bad(format!("{e}")))?;
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            host,
            path,
        })
    }
}

/// Checks that `url` is a Streamable HTTP endpoint [`Connection::connect_http`] can reach
/// (`http://HOST[:PORT][/PATH]`, no credentials in it), without connecting: for a command
/// line, where a bad URL is a usage error.
///
/// [`Connection::connect_http`]: crate::Connection::connect_http
pub fn check_http_url(url: &str) -> Result<(), Error> {
    Target::parse(url).map(drop)
}

/// Where the requests go, and what goes with each.
#[derive(Debug)]
pub(crate) struct Http {
    target: Target,
    /// The caller's headers (an `Authorization`, say), sent with every request.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The largest JSON response body, or server-sent event, read: the frame limit.
    max_body: usize,
}

impl Http {
    pub(crate) fn new(
        target: Target,
        headers: Vec<(HeaderName, HeaderValue)>,
        max_body: usize,
    ) -> Self {
        Http {
            target,
            headers,
            max_body,
        }
    }

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
        // A modern message's mirror of its body (the client made each value fit a header).
        for (name, value) in &asked.mirrored {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
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

/// What the driver waited for.
enum Wake {
    Report(Report),
    /// The endpoint has something for the transport, room for input, or it ended.
    Endpoint,
    Timeout,
}

/// The transport of one connection, as one future for the runtime to spawn: the only owner of
/// the [`Client`]. It moves messages between the endpoint and the client, makes the client's
/// requests, feeds back what comes of them, and ends the endpoint's input at the client's end.
pub(crate) async fn run<M, R>(shared: Arc<Shared<M>>, http: Arc<Http>)
where
    M: Serialize + DeserializeOwned,
    R: Runtime,
{
    let mut client = Client::new();
    let (heads_tx, heads) = async_channel::bounded(REPORTS);
    let (bodies_tx, bodies) = async_channel::bounded(REPORTS);
    let mut running: BTreeMap<Exchange, Running> = BTreeMap::new();
    // Received messages the endpoint has no room for yet.
    let mut inbound: VecDeque<Vec<u8>> = VecDeque::new();
    let mut write_closed = false;
    loop {
        // Listening first: whatever the endpoint does after the look below wakes the wait.
        let output = shared.output.listen();
        let input = shared.input.listen();
        let stop = shared.stop.listen();
        let now = clock::now();
        {
            let mut state = shared.lock();
            if state.abandoned || state.ep.is_input_ended() {
                // The owner left, or the endpoint gave up (a timeout): every exchange stops.
                return;
            }
            // What came, in order, as far as the read-ahead has room.
            inbound.extend(std::iter::from_fn(|| client.poll_message()));
            let mut delivered = false;
            while state.ep.wants_input() {
                let Some(message) = inbound.pop_front() else {
                    break;
                };
                let _ = state.ep.handle_frame(message, now);
                delivered = true;
            }
            // What the owner sent, as fast as the client takes it: the rest waits in the
            // endpoint's queue, under its send budget.
            let mut transmitted = 0;
            while !write_closed && client.wants_message() {
                let Some(frame) = state.ep.poll_transmit_frame() else {
                    break;
                };
                transmitted += frame.len();
                client.handle_message(&frame, now);
            }
            if transmitted > 0 {
                state.ep.handle_transmitted(transmitted);
            }
            let mut controlled = false;
            while let Some(control) = state.ep.poll_control() {
                controlled = true;
                match control {
                    // The owner closed: the session's end (a `DELETE`) once what it sent went.
                    Control::SendClose { .. } | Control::CloseWrite => {
                        write_closed = true;
                        client.handle_close(now);
                        state.ep.handle_flushed(now);
                    }
                    Control::Flush => state.ep.handle_flushed(now),
                    // No transport-level ping over HTTP (the endpoint keeps no keepalive here).
                    Control::Ping => {}
                    Control::Abort => {
                        shared.settle(state);
                        return;
                    }
                }
            }
            if inbound.is_empty() {
                // Everything received went in first: the end comes after it.
                if let Some(end) = client.poll_end() {
                    match end.reason {
                        Some(why) => {
                            tracing::debug!("{why}");
                            state.ep.handle_read_error(why, now);
                        }
                        None => state.ep.handle_eof(now),
                    }
                    shared.settle(state);
                    // Every exchange still under way stops (a `DELETE` goes to its end).
                    return;
                }
            }
            if controlled {
                shared.settle(state);
            } else if delivered || transmitted > 0 {
                shared.wake(&mut state);
                drop(state);
                shared.events.notify(usize::MAX);
                shared.progress.notify(usize::MAX);
            }
        }
        while let Some(request) = client.poll_request() {
            let (read_tx, read_rx) = async_channel::bounded(1);
            let (stop_tx, stop_rx) = async_channel::bounded(1);
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
                Channels {
                    heads: heads_tx.clone(),
                    bodies: bodies_tx.clone(),
                },
                read_rx,
                stop_rx,
            );
            R::spawn(exchange);
        }
        while let Some(warning) = client.poll_warning() {
            tracing::warn!("{warning}");
        }
        running.retain(|exchange, _| client.wants(*exchange));
        // Held back by a full read-ahead, bodies wait in their bounded channel, and their
        // streams behind them; heads, the owner's messages and the timer go on.
        let held_back = !inbound.is_empty();
        let deadline = client.poll_timeout();
        // The driver holds a sender of each channel itself: neither ever closes.
        let wake = future::or(
            async {
                match heads.recv().await {
                    Ok(report) => Wake::Report(report),
                    Err(_) => future::pending().await,
                }
            },
            future::or(
                async {
                    match held_back {
                        false => match bodies.recv().await {
                            Ok(report) => Wake::Report(report),
                            Err(_) => future::pending().await,
                        },
                        true => future::pending().await,
                    }
                },
                future::or(
                    async {
                        future::or(output, future::or(input, stop)).await;
                        Wake::Endpoint
                    },
                    async {
                        match deadline {
                            Some(at) => {
                                R::sleep(at.saturating_duration_since(clock::now())).await;
                                Wake::Timeout
                            }
                            None => future::pending().await,
                        }
                    },
                ),
            ),
        )
        .await;
        let now = clock::now();
        match wake {
            Wake::Endpoint => {}
            Wake::Timeout => client.handle_timeout(now),
            Wake::Report(report) => handle_report(&mut client, &running, report, now),
        }
    }
}

/// Hands what an exchange reported to the client.
fn handle_report(
    client: &mut Client,
    running: &BTreeMap<Exchange, Running>,
    report: Report,
    now: std::time::Instant,
) {
    match report {
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
    }
}

/// One exchange: makes the request, reports the head, reads the body as the client says and
/// reports it, until done or no longer wanted (`stop` closed).
async fn run_exchange<R: Runtime>(
    http: Arc<Http>,
    request: HttpRequest,
    channels: Channels,
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
                let _ = channels
                    .heads
                    .send(Report::Failure { exchange, error })
                    .await;
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
        if channels.heads.send(head).await.is_err() {
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
                            if channels
                                .bodies
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
        let _ = channels.bodies.send(last).await;
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

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn a_url_names_where_to_connect_and_what_to_ask_for() {
        let target = Target::parse("http://127.0.0.1:8080/mcp?x=1").unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080");
        assert_eq!(target.host, "127.0.0.1:8080");
        assert_eq!(target.path, "/mcp?x=1");
        let target = Target::parse("http://example.invalid").unwrap();
        assert_eq!(target.addr, "example.invalid:80");
        assert_eq!(target.path, "/");
    }

    #[test]
    fn a_url_that_cannot_work_is_a_typed_error() {
        for url in [
            "https://127.0.0.1/mcp",
            "ws://127.0.0.1/mcp",
            "http://user:secret@127.0.0.1/mcp",
            "http:///mcp",
            "not a url",
        ] {
            let err = Target::parse(url).unwrap_err();
            assert!(
                matches!(err, crate::Error::HttpUrl { .. }),
                "{url}: {err:?}"
            );
        }
    }
}
