//! The `restart_ops` target: a supervised child's endpoint over arbitrary inputs and time —
//! output, its end, exits, out-of-memory kills, restarts carried out or failed, closes, kills,
//! tracked requests — with the supervision's rules checked after every step.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Reader;
use crate::{
    Config, Decision, EndCause, Endpoint, Event, ExitStatus, Id, Message, Policy, RestartMode,
    RestartPolicy, Restarts,
};

/// Layout: the policy (mode byte modulo 3, backoff ms byte, max restarts byte modulo 6, window
/// in 10 ms units as a byte, ready deadline byte: 0 for none, else that many 10 ms), then
/// operations, each an opcode byte (modulo 10) and its operands; every operation first moves
/// time forward by a byte of milliseconds. 0 a line of output (the answer to one of the
/// requests written to the current child and not answered by it, chosen by a byte, or a
/// notification when there is none; nothing once the output ended), 1 the output's end, 2 the exit
/// with a status (a byte: even for an exit code, then the code byte, else a signal), 3 a
/// timeout at the deadline, 4 the driver's restart (a byte: even for a spawn that succeeds), 5
/// a close, 6 a kill, 7 a tracked request, 8 an OOM record, 9 a read of every event.
///
/// Checked: `Disconnected` once and last; nothing restarts after a close or a kill; restarts
/// come only when decided and only once each; the final end is set once and never changes; no
/// restart is decided while one is pending; the guard never lets more than `max_restarts`
/// restarts into a window (the same `Restarts` rules, replayed beside the endpoint); every
/// request sent gets at most one answer, and by `Disconnected` exactly one (a child's, or the
/// `-32603` naming its end).
pub fn restart_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let policy = RestartPolicy {
        mode: match r.u8() % 3 {
            0 => RestartMode::Never,
            1 => RestartMode::OnFailure,
            _ => RestartMode::Always,
        },
        backoff: Duration::from_millis(u64::from(r.u8())),
        max_restarts: u32::from(r.u8() % 6),
        window: Duration::from_millis(10 * u64::from(r.u8())),
        ready_timeout: match r.u8() {
            0 => None,
            n => Some(Duration::from_millis(10 * u64::from(n))),
        },
    };
    let config = Config::new()
        .label(super::LABEL)
        .policy(Policy::graceful(Duration::from_millis(50)))
        .close_timeout(Duration::from_millis(100))
        .restart(policy);
    let Ok(mut ep) = Endpoint::for_child(config, base) else {
        return;
    };
    ep.track_requests();
    let mut now = base;
    let mut exited = false;
    let mut output_ended = false;
    let mut closed = false;
    let mut disconnected = false;
    let mut end = None;
    let mut restarts_at: Vec<Instant> = Vec::new();
    let mut next_id = 0_u64;
    // Every request sent, with how many answers it got; those the current child has read.
    let mut answered: BTreeMap<u64, u32> = BTreeMap::new();
    let mut read_by_child: Vec<u64> = Vec::new();
    while !r.is_empty() {
        now += Duration::from_millis(u64::from(r.u8()));
        let restarting = ep.is_restarting();
        match r.u8() % 10 {
            // Nothing comes from a stream after its end.
            0 if output_ended => {
                r.u8();
            }
            0 => {
                let pick = usize::from(r.u8());
                let line = match read_by_child.len() {
                    0 => "{\"jsonrpc\":\"2.0\",\"method\":\"note\"}\n".to_owned(),
                    n => format!(
                        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":1}}\n",
                        read_by_child.remove(pick % n)
                    ),
                };
                let _ = ep.handle_input(line.as_bytes(), now);
            }
            1 => {
                output_ended = true;
                ep.handle_eof(now);
            }
            2 => {
                let status = match r.u8() % 2 {
                    0 => ExitStatus {
                        code: Some(i32::from(r.u8())),
                        signal: None,
                    },
                    _ => ExitStatus {
                        code: None,
                        signal: Some(i32::from(r.u8() % 31 + 1)),
                    },
                };
                if !exited {
                    exited = true;
                    ep.handle_exit(status, now);
                }
            }
            3 => {
                let at = ep.poll_timeout().unwrap_or(now).max(now);
                now = at;
                ep.handle_timeout(at);
            }
            4 => {
                let succeed = r.u8() % 2 == 0;
                if ep.poll_respawn() {
                    assert!(!closed, "a restart after tether's own shutdown");
                    assert!(restarting, "a respawn with no restart pending");
                    match succeed {
                        true => {
                            ep.handle_respawned(now);
                            read_by_child.clear();
                            output_ended = false;
                            exited = false;
                            assert!(!ep.is_restarting());
                        }
                        false => {
                            ep.handle_respawn_failed("refused", now);
                            assert!(ep.end().is_some(), "a failed respawn is the end");
                        }
                    }
                }
            }
            5 => {
                ep.close(now);
                closed = true;
            }
            6 => {
                ep.kill(now);
                closed = true;
            }
            7 => {
                next_id += 1;
                let request =
                    Message::Request(crate::Request::new(next_id, "work", Some(json!([]))));
                if ep.send_tracked(&request).is_ok() {
                    answered.insert(next_id, 0);
                }
            }
            8 => ep.handle_oom(now),
            _ => {}
        }
        while let Some(restart) = ep.poll_restart() {
            assert!(!closed, "a restart decided after tether's own shutdown");
            assert!(restart.attempt >= 1);
            assert!(restart.delay <= policy.backoff.max(crate::restart::MAX_BACKOFF));
            assert_ne!(restart.end.cause, EndCause::Requested);
            assert_ne!(restart.end.cause, EndCause::CrashLoop);
            assert_ne!(policy.mode, RestartMode::Never);
            restarts_at.push(now);
        }
        // The guard: never more than `max_restarts` restarts within one window.
        let window = policy.window;
        for (i, &at) in restarts_at.iter().enumerate() {
            let inside = restarts_at[i..]
                .iter()
                .filter(|&&later| later.saturating_duration_since(at) < window)
                .count();
            assert!(
                inside <= policy.max_restarts as usize,
                "{inside} restarts in a window"
            );
        }
        if let Some(final_end) = ep.end() {
            assert!(end.is_none_or(|e| e == final_end), "the end changed");
            end = Some(final_end);
            assert!(!ep.is_restarting(), "a restart after the final end");
        }
        while let Some(event) = ep.poll_event() {
            assert!(!disconnected, "an event after Disconnected");
            match event {
                Event::Message(Message::Response(response)) => {
                    let count = number(&response.id)
                        .and_then(|id| answered.get_mut(&id))
                        .expect("an answer to a request never sent");
                    *count += 1;
                    assert_eq!(*count, 1, "request {} answered twice", response.id);
                }
                Event::Disconnected(_) => {
                    disconnected = true;
                    let unanswered: Vec<_> = answered.iter().filter(|(_, &n)| n == 0).collect();
                    assert!(unanswered.is_empty(), "never answered: {unanswered:?}");
                }
                _ => {}
            }
        }
        while ep.poll_action().is_some() {}
        let mut out = Vec::new();
        let n = ep.poll_transmit(&mut out);
        ep.handle_transmitted(n);
        // What the current child now has to read: the requests in it.
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(Message::Request(request)) = crate::decode::<Message>(line) {
                read_by_child.extend(number(&request.id));
            }
        }
        while ep.poll_control().is_some() {}
    }
    // The rules alone agree that a requested end never restarts.
    let mut rules = Restarts::new(policy);
    rules.handle_start(base);
    assert_eq!(
        rules.handle_end(
            EndCause::Requested,
            ExitStatus {
                code: Some(0),
                signal: None
            },
            now
        ),
        Decision::End(EndCause::Requested)
    );
}

/// The harness's ids are integers.
fn number(id: &Id) -> Option<u64> {
    match id {
        Id::Number(n) => n.as_u64(),
        _ => None,
    }
}
