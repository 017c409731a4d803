//! A seeded simulation of a bridge: hundreds of websocket and Streamable HTTP clients and their
//! programs, all through one [`Gateway`] in virtual time, with faults injected — clients that
//! vanish mid-stream, programs that crash, go mute or cannot start, slow readers, bodies over
//! the limit, refused clients, time that jumps — and the gateway's promises checked after every
//! step:
//!
//! - every request is answered exactly once, or its connection closed first;
//! - no message crosses sessions (each program answers with its client's number, each client
//!   checks every message it gets, each program every message it is sent);
//! - every program started is stopped: closed once its session is over, and by the end every
//!   one has ended;
//! - the memory bounds hold (queues, kept events, sessions, programs, connections);
//! - no deadline is left in the past.
//!
//! Modern clients (MCP's stateless revision) share a pool of programs, which each seed makes
//! modern or legacy-only (translated for): every one of their requests carries the id 1, some
//! carry a progress token, some have a header that disagrees with the body (400), some are cut
//! before their answer (cancelled); pool programs crash and restart like the others. A pool
//! program never sees two requests in flight under one id, and each modern client gets its
//! own answer (its number and the request's) or an error, exactly once.
//!
//! `TETHER_SIM_SEEDS=N` runs seeds 0..N (default 8); `TETHER_SIM_SEED=S` runs seed S alone. A
//! failing seed is printed, and runs again the same: nothing here reads a clock or iterates in
//! an order that is not fixed.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::base;
use serde_json::{json, Value};
use tether_core::gateway::{
    Body, BodyError, BodyId, Config, ConnId, Gateway, Order, ProgramId, Request, RequestId,
    ToClient, ToProgram,
};
use tether_core::restart::{RestartMode, RestartPolicy};
use tether_core::streamable::{Settings, Take};
use tether_core::{ExitStatus, Message};

const TOKEN: &str = "sim-token";
const LISTEN: &str = "127.0.0.1:8080";
/// Clients per seed, arriving over the run.
const CLIENTS: usize = 240;
/// Steps per seed before the bridge is stopped.
const STEPS: usize = 4000;
const MAX_SESSIONS: usize = 48;
const RELAY_QUEUE: usize = 8;
const BUFFER: usize = 2048;
const MAX_BODY: usize = 600;
const IDLE: Duration = Duration::from_secs(60);
const POOL: usize = 3;
const MAX_CALLS: usize = 64;
const MODERN: &str = "2026-07-28";

/// splitmix64: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ws,
    Http,
    Modern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not arrived yet.
    Waiting,
    /// A websocket open, or an HTTP session running.
    Open,
    /// Gone, refused or finished.
    Done,
}

#[derive(Debug)]
struct Client {
    kind: Kind,
    addr: SocketAddr,
    phase: Phase,
    /// A websocket's connection.
    conn: Option<ConnId>,
    /// An HTTP session's id.
    session: Option<String>,
    /// Request ids sent and not answered.
    awaiting: BTreeSet<u64>,
    next_id: u64,
    /// Reads one message now and then, not all.
    slow: bool,
    /// A websocket close received: the client's side then ends.
    closed: bool,
}

/// One HTTP exchange: a connection of its own, its request, then its streamed body.
#[derive(Debug)]
struct Exchange {
    client: usize,
    conn: ConnId,
    request: RequestId,
    body: Option<BodyId>,
    /// The request was answered (its response taken).
    answered: bool,
    /// The exchange starts the client's session.
    initialize: bool,
    /// What the response must be, if known in advance.
    expect: Option<u16>,
    /// A modern request: its number, which its answer must carry.
    modern: Option<u64>,
    /// A modern request's answer came (once).
    got: bool,
    /// Its response was a 200.
    ok: bool,
}

#[derive(Debug)]
struct Program {
    client: usize,
    mute: bool,
    started: bool,
    /// Messages to write once the gateway wants them.
    outbox: VecDeque<Message>,
    /// Told to close, at this time.
    closed_at: Option<Instant>,
    /// Ends by itself (a crash) at this time.
    crash_at: Option<Instant>,
    ended: bool,
    /// A pool program: shared by the modern clients.
    pool: bool,
    /// A pool program's ids in flight (none may be reused while in flight).
    in_flight: BTreeSet<String>,
    /// A pool program's answers held back a while (so that some clients leave first).
    held: VecDeque<(Instant, Message)>,
}

#[derive(Debug, Default)]
struct Stats {
    steps: usize,
    programs: usize,
    relayed: usize,
    requests: usize,
    refused: usize,
    sessions_ws: usize,
    sessions_http: usize,
    modern: usize,
    cancelled: usize,
}

