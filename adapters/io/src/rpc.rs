//! Requests and responses on top of a connection: `request().await`, notifications, and
//! serving the peer's requests.
//!
//! Every decision is the endpoint's request layer ([`tether_core::Endpoint::serve`]): which
//! response completes which request, deadlines and the cancel notifications that follow them,
//! `-32601` for requests nobody serves, `-32603` for a dropped responder, a batch answered as
//! one array. This module only wakes whoever waits: [`Connection::into_rpc`] hands the
//! connection to a task that reads its events and passes everything that is not an answer to
//! our requests — the peer's requests (each with a [`Responder`]), notifications, unmatched
//! responses, malformed frames and the end — to [`Incoming`].

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_channel::{Receiver, Sender as ChannelSender};
use event_listener::Event as Notify;
use futures_core::Stream;
use futures_lite::future;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tether_core::{Disconnect, ErrorObject, ExitStatus, Id, Malformed, Message, Notification};
use tether_core::{Request, Response, RpcError};

use crate::shared::Shared;
use crate::{clock, Connection, Event, Runtime};

pub use tether_core::CancelNotification;

/// How the request layer behaves.
#[derive(Clone, Default)]
pub struct RpcOptions {
    timeout: Option<Duration>,
    cancel: Option<CancelNotification>,
}

impl std::fmt::Debug for RpcOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcOptions")
            .field("timeout", &self.timeout)
            .field("cancel", &self.cancel.is_some())
            .finish()
    }
}

impl RpcOptions {
    /// No deadline, no cancel notification.
    pub fn new() -> Self {
        RpcOptions::default()
    }

    /// Every request fails with [`RpcError::TimedOut`] unless answered within `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends this notification to the peer when a request is given up: its future dropped
    /// before the answer, or its deadline passed.
    pub fn cancel_notification(
        mut self,
        build: impl Fn(&Id) -> Notification + Send + Sync + 'static,
    ) -> Self {
        self.cancel = Some(Arc::new(build));
        self
    }
}

/// Something the peer sent that is not a response to one of our requests.
#[derive(Debug)]
#[non_exhaustive]
pub enum Inbound {
    /// A request: answer it through the responder (dropping it answers `-32603`).
    Request(Request, Responder),
    /// A notification.
    Notification(Notification),
    /// A response to no request of ours: an unknown id, or a second answer.
    Unmatched(Response),
    /// A frame that was not a message.
    Malformed(Malformed),
    /// The connection ended; every pending request has failed with
    /// [`RpcError::Disconnected`]. Nothing follows.
    Disconnected(Option<Disconnect>),
}

/// The end of the request layer: whether it is over, and how a child ended; and whether
/// anyone is left to use it.
#[derive(Debug, Default)]
struct Finish {
    state: Mutex<Option<Option<ExitStatus>>>,
    clients_gone: AtomicBool,
    changed: Notify,
}

/// Held by every clone of a [`Client`]: the last one to go tells the dispatcher.
#[derive(Debug)]
struct Handle {
    finish: Arc<Finish>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.finish.clients_gone.store(true, Ordering::Release);
        self.finish.changed.notify(usize::MAX);
    }
}

/// The answer to one of the peer's requests; it must be used once. Dropped unused, it answers
/// `-32603` so that the peer is never left waiting.
pub struct Responder {
    id: Option<Id>,
    shared: Arc<Shared<Message>>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("id", &self.id).finish()
    }
}

impl Responder {
    /// The id of the request being answered.
    pub fn id(&self) -> &Id {
        self.id.as_ref().expect("a responder is used once")
    }

    /// Answers with a result or an error.
    pub fn respond(mut self, result: Result<Value, ErrorObject>) {
        if let Some(id) = self.id.take() {
            let mut state = self.shared.lock();
            let _ = state.ep.respond(id, result);
            self.shared.wake(&mut state);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let mut state = self.shared.lock();
            state.ep.decline(id);
            self.shared.wake(&mut state);
        }
    }
}

/// Makes requests and notifications; cloneable, usable from any task.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared<Message>>,
    handle: Arc<Handle>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Sends a request and waits for its result. Dropping the future cancels the request.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        let shared = &*self.shared;
        // Wait for room in the send budget, as a send would.
        shared
            .wait_for(&shared.progress, |s| {
                s.ep.can_send() || s.ep.is_input_ended() || s.abandoned
            })
            .await;
        let id = {
            let mut state = shared.lock();
            if state.abandoned {
                return Err(RpcError::Disconnected);
            }
            let id = state
                .ep
                .request(method, params, self.timeout, clock::now())?;
            shared.wake(&mut state);
            id
        };
        let mut guard = CancelOnDrop {
            id: Some(id),
            shared,
        };
        let id = guard.id.as_ref().expect("set above");
        let mut result = None;
        shared
            .wait_for(&shared.progress, |s| {
                result = s.ep.take_result(id);
                result.is_some() || s.abandoned
            })
            .await;
        guard.id = None;
        result.unwrap_or(Err(RpcError::Disconnected))
    }

    /// Sends a request and decodes its result as `T`.
    pub async fn request_as<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<T, RpcError> {
        let value = self.request(method, params).await?;
        serde_json::from_value(value).map_err(|e| RpcError::Decode(e.to_string()))
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), RpcError> {
        crate::connection::send(&self.shared, &Notification::new(method, params).into())
            .await
            .map_err(|e| RpcError::Send(e.to_string()))
    }

    /// Closes the connection (for a child, its shutdown ladder) and waits until it has ended;
    /// returns the child's exit status, if there is a child.
    pub async fn shutdown(&self) -> Option<ExitStatus> {
        self.shared.handle(|ep, now| ep.close(now));
        self.finished().await
    }

    /// Waits until the connection has ended (and a child has been reaped).
    pub async fn finished(&self) -> Option<ExitStatus> {
        loop {
            let finish = &self.handle.finish;
            let listener = finish.changed.listen();
            if let Some(exit) = *finish.state.lock().unwrap_or_else(PoisonError::into_inner) {
                return exit;
            }
            listener.await;
        }
    }
}

