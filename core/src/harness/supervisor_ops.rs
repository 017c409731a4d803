//! The `supervisor_ops` target: arbitrary sequences of a supervisor's inputs over time.

use std::time::{Duration, Instant};

use super::{arbitrary_grace, arbitrary_time, Reader};
use crate::{Action, ExitStatus, Policy, Supervisor};

/// Arbitrary sequences of shutdown requests, exits and timeouts at arbitrary times (forwards
/// and backwards from `base`) under an arbitrary [`Policy`], with the ladder checked after
/// every step: nothing early, nothing twice, nothing after the end, the group always killed
/// once the child has exited.
///
/// `base` is the origin of virtual time; the harness only adds offsets to it, so any instant
/// will do (the core never reads a clock, so the caller supplies it).
///
/// Layout: the close-stdin grace, then the terminate grace (each a byte that is 0 modulo 6 for
/// none, otherwise followed by a duration); then operations, each an opcode byte (modulo 5)
/// and its operands: 0 request shutdown at a time, 1 exit at a time with a status (a byte
/// that is even for an exit code, then the code byte; the same for a signal), 2 a timeout at
/// a time, 3 a timeout at the supervisor's deadline, 4 a timeout a nanosecond before it.
pub fn supervisor_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let policy = Policy {
        close_stdin: arbitrary_grace(&mut r),
        terminate: arbitrary_grace(&mut r),
    };
    let mut ladder = Ladder::new(policy, base);
    while !r.is_empty() {
        ladder.step(&mut r);
    }
    ladder.finish();
}

/// A supervisor together with what it has been told and what it has done.
struct Ladder {
    sup: Supervisor,
    policy: Policy,
    base: Instant,
    /// The latest time handed in: the supervisor ignores time that goes backwards.
    now: Option<Instant>,
    shutdown: bool,
    exit: Option<ExitStatus>,
    /// Every action, with the time of the step that produced it.
    actions: Vec<(Action, Instant)>,
}

impl Ladder {
    fn new(policy: Policy, base: Instant) -> Self {
        Ladder {
            sup: Supervisor::new(policy),
            policy,
            base,
            now: None,
            shutdown: false,
            exit: None,
            actions: Vec::new(),
        }
    }

    /// Reads one operation, carries it out, and checks the actions it produced.
    fn step(&mut self, r: &mut Reader<'_>) {
        let was_done = self.sup.is_done();
        let mut exits_now = false;
        let at = match r.u8() % 5 {
            0 => {
                let at = arbitrary_time(self.base, r);
                self.sup.request_shutdown(at);
                self.shutdown = true;
                at
            }
            1 => {
                let at = arbitrary_time(self.base, r);
                let status = ExitStatus {
                    code: (r.u8() % 2 == 0).then(|| i32::from(r.u8())),
                    signal: (r.u8() % 2 == 0).then(|| i32::from(r.u8())),
                };
                self.sup.handle_exit(at, status);
                exits_now = self.exit.is_none();
                self.exit.get_or_insert(status);
                at
            }
            2 => {
                let at = arbitrary_time(self.base, r);
                self.sup.handle_timeout(at);
                at
            }
            3 => self.fire_deadline(Duration::ZERO),
            _ => self.fire_deadline(Duration::from_nanos(1)),
        };
        self.observe(at, was_done, exits_now);
    }

    /// Calls `handle_timeout` at the supervisor's own deadline less `early`, or at the
    /// latest time if it has none.
    fn fire_deadline(&mut self, early: Duration) -> Instant {
        let at = match self.sup.poll_timeout() {
            Some(deadline) => deadline.checked_sub(early).unwrap_or(deadline),
            None => self.now.unwrap_or(self.base),
        };
        self.sup.handle_timeout(at);
        at
    }

    /// Drains the actions of a step that happened at `at` and checks them and the state.
    fn observe(&mut self, at: Instant, was_done: bool, exits_now: bool) {
        let now = self.now.map_or(at, |last| last.max(at));
        self.now = Some(now);
        while let Some(action) = self.sup.poll_action() {
            assert!(!was_done, "{action:?} after the supervisor was done");
            self.check_action(action, now, exits_now);
            self.actions.push((action, now));
        }
        self.check_state(now);
    }

    fn last_of(&self, action: Action) -> Option<Instant> {
        self.actions
            .iter()
            .find(|(a, _)| *a == action)
            .map(|&(_, t)| t)
    }

