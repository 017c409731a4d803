//! `tether bridge`'s MCP endpoint: the Streamable HTTP transport at `/mcp`, on the same port
//! as its websockets, each session with a program of its own. hyper speaks HTTP;
//! `tether_core::streamable` decides everything about sessions and streams; this module moves
//! requests and bodies between the two, and runs each session's program.

mod body;
mod session;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method as HttpMethod, Request, Response, StatusCode};
use tether_core::streamable::{
    self, route, Head, Method, Post, Reply, Route, SessionRequest, Settings, Status,
};
use tether_io::{Io, Runtime};

pub use session::Sessions;

use crate::args::Bridge;
use crate::bridge::{Hub, Program};
use crate::gate::{self, Gate, Refused};
use crate::http::health_body;
use crate::hyper_io::HyperIo;
use body::Events;
use session::Shared;

/// Where the endpoint is served.
pub const PATH: &str = "/mcp";

/// The body of a 404: what the bridge does serve, and how it is authorized.
const NOT_FOUND: &[u8] = b"not found: this tether bridge serves MCP's Streamable HTTP at /mcp, \
    websockets at /, and /healthz; it takes a bearer token (Authorization: Bearer TOKEN), not \
    OAuth\n";

/// A response: a whole body, or a session's stream.
type Answer = Response<Either<Full<Bytes>, Events>>;

/// What every request of one TCP connection shares.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The sessions of the whole bridge (websockets included), for its limit and health.
    pub hub: Arc<Hub>,
    /// Who may make requests.
    pub gate: Arc<Gate>,
    /// The MCP sessions open.
    pub sessions: Arc<Sessions>,
    /// The bridge's flags.
    pub args: Arc<Bridge>,
    /// The client's address, given to the programs it starts.
    pub peer: SocketAddr,
}

impl Endpoint {
    /// Serves HTTP on `stream` (whose first request was read ahead and is read again) until
    /// the client closes it, or the bridge stops: then requests in progress get one grace
    /// period to finish.
    pub async fn serve<R: Runtime>(self, stream: impl Io) {
        let (hub, peer) = (Arc::clone(&self.hub), self.peer);
        let grace = Duration::from_millis(self.args.common.grace);
        let service = service_fn(move |request| {
            let endpoint = self.clone();
            async move { Ok::<_, Infallible>(endpoint.answer::<R>(request).await) }
        });
        let mut connection = pin!(http1::Builder::new().serve_connection(HyperIo(stream), service));
        let served = future::or(async { Some(connection.as_mut().await) }, async {
            hub.stopping().await;
            None
        })
        .await;
        let result = match served {
            Some(result) => result,
            None => {
                connection.as_mut().graceful_shutdown();
                future::or(connection, async {
                    R::sleep(grace).await;
                    Ok(())
                })
                .await
            }
        };
        if let Err(err) = result {
            tracing::debug!(%peer, %err, "HTTP connection ended");
        }
    }

    async fn answer<R: Runtime>(&self, request: Request<Incoming>) -> Answer {
        let (parts, body) = request.into_parts();
        if parts.uri.path() == crate::http::HEALTH && parts.method == HttpMethod::GET {
            let body = health_body(self.hub.active());
            return plain(StatusCode::OK, "application/json", body.into_bytes());
        }
        if parts.uri.path() != PATH {
            // Also what an MCP client looking for OAuth metadata (`/.well-known/…`) or
            // registration is told, and may show.
            return plain(StatusCode::NOT_FOUND, "text/plain", NOT_FOUND.to_vec());
        }
        let origin = parts.headers.get(header::ORIGIN).cloned();
        if parts.method == HttpMethod::OPTIONS {
            return self.preflight(origin);
        }
        let mut answer = match self.gate.check(&parts.headers, &parts.uri) {
            Ok(()) => self.mcp::<R>(&parts.method, &parts.headers, body).await,
            Err(refused) => refusal(refused),
        };
        if let Some(origin) = origin {
            allow_origin(answer.headers_mut(), origin);
        }
        answer
    }

    /// A request the gate let through.
    async fn mcp<R: Runtime>(
        &self,
        method: &HttpMethod,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Answer {
        let method = match *method {
            HttpMethod::POST => Method::Post,
            HttpMethod::GET => Method::Get,
            HttpMethod::DELETE => Method::Delete,
            _ => Method::Other,
        };
        let body = if method == Method::Post {
            match Limited::new(body, self.args.common.max_frame)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(err) if err.is::<LengthLimitError>() => {
                    return status(Status::too_large(), None)
                }
                Err(err) => {
                    tracing::debug!(peer = %self.peer, %err, "request body not read");
                    return status(
                        Status::error(400, -32000, "the request body was not read"),
                        None,
                    );
                }
            }
        } else {
            Bytes::new()
        };
        let (session, accept, content_type, last_event_id) = (
            joined(headers, streamable::SESSION_HEADER),
            joined(headers, header::ACCEPT.as_str()),
            joined(headers, header::CONTENT_TYPE.as_str()),
            joined(headers, streamable::LAST_EVENT_ID_HEADER),
        );
        let head = Head {
            method,
            session: session.as_deref(),
            accept: accept.as_deref(),
            content_type: content_type.as_deref(),
            last_event_id: last_event_id.as_deref(),
        };
        match route(&head, &body) {
            Route::Refuse(refused) => {
                let mut answer = status(refused, None);
                if method == Method::Other {
                    answer
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                }
                answer
            }
            Route::Start(post) => self.start::<R>(post),
            Route::Session { id, request } => match self.sessions.get(&id) {
                Some(shared) => self.continue_session(shared, request),
                None => status(Status::unknown_session(), None),
            },
        }
    }

