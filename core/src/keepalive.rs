//! When to ping a quiet peer, and when to give up on it.
//!
//! Message transports such as websockets can lose a peer without any error: the socket stays
//! open and nothing arrives. The keepalive turns silence into a decision. After `interval`
//! without anything received it asks for a ping; if nothing at all is received within
//! `timeout` of that ping, it declares the peer gone. Any received frame counts as a sign of
//! life, not only the pong.

use std::time::{Duration, Instant};

/// What the driver must do for the keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Send a ping now.
    Ping,
    /// The peer did not answer in time: end the connection (see
    /// [`Connection::handle_timeout_error`](crate::Connection::handle_timeout_error)). Nothing
    /// follows.
    TimedOut,
}

/// A keepalive timer for one connection, driven with the current time.
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Duration,
    timeout: Duration,
    /// When the unanswered ping went out, if one is outstanding.
    ping_at: Option<Instant>,
    deadline: Option<Instant>,
    action: Option<KeepaliveAction>,
    last_now: Option<Instant>,
    /// The peer was given up on. Kept apart from the deadline: a ping whose timeout is too
    /// long to represent also leaves no deadline, and an answer to it must still count.
    timed_out: bool,
}

impl Keepalive {
    /// A keepalive that pings after `interval` of silence and gives up `timeout` after the ping.
    /// The clock starts at `now`.
    pub fn new(now: Instant, interval: Duration, timeout: Duration) -> Self {
        Keepalive {
            interval,
            timeout,
            ping_at: None,
            deadline: now.checked_add(interval),
            action: None,
            last_now: Some(now),
            timed_out: false,
        }
    }

    /// Something arrived from the peer: the silence is over.
    pub fn handle_activity(&mut self, now: Instant) {
        let now = self.observe(now);
        if self.is_timed_out() {
            return;
        }
        self.ping_at = None;
        self.deadline = now.checked_add(self.interval);
    }

    /// Time has passed: asks for a ping, or gives up, if that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.observe(now);
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        if self.ping_at.is_some() {
            self.deadline = None;
            self.timed_out = true;
            self.action = Some(KeepaliveAction::TimedOut);
        } else {
            self.ping_at = Some(now);
            self.deadline = now.checked_add(self.timeout);
            self.action = Some(KeepaliveAction::Ping);
        }
    }

    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        now
    }

    fn is_timed_out(&self) -> bool {
        self.timed_out
    }

    /// The action due, if any.
    pub fn poll_action(&mut self) -> Option<KeepaliveAction> {
        self.action.take()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
}
