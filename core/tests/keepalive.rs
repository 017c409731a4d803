//! The keepalive in virtual time.

use std::time::{Duration, Instant};

use tether_core::{Keepalive, KeepaliveAction};

const INTERVAL: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(10);

#[allow(
    clippy::disallowed_methods,
    reason = "one base instant; the tests then add to it"
)]
fn t0() -> Instant {
    Instant::now()
}

#[test]
fn pings_after_silence_and_gives_up_without_an_answer() {
    let t = t0();
    let mut k = Keepalive::new(t, INTERVAL, TIMEOUT);
    assert_eq!(k.poll_timeout(), Some(t + INTERVAL));
    k.handle_timeout(t + INTERVAL - Duration::from_millis(1));
    assert_eq!(k.poll_action(), None);
    k.handle_timeout(t + INTERVAL);
    assert_eq!(k.poll_action(), Some(KeepaliveAction::Ping));
    assert_eq!(k.poll_timeout(), Some(t + INTERVAL + TIMEOUT));
    k.handle_timeout(t + INTERVAL + TIMEOUT);
    assert_eq!(k.poll_action(), Some(KeepaliveAction::TimedOut));
    assert_eq!(k.poll_timeout(), None);
    // Terminal: a late answer changes nothing.
    k.handle_activity(t + INTERVAL + TIMEOUT);
    k.handle_timeout(t + 10 * INTERVAL);
    assert_eq!(k.poll_action(), None);
    assert_eq!(k.poll_timeout(), None);
}

#[test]
fn any_activity_resets_the_silence() {
    let t = t0();
    let mut k = Keepalive::new(t, INTERVAL, TIMEOUT);
    k.handle_activity(t + Duration::from_secs(20));
    k.handle_timeout(t + INTERVAL);
    assert_eq!(k.poll_action(), None);
    assert_eq!(k.poll_timeout(), Some(t + Duration::from_secs(50)));
    k.handle_timeout(t + Duration::from_secs(50));
    assert_eq!(k.poll_action(), Some(KeepaliveAction::Ping));
    // The answer arrives: back to waiting a whole interval.
    k.handle_activity(t + Duration::from_secs(55));
    assert_eq!(k.poll_timeout(), Some(t + Duration::from_secs(85)));
    k.handle_timeout(t + Duration::from_secs(60));
    assert_eq!(k.poll_action(), None);
}

#[test]
fn time_going_backwards_is_ignored() {
    let t = t0() + INTERVAL;
    let mut k = Keepalive::new(t, INTERVAL, TIMEOUT);
    k.handle_activity(t - INTERVAL);
    assert_eq!(k.poll_timeout(), Some(t + INTERVAL));
    k.handle_timeout(t - Duration::from_secs(1));
    assert_eq!(k.poll_action(), None);
}