struct Sim {
    rng: Rng,
    gw: Gateway,
    now: Instant,
    clients: Vec<Client>,
    exchanges: Vec<Exchange>,
    programs: BTreeMap<ProgramId, Program>,
    /// Starts asked for, carried out at the time given (`None`: the spawn fails).
    starting: Vec<(ProgramId, Instant, bool)>,
    /// Requests taken, for the answered-once check.
    taken: BTreeSet<RequestId>,
    stats: Stats,
    stopping: bool,
    /// This seed's pool programs speak only the legacy era.
    legacy_pool: bool,
}

fn config() -> Config {
    Config::default()
        .token(Some(TOKEN.into()))
        .allow_origins(vec!["http://app.example".into()])
        .listen(LISTEN.parse().unwrap())
        .max_connections(MAX_SESSIONS)
        .handshake_timeout(Duration::from_secs(5))
        .shutdown_grace(Duration::from_secs(2))
        .max_body(MAX_BODY)
        .relay_queue(RELAY_QUEUE)
        .pool(POOL)
        .keepalive(Duration::from_secs(1))
        .max_calls(MAX_CALLS)
        .restart(RestartPolicy {
            mode: RestartMode::OnFailure,
            backoff: Duration::from_millis(50),
            max_restarts: 40,
            window: Duration::from_secs(10),
            ready_timeout: None,
        })
        .session(
            Settings::default()
                .buffer(BUFFER)
                .idle_timeout(Some(IDLE))
                .max_streams(4),
        )
}

fn message(value: Value) -> Message {
    serde_json::from_value(value).expect("a message")
}