/// Cancels a request whose future is dropped before its answer.
struct CancelOnDrop<'a> {
    id: Option<Id>,
    shared: &'a Shared<Message>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let mut state = self.shared.lock();
            state.ep.cancel(&id);
            self.shared.wake(&mut state);
        }
    }
}

/// Everything the peer sends that is not an answer to our requests, in order. Poll it, or
/// drop it: while it is neither polled nor dropped, reading waits; once it is dropped, the
/// peer's requests are answered `-32601`.
pub struct Incoming {
    rx: Pin<Box<Receiver<Inbound>>>,
    shared: Arc<Shared<Message>>,
    finish: Arc<Finish>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.shared.lock().ep.set_serving(false);
        self.rx.close();
        self.finish.changed.notify(usize::MAX);
    }
}

impl Incoming {
    /// The next item, or `None` after `Disconnected`.
    pub async fn next(&mut self) -> Option<Inbound> {
        self.rx.recv().await.ok()
    }
}

impl Stream for Incoming {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        self.rx.as_mut().poll_next(cx)
    }
}

impl<R: Runtime> Connection<Message, R> {
    /// Turns the connection into a request layer: a [`Client`] to make requests and an
    /// [`Incoming`] stream of everything else. A task on the runtime owns the connection from
    /// now on; once every client and the `Incoming` are dropped, it drops the connection (and
    /// so shuts a child down).
    pub fn into_rpc(self, options: RpcOptions) -> (Client, Incoming) {
        let shared = self.shared();
        shared.lock().ep.serve(options.cancel);
        let finish = Arc::new(Finish::default());
        let (inbound, rx) = async_channel::bounded(64);
        let client = Client {
            shared: Arc::clone(&shared),
            handle: Arc::new(Handle {
                finish: Arc::clone(&finish),
            }),
            timeout: options.timeout,
        };
        R::spawn(dispatch(self, inbound, Arc::clone(&finish)));
        let incoming = Incoming {
            rx: Box::pin(rx),
            shared,
            finish,
        };
        (client, incoming)
    }
}

/// Reads the connection's events and hands them to `Incoming`, until the end or until no one
/// is left to ask or to hear.
async fn dispatch<R: Runtime>(
    mut conn: Connection<Message, R>,
    inbound: ChannelSender<Inbound>,
    finish: Arc<Finish>,
) {
    let shared = conn.shared();
    loop {
        // With every client and the `Incoming` gone, no one can ask for anything or hear
        // anything.
        let changed = finish.changed.listen();
        if inbound.is_closed() && finish.clients_gone.load(Ordering::Acquire) {
            break;
        }
        let event = future::or(async { Some(conn.recv().await) }, async {
            changed.await;
            None
        })
        .await;
        let Some(event) = event else { continue };
        let items = match event {
            Some(Event::Message(message)) => route(message, &shared),
            Some(Event::Malformed(malformed)) => vec![Inbound::Malformed(malformed)],
            Some(Event::Disconnected(reason)) => vec![Inbound::Disconnected(reason)],
            None => break,
        };
        for item in items {
            // Dropped unheard when no one listens: a request's responder then declines it.
            let _ = inbound.send(item).await;
        }
    }
    inbound.close();
    let exit = conn.wait().await;
    drop(conn);
    *finish.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(exit);
    finish.changed.notify(usize::MAX);
}

/// Splits what the endpoint delivered into items: a batch's members one by one.
fn route(message: Message, shared: &Arc<Shared<Message>>) -> Vec<Inbound> {
    match message {
        Message::Request(request) => {
            let responder = Responder {
                id: Some(request.id.clone()),
                shared: Arc::clone(shared),
            };
            vec![Inbound::Request(request, responder)]
        }
        Message::Notification(notification) => vec![Inbound::Notification(notification)],
        Message::Response(response) => vec![Inbound::Unmatched(response)],
        Message::Batch(items) => items
            .into_iter()
            .flat_map(|item| route(item, shared))
            .collect(),
    }
}
