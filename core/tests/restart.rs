//! Supervision across children, in virtual time: the restart rules alone (`Restarts`), then
//! whole supervised sessions through the endpoint — restarts, the ready deadline, the end's
//! cause, and the answers owed for requests an ended child never answered.

mod common;

use std::time::{Duration, Instant};

use common::base;
use serde_json::{json, Value};
use tether_core::{
    Action, Config, Control, Decision, End, EndCause, Endpoint, Event, ExitStatus, Message, Policy,
    Restart, RestartMode, RestartPolicy, Restarts,
};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn failed(code: i32) -> ExitStatus {
    ExitStatus {
        code: Some(code),
        signal: None,
    }
}

fn signalled(signal: i32) -> ExitStatus {
    ExitStatus {
        code: None,
        signal: Some(signal),
    }
}

fn policy(mode: RestartMode) -> RestartPolicy {
    RestartPolicy {
        mode,
        ..RestartPolicy::default()
    }
}

fn restart_of(decision: Decision) -> Restart {
    match decision {
        Decision::Restart(restart) => restart,
        other => panic!("expected a restart, got {other:?}"),
    }
}

// ----- the rules alone ------------------------------------------------------------------------

#[test]
fn delays_double_from_the_backoff_up_to_thirty_seconds() {
    let t0 = base();
    let mut restarts = Restarts::new(RestartPolicy {
        max_restarts: 100,
        window: Duration::from_secs(3600),
        ..policy(RestartMode::OnFailure)
    });
    restarts.handle_start(t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..10 {
        now += 10 * MS;
        let restart = restart_of(restarts.handle_end(EndCause::Failed, failed(1), now));
        delays.push((restart.attempt, restart.delay.as_millis()));
        now += restart.delay;
        restarts.handle_start(now);
    }
    assert_eq!(
        delays,
        [
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1600),
            (5, 3200),
            (6, 6400),
            (7, 12800),
            (8, 25600),
            (9, 30000),
            (10, 30000)
        ]
    );
    assert_eq!(tether_core::restart::MAX_BACKOFF, 30 * SEC);
}

#[test]
fn a_child_up_for_a_whole_window_starts_the_delays_over() {
    let t0 = base();
    let window = 10 * SEC;
    let mut restarts = Restarts::new(RestartPolicy {
        window,
        ..policy(RestartMode::OnFailure)
    });
    restarts.handle_start(t0);
    let first = restart_of(restarts.handle_end(EndCause::Failed, failed(1), t0 + SEC));
    restarts.handle_start(t0 + SEC + first.delay);
    let second = restart_of(restarts.handle_end(EndCause::Failed, failed(1), t0 + 2 * SEC));
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert_eq!(second.delay, 400 * MS);
    // The third child stays up a whole window.
    let started = t0 + 3 * SEC;
    restarts.handle_start(started);
    let third = restart_of(restarts.handle_end(EndCause::Failed, failed(1), started + window));
    assert_eq!((third.attempt, third.delay), (1, 200 * MS));
}

#[test]
fn the_guard_gives_up_on_the_next_failure_inside_the_window_and_the_window_slides() {
    let t0 = base();
    let mut restarts = Restarts::new(RestartPolicy {
        max_restarts: 3,
        window: 10 * SEC,
        backoff: MS,
        ..policy(RestartMode::OnFailure)
    });
    restarts.handle_start(t0);
    // Three restarts at 1 s, 2 s and 3 s.
    for s in 1..=3 {
        let now = t0 + s * SEC;
        restart_of(restarts.handle_end(EndCause::Failed, failed(1), now));
        restarts.handle_start(now + MS);
    }
    // A fourth failure inside the window (at 9 s, the first restart 8 s ago) is a crash loop.
    let mut probe = restarts.clone();
    assert_eq!(
        probe.handle_end(EndCause::Failed, failed(1), t0 + 9 * SEC),
        Decision::End(EndCause::CrashLoop)
    );
    // At 11 s the restart at 1 s has left the window: one more is allowed...
    let fourth = restart_of(restarts.handle_end(EndCause::Failed, failed(1), t0 + 11 * SEC));
    assert_eq!(fourth.attempt, 4);
    restarts.handle_start(t0 + 11 * SEC + MS);
    // ...and the next at 11.5 s is a crash loop again (2 s, 3 s and 11 s are in the window).
    assert_eq!(
        restarts.handle_end(EndCause::Failed, failed(1), t0 + 11 * SEC + 500 * MS),
        Decision::End(EndCause::CrashLoop)
    );
}

