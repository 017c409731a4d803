//! One driver for any core machine with timers: the machine behind a mutex, one notification
//! for everyone who waits on it, and one timer task that hands it the time when its deadline
//! passes. The [`Gateway`](tether_core::gateway::Gateway) is driven this way; the tasks that
//! move bytes (HTTP, websockets, programs) call its inputs through [`Driver::with`] and wait for
//! its outputs with [`Driver::wait`], and decide nothing.
//!
//! The lock is never held across an await. Every wait listens first, then looks under the
//! lock, then awaits, so no change is missed; every input wakes every waiter, which then
//! looks again (a bridge's waiters are few per connection, and each look is one map lookup).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use event_listener::{Event, EventListener};
use futures_lite::future;

use crate::clock;
use crate::Runtime;

/// A core machine with one timer, as the core's machines are made: `poll_timeout` says when
/// `handle_timeout` is due, and `is_finished` when nothing is left to decide.
pub trait Machine: Send + 'static {
    /// The earliest deadline, if any.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Fires what is due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// Whether the machine is done: the timer task ends.
    fn is_finished(&self) -> bool;
}

impl Machine for tether_core::gateway::Gateway {
    fn poll_timeout(&self) -> Option<Instant> {
        tether_core::gateway::Gateway::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        tether_core::gateway::Gateway::handle_timeout(self, now);
    }
    fn is_finished(&self) -> bool {
        tether_core::gateway::Gateway::is_finished(self)
    }
}

/// A machine shared by the tasks that drive it, with its timer running.
#[derive(Debug)]
pub struct Driver<M> {
    machine: Mutex<M>,
    /// Notified after every input: outputs may be ready, or the deadline may have moved.
    changed: Event,
}

impl<M: Machine> Driver<M> {
    /// Shares `machine` and spawns its timer task on runtime `R`. The task ends once the
    /// machine is finished or every handle to the driver is gone.
    pub fn start<R: Runtime>(machine: M) -> Arc<Self> {
        let driver = Arc::new(Driver {
            machine: Mutex::new(machine),
            changed: Event::new(),
        });
        R::spawn(timer::<M, R>(Arc::downgrade(&driver)));
        driver
    }

    fn lock(&self) -> MutexGuard<'_, M> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An input: `f` gets the machine and the time, under the lock; then every waiter looks
    /// again.
    pub fn with<T>(&self, f: impl FnOnce(&mut M, Instant) -> T) -> T {
        let out = f(&mut self.lock(), clock::now());
        self.changed.notify(usize::MAX);
        out
    }

    /// A query: `f` looks at the machine under the lock; nobody is woken.
    pub fn peek<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        f(&self.lock())
    }

    /// An output, if `f` finds one: every waiter then looks again (taking it may have made
    /// room); if not, nobody is woken.
    pub fn take<T>(&self, f: impl FnOnce(&mut M, Instant) -> Option<T>) -> Option<T> {
        let out = f(&mut self.lock(), clock::now())?;
        self.changed.notify(usize::MAX);
        Some(out)
    }

    /// A wait for the next change, for code that polls by hand (a response body): listen,
    /// then [`take`](Self::take), then await the listener if nothing was found.
    pub fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    /// Waits until `f` finds something (an output to take, a condition that holds), as
    /// [`take`](Self::take) does.
    pub async fn wait<T>(&self, mut f: impl FnMut(&mut M, Instant) -> Option<T>) -> T {
        loop {
            let changed = self.changed.listen();
            if let Some(out) = self.take(&mut f) {
                return out;
            }
            changed.await;
        }
    }
}

/// Fires the machine's deadlines until it is finished or nobody holds the driver.
async fn timer<M: Machine, R: Runtime>(driver: Weak<Driver<M>>) {
    loop {
        let Some(strong) = driver.upgrade() else {
            return;
        };
        // Listening first: a deadline set after this point wakes the task.
        let changed = strong.changed.listen();
        let (finished, deadline) = strong.peek(|m| (m.is_finished(), m.poll_timeout()));
        if finished {
            return;
        }
        match deadline {
            Some(at) if at <= clock::now() => {
                strong.with(|m, now| m.handle_timeout(now));
                continue;
            }
            Some(at) => {
                drop(strong);
                let wait = at.saturating_duration_since(clock::now());
                future::or(R::sleep(wait), changed).await;
            }
            None => {
                drop(strong);
                changed.await;
            }
        }
    }
}
