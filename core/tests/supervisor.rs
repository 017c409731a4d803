//! The shutdown ladder in virtual time: time is an argument that the test advances.

use std::time::{Duration, Instant};

use tether_core::{Action, ExitStatus, Policy, Supervisor};

const GRACE: Duration = Duration::from_secs(2);
const EXITED: ExitStatus = ExitStatus {
    code: Some(0),
    signal: None,
};
const KILLED: ExitStatus = ExitStatus {
    code: None,
    signal: Some(9),
};

#[allow(
    clippy::disallowed_methods,
    reason = "one base instant; the tests then add to it"
)]
fn t0() -> Instant {
    Instant::now()
}

fn actions(s: &mut Supervisor) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

#[test]
fn the_whole_ladder_when_the_child_ignores_everything() {
    let t = t0();
    let mut s = Supervisor::new(Policy::graceful(GRACE));
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(actions(&mut s), []);

    s.request_shutdown(t);
    assert_eq!(actions(&mut s), [Action::CloseStdin]);
    assert_eq!(s.poll_timeout(), Some(t + GRACE));

    // Not yet due: nothing happens, however close.
    s.handle_timeout(t + GRACE - Duration::from_nanos(1));
    assert_eq!(actions(&mut s), []);
    s.handle_timeout(t + GRACE);
    assert_eq!(actions(&mut s), [Action::TerminateGroup]);
    assert_eq!(s.poll_timeout(), Some(t + 2 * GRACE));

    s.handle_timeout(t + 2 * GRACE - Duration::from_millis(1));
    assert_eq!(actions(&mut s), []);
    s.handle_timeout(t + 2 * GRACE);
    assert_eq!(actions(&mut s), [Action::KillGroup]);
    assert_eq!(s.poll_timeout(), None);
    assert!(
        !s.is_done(),
        "not done until the child is known to have exited"
    );

    s.handle_exit(t + 2 * GRACE, KILLED);
    assert_eq!(actions(&mut s), [], "the group is killed exactly once");
    assert!(s.is_done());
    assert_eq!(s.exit_status(), Some(KILLED));
}

#[test]
fn an_exit_during_a_grace_period_kills_the_group_at_once() {
    let t = t0();
    let mut s = Supervisor::new(Policy::graceful(GRACE));
    s.request_shutdown(t);
    assert_eq!(actions(&mut s), [Action::CloseStdin]);
    s.handle_exit(t + Duration::from_millis(10), EXITED);
    assert_eq!(actions(&mut s), [Action::KillGroup]);
    assert_eq!(s.poll_timeout(), None);
    assert!(s.is_done());
    // Later time changes nothing.
    s.handle_timeout(t + 10 * GRACE);
    assert_eq!(actions(&mut s), []);
}

#[test]
fn a_child_that_exits_on_its_own_has_its_group_killed() {
    let t = t0();
    let mut s = Supervisor::new(Policy::default());
    s.handle_exit(
        t,
        ExitStatus {
            code: Some(3),
            signal: None,
        },
    );
    assert_eq!(actions(&mut s), [Action::KillGroup]);
    assert!(s.is_done());
    assert_eq!(s.exit_status().unwrap().code, Some(3));
    // A shutdown requested afterwards, and a second exit, change nothing.
    s.request_shutdown(t);
    s.handle_exit(t, KILLED);
    assert_eq!(actions(&mut s), []);
    assert_eq!(s.exit_status().unwrap().code, Some(3));
}

#[test]
fn requests_are_idempotent() {
    let t = t0();
    let mut s = Supervisor::new(Policy::default());
    s.request_shutdown(t);
    s.request_shutdown(t + Duration::from_millis(500));
    assert_eq!(actions(&mut s), [Action::CloseStdin]);
    assert_eq!(
        s.poll_timeout(),
        Some(t + Policy::default().close_stdin.unwrap())
    );
}

#[test]
fn time_going_backwards_is_ignored() {
    let t = t0() + Duration::from_secs(100);
    let mut s = Supervisor::new(Policy::graceful(GRACE));
    s.request_shutdown(t);
    actions(&mut s);
    s.handle_timeout(t - Duration::from_secs(50));
    assert_eq!(actions(&mut s), []);
    assert_eq!(s.poll_timeout(), Some(t + GRACE));
    // A later input in the past is taken as the latest time seen.
    s.handle_timeout(t + GRACE);
    assert_eq!(actions(&mut s), [Action::TerminateGroup]);
    s.handle_timeout(t);
    assert_eq!(actions(&mut s), []);
    assert_eq!(s.poll_timeout(), Some(t + 2 * GRACE));
}

#[test]
fn an_overdue_grace_period_fires_on_any_timed_input() {
    let t = t0();
    let mut s = Supervisor::new(Policy::graceful(GRACE));
    s.request_shutdown(t);
    actions(&mut s);
    // The driver was late: the next input it gives is the exit, long after the deadline.
    s.request_shutdown(t + 3 * GRACE);
    assert_eq!(actions(&mut s), [Action::TerminateGroup]);
    assert!(s.poll_timeout().unwrap() > t + 3 * GRACE);
}

#[test]
fn other_policies() {
    let t = t0();
    let mut s = Supervisor::new(Policy::terminate_first(GRACE));
    s.request_shutdown(t);
    assert_eq!(actions(&mut s), [Action::TerminateGroup]);
    s.handle_timeout(t + GRACE);
    assert_eq!(actions(&mut s), [Action::KillGroup]);

    let mut s = Supervisor::new(Policy::immediate());
    s.request_shutdown(t);
    assert_eq!(actions(&mut s), [Action::KillGroup]);
    assert_eq!(s.poll_timeout(), None);

    let mut s = Supervisor::new(Policy {
        close_stdin: Some(GRACE),
        terminate: None,
    });
    s.request_shutdown(t);
    assert_eq!(actions(&mut s), [Action::CloseStdin]);
    s.handle_timeout(t + GRACE);
    assert_eq!(actions(&mut s), [Action::KillGroup]);

    // Zero grace: every step at once.
    let mut s = Supervisor::new(Policy::graceful(Duration::ZERO));
    s.request_shutdown(t);
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(
        actions(&mut s),
        [
            Action::CloseStdin,
            Action::TerminateGroup,
            Action::KillGroup
        ]
    );
}

#[test]
fn a_grace_too_long_to_add_does_not_panic() {
    let t = t0();
    let mut s = Supervisor::new(Policy::graceful(Duration::MAX));
    s.request_shutdown(t);
    assert_eq!(actions(&mut s), [Action::CloseStdin]);
    s.handle_exit(t, EXITED);
    assert_eq!(actions(&mut s), [Action::KillGroup]);
}