#[test]
fn no_restart_ever_follows_a_requested_end() {
    let t0 = base();
    for mode in [
        RestartMode::Never,
        RestartMode::OnFailure,
        RestartMode::Always,
    ] {
        let mut restarts = Restarts::new(policy(mode));
        restarts.handle_start(t0);
        for status in [failed(0), failed(1), signalled(15), signalled(9)] {
            assert_eq!(
                restarts.handle_end(EndCause::Requested, status, t0 + SEC),
                Decision::End(EndCause::Requested),
                "{mode:?} {status}"
            );
        }
    }
}

#[test]
fn which_ends_each_mode_restarts() {
    let t0 = base();
    let causes = [
        EndCause::Exited,
        EndCause::Failed,
        EndCause::ReadyTimeout,
        EndCause::Oom,
    ];
    let restarted = |mode| {
        causes
            .iter()
            .map(|&cause| {
                let mut restarts = Restarts::new(policy(mode));
                restarts.handle_start(t0);
                matches!(
                    restarts.handle_end(cause, failed(1), t0 + SEC),
                    Decision::Restart(_)
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(restarted(RestartMode::Never), [false; 4]);
    assert_eq!(restarted(RestartMode::OnFailure), [false, true, true, true]);
    assert_eq!(restarted(RestartMode::Always), [true; 4]);
}

#[test]
fn zero_restarts_allowed_means_the_first_failure_is_a_crash_loop() {
    let t0 = base();
    let mut restarts = Restarts::new(RestartPolicy {
        max_restarts: 0,
        ..policy(RestartMode::Always)
    });
    restarts.handle_start(t0);
    assert_eq!(
        restarts.handle_end(EndCause::Exited, failed(0), t0 + SEC),
        Decision::End(EndCause::CrashLoop)
    );
}

#[test]
fn time_going_backwards_is_no_time() {
    let t0 = base() + 100 * SEC;
    let mut restarts = Restarts::new(RestartPolicy {
        max_restarts: 1,
        window: 10 * SEC,
        ..policy(RestartMode::OnFailure)
    });
    restarts.handle_start(t0);
    restart_of(restarts.handle_end(EndCause::Failed, failed(1), t0 + 20 * SEC));
    // An earlier instant counts as the latest seen: still inside the window.
    assert_eq!(
        restarts.handle_end(EndCause::Failed, failed(1), t0),
        Decision::End(EndCause::CrashLoop)
    );
}

// ----- whole supervised sessions ---------------------------------------------------------------

fn child(restart: RestartPolicy, now: Instant) -> Endpoint {
    let config = Config::new()
        .label("child")
        .policy(Policy::graceful(SEC))
        .restart(restart);
    let mut ep = Endpoint::for_child(config, now).unwrap();
    ep.track_requests();
    ep
}

fn written(ep: &mut Endpoint) -> Vec<Value> {
    let mut out = Vec::new();
    let n = ep.poll_transmit(&mut out);
    ep.handle_transmitted(n);
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn events(ep: &mut Endpoint) -> Vec<Value> {
    std::iter::from_fn(|| ep.poll_event())
        .map(|event| match event {
            Event::Message(message) => serde_json::to_value(&message).unwrap(),
            Event::Malformed(m) => json!({"malformed": m.to_string()}),
            Event::Disconnected(reason) => json!({"disconnected": reason.map(|r| r.to_string())}),
        })
        .collect()
}

fn actions(ep: &mut Endpoint) -> Vec<Action> {
    std::iter::from_fn(|| ep.poll_action()).collect()
}

fn request(id: u64) -> Message {
    serde_json::from_value(json!({"jsonrpc":"2.0","id":id,"method":"work"})).unwrap()
}

/// The child crashes: its output ends, then it exits with `status`.
fn crash(ep: &mut Endpoint, status: ExitStatus, now: Instant) {
    ep.handle_eof(now);
    ep.handle_exit(status, now);
}

#[test]
fn a_crashed_child_is_restarted_after_the_delay_and_the_connection_goes_on() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::OnFailure), t0);
    ep.handle_input(b"{\"jsonrpc\":\"2.0\",\"method\":\"hello\"}\n", t0)
        .unwrap();
    crash(&mut ep, failed(3), t0 + SEC);
    assert_eq!(events(&mut ep), [json!({"jsonrpc":"2.0","method":"hello"})]);
    assert!(!ep.is_closed(), "the connection survives its child");
    let restart = ep.poll_restart().expect("a restart is reported");
    assert_eq!(
        restart,
        Restart {
            attempt: 1,
            delay: 200 * MS,
            end: End {
                cause: EndCause::Failed,
                status: failed(3)
            }
        }
    );
    assert_eq!(ep.poll_restart(), None);
    assert_eq!(actions(&mut ep)[0], Action::KillGroup);
    assert_eq!(ep.poll_timeout(), Some(t0 + SEC + 200 * MS));
    // The owner sends during the delay: it waits for the next child, not written to the
    // old pipe.
    ep.send_tracked(&request(7)).unwrap();
    assert_eq!(written(&mut ep), Vec::<Value>::new());
    ep.handle_timeout(t0 + SEC + 199 * MS);
    assert!(!ep.poll_respawn());
    ep.handle_timeout(t0 + SEC + 200 * MS);
    assert!(ep.poll_respawn());
    assert!(!ep.poll_respawn(), "once");
    ep.handle_respawned(t0 + SEC + 210 * MS);
    assert!(!ep.is_restarting());
    assert_eq!(
        written(&mut ep),
        [json!({"jsonrpc":"2.0","id":7,"method":"work"})]
    );
    ep.handle_input(
        b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":1}\n",
        t0 + 2 * SEC,
    )
    .unwrap();
    assert_eq!(
        events(&mut ep),
        [json!({"jsonrpc":"2.0","id":7,"result":1})]
    );
    // The owner ends the session: the second child's end is requested, and final.
    ep.close(t0 + 3 * SEC);
    assert_eq!(ep.poll_control(), Some(Control::CloseWrite));
    ep.handle_eof(t0 + 3 * SEC);
    ep.handle_exit(failed(0), t0 + 3 * SEC);
    assert_eq!(ep.poll_restart(), None);
    assert_eq!(
        ep.end(),
        Some(End {
            cause: EndCause::Requested,
            status: failed(0)
        })
    );
    assert_eq!(events(&mut ep), [json!({"disconnected": null})]);
}

#[test]
fn requests_the_crashed_child_never_answered_get_an_internal_error_after_what_it_said() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::OnFailure), t0);
    ep.send_tracked(&request(1)).unwrap();
    ep.send_tracked(&request(2)).unwrap();
    written(&mut ep);
    // The child answers 1, then dies before answering 2; the exit is seen before the end of
    // its output, and nothing has been delivered yet.
    ep.handle_input(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"one\"}\n", t0)
        .unwrap();
    ep.handle_exit(signalled(9), t0 + SEC);
    ep.handle_eof(t0 + SEC);
    let seen = events(&mut ep);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], json!({"jsonrpc":"2.0","id":1,"result":"one"}));
    assert_eq!(seen[1]["id"], 2);
    assert_eq!(seen[1]["error"]["code"], -32603);
    let text = seen[1]["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("failed") && text.contains("signal 9"),
        "{text}"
    );
    assert_eq!(ep.pending_requests(), 0);
    assert!(!ep.is_closed());
}

