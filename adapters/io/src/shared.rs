//! The state a connection's owner, its senders, its I/O tasks and the process layer share: the
//! core endpoint on the generic [`Driver`] (behind its mutex, with its timer task), one
//! notification per kind of waiter, and the halves of a byte stream.
//!
//! The mutex is never held across an await; every wait follows the same pattern — listen,
//! check under the lock, then await the listener — so no wake-up is lost. What is the
//! endpoint's own sits on top: whose turn it is to read and to write ([`Reading`],
//! [`Writing`]), which waiters each of its wakes concerns ([`Kinds`]), and the child's tree
//! that its actions act on.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use event_listener::Event;
use futures_io::{AsyncRead, AsyncWrite};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tether_core::{Action, Endpoint, ExitStatus};

use crate::machine::{self, Driven, Driver, Guard, Waiters, Wake};
use crate::process::contain::Container;
use crate::process::{kill_process_group, Lifetime, LimitGroups, Process, Respawn, Tail};
use crate::{clock, RestartReport, Runtime};

/// Shared by the owner, every sender and the I/O tasks of one connection.
#[derive(Debug)]
pub(crate) struct Shared<M> {
    /// The endpoint, its waiters and its timer.
    driver: Arc<Driver<State<M>, Kinds>>,
    /// A byte stream's write half, which whoever has the turn to write pushes to (a websocket
    /// has a writer task of its own instead).
    writer: OnceLock<Writer>,
    /// A byte stream's read half, which whoever has the turn to read polls (a websocket has a
    /// reader task of its own instead).
    reader: OnceLock<Reader>,
    /// The current child's handle (a restart replaces it).
    pub(crate) process: Mutex<Option<Process>>,
    /// How to start the next child, when a restart policy is set.
    pub(crate) respawn: OnceLock<Respawn>,
    /// Restarts made, with the end of the child each replaced, until the owner takes them.
    pub(crate) restarts: Mutex<VecDeque<RestartReport>>,
}

/// The endpoint's waiters, one notification per kind. The endpoint names them in its wakes
/// (as channels [`Kinds::EVENTS`] and on); the tasks listen on them by name (`shared.input`,
/// through `Shared`'s deref).
#[derive(Debug, Default)]
pub(crate) struct Kinds {
    /// The owner: an event may be ready.
    pub(crate) events: Event,
    /// The reader: the endpoint wants input again, or the reader should stop.
    pub(crate) input: Event,
    /// The writer: output or a transport control is queued, or the writer should stop.
    pub(crate) output: Event,
    /// Senders, request callers and `closed()`: budget was freed, results arrived, or the
    /// connection ended.
    pub(crate) progress: Event,
    /// Tasks watching for their end: the connection ended or was abandoned. Notified only
    /// then, so that a watch costs nothing while the connection runs.
    pub(crate) stop: Event,
    /// Watchers of restarts, and the supervision task: one was decided or reported, or the
    /// connection ended.
    pub(crate) restarted: Event,
}

impl Kinds {
    const EVENTS: usize = 0;
    const INPUT: usize = 1;
    const OUTPUT: usize = 2;
    const PROGRESS: usize = 3;
    const STOP: usize = 4;
    const RESTARTED: usize = 5;
}

impl Waiters for Kinds {
    fn count(&self) -> usize {
        6
    }
    fn index(&self, channel: Option<u64>) -> usize {
        // Only the endpoint names channels, and only these; a wait on no channel is a wait
        // for progress.
        channel.map_or(Kinds::PROGRESS, |kind| kind as usize % 6)
    }
    fn event(&self, index: usize) -> &Event {
        match index {
            Kinds::EVENTS => &self.events,
            Kinds::INPUT => &self.input,
            Kinds::OUTPUT => &self.output,
            Kinds::STOP => &self.stop,
            Kinds::RESTARTED => &self.restarted,
            _ => &self.progress,
        }
    }
}

/// The tasks name the endpoint's waiters directly: `shared.events.notify(..)`.
impl<M> Deref for Shared<M> {
    type Target = Kinds;
    fn deref(&self) -> &Kinds {
        self.driver.waiters()
    }
}

