//! The `keepalive_ops` target: arbitrary sequences of activity and timeouts.

use std::time::{Duration, Instant};

use super::{arbitrary_duration, arbitrary_time, Reader};
use crate::{Keepalive, KeepaliveAction};

/// Arbitrary sequences of activity and timeouts at arbitrary times (forwards and backwards
/// from `base`, where the keepalive starts), checked against a model of the keepalive after
/// every step: a ping exactly when `interval` of silence has passed, a give-up exactly when
/// `timeout` has passed since an unanswered ping, nothing after giving up, and a deadline that
/// is always the model's.
///
/// Layout: the interval, then the timeout (each a duration); then operations, each an opcode
/// byte (modulo 4): 0 activity at a time, 1 a timeout at a time, 2 a timeout at the deadline,
/// 3 a timeout a nanosecond before it.
pub fn keepalive_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let interval = arbitrary_duration(&mut r);
    let timeout = arbitrary_duration(&mut r);
    let mut keepalive = Keepalive::new(base, interval, timeout);
    // The model: the latest time, the last sign of life, the unanswered ping, the verdict.
    let mut now = base;
    let mut alive_at = base;
    let mut ping_at: Option<Instant> = None;
    let mut timed_out = false;
    while !r.is_empty() {
        let deadline = keepalive.poll_timeout();
        let expected_deadline = if timed_out {
            None
        } else {
            match ping_at {
                Some(ping) => ping.checked_add(timeout),
                None => alive_at.checked_add(interval),
            }
        };
        assert_eq!(deadline, expected_deadline, "poll_timeout");
        if let Some(deadline) = deadline {
            assert!(deadline >= now, "poll_timeout is in the past");
        }
        let op = r.u8() % 4;
        let at = match op {
            0 | 1 => arbitrary_time(base, &mut r),
            2 => deadline.unwrap_or(now),
            _ => deadline.map_or(now, |d| d.checked_sub(Duration::from_nanos(1)).unwrap_or(d)),
        };
        now = now.max(at);
        let expected = if op == 0 {
            keepalive.handle_activity(at);
            if !timed_out {
                alive_at = now;
                ping_at = None;
            }
            None
        } else {
            keepalive.handle_timeout(at);
            match expected_deadline {
                Some(due) if due <= now => Some(if ping_at.is_some() {
                    timed_out = true;
                    KeepaliveAction::TimedOut
                } else {
                    ping_at = Some(now);
                    KeepaliveAction::Ping
                }),
                _ => None,
            }
        };
        assert_eq!(
            keepalive.poll_action(),
            expected,
            "the action at {:?}",
            now - base
        );
        assert_eq!(
            keepalive.poll_action(),
            None,
            "a second action from one input"
        );
    }
}
