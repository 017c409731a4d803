//! The gateway's decisions for MCP's stateless revision (2026-07-28), in virtual time: which
//! POST is modern, the mirrored headers, the pool programs (ids, spread, probe, restarts),
//! held heads and streams, cancellation, translation for a legacy-only program, and listen
//! streams.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::base;
use serde_json::{json, Value};
use tether_core::gateway::{
    Body, BodyId, Config, ConnId, Gateway, ProgramId, Request, RequestId, Response, Start,
    ToProgram,
};
use tether_core::restart::{RestartMode, RestartPolicy};
use tether_core::streamable::Take;
use tether_core::{ExitStatus, Message};

const LISTEN: &str = "127.0.0.1:8080";
const V: &str = "2026-07-28";

fn config() -> Config {
    Config::default()
        .listen(LISTEN.parse().unwrap())
        .handshake_timeout(Duration::from_secs(5))
        .keepalive(Duration::from_secs(10))
        .max_body(1 << 20)
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// A modern request body: `method` with `params` and the modern `_meta`.
fn modern(id: Value, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The headers a well-behaved modern client sends for `body`.
fn mirrored(body: &Value) -> Vec<(String, String)> {
    let mut headers = vec![
        ("host".to_owned(), LISTEN.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("mcp-protocol-version".to_owned(), V.to_owned()),
        (
            "mcp-method".to_owned(),
            body["method"].as_str().unwrap().to_owned(),
        ),
    ];
    let name = body["params"]
        .get("name")
        .or_else(|| body["params"].get("uri"))
        .and_then(Value::as_str);
    if let Some(name) = name {
        headers.push(("mcp-name".to_owned(), name.to_owned()));
    }
    headers
}

fn json_of(response: &Response) -> Value {
    serde_json::from_slice(response.full_body().expect("a whole body")).unwrap()
}

fn parse_event(bytes: &[u8]) -> Value {
    let text = std::str::from_utf8(bytes).unwrap();
    let data = text.strip_prefix("data: ").expect("a data event");
    serde_json::from_str(data.trim_end()).unwrap()
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

    /// POSTs `body` with `headers` on a connection of its own.
    fn post_with(
        &mut self,
        body: &Value,
        headers: Vec<(String, String)>,
        accept: &str,
    ) -> (ConnId, RequestId) {
        let conn = self.gw.handle_accept(peer(), self.now);
        let mut headers = headers;
        headers.push(("accept".to_owned(), accept.to_owned()));
        let id = self
            .gw
            .handle_request(conn, Request::new("POST", "/mcp", headers), self.now);
        assert!(self.gw.wants_body(id).is_some());
        self.gw
            .handle_body(id, Ok(body.to_string().into_bytes()), self.now, || {
                panic!("a modern request mints no session id")
            });
        (conn, id)
    }

    fn post(&mut self, body: &Value, accept: &str) -> (ConnId, RequestId) {
        self.post_with(body, mirrored(body), accept)
    }

    /// Starts the pool program asked for, and answers its probe (`modern`: a discover
    /// result, else -32601 then the `initialize` exchange).
    fn start_pool(&mut self, modern: bool) -> ProgramId {
        let Start {
            program, client, ..
        } = self.gw.poll_start().expect("a pool program to start");
        assert_eq!(client, None, "a pool program serves no one client");
        self.gw.handle_started(program, Ok(()), self.now);
        let probe = self.request_to(program);
        assert_eq!(probe["method"], "server/discover");
        assert_eq!(
            probe["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            V
        );
        if modern {
            self.reply(
                program,
                json!({"jsonrpc": "2.0", "id": probe["id"], "result": {"supportedVersions": [V]}}),
            );
        } else {
            self.reply(
                program,
                json!({"jsonrpc": "2.0", "id": probe["id"], "error": {"code": -32601, "message": "no"}}),
            );
            let init = self.request_to(program);
            assert_eq!(init["method"], "initialize");
            assert_eq!(init["params"]["capabilities"], json!({}));
            self.reply(
                program,
                json!({"jsonrpc": "2.0", "id": init["id"], "result": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {"tools": {"listChanged": true}},
                    "serverInfo": {"name": "old", "version": "1"},
                }}),
            );
            let initialized = self.request_to(program);
            assert_eq!(initialized["method"], "notifications/initialized");
        }
        program
    }

    /// The next message the program is sent, as JSON.
    fn request_to(&mut self, program: ProgramId) -> Value {
        match self.gw.poll_program(program) {
            Some(ToProgram::Message(message)) => serde_json::to_value(&message).unwrap(),
            other => panic!("nothing for the program: {other:?}"),
        }
    }

    fn reply(&mut self, program: ProgramId, message: Value) {
        let message: Message = serde_json::from_value(message).unwrap();
        self.gw.handle_program_message(program, message, self.now);
    }

    fn stream(&mut self, id: RequestId) -> BodyId {
        let response = self.gw.take_response(id).expect("a response");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("text/event-stream"));
        assert_eq!(response.header("x-accel-buffering"), Some("no"));
        assert_eq!(response.header("mcp-session-id"), None);
        let Body::Stream(body) = response.body else {
            panic!("not a stream")
        };
        body
    }

    fn event(&mut self, body: BodyId) -> Value {
        match self.gw.take_body(body) {
            Take::Data(bytes) => parse_event(&bytes),
            other => panic!("no event: {other:?}"),
        }
    }
}

#[test]
fn a_modern_request_goes_to_the_pool_under_a_bridge_id_and_comes_back_as_json() {
    let mut w = World::new(config());
    let body = modern(json!(1), "tools/list", json!({}));
    let (_, id) = w.post(&body, "application/json");
    assert!(w.gw.take_response(id).is_none(), "held until answered");
    let program = w.start_pool(true);
    let sent = w.request_to(program);
    assert_eq!(sent["method"], "tools/list");
    assert_ne!(sent["id"], json!(1), "the id is the bridge's");
    assert_eq!(
        sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        V
    );
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"tools": []}}),
    );
    let response = w.gw.take_response(id).expect("answered");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("mcp-session-id"), None);
    assert_eq!(
        json_of(&response),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}})
    );
    assert_eq!(w.gw.footprint().calls, 0);
    assert_eq!(w.gw.active(), 0, "no session");
}