/// Who is moving output from the core to a byte stream. Only the holder of the turn pushes,
/// and it gives the turn back (to `Idle`) only under the state lock, after finding nothing
/// left to write: output queued before that is its to write, output queued after finds the
/// turn free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Writing {
    /// Nobody: nothing is queued, or a send is about to take the turn.
    #[default]
    Idle,
    /// A sender or the owner is writing from its own poll.
    Inline,
    /// The writer task has the turn: it was woken to write a burst, or the stream was full.
    Task,
}

/// The write half of a byte stream and the batch being written.
/// Its behaviour is the stream module's; it is declared here, with the rest of the shared
/// state, so that this module depends on no other.
pub(crate) struct Writer {
    pub(crate) half: Mutex<Half>,
    /// Which stream the writer task serves: a restart gives the writer a new stream and a
    /// new task, and the task of an older one stops.
    pub(crate) generation: AtomicU64,
}

pub(crate) struct Half {
    /// Dropped once closed or failed: for pipes, only dropping the descriptor closes it.
    pub(crate) stream: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// The batch taken from the core, and how much of it is written.
    pub(crate) out: Vec<u8>,
    pub(crate) written: usize,
}

/// The read half of a byte stream and the buffer it reads into. Its behaviour is the stream
/// module's.
pub(crate) struct Reader {
    pub(crate) half: Mutex<ReadHalf>,
}

pub(crate) struct ReadHalf {
    /// Dropped once the input has ended or the owner has gone.
    pub(crate) stream: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub(crate) buf: Vec<u8>,
}

/// Who reads a byte stream: the owner from its own poll while it receives (no other task is
/// woken for its input), the reader task while it does not: while it waits for room to send
/// or for the end, so that a peer answering while it reads is never left blocked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Reading {
    /// The owner, the next time it polls for an event.
    #[default]
    Owner,
    /// The reader task.
    Task,
}

/// What the endpoint's actions act on: the children not yet reaped, the current one last (a
/// restarted child's predecessor may still be being reaped).
#[derive(Debug)]
pub(crate) struct Child {
    generations: Vec<Generation>,
}

/// One child, until it is reaped.
#[derive(Debug)]
pub(crate) struct Generation {
    /// The child's pid, also its process group id.
    pub(crate) pgid: u32,
    /// What reaches its whole tree.
    pub(crate) container: Option<Container>,
    /// The cgroups of its limits.
    pub(crate) limits: Option<LimitGroups>,
    /// Its standard error's last bytes, when captured.
    pub(crate) tail: Option<Tail>,
}

impl Child {
    /// The first child.
    pub(crate) fn new(generation: Generation) -> Self {
        Child {
            generations: vec![generation],
        }
    }

    /// Carries out one of the endpoint's actions on the current child's tree.
    fn act(&mut self, action: Action) {
        let Some(current) = self.generations.last_mut() else {
            return;
        };
        let pgid = current.pgid;
        tracing::debug!(pgid, ?action, "endpoint action");
        match action {
            Action::KillDescendants { within } => {
                if let Some(container) = current.container.as_mut() {
                    let outcome = container.kill(clock::now() + within);
                    if !outcome.left.is_empty() {
                        tracing::warn!(pgid, left = ?outcome.left, "descendants outlived the kill");
                    }
                }
            }
            signal => {
                if let Err(err) = kill_process_group(pgid, signal) {
                    tracing::warn!(pgid, %err, ?signal, "cannot signal the process group");
                }
            }
        }
    }

    /// Whether the memory limit of child `pid` killed something of it.
    fn oom_killed(&self, pid: u32) -> bool {
        self.generations
            .iter()
            .find(|g| g.pgid == pid)
            .and_then(|g| g.limits.as_ref())
            .is_some_and(LimitGroups::oom_killed)
    }

    /// Child `pid` is gone for good (it could not be watched): it leaves the list, and its
    /// cgroups go when the caller drops it, not under the lock.
    pub(crate) fn remove(&mut self, pid: u32) -> Option<Generation> {
        let at = self.generations.iter().position(|g| g.pgid == pid)?;
        Some(self.generations.remove(at))
    }

