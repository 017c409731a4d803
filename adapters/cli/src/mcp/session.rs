//! The sessions alive, and the task that joins each one to its program.

use std::collections::{BTreeMap, VecDeque};
use std::future::pending;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use event_listener::{Event as Notify, EventListener};
use futures_lite::future;
use tether_core::streamable::{Session, ToChild};
use tether_core::Message;
use tether_io::{Connection, Event, Recorder, Runtime};

use crate::bridge::{Hub, Place, Program};

/// The sessions taking requests, by id. A session leaves once it stops taking them (so that
/// its id answers 404 from then on), though its program may still be shutting down.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<BTreeMap<String, Arc<Shared>>>,
}

impl Sessions {
    /// The open session `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Shared>> {
        self.map().get(id).cloned()
    }

    pub(super) fn insert(&self, shared: Arc<Shared>) {
        self.map().insert(shared.id.clone(), shared);
    }

    /// Forgets `shared` if it no longer takes requests.
    pub(super) fn prune(&self, shared: &Shared) {
        if !shared.lock().is_open() {
            self.map().remove(&shared.id);
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Shared>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One session, shared by its task and the requests and bodies that use it.
#[derive(Debug)]
pub struct Shared {
    /// The session id.
    pub id: String,
    session: Mutex<Session>,
    /// Notified on every change: bodies wait on it for events, the task for work.
    change: Notify,
}

impl Shared {
    pub(super) fn new(id: String, session: Session) -> Self {
        Shared {
            id,
            session: Mutex::new(session),
            change: Notify::new(),
        }
    }

    /// The session. The lock is held for one call of the state machine, never across a wait.
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes everyone waiting for a change.
    pub fn changed(&self) {
        self.change.notify(usize::MAX);
    }

    /// A wait for the next change.
    pub fn listen(&self) -> EventListener {
        self.change.listen()
    }
}

enum Step {
    Child(Option<Event<Message>>),
    Sent,
    Changed,
    Timer,
    Stop,
}

/// Joins a session to its program until the program has ended: the client's messages go to
/// it, its messages into the session, and the session's decisions (close, idle) are carried
/// out. Holds the session's place in the hub until then. Sending to the program goes on beside
/// reading it, so that a program that answers while it reads is never left blocked.
pub(super) async fn run<R: Runtime>(
    shared: Arc<Shared>,
    mut child: Connection<Message, R>,
    recorder: Option<Recorder>,
    place: Place,
    hub: Arc<Hub>,
    sessions: Arc<Sessions>,
) {
    let mut stopping = false;
    let to_child = child.sender();
    // What the session gave for the program and is not sent yet, in order.
    let mut outgoing: VecDeque<ToChild> = VecDeque::new();
    loop {
        // Listening before looking: a change made after this is not missed.
        let changed = shared.listen();
        outgoing.extend(std::iter::from_fn(|| shared.lock().poll_child()));
        sessions.prune(&shared);
        let (reading, deadline) = {
            let session = shared.lock();
            (session.wants_child_output(), session.poll_timeout())
        };
        let sending = !outgoing.is_empty();
        let step = future::or(
            async {
                if !reading {
                    pending::<()>().await;
                }
                Step::Child(child.recv().await)
            },
            future::or(
                future::or(
                    async {
                        changed.await;
                        Step::Changed
                    },
                    async {
                        if !sending {
                            pending::<()>().await;
                        }
                        // Taken off only once sent, should another step come first.
                        while let Some(work) = outgoing.front() {
                            match work {
                                // Refused only once the program's input is closed; its end
                                // follows.
                                ToChild::Message(message) => drop(to_child.send(message).await),
                                ToChild::Close => to_child.close(),
                            }
                            outgoing.pop_front();
                        }
                        Step::Sent
                    },
                ),
                future::or(
                    async {
                        match deadline {
                            Some(at) => {
                                R::sleep(at.saturating_duration_since(tether_io::now())).await
                            }
                            None => pending().await,
                        }
                        Step::Timer
                    },
                    async {
                        if stopping {
                            pending::<()>().await;
                        }
                        hub.stopping().await;
                        Step::Stop
                    },
                ),
            ),
        )
        .await;
        let now = tether_io::now();
        match step {
            Step::Child(Some(Event::Message(message))) => shared.lock().handle_child(message, now),
            Step::Child(Some(Event::Malformed(malformed))) => {
                tracing::warn!(session = %shared.id, %malformed, "the program wrote a malformed message");
                continue;
            }
            Step::Child(Some(Event::Disconnected(_)) | None) => {
                shared.lock().handle_child_end(now);
                shared.changed();
                sessions.prune(&shared);
                let status = Program::end(&child, recorder.as_ref()).await;
                let dropped = shared.lock().dropped();
                tracing::debug!(session = %shared.id, ?status, dropped, "the session's program ended");
                break;
            }
            Step::Changed | Step::Sent => continue,
            Step::Timer => shared.lock().handle_timeout(now),
            Step::Stop => {
                stopping = true;
                shared.lock().close(now);
            }
        }
        shared.changed();
    }
    drop(place);
}