#[test]
fn headers_that_disagree_with_the_body_get_400_and_the_program_sees_nothing() {
    let mut w = World::new(config());
    let body = modern(
        json!(1),
        "tools/call",
        json!({"name": "echo", "arguments": {}}),
    );
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("mcp-protocol-version", None),
        ("mcp-protocol-version", Some("2025-06-18")),
        ("mcp-method", Some("tools/list")),
        ("mcp-name", None),
        ("mcp-name", Some("other")),
        ("mcp-name", Some("=?base64?!!!?=")),
        ("mcp-name", Some("=?base64?ZWNobw?=")),
    ];
    for (header, value) in cases {
        let mut headers: Vec<(String, String)> = mirrored(&body)
            .into_iter()
            .filter(|(n, _)| n != header)
            .collect();
        if let Some(value) = value {
            headers.push((header.to_owned(), value.to_owned()));
        }
        let (_, id) = w.post_with(&body, headers, "application/json");
        let response = w.gw.take_response(id).expect("refused at once");
        assert_eq!(response.status, 400, "{header}: {value:?}");
        assert_eq!(json_of(&response)["error"]["code"], -32020);
    }
    // The base64 form of the right name passes.
    let mut headers: Vec<(String, String)> = mirrored(&body)
        .into_iter()
        .filter(|(n, _)| n != "mcp-name")
        .collect();
    headers.push(("mcp-name".into(), "=?base64?ZWNobw==?=".into()));
    let (_, id) = w.post_with(&body, headers, "application/json");
    assert!(w.gw.take_response(id).is_none());
    // An oversized name that is not the body's.
    let mut headers: Vec<(String, String)> = mirrored(&body)
        .into_iter()
        .filter(|(n, _)| n != "mcp-name")
        .collect();
    headers.push(("mcp-name".into(), "x".repeat(100_000)));
    let (_, id) = w.post_with(&body, headers, "application/json");
    assert_eq!(w.gw.take_response(id).unwrap().status, 400);
    // Only the one good request started a program.
    assert!(w.gw.poll_start().is_some());
    assert!(w.gw.poll_start().is_none());
}

