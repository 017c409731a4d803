//! The state a connection's owner, its senders, its I/O tasks and the process layer share: the
//! core endpoint behind a mutex, and one notification per kind of waiter.
//!
//! The mutex is never held across an await; every wait follows the same pattern — listen,
//! check under the lock, then await the listener — so no wake-up is lost.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use event_listener::Event;
use futures_io::{AsyncRead, AsyncWrite};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tether_core::{Action, Endpoint, ExitStatus};

use crate::clock;
use crate::process::contain::Container;
use crate::process::{kill_process_group, Lifetime, LimitGroups, Process, Respawn, Tail};
use crate::RestartReport;

/// Shared by the owner, every sender and the I/O tasks of one connection.
#[derive(Debug)]
pub(crate) struct Shared<M> {
    state: Mutex<State<M>>,
    /// The child's process group and containment, for the endpoint's signals.
    child: Option<Child>,
    /// A byte stream's write half, which whoever has the turn to write pushes to (a websocket
    /// has a writer task of its own instead).
    writer: OnceLock<Writer>,
    /// A byte stream's read half, which whoever has the turn to read polls (a websocket has a
    /// reader task of its own instead).
    reader: OnceLock<Reader>,
    /// The owner: an event may be ready.
    pub(crate) events: Event,
    /// The reader: the endpoint wants input again, or the reader should stop.
    pub(crate) input: Event,
    /// The writer: output or a transport control is queued, or the writer should stop.
    pub(crate) output: Event,
    /// Senders, request callers and `closed()`: budget was freed, results arrived, or the
    /// connection ended.
    pub(crate) progress: Event,
    /// The timer task: the next deadline may have changed.
    pub(crate) timer: Event,
    /// Tasks watching for their end: the connection ended or was abandoned. Notified only
    /// then, so that a watch costs nothing while the connection runs.
    pub(crate) stop: Event,
    /// The current child's handle (a restart replaces it).
    pub(crate) process: Mutex<Option<Process>>,
    /// How to start the next child, when a restart policy is set.
    pub(crate) respawn: OnceLock<Respawn>,
    /// Restarts made, with the end of the child each replaced, until the owner takes them.
    pub(crate) restarts: Mutex<VecDeque<RestartReport>>,
    /// Watchers of restarts: one was reported, or the connection ended.
    pub(crate) restarted: Event,
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
    pub(crate) generations: Mutex<Vec<Generation>>,
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
            generations: Mutex::new(vec![generation]),
        }
    }

    fn generations(&self) -> MutexGuard<'_, Vec<Generation>> {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out one of the endpoint's actions on the current child's tree.
    fn act(&self, action: Action) {
        let mut generations = self.generations();
        let Some(current) = generations.last_mut() else {
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
                drop(generations);
                if let Err(err) = kill_process_group(pgid, signal) {
                    tracing::warn!(pgid, %err, ?signal, "cannot signal the process group");
                }
            }
        }
    }

    /// Whether the memory limit of child `pid` killed something of it.
    fn oom_killed(&self, pid: u32) -> bool {
        self.generations()
            .iter()
            .find(|g| g.pgid == pid)
            .and_then(|g| g.limits.as_ref())
            .is_some_and(LimitGroups::oom_killed)
    }

    /// Child `pid` is reaped: its containment and limits go (their cgroups are removed),
    /// and only then the child leaves the list, so that whoever waits for every child to be
    /// [released](Self::is_released) finds its cgroups gone. Returns its tail.
    pub(crate) fn release(&self, pid: u32) -> Option<Option<Tail>> {
        let (container, limits, tail) = {
            let mut generations = self.generations();
            let generation = generations.iter_mut().find(|g| g.pgid == pid)?;
            let tail = generation.tail.clone();
            (generation.container.take(), generation.limits.take(), tail)
        };
        drop((container, limits));
        self.generations().retain(|g| g.pgid != pid);
        Some(tail)
    }

    /// Whether every child so far has been reaped and released: the next child of a restart
    /// starts only then, on a clean slate (no cgroup of the one before left, its end reported
    /// before the next can end).
    pub(crate) fn is_released(&self) -> bool {
        self.generations().is_empty()
    }

    /// The next child takes the place of the current one.
    pub(crate) fn push(&self, generation: Generation) {
        self.generations().push(generation);
    }
}

/// The endpoint and the few facts the tasks coordinate on.
#[derive(Debug)]
pub(crate) struct State<M> {
    pub(crate) ep: Endpoint<M>,
    /// The owner is gone: the I/O tasks stop and drop the transport.
    pub(crate) abandoned: bool,
    /// Who has the turn to write to a byte stream.
    pub(crate) writing: Writing,
    /// Who has the turn to read a byte stream.
    pub(crate) reading: Reading,
    /// A send wrote its message itself and the owner has neither waited nor gone back to the
    /// stream for input since: the sends that follow leave theirs to the writer task, so that
    /// a burst goes out in few writes.
    pub(crate) burst: bool,
    /// Restart reports taken from the endpoint and not yet handed to the owner (their stderr
    /// tail is being read).
    pub(crate) reporting: usize,
}