#[test]
fn unanswered_requests_are_answered_after_the_old_output_even_when_the_restart_comes_first() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::Always), t0);
    ep.send_tracked(&request(1)).unwrap();
    written(&mut ep);
    // The exit comes first; the output never ends (a descendant held it) until the restart
    // replaces it, with a final line without its newline still buffered.
    ep.handle_input(b"{\"jsonrpc\":\"2.0\",\"method\":\"last\"}", t0)
        .unwrap();
    ep.handle_exit(failed(0), t0 + SEC);
    assert_eq!(
        ep.poll_restart().map(|r| r.end.cause),
        Some(EndCause::Exited)
    );
    ep.handle_timeout(t0 + 2 * SEC);
    assert!(ep.poll_respawn());
    ep.handle_respawned(t0 + 2 * SEC);
    ep.handle_input(b"{\"jsonrpc\":\"2.0\",\"method\":\"new\"}\n", t0 + 2 * SEC)
        .unwrap();
    let seen = events(&mut ep);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0]["method"], "last");
    assert_eq!(seen[1]["id"], 1);
    assert_eq!(seen[1]["error"]["code"], -32603);
    assert_eq!(seen[2]["method"], "new");
}

/// Each response event, by the id it answers.
fn answers(seen: &[Value]) -> Vec<(u64, bool)> {
    seen.iter()
        .filter(|v| v.get("id").is_some() && v.get("method").is_none())
        .map(|v| (v["id"].as_u64().unwrap(), v.get("error").is_some()))
        .collect()
}