#[test]
fn without_meta_a_request_is_legacy_and_needs_a_session() {
    let mut w = World::new(config());
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let (_, id) = w.post_with(&body, mirrored(&body), "application/json");
    let response = w.gw.take_response(id).unwrap();
    assert_eq!(response.status, 400);
    assert!(w.gw.poll_start().is_none());
}

#[test]
fn get_and_delete_without_a_session_are_405() {
    let mut w = World::new(config());
    for method in ["GET", "DELETE"] {
        let conn = w.gw.handle_accept(peer(), w.now);
        let headers = vec![
            ("host".to_owned(), LISTEN.to_owned()),
            ("accept".to_owned(), "text/event-stream".to_owned()),
            ("mcp-protocol-version".to_owned(), V.to_owned()),
        ];
        let id =
            w.gw.handle_request(conn, Request::new(method, "/mcp", headers), w.now);
        let response = w.gw.take_response(id).unwrap();
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("POST"));
    }
}

#[test]
fn session_ids_are_ignored_on_modern_requests_and_notifications_get_202() {
    let mut w = World::new(config());
    let body = modern(json!("a"), "tools/list", json!({}));
    let mut headers = mirrored(&body);
    headers.push(("mcp-session-id".into(), "nonexistent".into()));
    headers.push(("last-event-id".into(), "1-1".into()));
    let (_, id) = w.post_with(&body, headers, "application/json");
    assert!(w.gw.take_response(id).is_none(), "served, not 404");
    let mut note = modern(json!(0), "notifications/roots/list_changed", json!({}));
    note.as_object_mut().unwrap().remove("id");
    let (_, id) = w.post(&note, "application/json");
    assert_eq!(w.gw.take_response(id).unwrap().status, 202);
}

#[test]
fn an_unknown_method_is_404_and_an_unsupported_version_400() {
    let mut w = World::new(config());
    let (_, a) = w.post(
        &modern(json!(1), "nope/nope", json!({})),
        "application/json, text/event-stream",
    );
    let program = w.start_pool(true);
    let sent = w.request_to(program);
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "id": sent["id"], "error": {"code": -32601, "message": "unknown"}}),
    );
    let response = w.gw.take_response(a).unwrap();
    assert_eq!(response.status, 404, "not a 200 stream");
    assert_eq!(json_of(&response)["error"]["code"], -32601);
    assert_eq!(json_of(&response)["id"], 1);
    let mut old = modern(json!(2), "tools/list", json!({}));
    old["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let mut headers = mirrored(&old);
    headers.retain(|(n, _)| n != "mcp-protocol-version");
    headers.push(("mcp-protocol-version".into(), "2099-01-01".into()));
    let (_, b) = w.post_with(&old, headers, "application/json");
    let sent = w.request_to(program);
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "id": sent["id"], "error": {"code": -32022, "message": "unsupported", "data": {"supported": [V]}}}),
    );
    let response = w.gw.take_response(b).unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(json_of(&response)["error"]["data"]["supported"][0], V);
}

#[test]
fn a_stream_is_committed_by_the_first_event_and_ends_with_the_answer() {
    let mut w = World::new(config());
    let mut body = modern(
        json!(7),
        "tools/call",
        json!({"name": "slow", "arguments": {}}),
    );
    body["params"]["_meta"]["progressToken"] = json!("mine");
    let (_, id) = w.post(&body, "application/json, text/event-stream");
    let program = w.start_pool(true);
    let sent = w.request_to(program);
    let token = sent["params"]["_meta"]["progressToken"].clone();
    assert_ne!(token, json!("mine"), "the token is the bridge's too");
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}),
    );
    let stream = w.stream(id);
    let progress = w.event(stream);
    assert_eq!(progress["params"]["progressToken"], "mine");
    assert_eq!(w.gw.take_body(stream), Take::Wait);
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"content": []}}),
    );
    assert_eq!(w.event(stream)["id"], 7);
    assert_eq!(w.gw.take_body(stream), Take::End);
    w.gw.handle_body_dropped(stream, w.now);
    assert_eq!(w.gw.footprint().calls, 0);
    assert!(
        w.gw.poll_program(program).is_none(),
        "no cancel after the answer"
    );
}

