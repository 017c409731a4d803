//! The gateway's decisions, in virtual time: the gate, HTTP sessions, websocket relays,
//! deadlines and the stop.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::base;
use serde_json::{json, Value};
use tether_core::gateway::{
    Body, BodyError, Config, ConnId, Gateway, Order, Request, RequestId, Response, Start, ToClient,
    ToProgram, Wake,
};
use tether_core::streamable::{Settings, Take};
use tether_core::{CloseReason, ExitStatus, Message};

const TOKEN: &str = "secret";
const LISTEN: &str = "127.0.0.1:8080";

fn config() -> Config {
    Config::default()
        .token(Some(TOKEN.into()))
        .allow_origins(vec!["http://ok.example".into()])
        .listen(LISTEN.parse().unwrap())
        .max_connections(2)
        .handshake_timeout(Duration::from_secs(5))
        .shutdown_grace(Duration::from_secs(1))
        .max_body(1000)
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
    let mut all = vec![("host".to_owned(), LISTEN.to_owned())];
    all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    Request::new(method, target, all)
}

fn authorized(method: &str, headers: &[(&str, &str)]) -> Request {
    let mut all = vec![("authorization", "Bearer secret")];
    all.extend_from_slice(headers);
    request(method, "/mcp", &all)
}

fn json_body(response: &Response) -> Value {
    serde_json::from_slice(response.full_body().expect("a whole body")).unwrap()
}

struct World {
    gw: Gateway,
    now: Instant,
}

impl World {
    fn new(config: Config) -> Self {
        World {
            gw: Gateway::new(config),
            now: base(),
        }
    }

    /// A request on a connection of its own, answered at once.
    fn ask(&mut self, request: Request) -> Response {
        let conn = self.gw.handle_accept(peer(), self.now);
        let id = self.gw.handle_request(conn, request, self.now);
        self.gw.take_response(id).expect("answered at once")
    }

    /// A POST on `conn` with `body`; its response if answered without a program's start.
    fn post(&mut self, conn: ConnId, session: Option<&str>, body: &Value) -> RequestId {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        if let Some(session) = session {
            headers.push(("mcp-session-id", session));
        }
        let id = self
            .gw
            .handle_request(conn, authorized("POST", &headers), self.now);
        assert_eq!(self.gw.wants_body(id), Some(1000));
        assert!(self.gw.take_response(id).is_none());
        let bytes = body.to_string().into_bytes();
        self.gw
            .handle_body(id, Ok(bytes), self.now, || Some("s1".into()));
        id
    }

