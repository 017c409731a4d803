//! Whole sessions through the endpoint, in virtual time: every deadline is reached by handing
//! in a later instant, never by waiting.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::base;
use serde_json::{json, Value};
use tether_core::{
    Action, CloseReason, Config, Control, DisconnectKind, Endpoint, Event, ExitStatus, Framing,
    Goodbye, Id, Message, Notification, Policy, RpcError,
};

const SEC: Duration = Duration::from_secs(1);

fn ws(config: Config, now: Instant) -> Endpoint {
    Endpoint::new(config.framing(Framing::Messages).label("test"), now).unwrap()
}

fn stream(config: Config, now: Instant) -> Endpoint {
    Endpoint::new(config.label("test"), now).unwrap()
}

/// Everything the endpoint queued to write, as JSON values, reported written.
fn written(ep: &mut Endpoint) -> Vec<Value> {
    let mut values = Vec::new();
    let mut out = Vec::new();
    let n = ep.poll_transmit(&mut out);
    ep.handle_transmitted(n);
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        values.push(serde_json::from_slice(line).unwrap());
    }
    while let Some(frame) = ep.poll_transmit_frame() {
        ep.handle_transmitted(frame.len());
        values.push(serde_json::from_slice(&frame).unwrap());
    }
    values
}

fn events(ep: &mut Endpoint) -> Vec<Event<Message>> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn controls(ep: &mut Endpoint) -> Vec<Control> {
    std::iter::from_fn(|| ep.poll_control()).collect()
}