#[test]
fn fifty_clients_with_id_1_each_get_their_own_answer() {
    let mut w = World::new(config());
    let mut asked = Vec::new();
    for n in 0..50 {
        let body = modern(
            json!(1),
            "tools/call",
            json!({"name": format!("t{n}"), "arguments": {}}),
        );
        asked.push(w.post(&body, "application/json").1);
    }
    let program = w.start_pool(true);
    let mut sent = Vec::new();
    for _ in 0..50 {
        sent.push(w.request_to(program));
    }
    let ids: std::collections::BTreeSet<String> =
        sent.iter().map(|s| s["id"].to_string()).collect();
    assert_eq!(ids.len(), 50, "no two collide at the program");
    // Answered in reverse order, each naming its tool.
    for s in sent.iter().rev() {
        w.reply(
            program,
            json!({"jsonrpc": "2.0", "id": s["id"], "result": {"tool": s["params"]["name"]}}),
        );
    }
    for (n, id) in asked.into_iter().enumerate() {
        let answer = json_of(&w.gw.take_response(id).unwrap());
        assert_eq!(answer["id"], 1);
        assert_eq!(answer["result"]["tool"], format!("t{n}"));
    }
}

#[test]
fn a_closed_stream_cancels_with_the_programs_id_and_its_late_answer_goes_nowhere() {
    let mut w = World::new(config());
    let body = modern(
        json!(3),
        "tools/call",
        json!({"name": "slow", "arguments": {}}),
    );
    let (_, id) = w.post(&body, "text/event-stream");
    let program = w.start_pool(true);
    let sent = w.request_to(program);
    w.gw.handle_timeout(w.now + Duration::from_secs(10));
    w.now += Duration::from_secs(10);
    let stream = w.stream(id);
    assert_eq!(
        w.gw.take_body(stream),
        Take::Data(b": keep-alive\n\n".to_vec()),
        "a held head is committed at the first keep-alive"
    );
    w.gw.handle_body_dropped(stream, w.now);
    let cancel = w.request_to(program);
    assert_eq!(cancel["method"], "notifications/cancelled");
    assert_eq!(cancel["params"]["requestId"], sent["id"]);
    let dropped = w.gw.dropped();
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "id": sent["id"], "result": {}}),
    );
    assert_eq!(w.gw.dropped(), dropped + 1);
    assert_eq!(w.gw.footprint().calls, 0);
    assert_eq!(w.gw.footprint().bodies, 0);
}

#[test]
fn a_closed_connection_cancels_a_held_request() {
    let mut w = World::new(config());
    let body = modern(json!(3), "tools/list", json!({}));
    let (conn, _) = w.post(&body, "application/json");
    let program = w.start_pool(true);
    let sent = w.request_to(program);
    w.gw.handle_closed(conn, w.now);
    let cancel = w.request_to(program);
    assert_eq!(cancel["params"]["requestId"], sent["id"]);
    assert_eq!(w.gw.footprint().calls, 0);
}

#[test]
fn requests_go_to_the_pool_program_with_the_fewest_outstanding() {
    let mut w = World::new(config().pool(2));
    let (_, a) = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let first = w.start_pool(true);
    let (_, b) = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let second = w.start_pool(true);
    assert_ne!(first, second);
    let to_first = w.request_to(first);
    let to_second = w.request_to(second);
    w.reply(
        first,
        json!({"jsonrpc": "2.0", "id": to_first["id"], "result": {"from": 1}}),
    );
    // The first is free again: the next goes there, not to the busy second.
    let (_, c) = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let to_first_again = w.request_to(first);
    assert!(w.gw.poll_program(second).is_none());
    assert!(w.gw.poll_start().is_none(), "each probed once");
    w.reply(
        second,
        json!({"jsonrpc": "2.0", "id": to_second["id"], "result": {"from": 2}}),
    );
    w.reply(
        first,
        json!({"jsonrpc": "2.0", "id": to_first_again["id"], "result": {"from": 3}}),
    );
    assert_eq!(
        json_of(&w.gw.take_response(a).unwrap())["result"]["from"],
        1
    );
    assert_eq!(
        json_of(&w.gw.take_response(b).unwrap())["result"]["from"],
        2
    );
    assert_eq!(
        json_of(&w.gw.take_response(c).unwrap())["result"]["from"],
        3
    );
}

