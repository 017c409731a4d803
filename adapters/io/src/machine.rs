//! One driver for any core machine with timers: the machine behind a mutex, notifications
//! for those who wait on it, and one timer task that hands it the time when its deadline
//! passes. Both of the core's machines are driven this way: the [`Gateway`](tether_core::gateway::Gateway)
//! of a bridge, whose tasks (HTTP, websockets, programs) call its inputs through
//! [`Driver::with`] and wait for its outputs with [`Driver::wait_on`], and each connection's
//! [`Endpoint`](tether_core::Endpoint), whose reading and writing by turns the connection
//! layers on top (`shared.rs`, `stream.rs`).
//!
//! The lock is never held across an await. Every wait listens first, then looks under the
//! lock, then awaits, so no change is missed. After each input the machine says whose waiters
//! it concerns ([`Machine::poll_wake`]): a channel's, or everyone's. Where the waiters of a
//! channel listen is the [`Waiters`]' choice: the gateway's listen on one of [`SHARDS`]
//! notifications (the channel modulo their number), so that a bridge with a thousand sessions
//! does not wake them all for each message; an endpoint's on one notification per kind of
//! waiter. The timer task is woken when the deadline moves earlier, as the endpoint tells, or,
//! for a machine that does not tell (the gateway), by the first change after each of its
//! looks; and when the machine finishes.

use std::future::Future;
use std::ops::{Deref, DerefMut};
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
    /// Whether the deadline moved earlier (or appeared) since the driver last asked, asked
    /// after [`poll_wake`](Self::poll_wake): the timer task must look again. `None` (the
    /// default) means the machine does not say: the timer task is then woken by the first
    /// change after each of its looks at [`poll_timeout`](Self::poll_timeout), which it
    /// calls once for any number of changes (for a gateway, a look at every connection and
    /// session: too dear to ask after each).
    fn poll_deadline_moved(&mut self) -> Option<bool> {
        None
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

/// What the driver asks of the machine it holds: [`Machine`], without its bounds, so that a
/// connection's endpoint is driven too by the helpers that take its messages' type with
/// fewer bounds than a spawned task needs.
pub(crate) trait Driven {
    /// [`Machine::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// [`Machine::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// [`Machine::is_finished`].
    fn is_finished(&self) -> bool;
    /// [`Machine::poll_wake`].
    fn poll_wake(&mut self) -> Option<Wake>;
    /// [`Machine::names_wakes`].
    fn names_wakes(&self) -> bool;
    /// [`Machine::poll_deadline_moved`].
    fn poll_deadline_moved(&mut self) -> Option<bool>;
}

impl<T: Machine> Driven for T {
    fn poll_timeout(&self) -> Option<Instant> {
        Machine::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Machine::handle_timeout(self, now);
    }
    fn is_finished(&self) -> bool {
        Machine::is_finished(self)
    }
    fn poll_wake(&mut self) -> Option<Wake> {
        Machine::poll_wake(self)
    }
    fn names_wakes(&self) -> bool {
        Machine::names_wakes(self)
    }
    fn poll_deadline_moved(&mut self) -> Option<bool> {
        Machine::poll_deadline_moved(self)
    }
}

/// Where the waiters of a driven machine listen: a few notifications, numbered from zero,
/// and which one the waiters of each channel listen on.
pub trait Waiters: Send + Sync + 'static {
    /// How many notifications there are; at most 128.
    fn count(&self) -> usize;
    /// The notification the waiters on `channel` (`None`: on no channel) listen on; below
    /// [`count`](Self::count).
    fn index(&self, channel: Option<u64>) -> usize;
    /// Notification `index`.
    fn event(&self, index: usize) -> &Event;
}

/// The waiters of a machine with many channels (a bridge's sessions): [`SHARDS`]
/// notifications for the channels, and one for waiters on no channel.
#[derive(Debug)]
pub struct Shards(Vec<Event>);

impl Default for Shards {
    fn default() -> Self {
        Shards((0..=SHARDS).map(|_| Event::new()).collect())
    }
}

impl Waiters for Shards {
    fn count(&self) -> usize {
        SHARDS + 1
    }
    fn index(&self, channel: Option<u64>) -> usize {
        channel.map_or(SHARDS, |c| (c % SHARDS as u64) as usize)
    }
    fn event(&self, index: usize) -> &Event {
        &self.0[index]
    }
}

