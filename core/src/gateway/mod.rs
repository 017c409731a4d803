//! A listening bridge as one machine: [`Gateway`].
//!
//! A bridge accepts TCP connections, answers HTTP requests (MCP's Streamable HTTP at `/mcp`,
//! `/healthz`, refusals) and websocket handshakes, and gives each session (a websocket client,
//! or a Streamable HTTP session) a program of its own, relaying messages between the two.
//! Requests of MCP's stateless revision (2026-07-28), which have no session, share a pool of
//! [`Config::pool`] programs instead (see `modern.rs` and `pool.rs` for their rules). The
//! gateway decides all of it — who may come in, which status and JSON-RPC error a refusal
//! has, when to start and stop programs, where each message goes, when a connection is
//! dropped — and does none of it: the adapter parses HTTP and websocket bytes (with well-kept
//! libraries), spawns programs, and moves messages. Time is an argument, as everywhere in
//! this crate.
//!
//! # Contract
//!
//! Inputs (`handle_*`), each with the current time where time matters:
//!
//! | input | when the adapter calls it |
//! |---|---|
//! | [`handle_accept`](Gateway::handle_accept) | a TCP connection was accepted; its handshake deadline starts |
//! | [`handle_request`](Gateway::handle_request) | a request head was read (an HTTP request, a websocket handshake, `/healthz`) |
//! | [`handle_body`](Gateway::handle_body) | the body [`wants_body`](Gateway::wants_body) asked for was read (or was too large, or failed) |
//! | [`handle_body_dropped`](Gateway::handle_body_dropped) | a streamed response body was sent, or its connection is gone |
//! | [`handle_ws_open`](Gateway::handle_ws_open) | the accepted websocket handshake (101) went out |
//! | [`handle_client_message`](Gateway::handle_client_message) | a websocket client sent a message, while [`wants_client_input`](Gateway::wants_client_input) |
//! | [`handle_closed`](Gateway::handle_closed) | a connection ended (for a websocket: the client's connection is over) |
//! | [`handle_started`](Gateway::handle_started) | a program asked for by [`poll_start`](Gateway::poll_start) was spawned, or could not be |
//! | [`handle_program_message`](Gateway::handle_program_message) | a program wrote a message, while [`wants_program_output`](Gateway::wants_program_output) |
//! | [`handle_program_end`](Gateway::handle_program_end) | a program's output ended and it exited (status if known) |
//! | [`handle_stop`](Gateway::handle_stop) | the bridge is to stop (a signal); idempotent |
//! | [`handle_timeout`](Gateway::handle_timeout) | the deadline from [`poll_timeout`](Gateway::poll_timeout) passed |
//!
//! Outputs, looked at after every input (the driver wakes every waiter on each change):
//!
//! | output | what the adapter does |
//! |---|---|
//! | [`take_response`](Gateway::take_response) | writes the response to that request (once: it is handed out once) |
//! | [`take_body`](Gateway::take_body) | the next piece of a streamed body: data, wait, or the end |
//! | [`connection`](Gateway::connection) | [`Order::Serve`], [`Order::Drain`] (finish the requests in progress, take no more), [`Order::Drop`] (close it now) |
//! | [`poll_start`](Gateway::poll_start) | spawns a program, tells its client's address, then [`handle_started`](Gateway::handle_started) |
//! | [`poll_program`](Gateway::poll_program) | sends the message to the program, or closes it ([`ToProgram::Close`]) |
//! | [`program_closing`](Gateway::program_closing) | abandons a send the program is not taking: it is being closed |
//! | [`poll_client`](Gateway::poll_client) | sends the message to the websocket client, or closes with the reason's code |
//! | [`client_closing`](Gateway::client_closing) | abandons a send the client is not taking: it is being closed |
//! | [`poll_timeout`](Gateway::poll_timeout) | arms the one timer |
//! | [`is_finished`](Gateway::is_finished) | once stopping: every session and program is over |
//!
//! Timers: every connection's handshake deadline (the first request, and for a websocket the
//! handshake, must come within [`Config::handshake_timeout`]), the grace of a draining HTTP
//! connection once stopping ([`Config::shutdown_grace`]), and each HTTP session's idle
//! deadline; for the pool, each program's restart delay and probe deadline, and each modern
//! request's next keep-alive. `poll_timeout` is the earliest; after `handle_timeout(now)`
//! none is left at or before `now`. Time that goes backwards is taken as no time.
//!
//! Bounds: messages queued for a websocket client or its program are at most
//! [`Config::relay_queue`] each way, as long as the adapter reads only while `wants_*` says
//! so (beyond, messages are dropped and counted, never queued); an HTTP session keeps at most
//! its [`Settings::buffer`] of events plus one message; a POST body is read up to
//! [`Config::max_body`]; sessions are at most [`Config::max_connections`]; modern requests
//! in progress at most [`Config::max_calls`], each keeping at most [`Config::relay_queue`]
//! events untaken besides its answer.

mod gate;
mod http;
mod modern;
mod pool;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use gate::Refused;
pub use http::{Body, Request, Response};
pub use pool::LEGACY_VERSION;

use crate::restart::RestartPolicy;
use crate::streamable::{
    self, route, Head, Method, Post, Reply, Route, Session, SessionRequest, Settings, Sink, Status,
    Take, ToChild,
};
use crate::{CloseReason, ErrorObject, ExitStatus, Message};
use gate::Gate;
use streamable::modern::{METHOD_HEADER, NAME_HEADER, VERSION_HEADER};

/// Where MCP's Streamable HTTP endpoint is served.
pub const PATH: &str = "/mcp";

/// The health check's path.
pub const HEALTH: &str = "/healthz";

/// The body of a 404: what the bridge does serve, and how it is authorized.
pub const NOT_FOUND: &str = "not found: this tether bridge serves MCP's Streamable HTTP at /mcp, \
    websockets at /, and /healthz; it takes a bearer token (Authorization: Bearer TOKEN), not \
    OAuth\n";

/// The JSON-RPC code of the bridge's refusals: an implementation-defined server error.
const SERVER_ERROR: i64 = -32000;

/// The headers a browser page may send with a request (answered to its preflight).
const ALLOW_HEADERS: &str = "authorization, content-type, accept, mcp-session-id, \
                             mcp-protocol-version, mcp-method, mcp-name, last-event-id";

/// Channels kept for [`Gateway::poll_wake`] before it says [`Wake::All`] instead.
const MAX_WAKES: usize = 256;

/// The methods the MCP endpoint takes.
const ALLOW_METHODS: &str = "GET, POST, DELETE";