/// The client number a message from a program carries.
fn owner(message: &Message) -> Option<u64> {
    match message {
        Message::Response(r) => match &r.result {
            Ok(result) => result.get("client")?.as_u64(),
            // The session's own error for a request it abandoned: no client in it.
            Err(_) => None,
        },
        Message::Notification(n) => n.params.as_ref()?.get("client")?.as_u64(),
        Message::Request(r) => r.params.as_ref()?.get("client")?.as_u64(),
        Message::Batch(_) => None,
    }
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let clients = (0..CLIENTS)
            .map(|n| Client {
                kind: match rng.below(3) {
                    0 => Kind::Ws,
                    1 => Kind::Http,
                    _ => Kind::Modern,
                },
                addr: SocketAddr::from(([127, 0, 0, 1], 10_000 + n as u16)),
                phase: Phase::Waiting,
                conn: None,
                session: None,
                awaiting: BTreeSet::new(),
                next_id: 1,
                slow: rng.percent(20),
                closed: false,
            })
            .collect();
        let legacy_pool = rng.percent(50);
        Sim {
            legacy_pool,
            rng,
            gw: Gateway::new(config()),
            now: base(),
            clients,
            exchanges: Vec::new(),
            programs: BTreeMap::new(),
            starting: Vec::new(),
            taken: BTreeSet::new(),
            stats: Stats::default(),
            stopping: false,
        }
    }

    fn run(&mut self) {
        for step in 0..STEPS {
            self.stats.steps += 1;
            self.act(step);
            self.pump();
            self.tick();
            self.check();
        }
        self.gw.handle_stop(self.now);
        self.stopping = true;
        for _ in 0..20_000 {
            if self.gw.is_finished() && self.exchanges.is_empty() {
                break;
            }
            self.stats.steps += 1;
            self.pump();
            self.now += Duration::from_millis(100);
            self.tick();
            self.check();
        }
        assert!(
            self.gw.is_finished(),
            "never finished: {:?}",
            self.gw.footprint()
        );
        for (id, program) in &self.programs {
            assert!(
                program.ended || !program.started,
                "program {id:?} outlived the bridge: {program:?}"
            );
        }
        let footprint = self.gw.footprint();
        assert_eq!(footprint.programs, 0, "{footprint:?}");
        assert_eq!(self.gw.active(), 0);
    }

    /// Time passes (now and then a jump), and the due deadlines fire.
    fn tick(&mut self) {
        let by = match self.rng.below(100) {
            0 => Duration::from_secs(60 + self.rng.below(600)),
            1..=3 => Duration::from_secs(1 + self.rng.below(10)),
            _ => self.rng.millis(200),
        };
        self.now += by;
        if self.gw.poll_timeout().is_some_and(|at| at <= self.now) {
            self.gw.handle_timeout(self.now);
        }
    }

    /// One client does one thing.
    fn act(&mut self, step: usize) {
        // Clients arrive over the first three quarters of the run.
        let arrived = (CLIENTS * (step + 1) / (STEPS * 3 / 4)).min(CLIENTS);
        let pick = self.rng.below(arrived as u64) as usize;
        let client = &self.clients[pick];
        match (client.phase, client.kind) {
            (Phase::Waiting, Kind::Ws) => self.ws_arrive(pick),
            (Phase::Waiting, Kind::Http) => self.http_arrive(pick),
            (Phase::Open, Kind::Ws) => self.ws_act(pick),
            (Phase::Open, Kind::Http) => self.http_act(pick),
            (Phase::Waiting | Phase::Open, Kind::Modern) => self.modern_act(pick),
            (Phase::Done, _) => {
                // Crash a random program now and then.
                if self.rng.percent(2) {
                    let n = self.programs.len() as u64;
                    let at = self.rng.below(n) as usize;
                    let now = self.now;
                    if let Some(program) = self.programs.values_mut().nth(at) {
                        if program.started && !program.ended {
                            program.crash_at.get_or_insert(now);
                        }
                    }
                }
            }
        }
    }

    /// Headers of a client: usually right; now and then a wrong token, a foreign origin or
    /// a rebound host, each of which the gate must refuse.
    fn headers(&mut self) -> (Vec<(String, String)>, Option<u16>) {
        let mut headers = vec![("host".to_owned(), LISTEN.to_owned())];
        let mut expect = None;
        match self.rng.below(40) {
            0 => {
                headers.push(("authorization".into(), "Bearer wrong".into()));
                expect = Some(401);
            }
            1 => {
                headers.push(("authorization".into(), format!("Bearer {TOKEN}")));
                headers.push(("origin".into(), "http://evil.example".into()));
                expect = Some(403);
            }
            2 => {
                headers[0].1 = "rebound.example:8080".into();
                headers.push(("authorization".into(), format!("Bearer {TOKEN}")));
                expect = Some(403);
            }
            3 => {
                headers.push(("authorization".into(), format!("Bearer {TOKEN}")));
                headers.push(("origin".into(), "http://localhost:8080".into()));
            }
            _ => headers.push(("authorization".into(), format!("Bearer {TOKEN}"))),
        }
        (headers, expect)
    }

    fn ws_arrive(&mut self, pick: usize) {
        let addr = self.clients[pick].addr;
        let conn = self.gw.handle_accept(addr, self.now);
        // A client that never sends its handshake: the deadline drops it.
        if self.rng.percent(3) {
            self.clients[pick].conn = Some(conn);
            self.clients[pick].phase = Phase::Open;
            self.clients[pick].closed = true;
            return;
        }
        let (mut headers, expect) = self.headers();
        headers.push(("upgrade".into(), "websocket".into()));
        let request = self
            .gw
            .handle_request(conn, Request::new("GET", "/", headers), self.now);
        let response = self.take(request).expect("a handshake is answered at once");
        if let Some(status) = expect {
            assert_eq!(
                response.status, status,
                "the gate let a bad handshake through"
            );
            assert_eq!(response.header("access-control-allow-origin"), None);
        }
        if response.status != 101 {
            self.stats.refused += 1;
            self.gw.handle_closed(conn, self.now);
            self.clients[pick].phase = Phase::Done;
            return;
        }
        self.stats.sessions_ws += 1;
        self.gw.handle_ws_open(conn, self.now);
        let client = &mut self.clients[pick];
        client.conn = Some(conn);
        client.phase = Phase::Open;
    }

    fn ws_act(&mut self, pick: usize) {
        let Some(conn) = self.clients[pick].conn else {
            return;
        };
        if self.clients[pick].closed {
            return;
        }
        match self.rng.below(20) {
            // Vanishes mid-stream.
            0 => self.ws_gone(pick),
            _ => {
                if !self.gw.wants_client_input(conn) {
                    return;
                }
                let client = &mut self.clients[pick];
                let id = client.next_id;
                client.next_id += 1;
                client.awaiting.insert(id);
                let request = json!({"jsonrpc": "2.0", "id": id, "method": "work",
                    "params": {"client": pick, "n": id}});
                self.stats.requests += 1;
                self.gw
                    .handle_client_message(conn, message(request), self.now);
            }
        }
    }

    fn ws_gone(&mut self, pick: usize) {
        let client = &mut self.clients[pick];
        client.phase = Phase::Done;
        if let Some(conn) = client.conn.take() {
            self.gw.handle_closed(conn, self.now);
            // Its program is to be closed at once.
            if let Some((id, _)) = self.programs.iter().find(|(_, p)| p.client == pick) {
                assert!(
                    self.gw.program_closing(*id),
                    "a client left and its program was not closed"
                );
            }
        }
    }

    fn http_arrive(&mut self, pick: usize) {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"client": pick}});
        self.clients[pick].awaiting.insert(0);
        // Open from now on; it acts once its session id has come.
        self.clients[pick].phase = Phase::Open;
        self.exchange(pick, "POST", Some(init), true);
    }

    fn http_act(&mut self, pick: usize) {
        if self.clients[pick].session.is_none() || self.stopping {
            return;
        }
        match self.rng.below(30) {
            // Vanishes: every exchange of it is cut.
            0 => {
                let cut: Vec<usize> = (0..self.exchanges.len())
                    .filter(|&e| self.exchanges[e].client == pick)
                    .collect();
                for e in cut.into_iter().rev() {
                    self.cut(e);
                }
                self.clients[pick].phase = Phase::Done;
            }
            1 => {
                self.exchange(pick, "DELETE", None, false);
                self.clients[pick].phase = Phase::Done;
            }
            2 => {
                self.exchange(pick, "GET", None, false);
            }
            3 => {
                // A body over the limit.
                let conn = self.gw.handle_accept(self.clients[pick].addr, self.now);
                let (headers, _) = self.headers_for(pick, "application/json");
                let request =
                    self.gw
                        .handle_request(conn, Request::new("POST", "/mcp", headers), self.now);
                if self.gw.wants_body(request).is_some() {
                    self.gw
                        .handle_body(request, Err(BodyError::TooLarge), self.now, || None);
                    let response = self.take(request).expect("413 at once");
                    assert_eq!(response.status, 413);
                } else {
                    self.take(request).expect("a refusal at once");
                }
                self.gw.handle_closed(conn, self.now);
            }
            _ => {
                let client = &mut self.clients[pick];
                let id = client.next_id;
                client.next_id += 1;
                client.awaiting.insert(id);
                self.stats.requests += 1;
                let request = json!({"jsonrpc": "2.0", "id": id, "method": "work",
                    "params": {"client": pick, "n": id}});
                self.exchange(pick, "POST", Some(request), false);
            }
        }
    }

    fn headers_for(&mut self, pick: usize, accept: &str) -> (Vec<(String, String)>, Option<u16>) {
        let (mut headers, expect) = self.headers();
        headers.push(("content-type".into(), "application/json".into()));
        headers.push(("accept".into(), accept.into()));
        if let Some(session) = &self.clients[pick].session {
            headers.push(("mcp-session-id".into(), session.clone()));
        }
        (headers, expect)
    }

    /// One request of client `pick` on a connection of its own.
    fn exchange(&mut self, pick: usize, method: &str, body: Option<Value>, initialize: bool) {
        let conn = self.gw.handle_accept(self.clients[pick].addr, self.now);
        let accept = if self.rng.percent(50) {
            "application/json, text/event-stream"
        } else {
            "application/json"
        };
        let (headers, expect) = self.headers_for(pick, accept);
        let request = self
            .gw
            .handle_request(conn, Request::new(method, "/mcp", headers), self.now);
        if let Some(limit) = self.gw.wants_body(request) {
            let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
            assert!(bytes.len() <= limit);
            let fresh = format!("session-{pick}");
            self.gw
                .handle_body(request, Ok(bytes), self.now, || Some(fresh));
        }
        self.exchanges.push(Exchange {
            client: pick,
            conn,
            request,
            body: None,
            answered: false,
            initialize,
            expect,
            modern: None,
            got: false,
            ok: false,
        });
    }

    /// A modern client sends a request (always id 1), or cuts one of its own.
    fn modern_act(&mut self, pick: usize) {
        self.clients[pick].phase = Phase::Open;
        if self.stopping {
            return;
        }
        if self.rng.percent(25) {
            let mine: Vec<usize> = (0..self.exchanges.len())
                .filter(|&e| self.exchanges[e].client == pick)
                .collect();
            if let Some(&e) = mine.get(self.rng.below(mine.len() as u64) as usize) {
                if !self.exchanges[e].got {
                    self.stats.cancelled += 1;
                }
                self.cut(e);
                return;
            }
        }
        let n = self.clients[pick].next_id;
        self.clients[pick].next_id += 1;
        let mut meta = json!({"io.modelcontextprotocol/protocolVersion": MODERN});
        if self.rng.percent(50) {
            meta["progressToken"] = json!(format!("p{pick}-{n}"));
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "work",
            "params": {"client": pick, "n": n, "_meta": meta}});
        let conn = self.gw.handle_accept(self.clients[pick].addr, self.now);
        let accept = if self.rng.percent(50) {
            "application/json, text/event-stream"
        } else {
            "application/json"
        };
        let (mut headers, mut expect) = self.headers();
        headers.push(("content-type".into(), "application/json".into()));
        headers.push(("accept".into(), accept.into()));
        headers.push(("mcp-protocol-version".into(), MODERN.into()));
        if self.rng.percent(5) {
            headers.push(("mcp-method".into(), "other".into()));
            expect = expect.or(Some(400));
        } else {
            headers.push(("mcp-method".into(), "work".into()));
        }
        let request = self
            .gw
            .handle_request(conn, Request::new("POST", "/mcp", headers), self.now);
        if self.gw.wants_body(request).is_some() {
            let bytes = body.to_string().into_bytes();
            self.gw
                .handle_body(request, Ok(bytes), self.now, || panic!("no session id"));
        }
        self.stats.modern += 1;
        self.exchanges.push(Exchange {
            client: pick,
            conn,
            request,
            body: None,
            answered: false,
            initialize: false,
            expect,
            modern: Some(n),
            got: false,
            ok: false,
        });
    }

    /// Exchange `e`'s connection is cut.
    fn cut(&mut self, e: usize) {
        let exchange = self.exchanges.remove(e);
        if let Some(body) = exchange.body {
            self.gw.handle_body_dropped(body, self.now);
        }
        self.gw.handle_closed(exchange.conn, self.now);
        if exchange.initialize && self.clients[exchange.client].session.is_none() {
            self.clients[exchange.client].phase = Phase::Done;
        }
    }

    /// A response, checked to be handed out once.
    fn take(&mut self, request: RequestId) -> Option<tether_core::gateway::Response> {
        let response = self.gw.take_response(request)?;
        assert!(
            self.taken.insert(request),
            "request {request:?} answered twice"
        );
        assert!(self.gw.take_response(request).is_none(), "answered twice");
        Some(response)
    }

    /// Moves everything that can move: starts, programs' work, clients' reads, responses.
    fn pump(&mut self) {
        for _ in 0..64 {
            let mut moved = false;
            moved |= self.pump_starts();
            moved |= self.pump_programs();
            moved |= self.pump_ws_clients();
            moved |= self.pump_exchanges();
            moved |= self.pump_orders();
            if !moved {
                break;
            }
        }
    }

    fn pump_starts(&mut self) -> bool {
        let mut moved = false;
        while let Some(start) = self.gw.poll_start() {
            moved = true;
            let client = start
                .client
                .map_or(usize::MAX, |addr| usize::from(addr.port() - 10_000));
            let fails = self.rng.percent(3);
            let at = self.now + self.rng.millis(50);
            self.starting.push((start.program, at, !fails));
            self.programs.insert(
                start.program,
                Program {
                    client,
                    mute: self.rng.percent(5),
                    started: false,
                    outbox: VecDeque::new(),
                    closed_at: None,
                    crash_at: None,
                    ended: false,
                    pool: start.client.is_none(),
                    in_flight: BTreeSet::new(),
                    held: VecDeque::new(),
                },
            );
            self.stats.programs += 1;
        }
        let now = self.now;
        let due: Vec<(ProgramId, Instant, bool)> = self
            .starting
            .iter()
            .copied()
            .filter(|(_, at, _)| *at <= now)
            .collect();
        self.starting.retain(|(_, at, _)| *at > now);
        for (program, _, ok) in due {
            moved = true;
            let result = if ok {
                Ok(())
            } else {
                Err("no such program".to_owned())
            };
            self.gw.handle_started(program, result, now);
            let p = self.programs.get_mut(&program).expect("known");
            if ok {
                p.started = true;
            } else {
                p.ended = true;
            }
        }
        moved
    }

    fn pump_programs(&mut self) -> bool {
        let mut moved = false;
        let ids: Vec<ProgramId> = self.programs.keys().copied().collect();
        for id in ids {
            let now = self.now;
            let p = self.programs.get_mut(&id).expect("known");
            if !p.started || p.ended {
                continue;
            }
            // Ends: crashed, or closed and gone through its ladder (a mute one takes longer).
            let ladder = if p.mute {
                Duration::from_secs(3)
            } else {
                Duration::from_millis(20)
            };
            let crashed = p.crash_at.is_some_and(|at| at <= now);
            let closed = p.closed_at.is_some_and(|at| at + ladder <= now);
            if crashed || closed {
                p.ended = true;
                let status = if crashed {
                    ExitStatus {
                        code: None,
                        signal: Some(9),
                    }
                } else {
                    ExitStatus {
                        code: Some(0),
                        signal: None,
                    }
                };
                self.gw.handle_program_end(id, Some(status), now);
                moved = true;
                continue;
            }
            // A mute program reads nothing and says nothing; it only ends when killed.
            if !p.mute || p.closed_at.is_none() {
                while let Some(to) = self.gw.poll_program(id) {
                    moved = true;
                    let p = self.programs.get_mut(&id).expect("known");
                    match to {
                        ToProgram::Close => {
                            p.closed_at.get_or_insert(now);
                        }
                        ToProgram::Message(message) if p.pool => {
                            let legacy = self.legacy_pool;
                            let coin = self.rng.percent(50);
                            let slow = self.rng.percent(60);
                            let until = now + self.rng.millis(3000);
                            pool_program(p, message, legacy, coin);
                            if slow && matches!(p.outbox.back(), Some(Message::Response(_))) {
                                let answer = p.outbox.pop_back().expect("just seen");
                                p.held.push_back((until, answer));
                            }
                        }
                        ToProgram::Message(message) => {
                            assert_eq!(
                                owner(&message),
                                Some(p.client as u64),
                                "a message crossed into another session's program"
                            );
                            if p.mute {
                                continue;
                            }
                            if let Message::Request(request) = message {
                                let result = json!({"client": p.client, "n": request.id});
                                let answer = json!({"jsonrpc": "2.0", "id": request.id,
                                    "result": result});
                                p.outbox.push_back(message_of(answer));
                                if request.id.to_string().ends_with('3') {
                                    // Something said on its own, too.
                                    p.outbox.push_back(message_of(json!({"jsonrpc": "2.0",
                                        "method": "note", "params": {"client": p.client}})));
                                }
                            }
                        }
                    }
                }
            } else if self.gw.program_closing(id) {
                let p = self.programs.get_mut(&id).expect("known");
                p.closed_at.get_or_insert(now);
            }
            if self.gw.program_closing(id) {
                let p = self.programs.get_mut(&id).expect("known");
                if p.mute {
                    p.closed_at.get_or_insert(now);
                }
            }
            let p = self.programs.get_mut(&id).expect("known");
            while p.held.front().is_some_and(|(until, _)| *until <= now) {
                let (_, answer) = p.held.pop_front().expect("not empty");
                p.outbox.push_back(answer);
            }
            while self.gw.wants_program_output(id) {
                let p = self.programs.get_mut(&id).expect("known");
                let Some(message) = p.outbox.pop_front() else {
                    break;
                };
                moved = true;
                self.stats.relayed += 1;
                self.gw.handle_program_message(id, message, now);
            }
        }
        moved
    }

    fn pump_ws_clients(&mut self) -> bool {
        let mut moved = false;
        for pick in 0..self.clients.len() {
            let client = &self.clients[pick];
            let (Some(conn), Phase::Open) = (client.conn, client.phase) else {
                continue;
            };
            if client.kind != Kind::Ws {
                continue;
            }
            if client.closed {
                // The close handshake is done, or the handshake never came: the connection
                // ends once the gateway says so, or the client goes.
                if self.gw.connection(conn) == Order::Drop || self.gw.poll_client(conn).is_none() {
                    self.gw.handle_closed(conn, self.now);
                    let client = &mut self.clients[pick];
                    client.conn = None;
                    client.phase = Phase::Done;
                    moved = true;
                }
                continue;
            }
            let reads = if client.slow && !self.stopping {
                usize::from(self.rng.percent(30))
            } else {
                usize::MAX
            };
            for _ in 0..reads {
                let Some(to) = self.gw.poll_client(conn) else {
                    break;
                };
                moved = true;
                match to {
                    ToClient::Message(message) => self.receive(pick, &message),
                    ToClient::Close(_) => {
                        self.clients[pick].closed = true;
                        break;
                    }
                }
            }
        }
        moved
    }

    /// Exchange `e` got `message`: a modern one its own answer (id 1, its client's number and
    /// its own), once, or its own progress; a session's, by [`receive`](Self::receive).
    fn receive_in(&mut self, e: usize, message: &Message) {
        let pick = self.exchanges[e].client;
        let Some(n) = self.exchanges[e].modern else {
            return self.receive(pick, message);
        };
        match message {
            Message::Response(response) => {
                assert_eq!(response.id.to_string(), "1");
                if let Ok(result) = &response.result {
                    assert_eq!(result["client"], json!(pick), "an answer crossed clients");
                    assert_eq!(result["n"], json!(n), "an answer crossed requests");
                }
                assert!(!self.exchanges[e].got, "a modern request answered twice");
                self.exchanges[e].got = true;
            }
            Message::Notification(note) => {
                let params = note.params.as_ref().expect("progress has params");
                assert_eq!(params["client"], json!(pick), "progress crossed clients");
                assert_eq!(params["progressToken"], json!(format!("p{pick}-{n}")));
                assert!(!self.exchanges[e].got, "progress after the answer");
            }
            other => panic!("a modern client got {other:?}"),
        }
    }

    /// Client `pick` got `message`: it must be its own.
    fn receive(&mut self, pick: usize, message: &Message) {
        if let Some(client) = owner(message) {
            assert_eq!(
                client, pick as u64,
                "a message crossed sessions: {message:?}"
            );
        }
        match message {
            Message::Response(response) => {
                let id = response
                    .id
                    .to_string()
                    .parse::<u64>()
                    .expect("our ids are numbers");
                assert!(
                    self.clients[pick].awaiting.remove(&id),
                    "client {pick} got an answer to {id} it was not waiting for"
                );
            }
            Message::Notification(_) => {}
            Message::Batch(items) => items.iter().for_each(|m| self.receive(pick, m)),
            Message::Request(_) => panic!("programs here send no requests"),
        }
    }

    fn pump_exchanges(&mut self) -> bool {
        let mut moved = false;
        let mut e = 0;
        while e < self.exchanges.len() {
            let pick = self.exchanges[e].client;
            if !self.exchanges[e].answered {
                let request = self.exchanges[e].request;
                if let Some(response) = self.take(request) {
                    moved = true;
                    let exchange = &mut self.exchanges[e];
                    exchange.answered = true;
                    exchange.ok = response.status == 200;
                    if let Some(status) = exchange.expect {
                        assert_eq!(
                            response.status, status,
                            "the gate let a bad request through"
                        );
                        if status != 400 {
                            // A gate's refusal lets no page read it; a mismatch's may be read
                            // by an allowed origin.
                            assert_eq!(response.header("access-control-allow-origin"), None);
                        }
                        self.stats.refused += 1;
                    }
                    if exchange.initialize {
                        match response.header("mcp-session-id") {
                            Some(id) if response.status == 200 => {
                                self.stats.sessions_http += 1;
                                self.clients[pick].session = Some(id.to_owned());
                                self.clients[pick].phase = Phase::Open;
                            }
                            _ => self.clients[pick].phase = Phase::Done,
                        }
                    }
                    if response.status == 404 && self.clients[pick].kind == Kind::Http {
                        // The session is over (idle, its program gone): the client gives up.
                        self.clients[pick].phase = Phase::Done;
                    }
                    if self.exchanges[e].modern.is_some() {
                        assert!(
                            matches!(response.status, 200 | 400 | 401 | 403 | 503),
                            "a modern request got {response:?}"
                        );
                        assert_eq!(response.header("mcp-session-id"), None);
                    }
                    match response.body {
                        Body::Stream(body) => self.exchanges[e].body = Some(body),
                        Body::Full(bytes) => {
                            if response.status == 200 && !bytes.is_empty() {
                                let message: Message =
                                    serde_json::from_slice(&bytes).expect("a JSON body");
                                self.receive_in(e, &message);
                            }
                        }
                    }
                }
            }
            let exchange = &self.exchanges[e];
            let mut done = exchange.answered && exchange.body.is_none();
            if let Some(body) = exchange.body {
                let slow = self.clients[pick].slow && !self.stopping;
                let reads = if slow {
                    usize::from(self.rng.percent(30))
                } else {
                    64
                };
                for _ in 0..reads {
                    match self.gw.take_body(body) {
                        Take::Data(bytes) => {
                            moved = true;
                            for message in parse_body(&bytes) {
                                self.receive_in(e, &message);
                            }
                        }
                        Take::Wait => break,
                        Take::End => {
                            moved = true;
                            self.gw.handle_body_dropped(body, self.now);
                            self.exchanges[e].body = None;
                            done = true;
                            break;
                        }
                    }
                }
            }
            if done {
                let exchange = &self.exchanges[e];
                if exchange.modern.is_some() && exchange.ok {
                    assert!(
                        exchange.got,
                        "a modern request's 200 ended without its answer"
                    );
                }
                let exchange = self.exchanges.remove(e);
                self.gw.handle_closed(exchange.conn, self.now);
                moved = true;
            } else {
                e += 1;
            }
        }
        moved
    }

    /// Connections the gateway drops are closed.
    fn pump_orders(&mut self) -> bool {
        let mut moved = false;
        let mut e = 0;
        while e < self.exchanges.len() {
            if self.gw.connection(self.exchanges[e].conn) == Order::Drop {
                self.cut(e);
                moved = true;
            } else {
                e += 1;
            }
        }
        moved
    }

    /// The promises, after every step.
    fn check(&mut self) {
        if let Some(at) = self.gw.poll_timeout() {
            assert!(at > self.now, "a deadline left in the past");
        }
        let footprint = self.gw.footprint();
        assert!(footprint.longest_queue <= RELAY_QUEUE + 1, "{footprint:?}");
        // One event over the buffer at most: the one that filled it.
        assert!(footprint.kept <= BUFFER + 512, "{footprint:?}");
        assert!(self.gw.active() <= MAX_SESSIONS, "{footprint:?}");
        assert!(footprint.programs <= MAX_SESSIONS + POOL, "{footprint:?}");
        let open_conns =
            self.exchanges.len() + self.clients.iter().filter(|c| c.conn.is_some()).count();
        assert!(
            footprint.connections <= open_conns,
            "{footprint:?} > {open_conns}"
        );
        assert!(footprint.requests <= self.exchanges.len(), "{footprint:?}");
        assert!(
            footprint.bodies <= self.exchanges.len(),
            "{footprint:?}: a body nobody reads"
        );
        let modern = self.exchanges.iter().filter(|e| e.modern.is_some()).count();
        assert!(
            footprint.calls <= modern,
            "{footprint:?}: a call nobody waits for"
        );
        assert!(footprint.calls <= MAX_CALLS, "{footprint:?}");
        assert!(
            footprint.sessions <= MAX_SESSIONS + footprint.bodies,
            "{footprint:?}"
        );
        // Every program whose client is gone for good is being closed.
        for (id, program) in self.programs.iter().filter(|(_, p)| !p.pool) {
            let client = &self.clients[program.client];
            if program.started
                && !program.ended
                && client.kind == Kind::Ws
                && client.phase == Phase::Done
            {
                assert!(self.gw.program_closing(*id), "program {id:?} left running");
            }
        }
    }
}

