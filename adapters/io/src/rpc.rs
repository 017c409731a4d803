//! Requests and responses on top of a connection: `request().await`, notifications, and
//! serving the peer's requests.
//!
//! [`Connection::into_rpc`] hands the connection to a dispatcher task that reads every event,
//! completes pending requests through the core [`Correlator`], and passes everything else —
//! the peer's requests (each with a [`Responder`]), notifications, unmatched responses,
//! malformed frames and the end — to [`Incoming`]. No caller is ever left waiting: a request
//! ends with its response, its deadline, its cancellation (dropping the future) or the
//! connection's end, whichever comes first.

use std::collections::HashMap;
use std::future::pending;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender as ChannelSender, WeakSender};
use event_listener::Event as Notify;
use futures_core::Stream;
use futures_lite::future;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tether_core::{
    Correlator, Disconnect, ErrorObject, ExitStatus, Id, Malformed, Message, Notification, Request,
    Response, RpcError,
};

use crate::{Connection, Event, Runtime, Sender};

/// Builds the notification sent when a request is cancelled, such as MCP's
/// `notifications/cancelled` with `{"requestId": id}`.
pub type CancelNotification = Arc<dyn Fn(&Id) -> Notification + Send + Sync>;

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

/// What the request layer's handles ask of the dispatcher from places that cannot wait.
enum Command {
    Send(Message),
    Cancel(Id),
    Close,
}

/// A way to reach the dispatcher. When the last one (of every client and responder) is gone
/// and `Incoming` is dropped too, the dispatcher lets the connection go; dropping a link wakes
/// it to check.
struct Link {
    commands: Option<ChannelSender<Command>>,
    inner: Arc<Inner>,
}

impl Link {
    fn send(&self, command: Command) {
        if let Some(commands) = &self.commands {
            let _ = commands.try_send(command);
        }
    }
}

impl Clone for Link {
    fn clone(&self) -> Self {
        Link {
            commands: self.commands.clone(),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The sender goes first, so that the woken dispatcher counts without it.
        drop(self.commands.take());
        self.inner.changed.notify(usize::MAX);
    }
}

/// The answer to one of the peer's requests; it must be used once. Dropped unused, it answers
/// `-32603` so that the peer is never left waiting.
pub struct Responder {
    id: Option<Id>,
    link: Link,
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
            self.link
                .send(Command::Send(Response { id, result }.into()));
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let error =
                ErrorObject::new(ErrorObject::INTERNAL_ERROR, "the request was not answered");
            self.link
                .send(Command::Send(Response::error(id, error).into()));
        }
    }
}

/// State shared by the clients and the dispatcher.
struct Inner {
    state: Mutex<State>,
    /// A deadline was added, or the dispatcher finished.
    changed: Notify,
}

struct State {
    correlator: Correlator,
    waiters: HashMap<Id, ChannelSender<Result<Value, RpcError>>>,
    finished: bool,
    exit: Option<ExitStatus>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Hands every completed request its result; returns the ids that timed out, whose peer
    /// should be told to stop.
    fn deliver(&mut self) -> Vec<Id> {
        let mut timed_out = Vec::new();
        while let Some(done) = self.correlator.poll_completion() {
            if done.result == Err(RpcError::TimedOut) {
                timed_out.push(done.id.clone());
            }
            if let Some(waiter) = self.waiters.remove(&done.id) {
                let _ = waiter.try_send(done.result);
            }
        }
        timed_out
    }
}