/// How a gateway bounds and admits.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The bearer token every request and handshake must carry; `None` admits anyone who
    /// reaches the listener.
    pub token: Option<String>,
    /// Browser origins allowed besides the bridge's own.
    pub allow_origins: Vec<String>,
    /// The address listened on: the bridge's own origin, and on loopback the `Host` names
    /// served. `None` checks neither.
    pub listen: Option<SocketAddr>,
    /// Sessions (websocket and HTTP) at once; more are refused with 503.
    pub max_connections: usize,
    /// How long a new connection has for its first request (and a websocket for its
    /// handshake) before it is dropped.
    pub handshake_timeout: Duration,
    /// Once stopping, how long an HTTP connection may finish the requests in progress.
    pub shutdown_grace: Duration,
    /// The largest POST body read; a larger one is refused with 413.
    pub max_body: usize,
    /// Messages queued for a websocket client, or for its program, at most.
    pub relay_queue: usize,
    /// How each Streamable HTTP session bounds itself (its buffer, idle timeout, streams).
    pub session: Settings,
    /// Long-lived programs shared by every modern client (at least 1), each started when a
    /// request first needs it.
    pub pool: usize,
    /// When a pool program that ended is started again, and the crash-loop guard.
    pub restart: RestartPolicy,
    /// How often a modern request's event stream with nothing to say gets a keep-alive
    /// comment (and how long its head is held for its answer before a 200 stream is
    /// committed).
    pub keepalive: Duration,
    /// Modern requests in progress at once; more are refused with 503.
    pub max_calls: usize,
}

impl Default for Config {
    /// No token, no other origin, no listen address; 64 sessions, 10 s for a handshake, 2 s of
    /// grace, 16 MiB bodies, 64 messages each way, the default session settings; one pool
    /// program, never restarted ahead of need, keep-alives every 15 s, 4096 modern requests.
    fn default() -> Self {
        Config {
            token: None,
            allow_origins: Vec::new(),
            listen: None,
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
            max_body: crate::DEFAULT_MAX_FRAME,
            relay_queue: 64,
            session: Settings::default(),
            pool: 1,
            restart: RestartPolicy::default(),
            keepalive: Duration::from_secs(15),
            max_calls: 4096,
        }
    }
}

impl Config {
    /// Sets [`token`](Self::token).
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
    /// Sets [`allow_origins`](Self::allow_origins).
    pub fn allow_origins(mut self, origins: Vec<String>) -> Self {
        self.allow_origins = origins;
        self
    }
    /// Sets [`listen`](Self::listen).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }
    /// Sets [`max_connections`](Self::max_connections).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }
    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
    /// Sets [`max_body`](Self::max_body).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
    /// Sets [`relay_queue`](Self::relay_queue) (at least 1).
    pub fn relay_queue(mut self, messages: usize) -> Self {
        self.relay_queue = messages.max(1);
        self
    }
    /// Sets [`session`](Self::session).
    pub fn session(mut self, settings: Settings) -> Self {
        self.session = settings;
        self
    }
    /// Sets [`pool`](Self::pool) (at least 1).
    pub fn pool(mut self, programs: usize) -> Self {
        self.pool = programs.max(1);
        self
    }
    /// Sets [`restart`](Self::restart).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }
    /// Sets [`keepalive`](Self::keepalive).
    pub fn keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every;
        self
    }
    /// Sets [`max_calls`](Self::max_calls).
    pub fn max_calls(mut self, max: usize) -> Self {
        self.max_calls = max;
        self
    }
}

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u64);
        impl $name {
            /// The number, for logs.
            pub fn get(self) -> u64 {
                self.0
            }
        }
    )*};
}

impl ConnId {
    /// The channel its waiters wait on (see [`Gateway::poll_wake`]).
    pub fn channel(self) -> u64 {
        self.0
    }
}

ids! {
    /// An accepted TCP connection.
    ConnId,
    /// One HTTP request (or websocket handshake).
    RequestId,
    /// One program the gateway asked to start.
    ProgramId,
    /// One streamed response body.
    BodyId
}

/// What the adapter is to do with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Serve it.
    Serve,
    /// Finish the requests in progress and take no more (HTTP's graceful shutdown).
    Drain,
    /// Close it now: its handshake took too long, its grace is over, or it is unknown.
    Drop,
}

/// A program to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Its name in later calls.
    pub program: ProgramId,
    /// The address of the client it serves (the bridge tells the program); `None` for a
    /// pool program, shared by modern clients, which serves no one client.
    pub client: Option<SocketAddr>,
    /// The channel its waiters wait on (see [`Gateway::poll_wake`]).
    pub channel: u64,
}

/// Whose waiters an input concerns (see [`Gateway::poll_wake`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The waiters on this channel.
    Channel(u64),
    /// Every waiter.
    All,
}

/// What a program must be sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ToProgram {
    /// A message from its client.
    Message(Message),
    /// Its session is over: close its input and shut it down.
    Close,
}

/// What a websocket client must be sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ToClient {
    /// A message from its program.
    Message(Message),
    /// Close the websocket for this reason (its code and text are the endpoint's), then
    /// nothing more.
    Close(CloseReason),
}

/// Why a request body was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// It was over the limit [`Gateway::wants_body`] gave.
    TooLarge,
    /// The connection failed while reading it.
    Failed,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted; no request yet.
    Handshaking,
    /// Serving HTTP.
    Http,
    /// A websocket handshake accepted, its 101 not yet out.
    Upgrading,
    /// A websocket session.
    Websocket,
}

#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    phase: Phase,
    order: Order,
    deadline: Option<Instant>,
}