    /// Starts an HTTP session: its first POST, its program.
    fn session(&mut self) -> (ConnId, ProgramStarted) {
        let conn = self.gw.handle_accept(peer(), self.now);
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize"});
        let id = self.post(conn, None, &init);
        let Start {
            program, client, ..
        } = self.gw.poll_start().expect("a program to start");
        assert_eq!(client, Some(peer()));
        self.gw.handle_started(program, Ok(()), self.now);
        let response = self.gw.take_response(id).expect("answered once started");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("mcp-session-id"), Some("s1"));
        assert_eq!(response.header("x-accel-buffering"), Some("no"));
        let Body::Stream(body) = response.body else {
            panic!("not a stream")
        };
        let Some(ToProgram::Message(Message::Request(r))) = self.gw.poll_program(program) else {
            panic!("the initialize not relayed")
        };
        assert_eq!(r.method, "initialize");
        let answer: Message =
            serde_json::from_value(json!({"jsonrpc": "2.0", "id": 0, "result": {}})).unwrap();
        self.gw.handle_program_message(program, answer, self.now);
        let Take::Data(event) = self.gw.take_body(body) else {
            panic!("no event")
        };
        assert!(String::from_utf8_lossy(&event).contains(r#""result":{}"#));
        assert_eq!(self.gw.take_body(body), Take::End);
        self.gw.handle_body_dropped(body, self.now);
        (conn, ProgramStarted(program))
    }

    /// A websocket session whose program runs.
    fn websocket(&mut self) -> (ConnId, tether_core::gateway::ProgramId) {
        let conn = self.gw.handle_accept(peer(), self.now);
        let handshake = request(
            "GET",
            "/?token=secret",
            &[("upgrade", "websocket"), ("connection", "upgrade")],
        );
        let id = self.gw.handle_request(conn, handshake, self.now);
        assert_eq!(self.gw.take_response(id).unwrap().status, 101);
        self.gw.handle_ws_open(conn, self.now);
        let start = self.gw.poll_start().expect("a program");
        self.gw.handle_started(start.program, Ok(()), self.now);
        (conn, start.program)
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        while let Some(at) = self.gw.poll_timeout().filter(|at| *at <= self.now) {
            self.gw.handle_timeout(at.max(self.now));
        }
    }
}

struct ProgramStarted(tether_core::gateway::ProgramId);

fn message(value: Value) -> Message {
    serde_json::from_value(value).unwrap()
}

#[test]
fn health_and_not_found_need_no_token() {
    let mut w = World::new(config());
    let health = w.ask(request("GET", "/healthz", &[]));
    assert_eq!(health.status, 200);
    assert_eq!(
        health.full_body().unwrap(),
        br#"{"status":"ok","connections":0}"#
    );
    let missing = w.ask(request(
        "GET",
        "/.well-known/oauth-authorization-server",
        &[],
    ));
    assert_eq!(missing.status, 404);
    assert!(String::from_utf8_lossy(missing.full_body().unwrap()).contains("not OAuth"));
}

#[test]
fn the_gate_refuses_with_status_body_and_challenge() {
    let mut w = World::new(config());
    let none = w.ask(request("POST", "/mcp", &[]));
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some(r#"Bearer realm="tether""#)
    );
    let body = json_body(&none);
    assert_eq!(body["id"], Value::Null);
    assert_eq!(body["error"]["code"], -32000);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("missing bearer token: "));
    let wrong = w.ask(request("POST", "/mcp", &[("authorization", "Bearer nope")]));
    assert!(wrong
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    let put = w.ask(authorized("PUT", &[]));
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, POST, DELETE"));
    let no_session = w.ask(authorized("GET", &[("mcp-session-id", "nope")]));
    assert_eq!(no_session.status, 404);
    assert_eq!(w.gw.active(), 0);
    assert!(w.gw.poll_start().is_none(), "a refusal started a program");
}

#[test]
fn a_foreign_origin_gets_403_without_cors_and_the_own_origin_passes() {
    let mut w = World::new(config());
    let foreign = w.ask(authorized("GET", &[("origin", "http://evil.example")]));
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    assert!(json_body(&foreign)["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("origin not allowed"));
    let preflight = w.ask(request(
        "OPTIONS",
        "/mcp",
        &[("origin", "http://evil.example")],
    ));
    assert_eq!(preflight.status, 403);
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    for own in [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://ok.example",
    ] {
        // Passes the gate: the session is what is missing.
        let answer = w.ask(authorized(
            "GET",
            &[("origin", own), ("mcp-session-id", "x")],
        ));
        assert_eq!(answer.status, 404, "{own}");
        assert_eq!(answer.header("access-control-allow-origin"), Some(own));
        let preflight = w.ask(request("OPTIONS", "/mcp", &[("origin", own)]));
        assert_eq!(preflight.status, 204, "{own}");
        assert_eq!(preflight.header("access-control-allow-origin"), Some(own));
    }
}

#[test]
fn a_host_that_is_not_loopback_is_refused_on_a_loopback_listener() {
    let mut w = World::new(config());
    let rebound = Request::new(
        "GET",
        "/mcp",
        vec![
            ("host".into(), "evil.example:8080".into()),
            ("authorization".into(), "Bearer secret".into()),
        ],
    );
    let refused = w.ask(rebound.clone());
    assert_eq!(refused.status, 403);
    assert!(json_body(&refused)["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("host not allowed"));
    let mut handshake = rebound;
    handshake
        .headers
        .push(("upgrade".into(), "websocket".into()));
    assert_eq!(w.ask(handshake).status, 403);
}

#[test]
fn a_post_over_the_limit_or_unread_is_refused() {
    let mut w = World::new(config());
    let conn = w.gw.handle_accept(peer(), w.now);
    let headers = [("content-type", "application/json")];
    let id =
        w.gw.handle_request(conn, authorized("POST", &headers), w.now);
    w.gw.handle_body(id, Err(BodyError::TooLarge), w.now, || unreachable!());
    assert_eq!(w.gw.take_response(id).unwrap().status, 413);
    let id =
        w.gw.handle_request(conn, authorized("POST", &headers), w.now);
    w.gw.handle_body(id, Err(BodyError::Failed), w.now, || unreachable!());
    assert_eq!(w.gw.take_response(id).unwrap().status, 400);
    assert!(w.gw.take_response(id).is_none(), "answered twice");
}

#[test]
fn an_http_session_runs_its_program_and_ends_with_delete() {
    let mut w = World::new(config());
    let (conn, ProgramStarted(program)) = w.session();
    assert_eq!(w.gw.active(), 1);
    let delete = w.gw.handle_request(
        conn,
        authorized("DELETE", &[("mcp-session-id", "s1")]),
        w.now,
    );
    assert_eq!(w.gw.take_response(delete).unwrap().status, 200);
    assert!(w.gw.program_closing(program));
    assert_eq!(w.gw.poll_program(program), Some(ToProgram::Close));
    let again = w.gw.handle_request(
        conn,
        authorized("DELETE", &[("mcp-session-id", "s1")]),
        w.now,
    );
    assert_eq!(w.gw.take_response(again).unwrap().status, 404);
    assert_eq!(w.gw.active(), 1, "counted until its program is over");
    w.gw.handle_program_end(
        program,
        Some(ExitStatus {
            code: Some(0),
            signal: None,
        }),
        w.now,
    );
    assert_eq!(w.gw.active(), 0);
    assert_eq!(w.gw.footprint().sessions, 0);
}

#[test]
fn a_program_that_cannot_start_fails_the_first_post_with_500() {
    let mut w = World::new(config());
    let conn = w.gw.handle_accept(peer(), w.now);
    let id = w.post(
        conn,
        None,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize"}),
    );
    let start = w.gw.poll_start().unwrap();
    w.gw.handle_started(start.program, Err("no such file".into()), w.now);
    let response = w.gw.take_response(id).unwrap();
    assert_eq!(response.status, 500);
    assert_eq!(json_body(&response)["error"]["code"], -32603);
    assert_eq!(w.gw.active(), 0);
    assert_eq!(w.gw.footprint().sessions, 0);
}

#[test]
fn sessions_over_the_limit_are_refused_with_503() {
    let mut w = World::new(config());
    w.websocket();
    w.websocket();
    let conn = w.gw.handle_accept(peer(), w.now);
    let id = w.post(
        conn,
        None,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize"}),
    );
    assert_eq!(w.gw.take_response(id).unwrap().status, 503);
    let handshake = request("GET", "/?token=secret", &[("upgrade", "websocket")]);
    assert_eq!(w.ask(handshake).status, 503);
}

#[test]
fn a_websocket_relays_both_ways_and_closes_with_the_programs_status() {
    let mut w = World::new(config());
    let (conn, program) = w.websocket();
    let ping = message(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert!(w.gw.wants_client_input(conn));
    w.gw.handle_client_message(conn, ping.clone(), w.now);
    assert_eq!(w.gw.poll_program(program), Some(ToProgram::Message(ping)));
    let pong = message(json!({"jsonrpc": "2.0", "id": 1, "result": "pong"}));
    w.gw.handle_program_message(program, pong.clone(), w.now);
    let status = ExitStatus {
        code: Some(3),
        signal: None,
    };
    w.gw.handle_program_end(program, Some(status), w.now);
    assert_eq!(w.gw.poll_client(conn), Some(ToClient::Message(pong)));
    assert_eq!(
        w.gw.poll_client(conn),
        Some(ToClient::Close(CloseReason::ProgramEnded(status)))
    );
    assert_eq!(w.gw.poll_client(conn), None);
    assert_eq!(w.gw.active(), 1);
    w.gw.handle_closed(conn, w.now);
    assert_eq!(w.gw.active(), 0);
    assert_eq!(w.gw.footprint(), Default::default());
}

#[test]
fn a_client_that_leaves_closes_its_program_and_what_it_says_goes_nowhere() {
    let mut w = World::new(config());
    let (conn, program) = w.websocket();
    w.gw.handle_closed(conn, w.now);
    assert!(w.gw.program_closing(program));
    assert_eq!(w.gw.poll_program(program), Some(ToProgram::Close));
    assert!(w.gw.wants_program_output(program));
    w.gw.handle_program_message(
        program,
        message(json!({"jsonrpc": "2.0", "method": "late"})),
        w.now,
    );
    assert_eq!(w.gw.dropped(), 1);
    assert_eq!(w.gw.active(), 1);
    w.gw.handle_program_end(program, None, w.now);
    assert_eq!(w.gw.active(), 0);
}

#[test]
fn a_websocket_whose_program_cannot_start_is_closed_as_failed() {
    let mut w = World::new(config());
    let conn = w.gw.handle_accept(peer(), w.now);
    let id = w.gw.handle_request(
        conn,
        request(
            "GET",
            "/",
            &[("upgrade", "websocket"), ("authorization", "Bearer secret")],
        ),
        w.now,
    );
    assert_eq!(w.gw.take_response(id).unwrap().status, 101);
    w.gw.handle_ws_open(conn, w.now);
    let start = w.gw.poll_start().unwrap();
    w.gw.handle_started(start.program, Err("nope".into()), w.now);
    assert_eq!(
        w.gw.poll_client(conn),
        Some(ToClient::Close(CloseReason::ProgramFailed))
    );
}

#[test]
fn a_program_that_floods_a_slow_client_is_held_back() {
    let mut w = World::new(config().relay_queue(3));
    let (conn, program) = w.websocket();
    for n in 0..3 {
        assert!(w.gw.wants_program_output(program));
        w.gw.handle_program_message(
            program,
            message(json!({"jsonrpc": "2.0", "method": "n", "params": [n]})),
            w.now,
        );
    }
    assert!(!w.gw.wants_program_output(program));
    assert!(matches!(w.gw.poll_client(conn), Some(ToClient::Message(_))));
    assert!(w.gw.wants_program_output(program));
}

#[test]
fn a_connection_without_a_request_in_time_is_dropped() {
    let mut w = World::new(config());
    let conn = w.gw.handle_accept(peer(), w.now);
    assert_eq!(w.gw.poll_timeout(), Some(w.now + Duration::from_secs(5)));
    w.advance(Duration::from_secs(4));
    assert_eq!(w.gw.connection(conn), Order::Serve);
    w.advance(Duration::from_secs(1));
    assert_eq!(w.gw.connection(conn), Order::Drop);
    assert_eq!(w.gw.poll_timeout(), None);
    // A request in time lifts the deadline.
    let conn = w.gw.handle_accept(peer(), w.now);
    w.gw.handle_request(conn, request("GET", "/elsewhere", &[]), w.now);
    assert_eq!(w.gw.poll_timeout(), None);
}

#[test]
fn an_idle_http_session_is_closed() {
    let settings = Settings::default().idle_timeout(Some(Duration::from_secs(60)));
    let mut w = World::new(config().session(settings));
    let (_, ProgramStarted(program)) = w.session();
    w.advance(Duration::from_secs(59));
    assert!(!w.gw.program_closing(program));
    w.advance(Duration::from_secs(1));
    assert!(w.gw.program_closing(program));
    assert_eq!(w.gw.poll_program(program), Some(ToProgram::Close));
}

#[test]
fn time_that_goes_back_is_no_time() {
    let mut w = World::new(config());
    let conn = w.gw.handle_accept(peer(), w.now);
    w.gw.handle_timeout(w.now - Duration::from_secs(100));
    assert_eq!(w.gw.connection(conn), Order::Serve);
    w.gw.handle_timeout(w.now + Duration::from_secs(5));
    assert_eq!(w.gw.connection(conn), Order::Drop);
}

#[test]
fn stopping_closes_everything_in_order() {
    let mut w = World::new(config().max_connections(8));
    let (ws, ws_program) = w.websocket();
    // Something queued for the client goes nowhere: the close goes first.
    w.gw.handle_program_message(
        ws_program,
        message(json!({"jsonrpc": "2.0", "method": "x"})),
        w.now,
    );
    let (http, ProgramStarted(http_program)) = w.session();
    let waiting = w.gw.handle_accept(peer(), w.now);
    w.gw.handle_stop(w.now);
    w.gw.handle_stop(w.now);
    assert!(w.gw.client_closing(ws));
    assert_eq!(
        w.gw.poll_client(ws),
        Some(ToClient::Close(CloseReason::GoingAway))
    );
    assert_eq!(w.gw.poll_program(ws_program), Some(ToProgram::Close));
    assert_eq!(w.gw.poll_program(http_program), Some(ToProgram::Close));
    assert_eq!(w.gw.connection(waiting), Order::Drop);
    assert_eq!(w.gw.connection(http), Order::Drain);
    assert!(!w.gw.is_finished());
    w.advance(Duration::from_secs(1));
    assert_eq!(w.gw.connection(http), Order::Drop);
    w.gw.handle_program_end(ws_program, None, w.now);
    w.gw.handle_program_end(http_program, None, w.now);
    w.gw.handle_closed(ws, w.now);
    assert!(w.gw.is_finished());
    let late = w.gw.handle_accept(peer(), w.now);
    assert_eq!(w.gw.connection(late), Order::Drop);
}

fn wakes(gw: &mut Gateway) -> Vec<Wake> {
    std::iter::from_fn(|| gw.poll_wake()).collect()
}

#[test]
fn an_input_names_the_waiters_it_concerns() {
    let mut w = World::new(config().max_connections(8));
    let (a, program_a) = w.websocket();
    let (b, _) = w.websocket();
    let _ = wakes(&mut w.gw);
    let ping = message(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    w.gw.handle_client_message(a, ping, w.now);
    assert_eq!(wakes(&mut w.gw), vec![Wake::Channel(a.channel())]);
    assert!(w.gw.poll_program(program_a).is_some());
    assert_eq!(wakes(&mut w.gw), vec![Wake::Channel(a.channel())]);
    let note = message(json!({"jsonrpc": "2.0", "method": "note"}));
    w.gw.handle_program_message(program_a, note, w.now);
    assert_eq!(wakes(&mut w.gw), vec![Wake::Channel(a.channel())]);
    assert_ne!(a.channel(), b.channel());
    w.gw.handle_stop(w.now);
    assert_eq!(wakes(&mut w.gw), vec![Wake::All]);
}