    /// Child `pid` is reaped: its containment and limits are taken out, for the caller to
    /// drop (removing its cgroups) outside the lock, and its tail. It stays listed until
    /// [`forget`](Self::forget), so that whoever waits for every child to be
    /// [released](Self::is_released) finds its cgroups gone.
    fn take(&mut self, pid: u32) -> Option<Released> {
        let generation = self.generations.iter_mut().find(|g| g.pgid == pid)?;
        Some(Released {
            container: generation.container.take(),
            limits: generation.limits.take(),
            tail: generation.tail.clone(),
        })
    }

    /// Child `pid`, reaped and its cgroups removed, leaves the list.
    fn forget(&mut self, pid: u32) {
        self.generations.retain(|g| g.pgid != pid);
    }

    /// Whether every child so far has been reaped and released: the next child of a restart
    /// starts only then, on a clean slate (no cgroup of the one before left, its end reported
    /// before the next can end).
    pub(crate) fn is_released(&self) -> bool {
        self.generations.is_empty()
    }

    /// The next child takes the place of the current one.
    pub(crate) fn push(&mut self, generation: Generation) {
        self.generations.push(generation);
    }
}

/// What a reaped child leaves: its cgroups' owners, dropped outside the lock, and its tail.
struct Released {
    container: Option<Container>,
    limits: Option<LimitGroups>,
    tail: Option<Tail>,
}

/// The endpoint and the few facts the tasks coordinate on: the machine the [`Driver`] holds.
#[derive(Debug)]
pub(crate) struct State<M> {
    pub(crate) ep: Endpoint<M>,
    /// The child's process group and containment, for the endpoint's actions.
    pub(crate) child: Option<Child>,
    /// The owner is gone: the I/O tasks stop and drop the transport.
    pub(crate) abandoned: bool,
    /// Who has the turn to write to a byte stream.
    pub(crate) writing: Writing,
    /// Who has the turn to read a byte stream.
    pub(crate) reading: Reading,
    /// Whether the transport is a byte stream, which the owner reads from its own poll while
    /// it has the turn.
    streams: bool,
    /// A send wrote its message itself and the owner has neither waited nor gone back to the
    /// stream for input since: the sends that follow leave theirs to the writer task, so that
    /// a burst goes out in few writes.
    pub(crate) burst: bool,
    /// Restart reports taken from the endpoint and not yet handed to the owner (their stderr
    /// tail is being read).
    pub(crate) reporting: usize,
    /// The last change may concern anyone: the next wake is of every kind.
    settling: bool,
    /// The kinds of waiter a wake still names, while the driver asks ([`Driven::poll_wake`]).
    waking: Option<u8>,
    /// The endpoint's deadline moved earlier since the driver last asked
    /// ([`Driven::poll_deadline_moved`]).
    deadline_moved: bool,
}