/// The parts of a POST's head kept while its body is read.
#[derive(Debug)]
struct PostHead {
    session: Option<String>,
    accept: Option<String>,
    content_type: Option<String>,
    /// The headers a modern request mirrors its body in (lower-case names).
    mirror: Vec<(&'static str, String)>,
}

#[derive(Debug)]
enum ReqState {
    /// Waiting for its body.
    Body(PostHead),
    /// Waiting for its session's program to start; then answered with `reply`.
    Starting { program: ProgramId, reply: Reply },
    /// A modern request: its call decides the response.
    Call,
    /// Answered; the response waits to be taken.
    Ready(Response),
}

#[derive(Debug)]
struct Req {
    conn: ConnId,
    /// An allowed `Origin`, which the response lets read.
    origin: Option<String>,
    state: ReqState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Ws(ConnId),
    Http(u64),
    /// A pool program: its slot.
    Pool(usize),
}

/// Whose events a streamed body reads.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// A stream of a legacy HTTP session (its key).
    Session(u64, Sink),
    /// A modern request's own stream (its call's key).
    Call(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Starting,
    Running,
}

#[derive(Debug)]
struct Program {
    owner: Owner,
    running: Running,
    /// For a websocket session: what its client sent, in order, then maybe the close.
    queue: VecDeque<ToProgram>,
    /// The close was decided (queued or sent).
    closing: bool,
}

#[derive(Debug)]
struct WsSession {
    program: Option<ProgramId>,
    /// What the program said, in order, then maybe the close.
    queue: VecDeque<ToClient>,
    /// The close was decided.
    closing: bool,
    /// The close must go before what is queued (the bridge is stopping).
    urgent: bool,
    client_gone: bool,
    program_over: bool,
}

#[derive(Debug)]
struct HttpSession {
    id: String,
    session: Session,
    started: bool,
    program_over: bool,
    bodies: usize,
}

/// A listening bridge's decisions. See the [module documentation](self) for the contract.
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    gate: Gate,
    now: Option<Instant>,
    stopping: bool,
    next: u64,
    conns: BTreeMap<ConnId, Conn>,
    requests: BTreeMap<RequestId, Req>,
    ws: BTreeMap<ConnId, WsSession>,
    sessions: BTreeMap<u64, HttpSession>,
    by_id: BTreeMap<String, u64>,
    programs: BTreeMap<ProgramId, Program>,
    starts: VecDeque<Start>,
    bodies: BTreeMap<BodyId, Reader>,
    /// The pool programs modern clients share.
    slots: Vec<pool::Slot>,
    /// Modern requests in progress, by the id the bridge gave them at their program.
    calls: BTreeMap<u64, pool::Call>,
    /// The calls' next keep-alives, earliest first.
    keepalives: BTreeSet<(Instant, u64)>,
    dropped: u64,
    /// Channels whose waiters the last inputs concern.
    wakes: BTreeSet<u64>,
    /// Every waiter is concerned.
    wake_all: bool,
    /// Something may be over (a session, a websocket, an id): the next settle looks.
    ended: bool,
}

impl Gateway {
    /// A gateway with no connection yet.
    pub fn new(config: Config) -> Self {
        let gate = Gate::new(
            config.token.clone(),
            config.allow_origins.clone(),
            config.listen,
        );
        let slots = (1..=config.pool.max(1) as u64)
            .map(|channel| pool::Slot::new(channel, config.restart))
            .collect::<Vec<_>>();
        Gateway {
            next: slots.len() as u64,
            slots,
            calls: BTreeMap::new(),
            keepalives: BTreeSet::new(),
            config,
            gate,
            now: None,
            stopping: false,
            conns: BTreeMap::new(),
            requests: BTreeMap::new(),
            ws: BTreeMap::new(),
            sessions: BTreeMap::new(),
            by_id: BTreeMap::new(),
            programs: BTreeMap::new(),
            starts: VecDeque::new(),
            bodies: BTreeMap::new(),
            dropped: 0,
            wakes: BTreeSet::new(),
            wake_all: false,
            ended: false,
        }
    }