/// Makes requests and notifications; cloneable, usable from any task.
#[derive(Clone)]
pub struct Client {
    link: Link,
    sender: Sender<Message>,
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
        let (tx, rx) = async_channel::bounded(1);
        let inner = &self.link.inner;
        let request = {
            let mut state = inner.lock();
            let request = state
                .correlator
                .request(Instant::now(), method, params, self.timeout)?;
            state.waiters.insert(request.id.clone(), tx);
            request
        };
        inner.changed.notify(usize::MAX);
        let mut guard = CancelOnDrop {
            id: Some(request.id.clone()),
            link: &self.link,
        };
        if let Err(err) = self.sender.send(&Message::Request(request)).await {
            let mut state = inner.lock();
            if let Some(id) = guard.id.take() {
                state.correlator.cancel(&id);
                state.waiters.remove(&id);
                state.deliver();
            }
            return Err(RpcError::Send(err.to_string()));
        }
        let result = rx.recv().await.unwrap_or(Err(RpcError::Disconnected));
        guard.id = None;
        result
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
        self.sender
            .send(&Notification::new(method, params).into())
            .await
            .map_err(|e| RpcError::Send(e.to_string()))
    }

    /// Closes the connection (for a child, its shutdown ladder) and waits until the dispatcher
    /// has seen the end; returns the child's exit status, if there is a child.
    pub async fn shutdown(&self) -> Option<ExitStatus> {
        self.link.send(Command::Close);
        self.finished().await
    }

    /// Waits until the connection has ended (and a child has been reaped).
    pub async fn finished(&self) -> Option<ExitStatus> {
        loop {
            let listener = self.link.inner.changed.listen();
            {
                let state = self.link.inner.lock();
                if state.finished {
                    return state.exit;
                }
            }
            listener.await;
        }
    }
}

/// Cancels a request whose future is dropped before its answer.
struct CancelOnDrop<'a> {
    id: Option<Id>,
    link: &'a Link,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.link.send(Command::Cancel(id));
        }
    }
}

/// Everything the peer sends that is not an answer to our requests, in order. Poll it, or
/// drop it: while it is neither polled nor dropped, the dispatcher waits, and so does reading.
pub struct Incoming {
    rx: Pin<Box<Receiver<Inbound>>>,
    /// Keeps the way back open for the responders it hands out, even with no client left.
    _link: Link,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Closed before the link drops (and wakes the dispatcher), so that the dispatcher
        // sees no one listening.
        self.rx.close();
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
    /// [`Incoming`] stream of everything else. A dispatcher task on the runtime owns the
    /// connection from now on; once every client, responder and the `Incoming` are dropped,
    /// it drops the connection (and so shuts a child down).
    pub fn into_rpc(self, options: RpcOptions) -> (Client, Incoming) {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                correlator: Correlator::new(),
                waiters: HashMap::new(),
                finished: false,
                exit: None,
            }),
            changed: Notify::new(),
        });
        let (commands, command_rx) = async_channel::unbounded();
        let (inbound, rx) = async_channel::bounded(64);
        let link = Link {
            commands: Some(commands.clone()),
            inner: Arc::clone(&inner),
        };
        let client = Client {
            link: link.clone(),
            sender: self.sender(),
            timeout: options.timeout,
        };
        let dispatcher = Dispatcher {
            inner: Arc::clone(&inner),
            commands: commands.downgrade(),
            command_rx,
            inbound,
            cancel: options.cancel,
        };
        drop(commands);
        R::spawn(dispatcher.run(self));
        let rx = Box::pin(rx);
        (client, Incoming { rx, _link: link })
    }
}

/// The task that owns a connection in request mode.
struct Dispatcher {
    inner: Arc<Inner>,
    /// For the responders it creates; weak, so that the channel closes with the last client.
    commands: WeakSender<Command>,
    command_rx: Receiver<Command>,
    inbound: ChannelSender<Inbound>,
    cancel: Option<CancelNotification>,
}

enum Step {
    Event(Option<Event<Message>>),
    Command(Option<Command>),
    Tick,
}