impl<M> Shared<M>
where
    M: Serialize + DeserializeOwned,
{
    pub(crate) fn new(ep: Endpoint<M>, child: Option<Child>) -> Self {
        let state = State {
            ep,
            child,
            abandoned: false,
            writing: Writing::Idle,
            reading: Reading::Owner,
            streams: false,
            burst: false,
            reporting: 0,
            settling: false,
            waking: None,
            deadline_moved: false,
        };
        Shared {
            driver: Arc::new(Driver::new(state, Kinds::default())),
            writer: OnceLock::new(),
            reader: OnceLock::new(),
            process: Mutex::new(None),
            respawn: OnceLock::new(),
            restarts: Mutex::new(VecDeque::new()),
        }
    }

    /// The current child's handle.
    pub(crate) fn process(&self) -> MutexGuard<'_, Option<Process>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the connection a byte stream's write half; once, before its writer task starts.
    pub(crate) fn set_writer(&self, writer: Writer) {
        // A connection starts one transport, once.
        let _ = self.writer.set(writer);
    }

    /// The byte stream's write half, if the transport is one.
    pub(crate) fn writer(&self) -> Option<&Writer> {
        self.writer.get()
    }

    /// Gives the connection a byte stream's read half; once, before anyone reads.
    pub(crate) fn set_reader(&self, reader: Reader) {
        // A connection starts one transport, once.
        let _ = self.reader.set(reader);
        self.lock().streams = true;
    }

    /// The byte stream's read half, if the transport is one.
    pub(crate) fn reader(&self) -> Option<&Reader> {
        self.reader.get()
    }

    /// Whoever waits for something other than an event (room to send, the end) hands the
    /// reading to the reader task, which reads while the owner does not.
    pub(crate) fn hand_reading_over(&self) {
        if self.reader().is_none() {
            return;
        }
        let mut state = self.lock();
        if state.reading == Reading::Task {
            return;
        }
        state.reading = Reading::Task;
        drop(state);
        self.input.notify(usize::MAX);
    }

    /// The endpoint, for a change whose waiters the caller wakes ([`wake`](Self::wake),
    /// [`settle`](Self::settle)), or none.
    pub(crate) fn lock(&self) -> Guard<'_, State<M>> {
        self.driver.lock()
    }

    /// After an input that may have changed anything: carries out the signals the endpoint
    /// decided, and wakes every kind of waiter (a wake-up with nobody listening is one atomic
    /// load). The hot paths — a send, a read — [`wake`](Self::wake) only whom they concern.
    pub(crate) fn settle(&self, mut state: Guard<'_, State<M>>) {
        state.act();
        state.settling = true;
        self.driver.release(state);
    }

    /// Wakes whom the endpoint's latest decisions concern (see [`Endpoint::poll_wake`]).
    pub(crate) fn wake(&self, state: &mut Guard<'_, State<M>>) {
        self.driver.wake_held(state);
    }

    /// Input may be taken again: whoever has the turn to read looks (the owner reads from its
    /// own poll for events; websockets have a task of their own).
    pub(crate) fn wake_reader(&self, state: &State<M>) {
        let kinds = self.driver.waiters();
        kinds.event(state.reader_kind()).notify(usize::MAX);
    }

    /// Runs `input` on the endpoint with the current time, then settles.
    pub(crate) fn handle(&self, input: impl FnOnce(&mut Endpoint<M>, Instant)) {
        let mut state = self.lock();
        input(&mut state.ep, clock::now());
        self.settle(state);
    }

    /// The owner is gone: the endpoint closes (for a child, the ladder starts), and the tasks
    /// stop.
    pub(crate) fn abandon(&self) {
        let mut state = self.lock();
        state.abandoned = true;
        state.ep.close(clock::now());
        self.settle(state);
    }

    /// Waits until `done` holds for the state, looking again whenever `event` is notified
    /// (`done` may take what it finds: a result, a due restart).
    pub(crate) async fn wait_for(
        &self,
        event: &Event,
        mut done: impl FnMut(&mut State<M>) -> bool,
    ) {
        machine::wait(|| event.listen(), || done(&mut self.lock()).then_some(())).await;
    }
}

impl<M> State<M>
where
    M: Serialize + DeserializeOwned,
{
    /// Whether the reader has nothing left to do.
    pub(crate) fn reader_done(&self) -> bool {
        self.abandoned || self.ep.is_input_ended()
    }

    /// Whether a reader may hand in more input now, or must stop.
    pub(crate) fn reader_may_go(&self) -> bool {
        self.reader_done() || self.ep.wants_input()
    }

    /// Whether the reader task has the turn and something to do with it, or must stop.
    pub(crate) fn reader_task_may_go(&self) -> bool {
        self.reader_done() || self.reading == Reading::Task && self.ep.wants_input()
    }

    /// Who reads next: the owner from its poll for events, or a reader task.
    fn reader_kind(&self) -> usize {
        match self.reading {
            Reading::Owner if self.streams => Kinds::EVENTS,
            _ => Kinds::INPUT,
        }
    }

    /// Carries out the signals the endpoint decided, on the child's tree.
    fn act(&mut self) {
        while let Some(action) = self.ep.poll_action() {
            if let Some(child) = self.child.as_mut() {
                child.act(action);
            }
        }
    }

    /// The kinds of waiter the last changes concern, as a set of [`Kinds`] bits.
    fn kinds(&mut self) -> u8 {
        let wake = self.ep.poll_wake();
        self.deadline_moved |= wake.timer;
        if std::mem::take(&mut self.settling) {
            // Everyone but the watchers of the end, unless it came, and of restarts, unless
            // there is a child.
            let mut kinds =
                1 << Kinds::EVENTS | 1 << Kinds::INPUT | 1 << Kinds::OUTPUT | 1 << Kinds::PROGRESS;
            if self.reader_done() {
                kinds |= 1 << Kinds::STOP;
            }
            if self.child.is_some() {
                kinds |= 1 << Kinds::RESTARTED;
            }
            return kinds;
        }
        // The timer is the driver's to wake (`deadline_moved`).
        let mut kinds = 0;
        if wake.write {
            kinds |= 1 << Kinds::OUTPUT;
        }
        if wake.results {
            kinds |= 1 << Kinds::PROGRESS;
        }
        if wake.read {
            kinds |= 1 << self.reader_kind();
        }
        kinds
    }
}