    /// The settings it was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// `now`, or the latest time seen if `now` is earlier: time never goes back.
    fn clock(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |seen| seen.max(now));
        self.now = Some(now);
        now
    }

    /// Whose waiters the last inputs concern, one at a time (then `None`): a driver that
    /// wakes only those, instead of every waiter on every input, keeps a bridge with many
    /// sessions from waking them all for each message. A connection's waiters (its HTTP
    /// requests, its websocket's relay, the program of a websocket session) wait on
    /// [`ConnId::channel`]; a program's on [`Start::channel`]; a streamed body's on
    /// [`body_channel`](Self::body_channel); anything else (starting programs, the end) on
    /// [`Wake::All`] only.
    pub fn poll_wake(&mut self) -> Option<Wake> {
        if std::mem::take(&mut self.wake_all) {
            self.wakes.clear();
            return Some(Wake::All);
        }
        self.wakes.pop_first().map(Wake::Channel)
    }

    fn wake(&mut self, channel: u64) {
        // Once stopping, any change may be the last one the end waits for.
        // A driver that never asks is not owed a growing list: past a bound, everyone.
        if self.stopping || self.wakes.len() >= MAX_WAKES {
            self.wake_all = true;
            self.wakes.clear();
        } else {
            self.wakes.insert(channel);
        }
    }

    fn wake_all(&mut self) {
        self.wake_all = true;
    }

    fn wake_program(&mut self, program: ProgramId) {
        match self.programs.get(&program).map(|p| p.owner) {
            Some(Owner::Ws(conn)) => self.wake(conn.0),
            Some(Owner::Http(key)) => self.wake(key),
            Some(Owner::Pool(slot)) => self.wake(self.slots[slot].channel),
            None => self.wake_all(),
        }
    }

    /// The channel a streamed body's reader waits on (its session's), if the body is known.
    pub fn body_channel(&self, body: BodyId) -> Option<u64> {
        match self.bodies.get(&body)? {
            Reader::Session(key, _) => Some(*key),
            Reader::Call(key) => self.calls.get(key).map(|c| c.conn.0),
        }
    }

    // ---- connections ------------------------------------------------------------------

    /// A TCP connection from `peer` was accepted. Its first request (and for a websocket, the
    /// handshake) must come before the handshake deadline; once stopping, it is dropped.
    pub fn handle_accept(&mut self, peer: SocketAddr, now: Instant) -> ConnId {
        let now = self.clock(now);
        let conn = ConnId(self.id());
        let (order, deadline) = if self.stopping {
            (Order::Drop, None)
        } else {
            (Order::Serve, now.checked_add(self.config.handshake_timeout))
        };
        self.conns.insert(
            conn,
            Conn {
                peer,
                phase: Phase::Handshaking,
                order,
                deadline,
            },
        );
        conn
    }

    /// What to do with `conn` now. An unknown (or closed) connection is [`Order::Drop`].
    pub fn connection(&self, conn: ConnId) -> Order {
        self.conns.get(&conn).map_or(Order::Drop, |c| c.order)
    }

    /// `conn` ended: its requests not yet answered are forgotten (a program being started for
    /// one still starts; its session idles out), and a websocket's client is gone: its
    /// program is closed.
    pub fn handle_closed(&mut self, conn: ConnId, now: Instant) {
        let now = self.clock(now);
        self.ended = true;
        if self.conns.remove(&conn).is_none() {
            return;
        }
        self.wake(conn.0);
        let untaken: BTreeSet<RequestId> = self
            .requests
            .iter()
            .filter(|(_, req)| req.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        self.requests.retain(|_, req| req.conn != conn);
        self.cancel_untaken(&untaken);
        self.client_gone(conn);
        self.settle(now);
    }

    // ---- HTTP -------------------------------------------------------------------------

    /// A request head on `conn`. Its answer comes from [`take_response`](Self::take_response),
    /// at once or, for a POST, after [`handle_body`](Self::handle_body) (and maybe a program's
    /// start). A websocket handshake is answered at once: 101 to accept (then
    /// [`handle_ws_open`](Self::handle_ws_open)), else a refusal to write before closing.
    pub fn handle_request(&mut self, conn: ConnId, request: Request, now: Instant) -> RequestId {
        let now = self.clock(now);
        self.wake(conn.0);
        let id = RequestId(self.id());
        let origin = request
            .header_values("origin")
            .next()
            .filter(|origin| self.gate.allows_origin(origin))
            .map(str::to_owned);
        let response = self.answer(conn, id, &request, now);
        let state = match response {
            Some(response) => ReqState::Ready(response),
            None => ReqState::Body(PostHead {
                session: request.joined(streamable::SESSION_HEADER),
                accept: request.joined("accept"),
                content_type: request.joined("content-type"),
                mirror: [VERSION_HEADER, METHOD_HEADER, NAME_HEADER]
                    .into_iter()
                    .filter_map(|name| Some((name, request.joined(name)?)))
                    .collect(),
            }),
        };
        self.requests.insert(
            id,
            Req {
                conn,
                origin,
                state,
            },
        );
        self.finish_ready(id);
        self.settle(now);
        id
    }

    /// A websocket handshake's request on `conn`, answered at once: 101 to accept (then
    /// [`handle_ws_open`](Self::handle_ws_open) once it is out), else the refusal to write
    /// before closing. The same as [`handle_request`](Self::handle_request) and
    /// [`take_response`](Self::take_response) together, for a library that asks for the
    /// answer inside a callback.
    pub fn handle_handshake(&mut self, conn: ConnId, request: Request, now: Instant) -> Response {
        let id = self.handle_request(conn, request, now);
        self.take_response(id)
            .unwrap_or_else(|| Response::error(400, SERVER_ERROR, "not a websocket handshake"))
    }

    /// The answer to a request head, or `None` for a POST whose body is to be read.
    fn answer(
        &mut self,
        conn: ConnId,
        _id: RequestId,
        request: &Request,
        now: Instant,
    ) -> Option<Response> {
        let websocket = request.is_websocket();
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.phase == Phase::Handshaking && !websocket {
                c.phase = Phase::Http;
                c.deadline = None;
            }
        }
        if request.method == "GET" && request.path() == HEALTH {
            let body = format!(r#"{{"status":"ok","connections":{}}}"#, self.active());
            return Some(Response::full(200, streamable::JSON, body.into_bytes()));
        }
        if websocket {
            return Some(self.handshake(conn, request, now));
        }
        if request.path() != PATH {
            // Also what an MCP client looking for OAuth metadata (`/.well-known/…`) or
            // registration is told, and may show.
            return Some(Response::full(
                404,
                "text/plain",
                NOT_FOUND.as_bytes().to_vec(),
            ));
        }
        if request.method == "OPTIONS" {
            return Some(self.preflight(request));
        }
        if let Err(refused) = self.gate.check(request) {
            return Some(refused.response());
        }
        let method = method(&request.method);
        if method == Method::Post {
            return None;
        }
        let session = request.joined(streamable::SESSION_HEADER);
        if matches!(method, Method::Get | Method::Delete)
            && session.as_deref().is_none_or(|s| s.trim().is_empty())
        {
            // The modern era has no stream outside a request and nothing to end; the legacy
            // era's need a session.
            let mut response = Response::error(
                405,
                SERVER_ERROR,
                "GET and DELETE need a legacy session (Mcp-Session-Id); modern requests are POSTs",
            );
            response.headers.push(("allow", "POST".to_owned()));
            return Some(response);
        }
        let accept = request.joined("accept");
        let last_event_id = request.joined(streamable::LAST_EVENT_ID_HEADER);
        let head = Head {
            method,
            session: session.as_deref(),
            accept: accept.as_deref(),
            content_type: None,
            last_event_id: last_event_id.as_deref(),
        };
        Some(self.route(&head, &[], now, || None).0)
    }

    /// A browser's preflight: 204 for an allowed origin, else 403. It carries no credentials,
    /// so no token is asked for.
    fn preflight(&self, request: &Request) -> Response {
        match request.header_values("origin").next() {
            Some(origin) if self.gate.allows_origin(origin) => {
                let mut response = Response::full(204, "text/plain", Vec::new());
                response
                    .headers
                    .push(("access-control-allow-methods", ALLOW_METHODS.to_owned()));
                response
                    .headers
                    .push(("access-control-allow-headers", ALLOW_HEADERS.to_owned()));
                response
            }
            _ => Refused::Origin.response(),
        }
    }

    /// A websocket handshake: refused at the gate, 503 over the limit or once stopping, else
    /// 101 and a session (its program starts once the 101 is out).
    fn handshake(&mut self, conn: ConnId, request: &Request, _now: Instant) -> Response {
        if let Err(refused) = self.gate.check(request) {
            return refused.response();
        }
        if self.stopping || self.active() >= self.config.max_connections {
            return Response::full(503, "text/plain", b"too many connections\n".to_vec());
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return Response::full(503, "text/plain", b"the connection is gone\n".to_vec());
        };
        c.phase = Phase::Upgrading;
        self.ws.insert(
            conn,
            WsSession {
                program: None,
                queue: VecDeque::new(),
                closing: false,
                urgent: false,
                client_gone: false,
                program_over: false,
            },
        );
        Response::full(101, "text/plain", Vec::new())
    }

    /// Whether a body is to be read for `request`, and how much at most.
    pub fn wants_body(&self, request: RequestId) -> Option<usize> {
        match self.requests.get(&request)?.state {
            ReqState::Body(_) => Some(self.config.max_body),
            _ => None,
        }
    }

    /// The body of `request`, read whole, or why not. `new_id` makes a fresh session id (256
    /// random bits, say), asked for only if this request starts a session; `None` if no id
    /// can be made.
    pub fn handle_body(
        &mut self,
        request: RequestId,
        body: Result<Vec<u8>, BodyError>,
        now: Instant,
        new_id: impl FnOnce() -> Option<String>,
    ) {
        let now = self.clock(now);
        let Some(req) = self.requests.get_mut(&request) else {
            return;
        };
        let ReqState::Body(head) = &req.state else {
            return;
        };
        let head = PostHead {
            session: head.session.clone(),
            accept: head.accept.clone(),
            content_type: head.content_type.clone(),
            mirror: head.mirror.clone(),
        };
        let conn = req.conn;
        self.wake(conn.0);
        let state = match body {
            Err(BodyError::TooLarge) => ReqState::Ready(Response::from_status(Status::too_large())),
            Err(BodyError::Failed) => ReqState::Ready(Response::error(
                400,
                SERVER_ERROR,
                "the request body was not read",
            )),
            Ok(body) if body.len() > self.config.max_body => {
                ReqState::Ready(Response::from_status(Status::too_large()))
            }
            Ok(body) => match self.modern(request, conn, &head, &body, now) {
                Some(state) => state,
                None => self.legacy(&head, conn, &body, now, new_id),
            },
        };
        if let Some(req) = self.requests.get_mut(&request) {
            // A modern call may be answered already (by the bridge itself).
            if matches!(req.state, ReqState::Body(_)) {
                req.state = state;
            }
        }
        self.finish_ready(request);
        self.settle(now);
    }

    /// A legacy POST body: a new session, or a message of one.
    fn legacy(
        &mut self,
        head: &PostHead,
        conn: ConnId,
        body: &[u8],
        now: Instant,
        new_id: impl FnOnce() -> Option<String>,
    ) -> ReqState {
        let route_head = Head {
            method: Method::Post,
            session: head.session.as_deref(),
            accept: head.accept.as_deref(),
            content_type: head.content_type.as_deref(),
            last_event_id: None,
        };
        let client = self.conns.get(&conn).map(|c| c.peer);
        let (response, starting) =
            self.route(&route_head, body, now, || Some((new_id()?, client?)));
        match starting {
            Some((program, reply)) => ReqState::Starting { program, reply },
            None => ReqState::Ready(response),
        }
    }

    /// Routes a request to the MCP endpoint: a refusal, a new session (with the program to
    /// start, answered once it has), or a request of an open session.
    fn route(
        &mut self,
        head: &Head<'_>,
        body: &[u8],
        now: Instant,
        new: impl FnOnce() -> Option<(String, SocketAddr)>,
    ) -> (Response, Option<(ProgramId, Reply)>) {
        match route(head, body) {
            Route::Refuse(status) => {
                let mut response = Response::from_status(status);
                if head.method == Method::Other {
                    response.headers.push(("allow", ALLOW_METHODS.to_owned()));
                }
                (response, None)
            }
            Route::Start(post) => self.start(post, now, new),
            Route::Session { id, request } => match self.by_id.get(&id).copied() {
                Some(key) => (self.continue_session(key, request, now), None),
                None => (Response::from_status(Status::unknown_session()), None),
            },
        }
    }

    /// A new session: refused with 503 over the limit or once stopping, 500 without an id;
    /// else its program is to start, and the first POST is answered once it has.
    fn start(
        &mut self,
        post: Post,
        now: Instant,
        new: impl FnOnce() -> Option<(String, SocketAddr)>,
    ) -> (Response, Option<(ProgramId, Reply)>) {
        if self.stopping || self.active() >= self.config.max_connections {
            return (
                Response::error(503, SERVER_ERROR, "no more sessions now"),
                None,
            );
        }
        let Some((id, client)) = new().filter(|(id, _)| !self.by_id.contains_key(id)) else {
            return (
                Response::error(500, ErrorObject::INTERNAL_ERROR, "no session id"),
                None,
            );
        };
        let key = self.id();
        let program = ProgramId(self.id());
        let mut session = Session::new(self.config.session.clone(), now);
        let reply = session.handle_post(post, now);
        self.sessions.insert(
            key,
            HttpSession {
                id,
                session,
                started: false,
                program_over: false,
                bodies: 0,
            },
        );
        self.programs.insert(
            program,
            Program {
                owner: Owner::Http(key),
                running: Running::Starting,
                queue: VecDeque::new(),
                closing: false,
            },
        );
        self.starts.push_back(Start {
            program,
            client: Some(client),
            channel: key,
        });
        self.wake_all();
        (
            Response::full(500, "text/plain", Vec::new()),
            Some((program, reply)),
        )
    }

    /// A later request of the open session `key`.
    fn continue_session(&mut self, key: u64, request: SessionRequest, now: Instant) -> Response {
        self.wake(key);
        self.ended = true;
        let Some(http) = self.sessions.get_mut(&key) else {
            return Response::from_status(Status::unknown_session());
        };
        let reply = match request {
            SessionRequest::Post(post) => http.session.handle_post(post, now),
            SessionRequest::Get { last_event_id } => {
                http.session.handle_get(last_event_id.as_deref(), now)
            }
            SessionRequest::Delete => http.session.handle_delete(now),
        };
        self.reply(key, reply)
    }

    /// A session's reply as a response, with the session's id.
    fn reply(&mut self, key: u64, reply: Reply) -> Response {
        let Some(http) = self.sessions.get_mut(&key) else {
            return Response::from_status(Status::unknown_session());
        };
        let id = http.id.clone();
        let mut response = match reply {
            Reply::Status(status) => Response::from_status(status),
            Reply::Stream { sink, sse } => {
                http.bodies += 1;
                self.next += 1;
                let body = BodyId(self.next);
                self.bodies.insert(body, Reader::Session(key, sink));
                let kind = if sse {
                    streamable::EVENT_STREAM
                } else {
                    streamable::JSON
                };
                let mut headers = vec![
                    ("content-type", kind.to_owned()),
                    ("cache-control", "no-cache".to_owned()),
                ];
                if sse {
                    // A buffering proxy in front would hold the events back.
                    headers.push(("x-accel-buffering", "no".to_owned()));
                }
                Response {
                    status: 200,
                    headers,
                    body: Body::Stream(body),
                }
            }
        };
        response.headers.push((streamable::SESSION_HEADER, id));
        response
    }

    /// Adds the CORS headers to a ready response for an allowed origin.
    fn finish_ready(&mut self, request: RequestId) {
        if let Some(Req {
            origin: Some(origin),
            state: ReqState::Ready(response),
            ..
        }) = self.requests.get_mut(&request)
        {
            if response.header("access-control-allow-origin").is_none() {
                response
                    .headers
                    .push(("access-control-allow-origin", origin.clone()));
                response.headers.push((
                    "access-control-expose-headers",
                    streamable::SESSION_HEADER.to_owned(),
                ));
                response.headers.push(("vary", "origin".to_owned()));
            }
        }
    }

    /// The answer to `request`, once ready; handed out once.
    pub fn take_response(&mut self, request: RequestId) -> Option<Response> {
        if !matches!(self.requests.get(&request)?.state, ReqState::Ready(_)) {
            return None;
        }
        match self.requests.remove(&request)?.state {
            ReqState::Ready(response) => Some(response),
            _ => None,
        }
    }

    /// The next piece of a streamed body: [`Take::Data`] to send, [`Take::Wait`] until the
    /// gateway changes, [`Take::End`] when complete (then
    /// [`handle_body_dropped`](Self::handle_body_dropped)).
    pub fn take_body(&mut self, body: BodyId) -> Take {
        let (key, sink) = match self.bodies.get(&body) {
            Some(&Reader::Session(key, sink)) => (key, sink),
            Some(&Reader::Call(key)) => return self.take_call(key),
            None => return Take::End,
        };
        let take = match self.sessions.get_mut(&key) {
            Some(http) => http.session.take(sink),
            None => Take::End,
        };
        if take != Take::Wait {
            // Taking may have made room: the program is read again.
            self.wake(key);
        }
        take
    }

    /// A streamed body was sent, or its connection is gone: what it did not take stays for a
    /// resumption.
    pub fn handle_body_dropped(&mut self, body: BodyId, now: Instant) {
        let now = self.clock(now);
        self.ended = true;
        let (key, sink) = match self.bodies.remove(&body) {
            Some(Reader::Session(key, sink)) => (key, sink),
            Some(Reader::Call(key)) => {
                self.call_dropped(key);
                self.settle(now);
                return;
            }
            None => return,
        };
        if let Some(http) = self.sessions.get_mut(&key) {
            http.bodies = http.bodies.saturating_sub(1);
            http.session.detach(sink, now);
        }
        self.wake(key);
        self.settle(now);
    }

    // ---- websockets -------------------------------------------------------------------

    /// The accepted handshake's 101 went out: the session's program is to start.
    pub fn handle_ws_open(&mut self, conn: ConnId, now: Instant) {
        let now = self.clock(now);
        self.ended = true;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase != Phase::Upgrading {
            return;
        }
        c.phase = Phase::Websocket;
        c.deadline = None;
        let client = c.peer;
        self.wake_all();
        let program = ProgramId(self.id());
        let Some(ws) = self.ws.get_mut(&conn) else {
            return;
        };
        ws.program = Some(program);
        if self.stopping {
            ws.closing = true;
            ws.urgent = true;
            ws.queue.push_back(ToClient::Close(CloseReason::GoingAway));
            ws.program_over = true;
            self.settle(now);
            return;
        }
        self.programs.insert(
            program,
            Program {
                owner: Owner::Ws(conn),
                running: Running::Starting,
                queue: VecDeque::new(),
                closing: false,
            },
        );
        self.starts.push_back(Start {
            program,
            client: Some(client),
            channel: conn.0,
        });
        self.settle(now);
    }

    /// Whether to read the next message from websocket client `conn`: false while its
    /// program has [`Config::relay_queue`] messages waiting.
    pub fn wants_client_input(&self, conn: ConnId) -> bool {
        let Some(ws) = self.ws.get(&conn) else {
            return false;
        };
        match ws.program.and_then(|p| self.programs.get(&p)) {
            Some(program) => program.closing || program.queue.len() < self.config.relay_queue,
            None => true,
        }
    }

    /// A message from websocket client `conn`, for its program. Once the program is closing
    /// or over, it goes nowhere (counted in [`dropped`](Self::dropped)).
    pub fn handle_client_message(&mut self, conn: ConnId, message: Message, now: Instant) {
        let now = self.clock(now);
        self.wake(conn.0);
        let relay_queue = self.config.relay_queue;
        let program = self
            .ws
            .get(&conn)
            .and_then(|ws| ws.program)
            .and_then(|p| self.programs.get_mut(&p))
            .filter(|p| !p.closing && p.queue.len() < relay_queue);
        match program {
            Some(program) => program.queue.push_back(ToProgram::Message(message)),
            None => self.dropped += 1,
        }
        self.settle(now);
    }

    /// What websocket client `conn` must be sent next. A [`ToClient::Close`] is the last.
    pub fn poll_client(&mut self, conn: ConnId) -> Option<ToClient> {
        let ws = self.ws.get_mut(&conn)?;
        if ws.client_gone {
            return None;
        }
        let next = ws.queue.pop_front()?;
        // Room for the program's output again.
        self.wake(conn.0);
        Some(next)
    }

    /// Whether a send to client `conn` that is not completing should be abandoned: the
    /// client is to be closed at once (the bridge is stopping), or is gone.
    pub fn client_closing(&self, conn: ConnId) -> bool {
        self.ws
            .get(&conn)
            .is_none_or(|ws| ws.urgent || ws.client_gone)
    }

    fn client_gone(&mut self, conn: ConnId) {
        let Some(ws) = self.ws.get_mut(&conn) else {
            return;
        };
        ws.client_gone = true;
        self.dropped += ws
            .queue
            .iter()
            .filter(|m| matches!(m, ToClient::Message(_)))
            .count() as u64;
        ws.queue.clear();
        match ws.program {
            Some(program) => self.close_program(program),
            None => ws.program_over = true,
        }
    }

    // ---- programs ---------------------------------------------------------------------

    /// The next program to start.
    pub fn poll_start(&mut self) -> Option<Start> {
        self.starts.pop_front()
    }

    /// Program `program` was spawned (`Ok`), or could not be (`Err`, why): a websocket client
    /// is then closed with [`CloseReason::ProgramFailed`], an HTTP session's first POST is
    /// answered with 500.
    pub fn handle_started(
        &mut self,
        program: ProgramId,
        started: Result<(), String>,
        now: Instant,
    ) {
        let now = self.clock(now);
        self.ended = true;
        self.wake_all();
        let Some(p) = self.programs.get_mut(&program) else {
            return;
        };
        if p.running != Running::Starting {
            return;
        }
        let owner = p.owner;
        match started {
            Ok(()) => {
                p.running = Running::Running;
                match owner {
                    Owner::Http(key) => {
                        if let Some(http) = self.sessions.get_mut(&key) {
                            http.started = true;
                            self.by_id.insert(http.id.clone(), key);
                            if self.stopping {
                                http.session.close(now);
                            }
                        }
                        self.answer_start(program, true);
                    }
                    Owner::Ws(conn) => {
                        let gone = self.ws.get(&conn).is_none_or(|ws| ws.client_gone);
                        if gone || self.stopping {
                            self.close_program(program);
                        }
                    }
                    Owner::Pool(slot) => self.pool_started(slot, program, true, now),
                }
            }
            Err(_) => {
                self.programs.remove(&program);
                match owner {
                    Owner::Http(_) => self.answer_start(program, false),
                    Owner::Pool(slot) => self.pool_started(slot, program, false, now),
                    Owner::Ws(conn) => {
                        if let Some(ws) = self.ws.get_mut(&conn) {
                            ws.program_over = true;
                            if !ws.closing {
                                ws.closing = true;
                                ws.queue
                                    .push_back(ToClient::Close(CloseReason::ProgramFailed));
                            }
                        }
                    }
                }
                if let Owner::Http(key) = owner {
                    if let Some(http) = self.sessions.get_mut(&key) {
                        http.program_over = true;
                        http.session.handle_child_end(now);
                    }
                }
            }
        }
        self.settle(now);
    }

    /// The POST that started `program`'s session is answered: its session's reply, or 500.
    fn answer_start(&mut self, program: ProgramId, started: bool) {
        let waiting: Vec<RequestId> = self
            .requests
            .iter()
            .filter(
                |(_, r)| matches!(r.state, ReqState::Starting { program: p, .. } if p == program),
            )
            .map(|(id, _)| *id)
            .collect();
        for request in waiting {
            let Some(req) = self.requests.get_mut(&request) else {
                continue;
            };
            let state = std::mem::replace(
                &mut req.state,
                ReqState::Ready(Response::full(500, "text/plain", Vec::new())),
            );
            let ReqState::Starting { reply, .. } = state else {
                continue;
            };
            let response = if started {
                let key = match self.programs.get(&program).map(|p| p.owner) {
                    Some(Owner::Http(key)) => Some(key),
                    _ => None,
                };
                match key {
                    Some(key) => self.reply(key, reply),
                    None => Response::error(
                        500,
                        ErrorObject::INTERNAL_ERROR,
                        "cannot start the program",
                    ),
                }
            } else {
                Response::error(500, ErrorObject::INTERNAL_ERROR, "cannot start the program")
            };
            if let Some(req) = self.requests.get_mut(&request) {
                req.state = ReqState::Ready(response);
            }
            self.finish_ready(request);
        }
    }

    /// Whether to read the next message from `program`: false while its websocket client has
    /// [`Config::relay_queue`] messages waiting, or its HTTP session's buffer is full of
    /// events connected clients have not taken. Once its client is gone, always true: what it
    /// says goes nowhere, and reading on lets it end.
    pub fn wants_program_output(&self, program: ProgramId) -> bool {
        match self.programs.get(&program).map(|p| p.owner) {
            Some(Owner::Ws(conn)) => self.ws.get(&conn).is_none_or(|ws| {
                ws.client_gone || ws.closing || ws.queue.len() < self.config.relay_queue
            }),
            Some(Owner::Http(key)) => self
                .sessions
                .get(&key)
                .is_none_or(|http| http.session.wants_child_output()),
            // Each call bounds its own stream; one slow client holds up no other.
            Some(Owner::Pool(_)) | None => true,
        }
    }

    /// A message from `program`, for its client: a websocket client's queue, or the HTTP
    /// session's streams. Once the client is gone it goes nowhere.
    pub fn handle_program_message(&mut self, program: ProgramId, message: Message, now: Instant) {
        let now = self.clock(now);
        self.wake_program(program);
        let relay_queue = self.config.relay_queue;
        match self.programs.get(&program).map(|p| p.owner) {
            Some(Owner::Ws(conn)) => match self.ws.get_mut(&conn) {
                Some(ws) if !ws.client_gone && !ws.closing && ws.queue.len() < relay_queue => {
                    ws.queue.push_back(ToClient::Message(message));
                }
                _ => self.dropped += 1,
            },
            Some(Owner::Http(key)) => match self.sessions.get_mut(&key) {
                Some(http) if http.session.wants_child_output() || !http.session.is_open() => {
                    http.session.handle_child(message, now)
                }
                _ => self.dropped += 1,
            },
            Some(Owner::Pool(slot)) => self.pool_message(slot, message),
            None => self.dropped += 1,
        }
        self.settle(now);
    }

    /// `program`'s output ended and it exited, with `status` if known. A websocket client is
    /// then closed with [`CloseReason::ProgramEnded`] after what is queued for it; an HTTP
    /// session ends (requests still unanswered get an error).
    pub fn handle_program_end(
        &mut self,
        program: ProgramId,
        status: Option<ExitStatus>,
        now: Instant,
    ) {
        let now = self.clock(now);
        self.ended = true;
        self.wake_all();
        let Some(p) = self.programs.remove(&program) else {
            return;
        };
        match p.owner {
            Owner::Ws(conn) => {
                if let Some(ws) = self.ws.get_mut(&conn) {
                    ws.program_over = true;
                    if !ws.closing && !ws.client_gone {
                        ws.closing = true;
                        let reason = match status {
                            Some(status) => CloseReason::ProgramEnded(status),
                            None => CloseReason::Normal,
                        };
                        ws.queue.push_back(ToClient::Close(reason));
                    }
                }
            }
            Owner::Http(key) => {
                if let Some(http) = self.sessions.get_mut(&key) {
                    http.program_over = true;
                    http.session.handle_child_end(now);
                }
                if p.running == Running::Starting {
                    self.answer_start(program, false);
                }
            }
            Owner::Pool(slot) => self.pool_ended(slot, status, p.closing, now),
        }
        self.settle(now);
    }

    /// What `program` must be sent next: its client's messages in order, then
    /// [`ToProgram::Close`]. Nothing while it is starting.
    pub fn poll_program(&mut self, program: ProgramId) -> Option<ToProgram> {
        let next = self.next_for_program(program)?;
        // Room for the client's input again.
        self.wake_program(program);
        Some(next)
    }

    fn next_for_program(&mut self, program: ProgramId) -> Option<ToProgram> {
        let p = self.programs.get_mut(&program)?;
        if p.running == Running::Starting {
            return None;
        }
        match p.owner {
            Owner::Ws(_) => p.queue.pop_front(),
            Owner::Pool(slot) => {
                let next = self.poll_pool(slot)?;
                if next == ToProgram::Close {
                    if let Some(p) = self.programs.get_mut(&program) {
                        p.closing = true;
                    }
                }
                Some(next)
            }
            Owner::Http(key) => {
                let http = self.sessions.get_mut(&key)?;
                let next = http.session.poll_child()?;
                Some(match next {
                    ToChild::Message(message) => ToProgram::Message(message),
                    ToChild::Close => {
                        p.closing = true;
                        ToProgram::Close
                    }
                })
            }
        }
    }

    /// Whether `program` is to be closed: a send it is not taking should be abandoned.
    pub fn program_closing(&self, program: ProgramId) -> bool {
        self.programs.get(&program).is_none_or(|p| {
            p.closing
                || match p.owner {
                    Owner::Http(key) => self
                        .sessions
                        .get(&key)
                        .is_none_or(|http| !http.session.is_open()),
                    Owner::Ws(_) | Owner::Pool(_) => false,
                }
        })
    }

    /// Decides that `program` is to be closed: what its client sent and it has not taken is
    /// dropped (nobody waits for its answers), and the close is queued.
    fn close_program(&mut self, program: ProgramId) {
        let Some(p) = self.programs.get_mut(&program) else {
            return;
        };
        if p.closing {
            return;
        }
        p.closing = true;
        self.ended = true;
        let owner = p.owner;
        self.wake(match owner {
            Owner::Ws(conn) => conn.0,
            Owner::Http(key) => key,
            Owner::Pool(slot) => self.slots[slot].channel,
        });
        let Some(p) = self.programs.get_mut(&program) else {
            return;
        };
        match p.owner {
            Owner::Ws(_) => {
                self.dropped += p.queue.len() as u64;
                p.queue.clear();
                p.queue.push_back(ToProgram::Close);
            }
            Owner::Http(key) => {
                if let (Some(http), Some(now)) = (self.sessions.get_mut(&key), self.now) {
                    http.session.close(now);
                }
            }
            Owner::Pool(slot) => self.close_pool(slot),
        }
    }

    // ---- lifetime and time ------------------------------------------------------------

    /// The bridge is stopping: no more sessions; connections still in their handshake are
    /// dropped, HTTP connections drain within the grace, websocket clients are closed with
    /// [`CloseReason::GoingAway`] and every program is closed. Idempotent.
    pub fn handle_stop(&mut self, now: Instant) {
        let now = self.clock(now);
        self.ended = true;
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.wake_all();
        let grace = now.checked_add(self.config.shutdown_grace);
        for c in self.conns.values_mut() {
            match c.phase {
                Phase::Handshaking | Phase::Upgrading => {
                    c.order = Order::Drop;
                    c.deadline = None;
                }
                Phase::Http => {
                    c.order = Order::Drain;
                    c.deadline = grace;
                }
                Phase::Websocket => {}
            }
        }
        for ws in self.ws.values_mut() {
            if !ws.client_gone && !ws.closing {
                ws.closing = true;
                ws.urgent = true;
                self.dropped += ws.queue.len() as u64;
                ws.queue.clear();
                ws.queue.push_back(ToClient::Close(CloseReason::GoingAway));
            }
        }
        let running: Vec<ProgramId> = self
            .programs
            .iter()
            .filter(|(_, p)| p.running == Running::Running)
            .map(|(id, _)| *id)
            .collect();
        for program in running {
            self.close_program(program);
        }
        self.pool_stop();
        self.settle(now);
    }

    /// Whether [`handle_stop`](Self::handle_stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Once stopping, whether every session and program is over: the adapter may return.
    pub fn is_finished(&self) -> bool {
        self.stopping && self.active() == 0 && self.programs.is_empty()
    }

    /// The earliest deadline: a handshake, a draining connection's grace, a session's idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| c.deadline);
        let sessions = self
            .sessions
            .values()
            .filter_map(|http| http.session.poll_timeout());
        conns.chain(sessions).chain(self.pool_timeout()).min()
    }

    /// Fires what is due at `now`: connections past their handshake or grace are to be
    /// dropped, idle sessions end.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        self.ended = true;
        self.wake_all();
        for c in self.conns.values_mut() {
            if c.deadline.is_some_and(|at| at <= now) {
                c.deadline = None;
                c.order = Order::Drop;
            }
        }
        for http in self.sessions.values_mut() {
            http.session.handle_timeout(now);
        }
        self.pool_fire(now);
        self.settle(now);
    }

    /// Sessions alive, websocket and HTTP alike (what `/healthz` reports and
    /// [`Config::max_connections`] bounds): a session counts until its client is gone and
    /// its program is over.
    pub fn active(&self) -> usize {
        let ws = self
            .ws
            .values()
            .filter(|ws| !(ws.client_gone && ws.program_over))
            .count();
        let http = self.sessions.values().filter(|s| !s.program_over).count();
        ws + http
    }

    /// Messages that went nowhere: for a client or program that was gone or closing, or over
    /// a bound the adapter did not respect.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// What the gateway holds, for tests and the simulation's memory bounds.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            connections: self.conns.len(),
            requests: self.requests.len(),
            websockets: self.ws.len(),
            sessions: self.sessions.len(),
            programs: self.programs.len(),
            bodies: self.bodies.len(),
            starts: self.starts.len(),
            calls: self.calls.len(),
            longest_queue: self
                .ws
                .values()
                .map(|ws| ws.queue.len())
                .chain(self.programs.values().map(|p| p.queue.len()))
                .max()
                .unwrap_or(0),
            kept: self
                .sessions
                .values()
                .map(|s| s.session.kept())
                .max()
                .unwrap_or(0),
        }
    }

    /// Forgets what is over: ids of sessions that take no more requests, sessions whose
    /// program is over and whose bodies are all gone, websocket sessions over on both sides.
    fn settle(&mut self, _now: Instant) {
        // Most inputs (a message either way) end nothing: no need to look at every session.
        if !std::mem::take(&mut self.ended) {
            return;
        }
        let sessions = &self.sessions;
        self.by_id
            .retain(|_, key| sessions.get(key).is_some_and(|s| s.session.is_open()));
        self.sessions
            .retain(|_, http| !(http.program_over && http.bodies == 0));
        self.ws.retain(|_, ws| !(ws.client_gone && ws.program_over));
    }
}

/// Sizes of what a [`Gateway`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    /// Connections open.
    pub connections: usize,
    /// Requests whose response was not taken.
    pub requests: usize,
    /// Websocket sessions.
    pub websockets: usize,
    /// HTTP sessions (over or not, while their bodies are read).
    pub sessions: usize,
    /// Programs not over.
    pub programs: usize,
    /// Streamed bodies being read.
    pub bodies: usize,
    /// Programs to start, not yet polled.
    pub starts: usize,
    /// Modern requests in progress (their streams not yet over).
    pub calls: usize,
    /// The longest queue of messages for one client or program.
    pub longest_queue: usize,
    /// The most bytes of events one HTTP session keeps.
    pub kept: usize,
}

fn method(method: &str) -> Method {
    match method {
        "POST" => Method::Post,
        "GET" => Method::Get,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    }
}