/// A machine shared by the tasks that drive it, with its timer running.
#[derive(Debug)]
pub struct Driver<M, W = Shards> {
    slot: Mutex<Slot<M>>,
    waiters: W,
    /// The timer task: the deadline moved earlier, or the machine may be finished.
    timer: Event,
}

/// The machine, and whether the timer task has looked at its deadline since the last change.
#[derive(Debug)]
struct Slot<M> {
    machine: M,
    looked: bool,
}

/// The machine, locked. Dropping it wakes nobody: whoever changed the machine hands the guard
/// to [`Driver::release`] (or calls [`Driver::wake_held`]) instead.
pub(crate) struct Guard<'a, M>(MutexGuard<'a, Slot<M>>);

impl<M> Deref for Guard<'_, M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.0.machine
    }
}

impl<M> DerefMut for Guard<'_, M> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.0.machine
    }
}

/// Whom one input concerned: a set of notifications (bit `i` for notification `i`), and
/// whether the timer task must look again.
#[derive(Debug, Clone, Copy)]
struct Woken {
    waiters: u128,
    timer: bool,
}

impl<M: Machine> Driver<M> {
    /// Shares `machine` and spawns its timer task on runtime `R`. The task ends once the
    /// machine is finished or every handle to the driver is gone.
    pub fn start<R: Runtime>(machine: M) -> Arc<Self> {
        let driver = Arc::new(Driver::new(machine, Shards::default()));
        R::spawn(driver.timer::<R>());
        driver
    }
}

impl<M, W> Driver<M, W> {
    /// Where the waiters listen.
    pub(crate) fn waiters(&self) -> &W {
        &self.waiters
    }
}

#[allow(
    private_bounds,
    reason = "every method here is the crate's: its drivers' hot paths and the timer task"
)]
impl<M: Driven, W: Waiters> Driver<M, W> {
    /// Shares `machine` with `waiters`; its timer task is [`timer`](Self::timer), for the
    /// caller to spawn.
    pub(crate) fn new(machine: M, waiters: W) -> Self {
        debug_assert!(waiters.count() <= 128, "a wake is a 128-bit set");
        Driver {
            slot: Mutex::new(Slot {
                machine,
                looked: false,
            }),
            waiters,
            timer: Event::new(),
        }
    }

    /// The timer task: fires the machine's deadlines until it is finished or nobody holds
    /// the driver.
    pub(crate) fn timer<R: Runtime>(self: &Arc<Self>) -> impl Future<Output = ()> + Send
    where
        M: Send + 'static,
        W: 'static,
    {
        timer::<M, W, R>(Arc::downgrade(self))
    }

    /// The machine, for a change that wakes by hand (a driver's hot paths that know whom
    /// their change concerns), or none.
    pub(crate) fn lock(&self) -> Guard<'_, M> {
        // The machine is a plain value updated in single calls; a panic elsewhere while
        // holding the lock leaves it consistent enough to shut down with.
        Guard(self.slot.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whom the changes made under `slot` concern, as the machine names them; and the timer,
    /// if the deadline moved earlier (or, for a machine that does not say, if the timer has
    /// looked since the last change), or the machine is finished.
    fn woken(&self, slot: &mut Slot<M>) -> Woken {
        let all = u128::MAX;
        let mut waiters = 0;
        if !slot.machine.names_wakes() {
            waiters = all;
        }
        while let Some(wake) = slot.machine.poll_wake() {
            waiters |= match wake {
                Wake::All => all,
                Wake::Channel(channel) => 1 << self.waiters.index(Some(channel)),
            };
        }
        let timer = match slot.machine.poll_deadline_moved() {
            Some(moved) => moved,
            None => std::mem::take(&mut slot.looked),
        };
        Woken {
            waiters,
            timer: timer || waiters == all || slot.machine.is_finished(),
        }
    }

    fn notify(&self, woken: Woken) {
        let mut waiters = woken.waiters;
        while waiters != 0 {
            let index = waiters.trailing_zeros() as usize;
            if index >= self.waiters.count() {
                break;
            }
            self.waiters.event(index).notify(usize::MAX);
            waiters &= waiters - 1;
        }
        if woken.timer {
            self.timer.notify(usize::MAX);
        }
    }

    /// After changes made under `guard`: unlocks, then wakes whom they concern.
    pub(crate) fn release(&self, mut guard: Guard<'_, M>) {
        let woken = self.woken(&mut guard.0);
        drop(guard);
        self.notify(woken);
    }

    /// After changes made under `guard`: wakes whom they concern, still holding it.
    pub(crate) fn wake_held(&self, guard: &mut Guard<'_, M>) {
        let woken = self.woken(&mut guard.0);
        self.notify(woken);
    }
}

impl<M: Machine, W: Waiters> Driver<M, W> {
    /// An input: `f` gets the machine and the time, under the lock; then the waiters it
    /// concerns look again.
    pub fn with<T>(&self, f: impl FnOnce(&mut M, Instant) -> T) -> T {
        let mut guard = self.lock();
        let out = f(&mut guard, clock::now());
        self.release(guard);
        out
    }