#[test]
fn a_request_the_ended_child_never_read_goes_to_the_next_child_and_is_answered_once() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::OnFailure), t0);
    // 1 is handed to the driver (the child may have read it), 2 is in flight when the child
    // dies (handed out, never reported written), 3 is still queued.
    ep.send_tracked(&request(1)).unwrap();
    written(&mut ep);
    ep.send_tracked(&request(2)).unwrap();
    let mut out = Vec::new();
    assert!(ep.poll_transmit(&mut out) > 0);
    ep.send_tracked(&request(3)).unwrap();
    crash(&mut ep, failed(1), t0 + SEC);
    // 4 is sent after the crash, before the restart.
    ep.send_tracked(&request(4)).unwrap();
    let seen = events(&mut ep);
    assert_eq!(answers(&seen), [(1, true), (2, true)], "{seen:?}");
    ep.handle_timeout(t0 + 2 * SEC);
    assert!(ep.poll_respawn());
    ep.handle_respawned(t0 + 2 * SEC);
    // The next child gets what the ended one never saw, in order, and its answers are the
    // only ones.
    assert_eq!(
        written(&mut ep),
        [
            json!({"jsonrpc":"2.0","id":3,"method":"work"}),
            json!({"jsonrpc":"2.0","id":4,"method":"work"})
        ]
    );
    assert_eq!(events(&mut ep), Vec::<Value>::new());
    ep.handle_input(
        b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":3}\n{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":4}\n",
        t0 + 3 * SEC,
    )
    .unwrap();
    assert_eq!(answers(&events(&mut ep)), [(3, false), (4, false)]);
    assert_eq!(ep.pending_requests(), 0);
}

#[test]
fn a_request_queued_at_a_crash_is_answered_once_even_when_the_output_ends_after_the_exit() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::Always), t0);
    ep.send_tracked(&request(1)).unwrap();
    written(&mut ep);
    ep.send_tracked(&request(2)).unwrap();
    // The exit is seen first, the output ends later: the restart is decided at the exit.
    ep.handle_exit(failed(0), t0 + SEC);
    ep.handle_eof(t0 + SEC + MS);
    assert_eq!(answers(&events(&mut ep)), [(1, true)]);
    ep.handle_timeout(t0 + 2 * SEC);
    assert!(ep.poll_respawn());
    ep.handle_respawned(t0 + 2 * SEC);
    assert_eq!(
        written(&mut ep),
        [json!({"jsonrpc":"2.0","id":2,"method":"work"})]
    );
    ep.handle_input(
        b"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":2}\n",
        t0 + 3 * SEC,
    )
    .unwrap();
    assert_eq!(answers(&events(&mut ep)), [(2, false)]);
}

