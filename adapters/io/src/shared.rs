//! The state a connection's owner, its senders and its I/O tasks share: the core connection
//! behind a mutex, and one notification per kind of waiter.
//!
//! The mutex is never held across an await; every wait follows the same pattern — listen,
//! check under the lock, then await the listener — so no wake-up is lost.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use event_listener::Event;

/// Shared by the owner, every sender and the I/O tasks of one connection.
#[derive(Debug)]
pub(crate) struct Shared<M> {
    state: Mutex<State<M>>,
    /// The owner: an event may be ready.
    pub(crate) events: Event,
    /// The reader: the core wants input, or the reader should stop.
    pub(crate) input: Event,
    /// The writer: output is queued, a close or flush is due, or the writer should stop.
    pub(crate) output: Event,
    /// Senders and `closed()`: budget was freed, or the connection ended.
    pub(crate) progress: Event,
    /// A byte stream's write half, which senders push to directly when they can.
    pub(crate) writer: OnceLock<Arc<crate::stream::Writer>>,
    /// Tasks watching for their end: the connection ended or was abandoned. Notified only
    /// then, so that a watch costs nothing while the connection runs.
    pub(crate) stop: Event,
}

/// The core connection and the few facts the tasks coordinate on.
#[derive(Debug)]
pub(crate) struct State<M> {
    pub(crate) conn: tether_core::Connection<M>,
    /// The owner has drained every event: a websocket's reader task may hand in a frame.
    pub(crate) wants_input: bool,
    /// The owner is gone: the I/O tasks stop and drop the transport.
    pub(crate) abandoned: bool,
    /// The reader saw a ping (websocket): the writer must flush the queued pong.
    pub(crate) flush_needed: bool,
    /// The keepalive asks for a ping (websocket).
    pub(crate) ping_needed: bool,
    /// The websocket keepalive, if one runs.
    pub(crate) keepalive: Option<tether_core::Keepalive>,
    /// The code and reason of the websocket Close frame this side sends.
    pub(crate) close_frame: Option<(u16, String)>,
}

impl<M> Shared<M> {
    pub(crate) fn new(conn: tether_core::Connection<M>) -> Self {
        Shared {
            state: Mutex::new(State {
                conn,
                wants_input: false,
                abandoned: false,
                flush_needed: false,
                ping_needed: false,
                keepalive: None,
                close_frame: None,
            }),
            events: Event::new(),
            input: Event::new(),
            output: Event::new(),
            progress: Event::new(),
            stop: Event::new(),
            writer: OnceLock::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<M>> {
        // The state is a plain value updated in single calls; a panic elsewhere while holding
        // the lock leaves it consistent enough to shut down with.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiter: something changed for everyone (an end, an abandonment).
    pub(crate) fn notify_all(&self) {
        self.events.notify(usize::MAX);
        self.input.notify(usize::MAX);
        self.output.notify(usize::MAX);
        self.progress.notify(usize::MAX);
        self.stop.notify(usize::MAX);
    }

    /// The owner is gone: the tasks stop.
    pub(crate) fn abandon(&self) {
        self.lock().abandoned = true;
        self.notify_all();
    }

    /// The reader has handed input to the core (`ended`: the last of it): the owner may poll
    /// again, and on the end everyone else learns of it too.
    pub(crate) fn handed_in(&self, mut state: MutexGuard<'_, State<M>>, ended: bool) {
        state.wants_input = false;
        drop(state);
        if ended {
            self.notify_all();
        } else {
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

impl<M> State<M> {
    /// Whether the reader has nothing left to do.
    pub(crate) fn reader_done(&self) -> bool {
        self.abandoned || self.conn.is_input_ended()
    }
}