fn frame(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn the_peers_close_is_answered_before_the_end_is_handed_over() {
    let t0 = base();
    let mut ep = ws(Config::new(), t0);
    ep.handle_frame(frame(json!({"jsonrpc":"2.0","method":"hi"})), t0)
        .unwrap();
    ep.handle_peer_close(t0);
    assert_eq!(controls(&mut ep), vec![Control::Flush]);
    // The message comes out; the end waits for the answer to be flushed.
    let before = events(&mut ep);
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(matches!(before[0], Event::Message(_)));
    ep.handle_flushed(t0 + Duration::from_millis(5));
    assert_eq!(events(&mut ep), vec![Event::Disconnected(None)]);
    assert!(ep.is_finished());
}

#[test]
fn an_unflushable_close_answer_still_ends_within_the_close_timeout() {
    let t0 = base();
    let mut ep = ws(Config::new().close_timeout(3 * SEC), t0);
    ep.handle_peer_close(t0);
    assert_eq!(events(&mut ep), vec![]);
    assert_eq!(ep.poll_timeout(), Some(t0 + 3 * SEC));
    ep.handle_timeout(t0 + 3 * SEC);
    assert_eq!(events(&mut ep), vec![Event::Disconnected(None)]);
}

#[test]
fn a_message_over_the_limit_gets_our_1009_then_ends() {
    let t0 = base();
    let mut ep = ws(Config::new(), t0);
    ep.handle_too_large("message too long", t0);
    assert_eq!(
        controls(&mut ep),
        vec![Control::SendClose {
            code: 1009,
            reason: "message over the size limit".to_owned()
        }]
    );
    assert_eq!(events(&mut ep), vec![]);
    ep.handle_flushed(t0);
    let end = events(&mut ep);
    match &end[..] {
        [Event::Disconnected(Some(d))] => {
            assert_eq!(d.kind, DisconnectKind::Read("message too long".to_owned()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_orderly_websocket_close_sends_1000_and_waits_for_the_peer_within_the_configured_time() {
    let t0 = base();
    let mut ep = ws(Config::new().close_timeout(5 * SEC), t0);
    ep.close(t0);
    assert_eq!(
        controls(&mut ep),
        vec![Control::SendClose {
            code: 1000,
            reason: String::new()
        }]
    );
    ep.handle_timeout(t0 + 4 * SEC);
    assert_eq!(events(&mut ep), vec![]);
    ep.handle_timeout(t0 + 5 * SEC);
    assert_eq!(controls(&mut ep), vec![Control::Abort]);
    match &events(&mut ep)[..] {
        [Event::Disconnected(Some(d))] => {
            assert_eq!(
                d.kind,
                DisconnectKind::Timeout("the peer did not close within 5s".to_owned())
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn close_reasons_choose_the_code() {
    let exited = |code| ExitStatus {
        code: Some(code),
        signal: None,
    };
    assert_eq!(CloseReason::GoingAway.frame().0, 1001);
    assert_eq!(CloseReason::ProgramEnded(exited(0)).frame().0, 1000);
    assert_eq!(
        CloseReason::ProgramEnded(exited(3)).frame(),
        (1011, "the program ended: exit code 3".to_owned())
    );
    let t0 = base();
    let mut ep = ws(Config::new(), t0);
    ep.close_with(CloseReason::GoingAway, t0);
    // The first reason counts.
    ep.close_with(CloseReason::ProgramFailed, t0);
    assert_eq!(
        controls(&mut ep),
        vec![Control::SendClose {
            code: 1001,
            reason: "going away".to_owned()
        }]
    );
}

#[test]
fn keepalive_pings_a_quiet_peer_and_gives_up_on_a_silent_one() {
    let t0 = base();
    let mut ep = ws(Config::new().keepalive(10 * SEC, 5 * SEC), t0);
    assert_eq!(ep.poll_timeout(), Some(t0 + 10 * SEC));
    ep.handle_timeout(t0 + 10 * SEC);
    assert_eq!(controls(&mut ep), vec![Control::Ping]);
    // A pong resets the silence.
    ep.handle_pong(t0 + 11 * SEC);
    ep.handle_timeout(t0 + 16 * SEC);
    assert_eq!(controls(&mut ep), vec![]);
    ep.handle_timeout(t0 + 21 * SEC);
    assert_eq!(controls(&mut ep), vec![Control::Ping]);
    ep.handle_timeout(t0 + 26 * SEC);
    assert_eq!(controls(&mut ep), vec![Control::Abort]);
    match &events(&mut ep)[..] {
        [Event::Disconnected(Some(d))] => assert!(matches!(d.kind, DisconnectKind::Timeout(_))),
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn linger_closes_when_every_request_is_answered() {
    let t0 = base();
    let mut ep = stream(Config::new(), t0);
    ep.track_requests();
    let request: Message = tether_core::Request::new(7, "slow", None).into();
    ep.send_tracked(&request).unwrap();
    written(&mut ep);
    ep.finish(5 * SEC, t0);
    assert_eq!(controls(&mut ep), vec![]);
    ep.handle_input(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":1}\n", t0 + SEC)
        .unwrap();
    // The answer is still the owner's to see, and the close follows it.
    assert!(matches!(
        &events(&mut ep)[..],
        [Event::Message(Message::Response(_))]
    ));
    assert_eq!(controls(&mut ep), vec![Control::CloseWrite]);
}

#[test]
fn linger_expires_without_the_answer() {
    let t0 = base();
    let mut ep = stream(Config::new(), t0);
    ep.track_requests();
    ep.send_tracked(&tether_core::Request::new(1, "never", None).into())
        .unwrap();
    written(&mut ep);
    ep.finish(2 * SEC, t0);
    assert_eq!(ep.poll_timeout(), Some(t0 + 2 * SEC));
    ep.handle_timeout(t0 + 2 * SEC - Duration::from_millis(1));
    assert_eq!(controls(&mut ep), vec![]);
    ep.handle_timeout(t0 + 2 * SEC);
    assert_eq!(controls(&mut ep), vec![Control::CloseWrite]);
    assert!(ep.is_closing());
}

fn serving(now: Instant) -> Endpoint {
    let mut ep = stream(Config::new(), now);
    let cancel: tether_core::CancelNotification = Arc::new(|id: &Id| {
        Notification::new("notifications/cancelled", Some(json!({ "requestId": id })))
    });
    ep.serve(Some(cancel));
    ep
}

#[test]
fn a_declined_request_is_answered_internal_error() {
    let t0 = base();
    let mut ep = serving(t0);
    ep.handle_input(
        b"{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"work\"}\n",
        t0,
    )
    .unwrap();
    let id = match &events(&mut ep)[..] {
        [Event::Message(Message::Request(r))] => r.id.clone(),
        other => panic!("{other:?}"),
    };
    ep.decline(id.clone());
    let out = written(&mut ep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], "a");
    assert_eq!(out[0]["error"]["code"], -32603);
    // Answered once only.
    assert!(ep.respond(id, Ok(json!(1))).is_err());
    assert_eq!(written(&mut ep), Vec::<Value>::new());
}

#[test]
fn requests_nobody_serves_are_answered_method_not_found() {
    let t0 = base();
    let mut ep = serving(t0);
    ep.set_serving(false);
    ep.handle_input(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\"}\n", t0)
        .unwrap();
    assert_eq!(events(&mut ep), vec![]);
    let out = written(&mut ep);
    assert_eq!(out[0]["id"], 3);
    assert_eq!(out[0]["error"]["code"], -32601);
}

#[test]
fn a_request_timing_out_fails_and_tells_the_peer() {
    let t0 = base();
    let mut ep = serving(t0);
    let id = ep.request("slow", None, Some(3 * SEC), t0).unwrap();
    assert_eq!(written(&mut ep)[0]["method"], "slow");
    assert_eq!(ep.poll_timeout(), Some(t0 + 3 * SEC));
    ep.handle_timeout(t0 + 3 * SEC);
    assert_eq!(ep.take_result(&id), Some(Err(RpcError::TimedOut)));
    let out = written(&mut ep);
    assert_eq!(out[0]["method"], "notifications/cancelled");
    assert_eq!(out[0]["params"]["requestId"], json!(id));
    // A late answer is nobody's: it reaches the owner as a stray response.
    ep.handle_input(
        format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":1}}\n").as_bytes(),
        t0 + 4 * SEC,
    )
    .unwrap();
    assert!(matches!(
        &events(&mut ep)[..],
        [Event::Message(Message::Response(_))]
    ));
}

#[test]
fn answers_and_cancellation_of_our_requests() {
    let t0 = base();
    let mut ep = serving(t0);
    let a = ep.request("a", None, None, t0).unwrap();
    let b = ep.request("b", None, None, t0).unwrap();
    written(&mut ep);
    ep.cancel(&b);
    assert_eq!(written(&mut ep)[0]["method"], "notifications/cancelled");
    ep.handle_input(
        format!("{{\"jsonrpc\":\"2.0\",\"id\":{a},\"result\":\"ok\"}}\n").as_bytes(),
        t0,
    )
    .unwrap();
    // Consumed by the request layer, not an event.
    assert_eq!(events(&mut ep), vec![]);
    assert_eq!(ep.take_result(&a), Some(Ok(json!("ok"))));
    assert_eq!(ep.take_result(&b), None);
    assert_eq!(ep.pending_requests(), 0);
}

#[test]
fn a_batch_is_answered_as_one_array() {
    let t0 = base();
    let mut ep = serving(t0);
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"note"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#;
    ep.handle_input(batch, t0).unwrap();
    ep.handle_input(b"\n", t0).unwrap();
    let items = match events(&mut ep).pop() {
        Some(Event::Message(Message::Batch(items))) => items,
        other => panic!("{other:?}"),
    };
    assert_eq!(items.len(), 3);
    ep.respond(Id::from(2), Ok(json!("two"))).unwrap();
    // Nothing goes out while the batch is incomplete.
    assert_eq!(written(&mut ep), Vec::<Value>::new());
    ep.respond(Id::from(1), Ok(json!("one"))).unwrap();
    let out = written(&mut ep);
    assert_eq!(
        out,
        vec![json!([
            {"jsonrpc":"2.0","id":2,"result":"two"},
            {"jsonrpc":"2.0","id":1,"result":"one"}
        ])]
    );
}

#[test]
fn the_ladder_with_a_child_that_ignores_sigterm() {
    let t0 = base();
    let config = Config::new().label("child").grace(2 * SEC);
    let mut ep: Endpoint = Endpoint::for_child(config, t0).unwrap();
    ep.close(t0);
    assert_eq!(controls(&mut ep), vec![Control::CloseWrite]);
    assert_eq!(ep.poll_action(), None);
    assert_eq!(ep.poll_timeout(), Some(t0 + 2 * SEC));
    ep.handle_timeout(t0 + 2 * SEC);
    assert_eq!(ep.poll_action(), Some(Action::TerminateGroup));
    ep.handle_timeout(t0 + 3 * SEC);
    assert_eq!(ep.poll_action(), None);
    ep.handle_timeout(t0 + 4 * SEC);
    assert_eq!(ep.poll_action(), Some(Action::KillGroup));
    let killed = ExitStatus {
        code: None,
        signal: Some(9),
    };
    ep.handle_exit(killed, t0 + 4 * SEC);
    assert_eq!(
        ep.poll_action(),
        Some(Action::KillDescendants { within: 2 * SEC }),
        "the group is killed once, then what left it"
    );
    assert_eq!(ep.poll_action(), None);
    ep.handle_eof(t0 + 4 * SEC);
    assert_eq!(events(&mut ep), vec![Event::Disconnected(None)]);
    assert!(ep.is_finished());
    assert_eq!(ep.exit_status(), Some(killed));
}

#[test]
fn a_child_exiting_kills_its_group_and_its_held_output_is_given_up() {
    let t0 = base();
    let mut ep: Endpoint = Endpoint::for_child(Config::new().grace(SEC), t0).unwrap();
    ep.handle_exit(
        ExitStatus {
            code: Some(0),
            signal: None,
        },
        t0,
    );
    assert_eq!(ep.poll_action(), Some(Action::KillGroup));
    assert_eq!(
        ep.poll_action(),
        Some(Action::KillDescendants { within: SEC })
    );
    // An escaped descendant holds the pipe: the end comes after the close timeout.
    ep.handle_timeout(t0 + SEC);
    assert_eq!(controls(&mut ep), vec![Control::Abort]);
    match &events(&mut ep)[..] {
        [Event::Disconnected(Some(d))] => assert!(matches!(d.kind, DisconnectKind::Timeout(_))),
        other => panic!("{other:?}"),
    }
    assert!(ep.is_finished());
}

/// A child's endpoint with the LSP goodbye and the default ladder at `grace`.
fn lsp_child(grace: Duration, t0: Instant) -> Endpoint {
    let config = Config::new()
        .policy(Policy::graceful(grace))
        .goodbye(Some(Goodbye::Lsp));
    Endpoint::for_child(config, t0).unwrap()
}

/// The rest of the ladder fires on time: terminate at `terminate`, kill at `kill`.
fn ladder_runs(ep: &mut Endpoint, terminate: Instant, kill: Instant) {
    ep.handle_timeout(terminate);
    assert_eq!(ep.poll_action(), Some(Action::TerminateGroup));
    ep.handle_timeout(kill);
    assert_eq!(ep.poll_action(), Some(Action::KillGroup));
}

#[test]
fn the_lsp_goodbye_comes_before_the_ladder() {
    let t0 = base();
    let config = Config::new()
        .framing(Framing::ContentLength)
        .grace(2 * SEC)
        .goodbye(Some(Goodbye::Lsp));
    let mut ep: Endpoint = Endpoint::for_child(config, t0).unwrap();
    ep.track_requests();
    ep.close(t0);
    let mut out = Vec::new();
    let n = ep.poll_transmit(&mut out);
    ep.handle_transmitted(n);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"method\":\"shutdown\""), "{text}");
    assert!(!text.contains("\"exit\""), "{text}");
    assert_eq!(controls(&mut ep), vec![], "stdin stays open for the answer");
    assert!(text.contains("\"id\":\"tether:goodbye\""), "{text}");
    let answer = br#"{"jsonrpc":"2.0","id":"tether:goodbye","result":null}"#;
    let framed = [
        format!("Content-Length: {}\r\n\r\n", answer.len()).as_bytes(),
        answer,
    ]
    .concat();
    ep.handle_input(&framed, t0 + SEC).unwrap();
    // The answer is printed like any other message.
    assert!(matches!(
        &events(&mut ep)[..],
        [Event::Message(Message::Response(_))]
    ));
    let mut out = Vec::new();
    let n = ep.poll_transmit(&mut out);
    ep.handle_transmitted(n);
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("\"method\":\"exit\""));
    assert_eq!(controls(&mut ep), vec![Control::CloseWrite]);
    assert_eq!(
        ep.poll_timeout(),
        Some(t0 + 3 * SEC),
        "the ladder starts now"
    );
}

#[test]
fn an_unanswered_goodbye_goes_on_after_the_grace() {
    let t0 = base();
    let mut ep = lsp_child(2 * SEC, t0);
    ep.close(t0);
    written(&mut ep);
    ep.handle_timeout(t0 + 2 * SEC);
    assert_eq!(written(&mut ep)[0]["method"], "exit");
    assert_eq!(controls(&mut ep), vec![Control::CloseWrite]);
    ep.handle_timeout(t0 + 4 * SEC);
    assert_eq!(ep.poll_action(), Some(Action::TerminateGroup));
}

/// A child that closed its stdout can never answer the goodbye: a close after that runs the
/// ladder at once (a timer once cleared by the end of the connection hung it for good).
#[test]
fn a_goodbye_after_the_childs_output_ended_goes_straight_to_the_ladder() {
    let t0 = base();
    let mut ep = lsp_child(2 * SEC, t0);
    ep.track_requests();
    // The end is read but not yet delivered when the owner closes.
    ep.handle_eof(t0);
    ep.close(t0);
    assert!(
        written(&mut ep).is_empty(),
        "no goodbye to a child that cannot answer"
    );
    assert!(matches!(&events(&mut ep)[..], [Event::Disconnected(None)]));
    assert_eq!(controls(&mut ep), vec![Control::CloseWrite]);
    assert_eq!(ep.poll_timeout(), Some(t0 + 2 * SEC));
    ladder_runs(&mut ep, t0 + 2 * SEC, t0 + 4 * SEC);
}

/// The child's output ends while its goodbye waits for an answer: the goodbye ends there, and
/// the ladder runs on its own deadlines.
#[test]
fn a_goodbye_cut_short_by_the_end_of_output_still_runs_the_ladder() {
    let t0 = base();
    let mut ep = lsp_child(2 * SEC, t0);
    ep.track_requests();
    ep.close(t0);
    assert_eq!(written(&mut ep)[0]["method"], "shutdown");
    ep.handle_eof(t0 + SEC);
    assert!(matches!(&events(&mut ep)[..], [Event::Disconnected(None)]));
    assert_eq!(controls(&mut ep), vec![Control::CloseWrite]);
    let deadline = ep.poll_timeout().expect("the ladder's deadline");
    assert!(deadline <= t0 + 3 * SEC, "{deadline:?}");
    ladder_runs(&mut ep, t0 + 3 * SEC, t0 + 5 * SEC);
}

/// A kill after a close skips what is left of the goodbye and the ladder; a second changes
/// nothing.
#[test]
fn a_kill_skips_the_remaining_graces() {
    let t0 = base();
    let mut ep = lsp_child(10 * SEC, t0);
    ep.close(t0);
    assert_eq!(written(&mut ep)[0]["method"], "shutdown");
    ep.kill(t0 + SEC);
    assert_eq!(ep.poll_action(), Some(Action::KillGroup));
    ep.kill(t0 + SEC);
    assert_eq!(ep.poll_action(), None);
    let killed = ExitStatus {
        code: None,
        signal: Some(9),
    };
    ep.handle_exit(killed, t0 + SEC);
    assert!(matches!(
        ep.poll_action(),
        Some(Action::KillDescendants { .. })
    ));
    assert_eq!(ep.poll_action(), None, "one group kill only");
}

#[test]
fn malformed_frames_are_answered_when_asked() {
    let t0 = base();
    let mut ep = ws(Config::new().answer_malformed(true), t0);
    ep.handle_frame(b"{oops".to_vec(), t0).unwrap();
    ep.handle_frame(b"[1]".to_vec(), t0).unwrap();
    ep.handle_frame(b"{\"id\":1}".to_vec(), t0).unwrap();
    assert_eq!(events(&mut ep).len(), 3);
    let codes: Vec<Value> = written(&mut ep)
        .into_iter()
        .map(|v| {
            assert_eq!(v["id"], Value::Null);
            v["error"]["code"].clone()
        })
        .collect();
    assert_eq!(codes, vec![json!(-32700), json!(-32600), json!(-32600)]);
}

#[test]
fn an_idle_session_is_closed() {
    let t0 = base();
    let mut ep = ws(Config::new().idle_timeout(Some(10 * SEC)), t0);
    ep.handle_frame(frame(json!({"method":"n"})), t0 + 5 * SEC)
        .unwrap();
    events(&mut ep);
    ep.handle_timeout(t0 + 10 * SEC);
    assert_eq!(controls(&mut ep), vec![]);
    ep.handle_timeout(t0 + 15 * SEC);
    assert_eq!(
        controls(&mut ep),
        vec![Control::SendClose {
            code: 1000,
            reason: "idle timeout".to_owned()
        }]
    );
}

#[test]
fn answers_owed_to_a_peer_that_does_not_read_hold_its_input_back() {
    let t0 = base();
    let mut ep = stream(Config::new().send_budget(1024), t0);
    ep.serve(None);
    ep.set_serving(false);
    let mut i = 0;
    while ep.wants_input() {
        i += 1;
        assert!(i < 1000, "input never held back");
        let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"m\"}}\n");
        ep.handle_input(line.as_bytes(), t0).unwrap();
        assert_eq!(events(&mut ep), vec![]);
    }
    // The replies are written: input is wanted again.
    written(&mut ep);
    assert!(ep.wants_input());
}
