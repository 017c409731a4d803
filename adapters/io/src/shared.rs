//! The state a connection's owner, its senders, its I/O tasks and the process layer share: the
//! core endpoint behind a mutex, and one notification per kind of waiter.
//!
//! The mutex is never held across an await; every wait follows the same pattern — listen,
//! check under the lock, then await the listener — so no wake-up is lost.

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use event_listener::Event;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tether_core::{Endpoint, ExitStatus};

use crate::clock;
use crate::process::{kill_process_group, Lifetime};
use crate::stream::{Writer, Writing};

/// Shared by the owner, every sender and the I/O tasks of one connection.
#[derive(Debug)]
pub(crate) struct Shared<M> {
    state: Mutex<State<M>>,
    /// The child's process group, for the endpoint's signals.
    pgid: Option<u32>,
    /// A byte stream's write half, which whoever has the turn to write pushes to (a websocket
    /// has a writer task of its own instead).
    writer: OnceLock<Writer>,
    /// The owner: an event may be ready.
    pub(crate) events: Event,
    /// The reader: the endpoint wants input, or the reader should stop.
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
}

/// The endpoint and the few facts the tasks coordinate on.
#[derive(Debug)]
pub(crate) struct State<M> {
    pub(crate) ep: Endpoint<M>,
    /// The owner has drained every event: a websocket's reader task may hand in a frame.
    pub(crate) wants_input: bool,
    /// The owner is gone: the I/O tasks stop and drop the transport.
    pub(crate) abandoned: bool,
    /// Who has the turn to write to a byte stream.
    pub(crate) writing: Writing,
    /// A send wrote its message itself and the owner has neither waited nor gone back to the
    /// stream for input since: the sends that follow leave theirs to the writer task, so that
    /// a burst goes out in few writes.
    pub(crate) burst: bool,
}

impl<M> Shared<M>
where
    M: Serialize + DeserializeOwned,
{
    pub(crate) fn new(ep: Endpoint<M>, pgid: Option<u32>) -> Self {
        Shared {
            state: Mutex::new(State {
                ep,
                wants_input: false,
                abandoned: false,
                writing: Writing::Idle,
                burst: false,
            }),
            pgid,
            writer: OnceLock::new(),
            events: Event::new(),
            input: Event::new(),
            output: Event::new(),
            progress: Event::new(),
            timer: Event::new(),
            stop: Event::new(),
        }
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
            tracing::debug!(pgid = ?self.pgid, ?action, "endpoint action");
            if let Some(pgid) = self.pgid {
                if let Err(err) = kill_process_group(pgid, action) {
                    tracing::warn!(pgid, %err, ?action, "cannot signal the process group");
                }
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
        if ended {
            self.input.notify(usize::MAX);
            self.stop.notify(usize::MAX);
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

    /// The reader has handed input to the endpoint (`ended`: the last of it): the owner may
    /// poll again, and on the end everyone else learns of it too.
    pub(crate) fn handed_in(&self, mut state: MutexGuard<'_, State<M>>, ended: bool) {
        state.wants_input = false;
        if ended {
            self.settle(state);
        } else {
            drop(state);
            self.events.notify(usize::MAX);
        }
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
}

impl<M> Lifetime for Shared<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn exited(&self, status: ExitStatus) {
        self.handle(|ep, now| ep.handle_exit(status, now));
    }

    fn tick(&self) -> Option<Instant> {
        let mut state = self.lock();
        state.ep.handle_timeout(clock::now());
        let next = state.ep.poll_timeout();
        self.settle(state);
        next
    }
}