fn message_of(value: Value) -> Message {
    message(value)
}

/// A pool program's part: it answers the probe as its seed's era says (a modern result, or
/// -32601 and then `initialize`), answers each request with the client's and the request's
/// numbers (a progress notification first when it has a token), and forgets a cancelled
/// request (answering it anyway, late, half the time). No two requests in flight share an id.
fn pool_program(p: &mut Program, message: Message, legacy: bool, coin: bool) {
    match message {
        Message::Request(request) => {
            let id = request.id.to_string();
            let params = request.params.clone().unwrap_or(Value::Null);
            let answer = match request.method.as_str() {
                "server/discover" if legacy => {
                    json!({"jsonrpc": "2.0", "id": request.id,
                        "error": {"code": -32601, "message": "unknown"}})
                }
                "server/discover" | "initialize" => {
                    json!({"jsonrpc": "2.0", "id": request.id, "result": {"capabilities": {}}})
                }
                _ => {
                    assert!(
                        p.in_flight.insert(id.clone()),
                        "two requests in flight under id {id} at one program"
                    );
                    if legacy {
                        assert!(params.get("_meta").is_none_or(|m| m
                            .get("io.modelcontextprotocol/protocolVersion")
                            .is_none()));
                    }
                    let token = params.get("_meta").and_then(|m| m.get("progressToken"));
                    if let Some(token) = token {
                        p.outbox.push_back(message_of(json!({"jsonrpc": "2.0",
                            "method": "notifications/progress", "params": {
                            "progressToken": token, "progress": 1, "client": params["client"]}})));
                    }
                    // Answered from here on (the answer is on its way out).
                    p.in_flight.remove(&id);
                    json!({"jsonrpc": "2.0", "id": request.id,
                        "result": {"client": params["client"], "n": params["n"]}})
                }
            };
            p.outbox.push_back(message_of(answer));
        }
        Message::Notification(note) if note.method == "notifications/cancelled" => {
            let id = note.params.as_ref().expect("params")["requestId"].to_string();
            // Its answer may be written already: the cancel crossed it.
            p.in_flight.remove(&id);
            if !coin {
                let other =
                    |m: &Message| !matches!(m, Message::Response(r) if r.id.to_string() == id);
                p.outbox.retain(other);
                p.held.retain(|(_, m)| other(m));
            }
        }
        Message::Notification(_) => {}
        Message::Response(response) => panic!("a pool program got an answer: {response:?}"),
        Message::Batch(_) => panic!("a pool program got a batch"),
    }
}

