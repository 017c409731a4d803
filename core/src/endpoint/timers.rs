//! Every deadline of an endpoint in one table, so that a driver needs one timer.

use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The child's shutdown ladder: the next grace period ends.
    Ladder,
    /// The websocket keepalive: ping, or give up.
    Keepalive,
    /// A request of ours (or the goodbye) reaches its deadline.
    Requests,
    /// A close started: the peer must have ended by then.
    Close,
    /// The child has exited: its output must have ended by then.
    Drain,
    /// The owner has no more to send: close by then even if answers are missing.
    Linger,
    /// Nothing went either way for the idle timeout.
    Idle,
    /// The child must have sent something by then (its ready deadline).
    Ready,
    /// The delay before the next child is started has passed.
    Restart,
    /// The child's output ended with requests unanswered: its exit, which their answers
    /// name, is awaited until then.
    Exit,
}

impl Timer {
    const ALL: [Timer; 10] = [
        Timer::Ladder,
        Timer::Keepalive,
        Timer::Requests,
        Timer::Close,
        Timer::Drain,
        Timer::Linger,
        Timer::Idle,
        Timer::Ready,
        Timer::Restart,
        Timer::Exit,
    ];
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Timers {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl Timers {
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.deadlines[timer as usize] = at;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    /// Sets `timer` unless it is already set to an earlier deadline.
    pub(crate) fn set_earliest(&mut self, timer: Timer, at: Option<Instant>) {
        if let Some(at) = at {
            let slot = &mut self.deadlines[timer as usize];
            *slot = Some(slot.map_or(at, |old| old.min(at)));
        }
    }

    /// The earliest deadline of all.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Every timer due at `now`, clearing it, in a fixed order.
    pub(crate) fn expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> {
        let mut due = Vec::new();
        for timer in Timer::ALL {
            if self.get(timer).is_some_and(|at| at <= now) {
                self.set(timer, None);
                due.push(timer);
            }
        }
        due.into_iter()
    }
}