impl<M> Shared<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// The endpoint's timer task, for the runtime `R` to run: it ends once the connection is
    /// finished or abandoned. (Once the owner is gone, the process layer's own thread fires
    /// a child's deadlines instead: [`Lifetime::tick`].)
    pub(crate) fn timer<R: Runtime>(&self) -> impl Future<Output = ()> + Send {
        self.driver.timer::<R>()
    }
}

/// The endpoint as the driver sees it: its timer, its end (or the owner's), and whom each
/// change concerns.
impl<M> Driven for State<M>
where
    M: Serialize + DeserializeOwned,
{
    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.act();
        self.settling = true;
    }

    fn is_finished(&self) -> bool {
        self.abandoned || self.ep.is_finished()
    }

    fn poll_wake(&mut self) -> Option<Wake> {
        let kinds = match self.waking {
            Some(kinds) => kinds,
            None => self.kinds(),
        };
        if kinds == 0 {
            self.waking = None;
            return None;
        }
        self.waking = Some(kinds & (kinds - 1));
        Some(Wake::Channel(u64::from(kinds.trailing_zeros())))
    }

    fn names_wakes(&self) -> bool {
        true
    }

    fn poll_deadline_moved(&mut self) -> Option<bool> {
        Some(std::mem::take(&mut self.deadline_moved))
    }
}

impl<M> Lifetime for Shared<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn exited(&self, pid: u32, status: ExitStatus) {
        let mut state = self.lock();
        let now = clock::now();
        if state.child.as_ref().is_some_and(|c| c.oom_killed(pid)) {
            state.ep.handle_oom(now);
        }
        state.ep.handle_exit(status, now);
        self.settle(state);
    }

    fn reaped(&self, pid: u32) {
        // A restart decided at this child's end is reported now, with its last words: taken
        // before the release, after which the next child may start (and end).
        let (restart, released) = {
            let mut state = self.lock();
            let Some(released) = state.child.as_mut().and_then(|c| c.take(pid)) else {
                return;
            };
            let restart = state.ep.poll_restart();
            state.reporting += usize::from(restart.is_some());
            (restart, released)
        };
        let Released {
            container,
            limits,
            tail,
        } = released;
        // Dropping the container and the limits removes the child's cgroups: not under the
        // lock.
        drop((container, limits));
        if let Some(child) = self.lock().child.as_mut() {
            child.forget(pid);
        }
        // The next child waits for this one's release.
        self.restarted.notify(usize::MAX);
        if let Some(restart) = restart {
            let stderr_tail = tail.map(|t| t.text(crate::process::TAIL_WAIT));
            let report = RestartReport::new(restart, stderr_tail);
            tracing::info!(attempt = report.attempt, delay = ?report.delay, end = %report.end.cause, "restarting the child");
            self.restarts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(report);
            self.lock().reporting -= 1;
            self.restarted.notify(usize::MAX);
        }
    }

    fn tick(&self) -> Option<Instant> {
        let mut state = self.lock();
        state.handle_timeout(clock::now());
        let next = state.ep.poll_timeout();
        self.driver.release(state);
        next
    }
}