    /// Whether the wait that followed `step` (taken under `grace`) has run out by `now`.
    fn waited(&self, step: Action, grace: Duration, now: Instant) -> bool {
        self.last_of(step)
            .and_then(|t| t.checked_add(grace))
            .is_some_and(|deadline| deadline <= now)
    }

    fn check_action(&self, action: Action, now: Instant, exits_now: bool) {
        assert!(
            self.last_of(Action::KillGroup).is_none(),
            "{action:?} after KillGroup"
        );
        assert!(
            self.last_of(action).is_none(),
            "{action:?} came twice: {:?}",
            self.actions
        );
        let exited_before = self.exit.is_some() && !exits_now;
        match action {
            Action::KillDescendants { .. } => panic!("a supervisor never asks for {action:?}"),
            Action::CloseStdin => {
                assert!(self.shutdown && self.policy.close_stdin.is_some());
                assert!(
                    self.actions.is_empty(),
                    "CloseStdin after {:?}",
                    self.actions
                );
            }
            Action::TerminateGroup => {
                assert!(self.shutdown && self.policy.terminate.is_some());
                assert!(!exited_before, "TerminateGroup after the child exited");
                if let Some(grace) = self.policy.close_stdin {
                    assert!(
                        self.waited(Action::CloseStdin, grace, now),
                        "TerminateGroup before the close-stdin grace ran out: {:?} at {:?}",
                        self.actions,
                        now - self.base
                    );
                }
            }
            Action::KillGroup => {
                if exits_now {
                    return;
                }
                assert!(self.shutdown, "KillGroup with no shutdown and no exit");
                let ready = match (self.policy.close_stdin, self.policy.terminate) {
                    (_, Some(grace)) => self.waited(Action::TerminateGroup, grace, now),
                    (Some(grace), None) => self.waited(Action::CloseStdin, grace, now),
                    (None, None) => true,
                };
                assert!(
                    ready,
                    "KillGroup before its grace ran out: {:?} at {:?} under {:?}",
                    self.actions,
                    now - self.base,
                    self.policy
                );
            }
        }
    }

    /// When the next step of the ladder is due, if one is: the grace after the last polite
    /// step, unless the child has exited or the grace reaches past any representable time.
    fn expected_deadline(&self) -> Option<Instant> {
        if self.exit.is_some() {
            return None;
        }
        let &(last, at) = self.actions.last()?;
        let grace = match last {
            Action::CloseStdin => self.policy.close_stdin,
            Action::TerminateGroup => self.policy.terminate,
            Action::KillGroup | Action::KillDescendants { .. } => None,
        }?;
        at.checked_add(grace)
    }

    fn check_state(&self, now: Instant) {
        let deadline = self.sup.poll_timeout();
        if let Some(deadline) = deadline {
            assert!(deadline >= now, "poll_timeout is in the past");
        }
        assert_eq!(
            deadline,
            self.expected_deadline(),
            "poll_timeout after {:?} under {:?}",
            self.actions,
            self.policy
        );
        let killed = self.last_of(Action::KillGroup).is_some();
        assert_eq!(self.sup.is_killed(), killed);
        assert_eq!(self.sup.is_shutting_down(), self.shutdown);
        assert_eq!(self.sup.exit_status(), self.exit);
        if self.exit.is_some() {
            assert!(killed, "the child exited and its group was not killed");
        }
        assert_eq!(self.sup.is_done(), self.exit.is_some());
    }

    /// Lets every deadline pass, then has the child exit: the ladder must reach the group kill
    /// unless a grace never runs out, and the supervisor must then be done.
    fn finish(mut self) {
        while let Some(deadline) = self.sup.poll_timeout() {
            self.sup.handle_timeout(deadline);
            self.observe(deadline, false, false);
        }
        if self.shutdown && self.exit.is_none() {
            let endless = |grace: Option<Duration>, step| {
                grace.is_some_and(|g| {
                    self.last_of(step)
                        .is_some_and(|t: Instant| t.checked_add(g).is_none())
                })
            };
            assert!(
                self.last_of(Action::KillGroup).is_some()
                    || endless(self.policy.close_stdin, Action::CloseStdin)
                    || endless(self.policy.terminate, Action::TerminateGroup),
                "the ladder stopped short of the kill: {:?}",
                self.actions
            );
        }
        let at = self.now.unwrap_or(self.base);
        let status = ExitStatus {
            code: Some(0),
            signal: None,
        };
        let was_done = self.sup.is_done();
        let exits_now = self.exit.is_none();
        self.sup.handle_exit(at, status);
        self.exit.get_or_insert(status);
        self.observe(at, was_done, exits_now);
        assert!(self.sup.is_done());
    }
}