impl Dispatcher {
    async fn run<R: Runtime>(self, mut conn: Connection<Message, R>) {
        loop {
            let commands_open = !self.command_rx.is_closed() || !self.command_rx.is_empty();
            if !commands_open && self.inbound.is_closed() {
                // No one can ask for anything or hear anything: let the connection go.
                break;
            }
            let changed = self.inner.changed.listen();
            let deadline = self.inner.lock().correlator.poll_timeout();
            let step = future::or(
                async { Step::Event(conn.recv().await) },
                future::or(
                    async {
                        if !commands_open {
                            pending::<()>().await;
                        }
                        Step::Command(self.command_rx.recv().await.ok())
                    },
                    async {
                        match deadline {
                            Some(d) => {
                                future::or(
                                    R::sleep(d.saturating_duration_since(Instant::now())),
                                    changed,
                                )
                                .await
                            }
                            None => changed.await,
                        }
                        Step::Tick
                    },
                ),
            )
            .await;
            match step {
                Step::Event(Some(Event::Message(message))) => self.route(&conn, message).await,
                Step::Event(Some(Event::Malformed(malformed))) => {
                    let _ = self.inbound.send(Inbound::Malformed(malformed)).await;
                }
                Step::Event(Some(Event::Disconnected(reason))) => {
                    {
                        let mut state = self.inner.lock();
                        state.correlator.handle_disconnect();
                        state.deliver();
                    }
                    let _ = self.inbound.send(Inbound::Disconnected(reason)).await;
                    conn.close();
                    break;
                }
                Step::Event(None) => break,
                Step::Command(Some(Command::Send(message))) => {
                    let _ = conn.send(&message).await;
                }
                Step::Command(Some(Command::Cancel(id))) => {
                    let cancelled = {
                        let mut state = self.inner.lock();
                        let cancelled = state.correlator.cancel(&id);
                        state.waiters.remove(&id);
                        state.deliver();
                        cancelled
                    };
                    if let (true, Some(build)) = (cancelled, &self.cancel) {
                        let _ = conn.send(&build(&id).into()).await;
                    }
                }
                Step::Command(Some(Command::Close)) => conn.close(),
                // Every client and responder is gone; the loop's check takes it from here.
                Step::Command(None) => {}
                Step::Tick => {
                    let timed_out = {
                        let mut state = self.inner.lock();
                        state.correlator.handle_timeout(Instant::now());
                        state.deliver()
                    };
                    if let Some(build) = &self.cancel {
                        for id in timed_out {
                            let _ = conn.send(&build(&id).into()).await;
                        }
                    }
                }
            }
        }
        self.inbound.close();
        let exit = conn.wait().await;
        let mut state = self.inner.lock();
        state.correlator.handle_disconnect();
        state.deliver();
        state.finished = true;
        state.exit = exit;
        drop(state);
        self.inner.changed.notify(usize::MAX);
    }

    async fn route<R: Runtime>(&self, conn: &Connection<Message, R>, message: Message) {
        match message {
            Message::Response(response) => {
                let unmatched = {
                    let mut state = self.inner.lock();
                    let unmatched = state.correlator.handle_response(response);
                    state.deliver();
                    unmatched
                };
                if let Some(response) = unmatched {
                    let _ = self.inbound.send(Inbound::Unmatched(response)).await;
                }
            }
            Message::Request(request) => {
                let responder = Responder {
                    id: Some(request.id.clone()),
                    link: Link {
                        commands: self.commands.upgrade(),
                        inner: Arc::clone(&self.inner),
                    },
                };
                if let Err(err) = self
                    .inbound
                    .send(Inbound::Request(request, responder))
                    .await
                {
                    // No one serves requests: answer for them rather than leave the peer
                    // waiting.
                    if let Inbound::Request(request, mut responder) = err.into_inner() {
                        responder.id = None;
                        let error = ErrorObject::new(
                            ErrorObject::METHOD_NOT_FOUND,
                            format!("no handler for {}", request.method),
                        );
                        let _ = conn.send(&Response::error(request.id, error).into()).await;
                    }
                }
            }
            Message::Notification(notification) => {
                let _ = self.inbound.send(Inbound::Notification(notification)).await;
            }
            Message::Batch(items) => {
                for item in items {
                    Box::pin(self.route(conn, item)).await;
                }
            }
        }
    }
}