    /// A new session, with its own program, answering its first POST.
    fn start<R: Runtime>(&self, post: Post) -> Answer {
        let place = match self.hub.admit(self.args.max_connections) {
            Some(place) if !self.hub.is_stopping() => place,
            _ => return status(Status::error(503, -32000, "no more sessions now"), None),
        };
        let id = match gate::random_hex() {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!(%err, "no session id");
                return status(Status::error(500, -32603, "no session id"), None);
            }
        };
        let (child, recorder) = match Program::start::<R>(&self.args, self.peer) {
            Ok(started) => started,
            Err(err) => {
                tracing::warn!(%err, "cannot start the program");
                return status(Status::error(500, -32603, "cannot start the program"), None);
            }
        };
        let settings = Settings::default().idle_timeout(
            self.args
                .idle_timeout
                .map(Duration::from_millis)
                .or(Settings::default().idle_timeout),
        );
        let now = tether_io::now();
        let shared = Arc::new(Shared::new(id, streamable::Session::new(settings, now)));
        let reply = shared.lock().handle_post(post, now);
        self.sessions.insert(Arc::clone(&shared));
        tracing::debug!(peer = %self.peer, session = %shared.id, "session started");
        R::spawn(session::run::<R>(
            Arc::clone(&shared),
            child,
            recorder,
            place,
            Arc::clone(&self.hub),
            Arc::clone(&self.sessions),
        ));
        self.reply(reply, shared)
    }

    /// A later request of an open session.
    fn continue_session(&self, shared: Arc<Shared>, request: SessionRequest) -> Answer {
        let now = tether_io::now();
        let reply = {
            let mut session = shared.lock();
            match request {
                SessionRequest::Post(post) => session.handle_post(post, now),
                SessionRequest::Get { last_event_id } => {
                    session.handle_get(last_event_id.as_deref(), now)
                }
                SessionRequest::Delete => session.handle_delete(now),
            }
        };
        self.sessions.prune(&shared);
        shared.changed();
        self.reply(reply, shared)
    }

    fn reply(&self, reply: Reply, shared: Arc<Shared>) -> Answer {
        let id = HeaderValue::from_str(&shared.id).ok();
        match reply {
            Reply::Status(refused) => status(refused, id),
            Reply::Stream { sink, sse } => {
                let kind = if sse {
                    streamable::EVENT_STREAM
                } else {
                    streamable::JSON
                };
                let mut answer = Response::new(Either::Right(Events::new(shared, sink)));
                let headers = answer.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                if let Some(id) = id {
                    headers.insert(session_header(), id);
                }
                answer
            }
        }
    }

    /// A browser's preflight: allowed (204) for an origin the gate allows, else 403. It
    /// carries no credentials, so the token is not asked for.
    fn preflight(&self, origin: Option<HeaderValue>) -> Answer {
        match origin {
            Some(origin) if self.gate.allows_origin(&origin) => {
                let mut answer = plain(StatusCode::NO_CONTENT, "text/plain", Vec::new());
                let headers = answer.headers_mut();
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST, DELETE"),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(
                        "authorization, content-type, accept, mcp-session-id, \
                         mcp-protocol-version, last-event-id",
                    ),
                );
                allow_origin(headers, origin);
                answer
            }
            _ => refusal(Refused::Origin),
        }
    }
}

/// Lets an allowed browser page read the response, and its session id.
fn allow_origin(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(streamable::SESSION_HEADER),
    );
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
}

fn session_header() -> HeaderName {
    HeaderName::from_static(streamable::SESSION_HEADER)
}

/// Every value of header `name`, joined with `,`.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// A status from the session machine, with its JSON body, and the session id if any.
fn status(status: Status, session: Option<HeaderValue>) -> Answer {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = match status.body {
        Some(body) => plain(code, streamable::JSON, body),
        None => plain(code, "text/plain", Vec::new()),
    };
    if let Some(id) = session {
        answer.headers_mut().insert(session_header(), id);
    }
    answer
}

/// The gate's refusal, as for a websocket handshake: its status, its JSON-RPC error body, and
/// for a 401 its challenge.
fn refusal(refused: Refused) -> Answer {
    let mut answer = plain(refused.status(), streamable::JSON, refused.body());
    if let Some(challenge) = refused.challenge() {
        answer
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    answer
}

fn plain(code: StatusCode, kind: &'static str, body: Vec<u8>) -> Answer {
    let body_empty = body.is_empty();
    let mut answer = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *answer.status_mut() = code;
    if !body_empty {
        answer
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    }
    answer
}