    /// A query: `f` looks at the machine under the lock; nobody is woken.
    pub fn peek<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        f(&self.lock())
    }

    /// An output, if `f` finds one (taking it may concern other waiters, who are woken).
    /// When `f` finds nothing it must change nothing: nobody is woken then.
    pub fn take<T>(&self, f: impl FnOnce(&mut M, Instant) -> Option<T>) -> Option<T> {
        let mut guard = self.lock();
        let out = f(&mut guard, clock::now());
        if out.is_some() {
            self.release(guard);
        }
        out
    }

    /// A wait for the next change that concerns `channel` (or, with `None`, the next that
    /// concerns everyone), for code that polls by hand (a response body): listen, then
    /// [`take`](Self::take), then await the listener if nothing was found.
    pub fn listen(&self, channel: Option<u64>) -> EventListener {
        self.waiters.event(self.waiters.index(channel)).listen()
    }

    /// Waits until `f` finds something (an output to take, a condition that holds), looking
    /// again after every change that concerns `channel` (`None`: only after changes that
    /// concern everyone). As for [`take`](Self::take), `f` changes nothing when it finds
    /// nothing.
    pub async fn wait_on<T>(
        &self,
        channel: Option<u64>,
        mut f: impl FnMut(&mut M, Instant) -> Option<T>,
    ) -> T {
        wait(|| self.listen(channel), || self.take(&mut f)).await
    }

    /// Waits until `holds` (a condition, which changes nothing) is true of the machine,
    /// looking again after every change that concerns `channel`. Cheaper than
    /// [`wait_on`](Self::wait_on) for what changes nothing: nobody is woken when it holds.
    pub async fn wait_until(&self, channel: Option<u64>, mut holds: impl FnMut(&M) -> bool) {
        wait(
            || self.listen(channel),
            || self.peek(&mut holds).then_some(()),
        )
        .await;
    }

    /// [`wait_on`](Self::wait_on) no channel: for what only changes that concern everyone
    /// bring about (a machine that names no wakes concerns everyone with every input).
    pub async fn wait<T>(&self, f: impl FnMut(&mut M, Instant) -> Option<T>) -> T {
        self.wait_on(None, f).await
    }
}

/// Every wait on a driven machine: `look` (under the machine's lock) until it finds
/// something, awaiting a notification from `listen` in between. A listener costs an
/// allocation and a turn of the notification's own lock, so one is taken only once a look has
/// found nothing, and the next look comes before the wait: no change is missed.
pub(crate) async fn wait<T>(
    listen: impl Fn() -> EventListener,
    mut look: impl FnMut() -> Option<T>,
) -> T {
    let mut listener = None;
    loop {
        if let Some(out) = look() {
            return out;
        }
        match listener.take() {
            Some(changed) => changed.await,
            None => listener = Some(listen()),
        }
    }
}

/// Fires the machine's deadlines until it is finished or nobody holds the driver.
async fn timer<M, W, R>(driver: Weak<Driver<M, W>>)
where
    M: Driven + Send + 'static,
    W: Waiters,
    R: Runtime,
{
    loop {
        let Some(strong) = driver.upgrade() else {
            return;
        };
        // Listening first: a deadline set after this point wakes the task.
        let changed = strong.timer.listen();
        let (finished, deadline) = {
            let mut machine = strong.lock();
            machine.0.looked = true;
            (machine.is_finished(), machine.poll_timeout())
        };
        if finished {
            return;
        }
        match deadline {
            Some(at) if at <= clock::now() => {
                let mut machine = strong.lock();
                machine.handle_timeout(clock::now());
                strong.release(machine);
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