#[test]
fn through_the_request_layer_a_request_still_queued_gets_the_next_childs_result() {
    let t0 = base();
    let config = Config::new()
        .label("child")
        .policy(Policy::graceful(SEC))
        .restart(policy(RestartMode::OnFailure));
    let mut ep = Endpoint::for_child(config, t0).unwrap();
    ep.serve(None);
    let seen = ep.request("work", None, None, t0).unwrap();
    written(&mut ep);
    let queued = ep.request("work", None, None, t0).unwrap();
    crash(&mut ep, failed(1), t0 + SEC);
    assert_eq!(events(&mut ep), Vec::<Value>::new());
    match ep.take_result(&seen) {
        Some(Err(tether_core::RpcError::Response(error))) => assert_eq!(error.code, -32603),
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.take_result(&queued), None, "still pending");
    ep.handle_timeout(t0 + 2 * SEC);
    assert!(ep.poll_respawn());
    ep.handle_respawned(t0 + 2 * SEC);
    let sent = written(&mut ep);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let answer = json!({"jsonrpc":"2.0","id":sent[0]["id"],"result":"done"});
    ep.handle_input(format!("{answer}\n").as_bytes(), t0 + 3 * SEC)
        .unwrap();
    assert_eq!(events(&mut ep), Vec::<Value>::new());
    assert_eq!(ep.take_result(&queued), Some(Ok(json!("done"))));
    assert_eq!(ep.pending_requests(), 0);
}

#[test]
fn a_request_kept_for_a_restart_that_does_not_come_is_answered_once_at_the_end() {
    let t0 = base();
    // A close during the delay: nobody gets the queued request; it fails with the end.
    let mut ep = child(policy(RestartMode::OnFailure), t0);
    ep.send_tracked(&request(1)).unwrap();
    crash(&mut ep, failed(1), t0 + SEC);
    assert_eq!(events(&mut ep), Vec::<Value>::new());
    ep.close(t0 + SEC + MS);
    let seen = events(&mut ep);
    assert_eq!(answers(&seen), [(1, true)], "{seen:?}");
    assert_eq!(seen.last(), Some(&json!({"disconnected": null})));
    // A crash loop: the same.
    let mut ep = child(
        RestartPolicy {
            max_restarts: 0,
            ..policy(RestartMode::OnFailure)
        },
        t0,
    );
    ep.send_tracked(&request(1)).unwrap();
    crash(&mut ep, failed(1), t0 + SEC);
    let seen = events(&mut ep);
    assert_eq!(answers(&seen), [(1, true)], "{seen:?}");
    assert_eq!(seen.last(), Some(&json!({"disconnected": null})));
}

#[test]
fn a_mute_child_misses_its_ready_deadline_the_ladder_ends_it_and_a_restart_follows() {
    let t0 = base();
    let mut ep = child(
        RestartPolicy {
            ready_timeout: Some(5 * SEC),
            ..policy(RestartMode::OnFailure)
        },
        t0,
    );
    assert_eq!(ep.poll_timeout(), Some(t0 + 5 * SEC));
    ep.handle_timeout(t0 + 5 * SEC);
    // The ladder: stdin closed, then after the grace the group is terminated.
    assert_eq!(ep.poll_control(), Some(Control::CloseWrite));
    ep.handle_timeout(t0 + 6 * SEC);
    assert_eq!(actions(&mut ep), [Action::TerminateGroup]);
    ep.handle_eof(t0 + 6 * SEC);
    ep.handle_exit(signalled(15), t0 + 6 * SEC);
    let restart = ep.poll_restart().unwrap();
    assert_eq!(restart.end.cause, EndCause::ReadyTimeout);
    assert!(!ep.is_closing(), "a failed start is not tether's shutdown");
    ep.handle_timeout(t0 + 6 * SEC + restart.delay);
    assert!(ep.poll_respawn());
    ep.handle_respawned(t0 + 7 * SEC);
    // The new child has its own deadline, and meets it.
    assert_eq!(ep.poll_timeout(), Some(t0 + 12 * SEC));
    ep.handle_input(b"{\"jsonrpc\":\"2.0\",\"method\":\"up\"}\n", t0 + 8 * SEC)
        .unwrap();
    assert_eq!(ep.poll_timeout(), None);
    ep.handle_timeout(t0 + 20 * SEC);
    assert_eq!(ep.poll_control(), None, "no ladder for a ready child");
}