/// The messages of a body piece: one SSE event (with an id, or without for a modern
/// request's stream), a keep-alive comment, or one JSON document.
fn parse_body(bytes: &[u8]) -> Vec<Message> {
    let text = String::from_utf8_lossy(bytes);
    if text.starts_with(':') {
        return Vec::new();
    }
    if text.starts_with("id: ") || text.starts_with("data: ") {
        text.lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).expect("an event's data is a message"))
            .collect()
    } else {
        vec![serde_json::from_slice(bytes).expect("a JSON body")]
    }
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("TETHER_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n = std::env::var("TETHER_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    (0..n).collect()
}

#[test]
fn many_clients_and_programs_keep_every_promise() {
    let mut totals = Stats::default();
    for seed in seeds() {
        let mut sim = Sim::new(seed);
        let outcome = catch_unwind(AssertUnwindSafe(|| sim.run()));
        if let Err(panic) = outcome {
            eprintln!(
                "gateway_sim: seed {seed} failed at step {}; run it alone with \
                 TETHER_SIM_SEED={seed} cargo test -p tether-core --test gateway_sim",
                sim.stats.steps
            );
            std::panic::resume_unwind(panic);
        }
        let s = &sim.stats;
        totals.steps += s.steps;
        totals.programs += s.programs;
        totals.relayed += s.relayed;
        totals.requests += s.requests;
        totals.refused += s.refused;
        totals.sessions_ws += s.sessions_ws;
        totals.sessions_http += s.sessions_http;
        totals.modern += s.modern;
        totals.cancelled += s.cancelled;
    }
    eprintln!("gateway_sim: {CLIENTS} clients a seed; totals {totals:?}");
}