impl<M> Shared<M>
where
    M: Serialize + DeserializeOwned,
{
    pub(crate) fn new(ep: Endpoint<M>, child: Option<Child>) -> Self {
        Shared {
            state: Mutex::new(State {
                ep,
                abandoned: false,
                writing: Writing::Idle,
                reading: Reading::Owner,
                burst: false,
                reporting: 0,
            }),
            child,
            writer: OnceLock::new(),
            reader: OnceLock::new(),
            events: Event::new(),
            input: Event::new(),
            output: Event::new(),
            progress: Event::new(),
            timer: Event::new(),
            stop: Event::new(),
            process: Mutex::new(None),
            respawn: OnceLock::new(),
            restarts: Mutex::new(VecDeque::new()),
            restarted: Event::new(),
        }
    }

    /// The child connection's part of the state: what its actions act on.
    pub(crate) fn child(&self) -> Option<&Child> {
        self.child.as_ref()
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

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<M>> {
        // The state is a plain value updated in single calls; a panic elsewhere while holding
        // the lock leaves it consistent enough to shut down with.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After an input that may have changed anything: carries out the signals the endpoint
    /// decided, and wakes every kind of waiter (a wake-up with nobody listening is one atomic
    /// load). The hot paths — a send, a read — notify only whom they concern instead.
    pub(crate) fn settle(&self, mut state: MutexGuard<'_, State<M>>) {
        while let Some(action) = state.ep.poll_action() {
            if let Some(child) = &self.child {
                child.act(action);
            }
        }
        let ended = state.ep.is_input_ended() || state.abandoned;
        // Everyone is woken below; this only resets what the endpoint reports.
        let _ = state.ep.poll_wake();
        drop(state);
        self.events.notify(usize::MAX);
        self.output.notify(usize::MAX);
        self.progress.notify(usize::MAX);
        self.timer.notify(usize::MAX);
        self.input.notify(usize::MAX);
        if ended {
            self.stop.notify(usize::MAX);
        }
        if self.child.is_some() {
            self.restarted.notify(usize::MAX);
        }
    }

    /// Wakes whom the endpoint's latest decisions concern (see [`Endpoint::poll_wake`]).
    pub(crate) fn wake(&self, state: &mut State<M>) {
        let wake = state.ep.poll_wake();
        if wake.write {
            self.output.notify(usize::MAX);
        }
        if wake.timer {
            self.timer.notify(usize::MAX);
        }
        if wake.results {
            self.progress.notify(usize::MAX);
        }
        if wake.read {
            self.wake_reader(state);
        }
    }

    /// Input may be taken again: whoever has the turn to read looks (the owner reads from its
    /// own poll for events; websockets have a task of their own).
    pub(crate) fn wake_reader(&self, state: &State<M>) {
        match state.reading {
            Reading::Owner if self.reader().is_some() => self.events.notify(usize::MAX),
            _ => self.input.notify(usize::MAX),
        };
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

    /// Waits until `done` holds for the state.
    pub(crate) async fn wait_for(
        &self,
        event: &Event,
        mut done: impl FnMut(&mut State<M>) -> bool,
    ) {
        // A listener costs an allocation: take one only once the condition is found false,
        // then check once more before waiting, so no wake-up is lost.
        let mut listener = None;
        loop {
            if done(&mut self.lock()) {
                return;
            }
            match listener.take() {
                Some(listener) => listener.await,
                None => listener = Some(event.listen()),
            }
        }
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
}

impl<M> Lifetime for Shared<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn exited(&self, pid: u32, status: ExitStatus) {
        let oom = self.child.as_ref().is_some_and(|c| c.oom_killed(pid));
        self.handle(|ep, now| {
            if oom {
                ep.handle_oom(now);
            }
            ep.handle_exit(status, now);
        });
    }

    fn reaped(&self, pid: u32) {
        let Some(child) = &self.child else {
            return;
        };
        // A restart decided at this child's end is reported now, with its last words: taken
        // before the release, after which the next child may start (and end).
        let restart = {
            let mut state = self.lock();
            let restart = state.ep.poll_restart();
            state.reporting += usize::from(restart.is_some());
            restart
        };
        // Dropping the container and the limits removes the child's cgroups.
        let tail = child.release(pid).flatten();
        // The next child waits for this one's release.
        self.progress.notify(usize::MAX);
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
        state.ep.handle_timeout(clock::now());
        let next = state.ep.poll_timeout();
        self.settle(state);
        next
    }
}