#[test]
fn without_restarts_a_missed_ready_deadline_is_the_final_end() {
    let t0 = base();
    let mut ep = child(
        RestartPolicy {
            ready_timeout: Some(SEC),
            ..RestartPolicy::default()
        },
        t0,
    );
    ep.handle_timeout(t0 + SEC);
    assert_eq!(ep.poll_control(), Some(Control::CloseWrite));
    ep.handle_eof(t0 + SEC);
    ep.handle_exit(failed(0), t0 + SEC);
    assert_eq!(
        ep.end(),
        Some(End {
            cause: EndCause::ReadyTimeout,
            status: failed(0)
        })
    );
    assert_eq!(events(&mut ep), [json!({"disconnected": null})]);
}

#[test]
fn a_crash_loop_ends_the_session_with_its_cause() {
    let t0 = base();
    let mut ep = child(
        RestartPolicy {
            max_restarts: 2,
            backoff: 10 * MS,
            ..policy(RestartMode::OnFailure)
        },
        t0,
    );
    let mut now = t0;
    for attempt in 1..=2 {
        now += SEC;
        crash(&mut ep, failed(1), now);
        let restart = ep.poll_restart().unwrap();
        assert_eq!(restart.attempt, attempt);
        now += restart.delay;
        ep.handle_timeout(now);
        assert!(ep.poll_respawn());
        ep.handle_respawned(now);
        assert_eq!(events(&mut ep), Vec::<Value>::new());
    }
    crash(&mut ep, failed(1), now + SEC);
    assert_eq!(ep.poll_restart(), None);
    assert_eq!(
        ep.end(),
        Some(End {
            cause: EndCause::CrashLoop,
            status: failed(1)
        })
    );
    assert_eq!(events(&mut ep), [json!({"disconnected": null})]);
    assert!(ep.is_finished() || !actions(&mut ep).is_empty());
}

#[test]
fn a_close_during_the_delay_cancels_the_restart_and_the_crash_is_the_final_end() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::Always), t0);
    ep.send_tracked(&request(4)).unwrap();
    written(&mut ep);
    crash(&mut ep, failed(2), t0 + SEC);
    assert!(ep.poll_restart().is_some());
    ep.close(t0 + SEC + 100 * MS);
    ep.handle_timeout(t0 + 10 * SEC);
    assert!(!ep.poll_respawn(), "no restart after tether's own shutdown");
    assert_eq!(
        ep.end(),
        Some(End {
            cause: EndCause::Failed,
            status: failed(2)
        })
    );
    let seen = events(&mut ep);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["error"]["code"], -32603);
    assert_eq!(seen[1], json!({"disconnected": null}));
}

#[test]
fn a_requested_shutdown_is_never_followed_by_a_restart() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::Always), t0);
    ep.close(t0);
    assert_eq!(ep.poll_control(), Some(Control::CloseWrite));
    // The child dies badly on its way out: still tether's shutdown.
    ep.handle_timeout(t0 + SEC);
    assert_eq!(actions(&mut ep), [Action::TerminateGroup]);
    ep.handle_eof(t0 + SEC);
    ep.handle_exit(signalled(15), t0 + SEC);
    assert_eq!(ep.poll_restart(), None);
    assert_eq!(ep.end().map(|e| e.cause), Some(EndCause::Requested));
    assert_eq!(events(&mut ep), [json!({"disconnected": null})]);
}

#[test]
fn a_child_that_ended_its_output_before_the_close_ended_by_itself() {
    let t0 = base();
    let mut ep = child(RestartPolicy::default(), t0);
    // The command closes once the child's output has ended; the child exits 0 meanwhile.
    ep.handle_eof(t0);
    assert_eq!(events(&mut ep), [json!({"disconnected": null})]);
    ep.close(t0);
    ep.handle_exit(failed(0), t0 + MS);
    assert_eq!(ep.end().map(|e| e.cause), Some(EndCause::Exited));
}

#[test]
fn an_oom_kill_reported_by_the_driver_is_the_cause() {
    let t0 = base();
    let mut ep = child(RestartPolicy::default(), t0);
    ep.handle_oom(t0 + SEC);
    crash(&mut ep, signalled(9), t0 + SEC);
    assert_eq!(ep.end().map(|e| e.cause), Some(EndCause::Oom));
}