#[test]
fn a_pool_program_that_ends_fails_its_calls_and_restarts_with_a_growing_delay() {
    let policy = RestartPolicy {
        mode: RestartMode::OnFailure,
        backoff: Duration::from_millis(100),
        max_restarts: 2,
        window: Duration::from_secs(60),
        ready_timeout: None,
    };
    let mut w = World::new(config().restart(policy));
    let (_, a) = w.post(
        &modern(json!(9), "tools/list", json!({})),
        "application/json",
    );
    let program = w.start_pool(true);
    let _ = w.request_to(program);
    let crashed = Some(ExitStatus {
        code: Some(1),
        signal: None,
    });
    w.gw.handle_program_end(program, crashed, w.now);
    let answer = json_of(&w.gw.take_response(a).unwrap());
    assert_eq!(answer["id"], 9);
    assert_eq!(answer["error"]["code"], -32603);
    assert_eq!(
        w.gw.poll_timeout(),
        Some(w.now + Duration::from_millis(100))
    );
    assert!(w.gw.poll_start().is_none(), "not before the delay");
    w.now += Duration::from_millis(100);
    w.gw.handle_timeout(w.now);
    let program = w.start_pool(true);
    w.gw.handle_program_end(program, crashed, w.now);
    assert_eq!(
        w.gw.poll_timeout(),
        Some(w.now + Duration::from_millis(200)),
        "doubled"
    );
    w.now += Duration::from_millis(200);
    w.gw.handle_timeout(w.now);
    let program = w.start_pool(true);
    w.gw.handle_program_end(program, crashed, w.now);
    // The guard gave up: modern requests are refused.
    assert_eq!(w.gw.poll_timeout(), None);
    let (_, b) = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    assert_eq!(w.gw.take_response(b).unwrap().status, 503);
}

#[test]
fn a_pool_program_that_never_answers_its_probe_is_closed_and_its_calls_fail() {
    let mut w = World::new(config());
    let (_, a) = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let Start { program, .. } = w.gw.poll_start().unwrap();
    w.gw.handle_started(program, Ok(()), w.now);
    assert_eq!(w.request_to(program)["method"], "server/discover");
    w.now += Duration::from_secs(5);
    w.gw.handle_timeout(w.now);
    assert_eq!(
        json_of(&w.gw.take_response(a).unwrap())["error"]["code"],
        -32603
    );
    assert_eq!(w.gw.poll_program(program), Some(ToProgram::Close));
    // Without a restart policy, the next request starts another.
    w.gw.handle_program_end(program, None, w.now);
    assert!(w.gw.poll_start().is_none());
    let _ = w.post(
        &modern(json!(2), "tools/list", json!({})),
        "application/json",
    );
    assert!(w.gw.poll_start().is_some());
}

#[test]
fn a_probe_missed_is_a_ready_timeout_which_the_policy_restarts() {
    let policy = RestartPolicy {
        mode: RestartMode::OnFailure,
        backoff: Duration::from_millis(100),
        ready_timeout: Some(Duration::from_secs(2)),
        ..RestartPolicy::default()
    };
    let mut w = World::new(config().restart(policy));
    let _ = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let Start { program, .. } = w.gw.poll_start().unwrap();
    w.gw.handle_started(program, Ok(()), w.now);
    let _ = w.request_to(program);
    assert_eq!(
        w.gw.poll_timeout(),
        Some(w.now + Duration::from_secs(2)),
        "the ready timeout"
    );
    w.now += Duration::from_secs(2);
    w.gw.handle_timeout(w.now);
    assert_eq!(w.gw.poll_program(program), Some(ToProgram::Close));
    w.gw.handle_program_end(program, None, w.now);
    assert_eq!(
        w.gw.poll_timeout(),
        Some(w.now + Duration::from_millis(100))
    );
    w.now += Duration::from_millis(100);
    w.gw.handle_timeout(w.now);
    assert!(w.gw.poll_start().is_some(), "restarted without a request");
}

