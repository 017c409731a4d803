//! The testkit: a client's endpoint against a scripted peer, in virtual time. Every deadline
//! is reached by moving the virtual clock; nothing waits.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::base;
use serde_json::{json, Value};
use tether_core::testkit::{Matching, Script, Session};
use tether_core::{
    Config, Event, ExitStatus, Id, Message, Notification, Policy, Request, RpcError,
};

const SEC: Duration = Duration::from_secs(1);

fn cancelled() -> tether_core::CancelNotification {
    Arc::new(|id: &Id| {
        Notification::new(
            "notifications/cancelled",
            Some(json!({"requestId": id, "reason": "timed out"})),
        )
    })
}

/// The client under test: initializes, then calls a tool with a deadline of its own.
struct ToolClient {
    call_timeout: Duration,
}

impl ToolClient {
    fn initialize(&self, session: &mut Session) -> Result<Value, Box<dyn std::error::Error>> {
        let now = session.now();
        let id = session.endpoint().request(
            "initialize",
            Some(json!({"protocolVersion": "2025-06-18", "capabilities": {}})),
            Some(10 * SEC),
            now,
        )?;
        session.run()?;
        let answer = session.endpoint().take_result(&id).ok_or("no answer")??;
        let initialized = Notification::new("notifications/initialized", None);
        session.endpoint().send(&initialized.into())?;
        session.run()?;
        Ok(answer)
    }

    fn call(&self, session: &mut Session, name: &str) -> Result<Id, RpcError> {
        let now = session.now();
        session.endpoint().request(
            "tools/call",
            Some(json!({"name": name, "arguments": {}})),
            Some(self.call_timeout),
            now,
        )
    }
}

#[test]
fn a_client_goes_through_a_timeout_without_waiting() {
    let script = Script::new()
        .expect_request("initialize")
        .reply(json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}}))
        .expect_notification("notifications/initialized")
        .expect_request_with("tools/call", json!({"name": "slow", "arguments": {}}))
        .expect(json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 2, "reason": "timed out"},
        }))
        .expect_request("tools/call")
        .reply(json!({"content": [{"type": "text", "text": "quick"}]}))
        .await_close()
        .exit(0);
    let mut session = Session::child(Config::new(), script, base()).unwrap();
    session.endpoint().serve(Some(cancelled()));
    let client = ToolClient {
        call_timeout: 30 * SEC,
    };
    let init = client.initialize(&mut session).unwrap();
    assert_eq!(init["capabilities"]["tools"], json!({}));

    let slow = client.call(&mut session, "slow").unwrap();
    session.advance(29 * SEC).unwrap();
    assert!(session.endpoint().is_pending(&slow));
    session.advance(SEC).unwrap();
    assert_eq!(
        session.endpoint().take_result(&slow),
        Some(Err(RpcError::TimedOut))
    );
    assert_eq!(session.elapsed(), 30 * SEC);

    let quick = client.call(&mut session, "quick").unwrap();
    session.run().unwrap();
    let answer = session.endpoint().take_result(&quick).unwrap().unwrap();
    assert_eq!(answer["content"][0]["text"], "quick");

    let now = session.now();
    session.endpoint().close(now);
    session.finish(10 * SEC).unwrap();
    assert_eq!(
        session.take_events(),
        vec![Event::Disconnected(None)],
        "every response went to its request"
    );
    assert_eq!(
        session.exit_status(),
        Some(ExitStatus {
            code: Some(0),
            signal: None
        })
    );
    assert_eq!(session.elapsed(), 30 * SEC, "the close took no time");
}

#[test]
fn a_peer_that_ignores_sigterm_is_killed_after_both_graces() {
    let script = Script::new().await_close().killed(9);
    let config = Config::new().policy(Policy::graceful(2 * SEC));
    let mut session = Session::child(config, script, base()).unwrap();
    let now = session.now();
    session.endpoint().close(now);
    session.finish(60 * SEC).unwrap();
    assert_eq!(
        session.exit_status(),
        Some(ExitStatus {
            code: None,
            signal: Some(9)
        })
    );
    assert_eq!(session.elapsed(), 4 * SEC);
    assert!(session.endpoint().is_finished());
}