#[test]
fn without_a_restart_policy_the_final_end_still_answers_unanswered_requests() {
    let t0 = base();
    let mut ep = child(RestartPolicy::default(), t0);
    ep.send_tracked(&request(9)).unwrap();
    written(&mut ep);
    ep.handle_exit(failed(1), t0 + SEC);
    ep.handle_eof(t0 + SEC);
    let seen = events(&mut ep);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["id"], 9);
    assert_eq!(seen[0]["error"]["code"], -32603);
    assert!(seen[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("failed, exit code 1"));
    assert_eq!(seen[1], json!({"disconnected": null}));
}

#[test]
fn a_failed_respawn_ends_the_connection_with_the_reason() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::OnFailure), t0);
    crash(&mut ep, failed(1), t0);
    ep.handle_timeout(t0 + SEC);
    assert!(ep.poll_respawn());
    ep.handle_respawn_failed("no such file", t0 + SEC);
    assert_eq!(ep.end().map(|e| e.cause), Some(EndCause::Failed));
    let seen = events(&mut ep);
    assert_eq!(seen.len(), 1);
    assert!(seen[0]["disconnected"]
        .as_str()
        .unwrap()
        .contains("cannot restart the program: no such file"));
}

#[test]
fn the_answers_wait_a_moment_for_the_exit_they_name_when_the_output_ends_first() {
    let t0 = base();
    let mut ep = child(RestartPolicy::default(), t0);
    ep.send_tracked(&request(5)).unwrap();
    written(&mut ep);
    ep.handle_eof(t0);
    assert_eq!(events(&mut ep), Vec::<Value>::new(), "held for the exit");
    ep.handle_exit(failed(5), t0 + 10 * MS);
    let seen = events(&mut ep);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0]["error"]["message"],
        "the program ended (failed, exit code 5) before answering"
    );
    assert_eq!(seen[1], json!({"disconnected": null}));
}

#[test]
fn an_exit_that_never_comes_holds_the_end_no_longer_than_the_close_timeout() {
    let t0 = base();
    let mut ep = child(RestartPolicy::default(), t0);
    ep.send_tracked(&request(5)).unwrap();
    written(&mut ep);
    ep.handle_eof(t0);
    assert_eq!(ep.poll_timeout(), Some(t0 + 2 * SEC));
    ep.handle_timeout(t0 + 2 * SEC);
    let seen = events(&mut ep);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0]["error"]["message"],
        "the program's output ended before it answered"
    );
    assert_eq!(seen[1], json!({"disconnected": null}));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The `restart_ops` fuzz harness over random inputs: its checks hold on stable too.
    #[test]
    fn the_restart_harness_holds_on_random_inputs(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)
    ) {
        tether_core::harness::restart_ops(&data, base());
    }
}

#[test]
fn a_child_whose_output_ends_while_it_runs_is_shut_down_and_its_end_decides() {
    let t0 = base();
    let mut ep = child(policy(RestartMode::OnFailure), t0);
    // Its output ends; it runs on: the ladder ends it rather than leave a deaf child.
    ep.handle_eof(t0);
    assert_eq!(ep.poll_control(), Some(Control::CloseWrite));
    ep.handle_timeout(t0 + SEC);
    assert_eq!(actions(&mut ep), [Action::TerminateGroup]);
    ep.handle_exit(signalled(15), t0 + SEC);
    let restart = ep.poll_restart().expect("a failure: restarted");
    assert_eq!(restart.end.cause, EndCause::Failed);
    assert!(!ep.is_closed());
    // Another that exits 0 once its stdin closes ended by itself: no restart on-failure.
    ep.handle_timeout(t0 + 2 * SEC);
    assert!(ep.poll_respawn());
    ep.handle_respawned(t0 + 2 * SEC);
    ep.handle_eof(t0 + 3 * SEC);
    assert_eq!(ep.poll_control(), Some(Control::CloseWrite));
    ep.handle_exit(failed(0), t0 + 3 * SEC);
    assert_eq!(ep.end().map(|e| e.cause), Some(EndCause::Exited));
    assert_eq!(events(&mut ep), [json!({"disconnected": null})]);
}