#[test]
fn a_legacy_only_program_is_initialized_once_and_translated_for() {
    let mut w = World::new(config());
    let (_, discover) = w.post(
        &modern(json!("d"), "server/discover", json!({})),
        "application/json",
    );
    let program = w.start_pool(false);
    let answer = json_of(&w.gw.take_response(discover).unwrap());
    assert_eq!(answer["id"], "d");
    assert_eq!(answer["result"]["supportedVersions"], json!([V]));
    assert_eq!(
        answer["result"]["capabilities"]["tools"]["listChanged"],
        true
    );
    assert_eq!(
        answer["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "old"
    );
    assert!(
        w.gw.poll_program(program).is_none(),
        "discover answered by the bridge"
    );
    let (_, call) = w.post(
        &modern(
            json!(5),
            "tools/call",
            json!({"name": "echo", "arguments": {"x": 1}}),
        ),
        "application/json",
    );
    let sent = w.request_to(program);
    assert_eq!(sent["method"], "tools/call");
    assert_eq!(sent["params"]["arguments"]["x"], 1);
    assert!(
        sent["params"].get("_meta").is_none(),
        "the modern keys are gone"
    );
    // The program asks the client something: refused by the bridge.
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "id": 77, "method": "sampling/createMessage", "params": {}}),
    );
    let refusal = w.request_to(program);
    assert_eq!(refusal["id"], 77);
    assert!(refusal["error"]["code"].is_i64());
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"content": []}}),
    );
    assert_eq!(json_of(&w.gw.take_response(call).unwrap())["id"], 5);
    assert!(w.gw.poll_start().is_none(), "initialized once");
}

#[test]
fn listen_streams_get_what_they_asked_for_tagged_with_their_id() {
    let mut w = World::new(config());
    let listen = |id: &str, tools: bool| {
        modern(
            json!(id),
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": tools}}),
        )
    };
    let (_, a) = w.post(&listen("a", true), "text/event-stream");
    let program = w.start_pool(false);
    let (_, b) = w.post(&listen("b", false), "text/event-stream");
    let a = w.stream(a);
    let b = w.stream(b);
    let ack = w.event(a);
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true})
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "a"
    );
    let _ = w.event(b);
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
    );
    let change = w.event(a);
    assert_eq!(change["method"], "notifications/tools/list_changed");
    assert_eq!(
        change["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "a"
    );
    assert_eq!(w.gw.take_body(b), Take::Wait, "b did not ask");
    // Kept open with keep-alives.
    w.now += Duration::from_secs(10);
    w.gw.handle_timeout(w.now);
    assert_eq!(w.gw.take_body(a), Take::Data(b": keep-alive\n\n".to_vec()));
    w.gw.handle_body_dropped(a, w.now);
    w.gw.handle_body_dropped(b, w.now);
    assert!(
        w.gw.poll_program(program).is_none(),
        "the bridge's own listens"
    );
    assert_eq!(w.gw.footprint().calls, 0);
}

#[test]
fn a_modern_programs_listen_notifications_go_to_their_own_stream() {
    let mut w = World::new(config());
    let (_, a) = w.post(
        &modern(
            json!(1),
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true}}),
        ),
        "text/event-stream",
    );
    let (_, b) = w.post(
        &modern(
            json!(1),
            "tools/call",
            json!({"name": "x", "arguments": {}}),
        ),
        "text/event-stream",
    );
    let program = w.start_pool(true);
    let listen = w.request_to(program);
    let call = w.request_to(program);
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
               "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": listen["id"]}}}),
    );
    let a = w.stream(a);
    let change = w.event(a);
    assert_eq!(
        change["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        1
    );
    // A log message with nothing naming its request goes to nobody.
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}),
    );
    assert!(w.gw.take_response(b).is_none());
    w.reply(
        program,
        json!({"jsonrpc": "2.0", "id": call["id"], "result": {}}),
    );
    let b = w.stream(b);
    assert_eq!(w.event(b)["id"], 1);
    assert_eq!(w.gw.take_body(a), Take::Wait);
}

