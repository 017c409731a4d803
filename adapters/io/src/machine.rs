//! One driver for any core machine with timers: the machine behind a mutex, notifications
//! for those who wait on it, and one timer task that hands it the time when its deadline
//! passes. The [`Gateway`](tether_core::gateway::Gateway) is driven this way; the tasks that
//! move bytes (HTTP, websockets, programs) call its inputs through [`Driver::with`] and wait for
//! its outputs with [`Driver::wait_on`], and decide nothing.
//!
//! The lock is never held across an await. Every wait listens first, then looks under the
//! lock, then awaits, so no change is missed. After each input the machine says whose waiters
//! it concerns ([`Machine::poll_wake`]): a channel's, or everyone's. Waiters on a channel
//! listen on one of [`SHARDS`] notifications (the channel modulo their number), so that a
//! bridge with a thousand sessions does not wake them all for each message; a wake of
//! everyone notifies every shard. The timer task is woken when the deadline moves earlier.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use event_listener::{Event, EventListener};
use futures_lite::future;

use crate::clock;
use crate::Runtime;

/// Notifications for waiters on channels; the last one is for waiters on no channel.
pub const SHARDS: usize = 64;

/// Whose waiters an input concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The waiters on this channel.
    Channel(u64),
    /// Every waiter.
    All,
}

/// A core machine with one timer, as the core's machines are made: `poll_timeout` says when
/// `handle_timeout` is due, `is_finished` when nothing is left to decide, and `poll_wake`
/// whose waiters the last inputs concern.
pub trait Machine: Send + 'static {
    /// The earliest deadline, if any.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Fires what is due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// Whether the machine is done: the timer task ends.
    fn is_finished(&self) -> bool;
    /// Whose waiters the last inputs concern, one at a time. `None` at once (the default)
    /// means the machine does not say: every input wakes everyone.
    fn poll_wake(&mut self) -> Option<Wake> {
        None
    }
    /// Whether the machine names whom to wake ([`poll_wake`](Self::poll_wake)).
    fn names_wakes(&self) -> bool {
        false
    }
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
    fn poll_wake(&mut self) -> Option<Wake> {
        tether_core::gateway::Gateway::poll_wake(self).map(|wake| match wake {
            tether_core::gateway::Wake::Channel(channel) => Wake::Channel(channel),
            tether_core::gateway::Wake::All => Wake::All,
        })
    }
    fn names_wakes(&self) -> bool {
        true
    }
}

/// A machine shared by the tasks that drive it, with its timer running.
#[derive(Debug)]
pub struct Driver<M> {
    machine: Mutex<M>,
    /// One per shard of channels, then one for waiters on no channel.
    shards: Vec<Event>,
    /// The timer task: the deadline moved earlier, or the machine may be finished.
    timer: Event,
    /// The deadline after the last input (taken only under the machine's lock).
    deadline: Mutex<Option<Instant>>,
}

/// Who was concerned by one input.
enum Woken {
    /// Everyone.
    All,
    /// These shards.
    Shards(Vec<usize>),
}

impl<M: Machine> Driver<M> {
    /// Shares `machine` and spawns its timer task on runtime `R`. The task ends once the
    /// machine is finished or every handle to the driver is gone.
    pub fn start<R: Runtime>(machine: M) -> Arc<Self> {
        let driver = Arc::new(Driver {
            machine: Mutex::new(machine),
            shards: (0..=SHARDS).map(|_| Event::new()).collect(),
            timer: Event::new(),
            deadline: Mutex::new(None),
        });
        R::spawn(timer::<M, R>(Arc::downgrade(&driver)));
        driver
    }

    fn lock(&self) -> MutexGuard<'_, M> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shard(channel: Option<u64>) -> usize {
        channel.map_or(SHARDS, |c| (c % SHARDS as u64) as usize)
    }

    /// Runs `f` under the lock and says whom it concerned, and whether the deadline moved
    /// earlier.
    fn run<T>(&self, f: impl FnOnce(&mut M, Instant) -> T) -> (T, Woken, bool) {
        let mut machine = self.lock();
        let out = f(&mut machine, clock::now());
        let after = machine.poll_timeout();
        let before = std::mem::replace(
            &mut *self.deadline.lock().unwrap_or_else(PoisonError::into_inner),
            after,
        );
        let earlier = match (before, after) {
            (None, Some(_)) => true,
            (Some(before), Some(after)) => after < before,
            _ => false,
        };
        let woken = if !machine.names_wakes() {
            Woken::All
        } else {
            let mut shards = Vec::new();
            let mut all = false;
            while let Some(wake) = machine.poll_wake() {
                match wake {
                    Wake::All => all = true,
                    Wake::Channel(channel) => shards.push(Self::shard(Some(channel))),
                }
            }
            if all {
                Woken::All
            } else {
                Woken::Shards(shards)
            }
        };
        (out, woken, earlier)
    }

    fn notify(&self, woken: &Woken, earlier: bool) {
        match woken {
            Woken::All => {
                for shard in &self.shards {
                    shard.notify(usize::MAX);
                }
                self.timer.notify(usize::MAX);
                return;
            }
            Woken::Shards(shards) => {
                for &shard in shards {
                    self.shards[shard].notify(usize::MAX);
                }
            }
        }
        if earlier {
            self.timer.notify(usize::MAX);
        }
    }

    /// An input: `f` gets the machine and the time, under the lock; then the waiters it
    /// concerns look again.
    pub fn with<T>(&self, f: impl FnOnce(&mut M, Instant) -> T) -> T {
        let (out, woken, earlier) = self.run(f);
        self.notify(&woken, earlier);
        out
    }

    /// A query: `f` looks at the machine under the lock; nobody is woken.
    pub fn peek<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        f(&self.lock())
    }

    /// An output, if `f` finds one (taking it may concern other waiters, who are woken).
    pub fn take<T>(&self, f: impl FnOnce(&mut M, Instant) -> Option<T>) -> Option<T> {
        let (out, woken, earlier) = self.run(f);
        self.notify(&woken, earlier);
        out
    }

    /// A wait for the next change that concerns `channel` (or, with `None`, the next that
    /// concerns everyone), for code that polls by hand (a response body): listen, then
    /// [`take`](Self::take), then await the listener if nothing was found.
    pub fn listen(&self, channel: Option<u64>) -> EventListener {
        self.shards[Self::shard(channel)].listen()
    }

    /// Waits until `f` finds something (an output to take, a condition that holds), looking
    /// again after every change that concerns `channel` (`None`: only after changes that
    /// concern everyone).
    pub async fn wait_on<T>(
        &self,
        channel: Option<u64>,
        mut f: impl FnMut(&mut M, Instant) -> Option<T>,
    ) -> T {
        loop {
            let changed = self.listen(channel);
            if let Some(out) = self.take(&mut f) {
                return out;
            }
            changed.await;
        }
    }

    /// [`wait_on`](Self::wait_on) no channel: for what only changes that concern everyone
    /// bring about (a machine that names no wakes concerns everyone with every input).
    pub async fn wait<T>(&self, f: impl FnMut(&mut M, Instant) -> Option<T>) -> T {
        self.wait_on(None, f).await
    }
}

/// Fires the machine's deadlines until it is finished or nobody holds the driver.
async fn timer<M: Machine, R: Runtime>(driver: Weak<Driver<M>>) {
    loop {
        let Some(strong) = driver.upgrade() else {
            return;
        };
        // Listening first: a deadline set after this point wakes the task.
        let changed = strong.timer.listen();
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