#[test]
fn a_frame_the_script_did_not_expect_shows_expected_against_received() {
    let script = Script::new().expect_request_with("echo", json!({"hello": "world"}));
    let mut session = Session::child(Config::new(), script, base()).unwrap();
    let request = Request::new(1, "echo", Some(json!({"hello": "there"})));
    session.endpoint().send(&Message::Request(request)).unwrap();
    let mismatch = session.run().unwrap_err();
    assert_eq!(mismatch.step, 1);
    assert_eq!(
        mismatch.differences,
        vec![r#"params.hello: expected "world", received "there""#]
    );
    assert_eq!(
        mismatch.to_string(),
        "step 1 of the script:\n  expected: \
         {\"id\":null,\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"hello\":\"world\"}}\n  \
         received: {\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{\"hello\":\"there\"}}\n    \
         params.hello: expected \"world\", received \"there\""
    );
}

#[test]
fn a_script_left_unfinished_says_what_it_still_expected() {
    let script = Script::new()
        .expect_request("initialize")
        .reply(json!({}))
        .expect_request("tools/list");
    let mut session = Session::child(Config::new(), script, base()).unwrap();
    let client = ToolClient { call_timeout: SEC };
    client.initialize(&mut session).unwrap_err();
    let now = session.now();
    session.endpoint().close(now);
    let mismatch = session.finish(60 * SEC).unwrap_err();
    assert_eq!(mismatch.step, 3);
    assert_eq!(mismatch.expected, "a request for \"tools/list\"");
    assert_eq!(mismatch.received, "the end of the client's output");
}

/// A transcript as `tether run --record` writes it (server-everything's answers, shortened).
const RECORDED: &str = r#"
{"t_ms":16,"dir":"out","frame":{"id":1,"jsonrpc":"2.0","method":"initialize","params":{"capabilities":{},"protocolVersion":"2025-06-18"}}}
{"t_ms":16,"dir":"out","frame":{"jsonrpc":"2.0","method":"notifications/initialized"}}
{"t_ms":16,"dir":"out","frame":{"id":2,"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"message":"hi"},"name":"echo"}}}
{"t_ms":1048,"dir":"in","frame":{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}}
{"t_ms":1069,"dir":"in","frame":{"id":1,"jsonrpc":"2.0","result":{"capabilities":{"tools":{"listChanged":true}},"protocolVersion":"2025-06-18"}}}
{"t_ms":1071,"dir":"in","frame":{"id":2,"jsonrpc":"2.0","result":{"content":[{"text":"Echo: hi","type":"text"}]}}}
{"t_ms":1071,"close":"out"}
{"t_ms":1447,"end":{"reason":null,"exit":{"code":0,"signal":null}}}
"#;

#[test]
fn a_recorded_transcript_plays_the_peer() {
    let script = Script::from_transcript(RECORDED, Matching::Method).unwrap();
    let mut session = Session::child(Config::new(), script, base()).unwrap();
    session.endpoint().serve(None);
    let now = session.now();
    let ep = session.endpoint();
    // The recorded answers find their requests by the ids this endpoint gave them.
    let init = ep.request("initialize", None, None, now).unwrap();
    ep.send(&Notification::new("notifications/initialized", None).into())
        .unwrap();
    let call = ep
        .request("tools/call", Some(json!({"name": "echo"})), None, now)
        .unwrap();
    session.run().unwrap();
    assert!(session.endpoint().take_result(&init).unwrap().is_ok());
    let answer = session.endpoint().take_result(&call).unwrap().unwrap();
    assert_eq!(answer["content"][0]["text"], "Echo: hi");
    let now = session.now();
    session.endpoint().close(now);
    session.finish(10 * SEC).unwrap();
    let events = session.take_events();
    assert!(
        matches!(&events[0], Event::Message(Message::Notification(n)) if n.method == "notifications/tools/list_changed"),
        "{events:?}"
    );
    assert_eq!(events.last(), Some(&Event::Disconnected(None)));
    assert_eq!(session.exit_status().and_then(|s| s.code), Some(0));
}

#[test]
fn a_websocket_peer_closes_after_the_client() {
    let script = Script::new()
        .expect_request("ping")
        .reply(json!("pong"))
        .await_close()
        .close();
    let config = Config::new().framing(tether_core::Framing::Messages);
    let mut session = Session::peer(config, script, base()).unwrap();
    session.endpoint().serve(None);
    let now = session.now();
    let id = session.endpoint().request("ping", None, None, now).unwrap();
    session.run().unwrap();
    assert_eq!(session.endpoint().take_result(&id), Some(Ok(json!("pong"))));
    session.endpoint().close(now);
    session.finish(10 * SEC).unwrap();
    assert_eq!(session.take_events(), vec![Event::Disconnected(None)]);
    assert_eq!(session.exit_status(), None);
    assert_eq!(session.elapsed(), Duration::ZERO);
}