#[test]
fn stopping_closes_the_pool_and_fails_what_is_in_flight() {
    let mut w = World::new(config());
    let (_, a) = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let program = w.start_pool(true);
    let _ = w.request_to(program);
    w.gw.handle_stop(w.now);
    assert_eq!(w.gw.poll_program(program), Some(ToProgram::Close));
    w.gw.handle_program_end(program, None, w.now);
    assert_eq!(
        json_of(&w.gw.take_response(a).unwrap())["error"]["code"],
        -32603
    );
    assert!(w.gw.poll_start().is_none(), "no restart once stopping");
    assert!(w.gw.is_finished());
}

#[test]
fn stopping_during_a_restarts_delay_fails_the_requests_waiting_for_it() {
    let policy = RestartPolicy {
        mode: RestartMode::Always,
        backoff: Duration::from_secs(1),
        ..RestartPolicy::default()
    };
    let mut w = World::new(config().restart(policy));
    let (_, a) = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let program = w.start_pool(true);
    let _ = w.request_to(program);
    w.gw.handle_program_end(program, None, w.now);
    assert_eq!(
        json_of(&w.gw.take_response(a).unwrap())["error"]["code"],
        -32603
    );
    // A request arrives during the delay: it waits for the restart.
    let (_, b) = w.post(
        &modern(json!(2), "tools/list", json!({})),
        "application/json",
    );
    assert!(w.gw.take_response(b).is_none());
    w.gw.handle_stop(w.now);
    assert_eq!(json_of(&w.gw.take_response(b).unwrap())["id"], 2);
    w.now += Duration::from_secs(1);
    w.gw.handle_timeout(w.now);
    assert!(w.gw.poll_start().is_none());
    assert!(w.gw.is_finished());
}

#[test]
fn an_initialize_with_modern_meta_still_starts_a_legacy_session() {
    let mut w = World::new(config());
    let body = modern(
        json!(1),
        "initialize",
        json!({"protocolVersion": "2025-06-18"}),
    );
    let conn = w.gw.handle_accept(peer(), w.now);
    let mut headers = mirrored(&body);
    headers.push(("accept".into(), "application/json".into()));
    let id =
        w.gw.handle_request(conn, Request::new("POST", "/mcp", headers), w.now);
    w.gw.handle_body(id, Ok(body.to_string().into_bytes()), w.now, || {
        Some("s1".into())
    });
    let Start {
        program, client, ..
    } = w.gw.poll_start().unwrap();
    assert!(client.is_some(), "a program of its own");
    w.gw.handle_started(program, Ok(()), w.now);
    let response = w.gw.take_response(id).unwrap();
    assert_eq!(response.header("mcp-session-id"), Some("s1"));
}

#[test]
fn a_program_that_asks_without_reading_is_not_owed_a_growing_queue() {
    let mut w = World::new(config().max_calls(4));
    let _ = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let program = w.start_pool(true);
    let _ = w.request_to(program);
    let dropped = w.gw.dropped();
    for n in 0..10 {
        w.reply(
            program,
            json!({"jsonrpc": "2.0", "id": n, "method": "roots/list"}),
        );
    }
    assert_eq!(w.gw.dropped(), dropped + 6);
    let mut refusals = 0;
    while let Some(ToProgram::Message(_)) = w.gw.poll_program(program) {
        refusals += 1;
    }
    assert_eq!(refusals, 4);
}

#[test]
fn a_program_that_refuses_both_eras_fails_the_requests_and_says_so() {
    let mut w = World::new(config());
    let (_, a) = w.post(
        &modern(json!(1), "tools/list", json!({})),
        "application/json",
    );
    let Start { program, .. } = w.gw.poll_start().unwrap();
    w.gw.handle_started(program, Ok(()), w.now);
    for _ in 0..2 {
        let asked = w.request_to(program);
        w.reply(
            program,
            json!({"jsonrpc": "2.0", "id": asked["id"], "error": {"code": -32601, "message": "no"}}),
        );
    }
    let answer = json_of(&w.gw.take_response(a).unwrap());
    assert_eq!(answer["error"]["code"], -32603);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("server/discover and initialize"));
    assert_eq!(w.gw.poll_program(program), Some(ToProgram::Close));
}
