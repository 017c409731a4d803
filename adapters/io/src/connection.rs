//! The connection an owner holds: events in, messages out, and the child's lifetime.

use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::client::Request as ClientRequest;
use async_tungstenite::tungstenite::handshake::server::{Callback, NoCallback};
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::WebSocketStream;
use event_listener::EventListener;
use futures_core::Stream;
use futures_io::{AsyncRead, AsyncWrite};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tether_core::{
    CloseReason, Endpoint, Event, ExitStatus, Framing, Message, SendError, Verbatim,
};
use tracing::Instrument;

use crate::process::contain::Mechanism;
use crate::process::{self, EndReport, Lifetime, Respawn, RestartReport, TAIL_WAIT};
use crate::runtime::{Io, Runtime};
use crate::shared::{Child, Generation, Reader, Reading, Shared, Writer};
use crate::{clock, stream, ws, Error, Options};

/// A JSON-RPC connection driven by the runtime `R`: over a child process, a socket, a
/// websocket or any pair of byte streams.
///
/// Events arrive through [`recv`](Self::recv) (or the [`Stream`] implementation) in order,
/// ending with exactly one [`Event::Disconnected`]. Reading is full duplex: a task of the
/// connection reads while the owner is busy or waiting to send, into a bounded read-ahead
/// (the options' frame limit and read-ahead); only a full read-ahead stops reading, and the
/// peer is then held back by its own full pipe or socket. Messages go out through
/// [`send`](Self::send) or a cloned [`Sender`].
///
/// For a child process, the connection owns the child: [`shutdown`](Self::shutdown) runs the
/// ladder and returns the exit status, and dropping the connection starts the same ladder
/// without needing the runtime, so the child, its process group and its zombie never outlive
/// it.
pub struct Connection<M, R>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    shared: Arc<Shared<M>>,
    listener: Option<EventListener>,
    /// The containment in force for a child.
    containment: Option<Mechanism>,
    label: String,
    _runtime: PhantomData<fn() -> R>,
}

impl<M, R> std::fmt::Debug for Connection<M, R>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("label", &self.label)
            .field("pid", &self.shared.process().as_ref().map(|p| p.pid()))
            .finish_non_exhaustive()
    }
}

impl<M, R> Connection<M, R>
where
    M: Serialize + DeserializeOwned + Send + 'static,
    R: Runtime,
{
    /// The connection's endpoint and shared state, with what its actions act on for a child.
    fn new(
        options: &Options,
        framing: Framing,
        default_label: String,
        child: Option<Child>,
    ) -> Result<(Self, tracing::Span), Error> {
        let label = options.label.clone().unwrap_or(default_label);
        let config = options.config_for(framing, label.clone());
        let now = clock::now();
        let ep = match child {
            Some(_) => Endpoint::for_child(config, now)?,
            None => Endpoint::new(config, now)?,
        };
        let span = tracing::debug_span!("tether", label = %label);
        let shared = Arc::new(Shared::new(ep, child));
        R::spawn(shared.timer::<R>().instrument(span.clone()));
        let this = Connection {
            shared,
            listener: None,
            containment: None,
            label,
            _runtime: PhantomData,
        };
        Ok((this, span))
    }

    fn start_stream(
        self,
        span: tracing::Span,
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Self {
        let shared = Arc::clone(&self.shared);
        span.in_scope(|| tracing::debug!("connection open"));
        shared.set_writer(Writer::new(writer));
        shared.set_reader(Reader::new(reader));
        R::spawn(stream::write(Arc::clone(&shared)).instrument(span.clone()));
        R::spawn(stream::read(shared).instrument(span));
        self
    }

    /// A connection over any reader and writer, with the framing from `options`.
    pub fn from_io(
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
        options: Options,
    ) -> Result<Self, Error> {
        let (this, span) = Self::new(&options, options.stream_framing(), "io".to_owned(), None)?;
        Ok(this.start_stream(span, reader, writer))
    }

    /// Spawns `command` in its own process group and speaks to it over its stdin and stdout.
    /// Must be called from within the runtime.
    pub fn spawn(mut command: Command, options: Options) -> Result<Self, Error> {
        let program = command.get_program().to_string_lossy().into_owned();
        let spawn_error = |source| Error::Spawn {
            program: program.clone(),
            source,
        };
        // Checked before spawning: nothing may fail between the spawn and the watch.
        options
            .config_for(options.stream_framing(), program.clone())
            .validate()?;
        // Remembered before the spawn, to start it again if a restart policy asks.
        let respawn = (options.core().restart.mode != tether_core::RestartMode::Never)
            .then(|| Respawn::new(&command, options.child.clone(), program.clone()));
        let spawned =
            process::spawn(&mut command, &options.child, &program).map_err(spawn_error)?;
        let mut process = spawned.process;
        let pid = process.pid();
        let label = format!("{program} (pid {pid})");
        let containment = spawned.container.mechanism();
        let child = Child::new(Generation {
            pgid: pid,
            tail: process.tail(),
            container: Some(spawned.container),
            limits: Some(spawned.limits),
        });
        let (mut this, span) = Self::new(&options, options.stream_framing(), label, Some(child))?;
        this.containment = Some(containment);
        if let Some(respawn) = respawn {
            let _ = this.shared.respawn.set(respawn);
            // Starts the next child whenever a restart's delay has passed.
            R::spawn(process::supervise::<M, R>(this.shared()).instrument(span.clone()));
        }
        let lifetime: Arc<dyn Lifetime> = this.shared.clone();
        process.watch(lifetime).map_err(spawn_error)?;
        *this.shared.process() = Some(process);
        let reader = R::pipe_reader(spawned.stdout).map_err(spawn_error)?;
        let writer = R::pipe_writer(spawned.stdin).map_err(spawn_error)?;
        Ok(this.start_stream(span, reader, writer))
    }

    /// Connects to `addr` (`host:port`) over TCP.
    pub async fn connect_tcp(addr: &str, options: Options) -> Result<Self, Error> {
        let stream = R::connect_tcp(addr)
            .await
            .map_err(|source| Error::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        Self::from_stream_labelled(stream, options, format!("tcp:{addr}"))
    }

    /// Connects to the Unix socket at `path`.
    #[cfg(unix)]
    pub async fn connect_unix(
        path: impl AsRef<std::path::Path>,
        options: Options,
    ) -> Result<Self, Error> {
        let path = path.as_ref();
        let stream = R::connect_unix(path)
            .await
            .map_err(|source| Error::Connect {
                addr: path.display().to_string(),
                source,
            })?;
        Self::from_stream_labelled(stream, options, format!("unix:{}", path.display()))
    }

    /// A connection over one bidirectional byte stream (a socket), labelled with the
    /// options' label, else `stream`.
    pub fn from_stream(stream: impl Io, options: Options) -> Result<Self, Error> {
        Self::from_stream_labelled(stream, options, "stream".to_owned())
    }

    /// [`from_stream`](Self::from_stream), with the label to use unless the options set one.
    pub(crate) fn from_stream_labelled(
        stream: impl Io,
        options: Options,
        default_label: String,
    ) -> Result<Self, Error> {
        let (this, span) = Self::new(&options, options.stream_framing(), default_label, None)?;
        let (reader, writer) = futures_lite::io::split(stream);
        Ok(this.start_stream(span, reader, writer))
    }

    /// Connects to a websocket server at `url` (`ws://HOST:PORT/PATH`).
    pub async fn connect_ws(url: &str, options: Options) -> Result<Self, Error> {
        let request = url
            .into_client_request()
            .map_err(|_| Error::Url(url.to_owned()))?;
        Self::connect_ws_with(request, options).await
    }

    /// Connects to a websocket server with a handshake request of the caller's: its URI
    /// (`ws://HOST:PORT/PATH`) says where, and its headers go with the handshake (an
    /// `Authorization`, say). Build it with
    /// [`IntoClientRequest`](async_tungstenite::tungstenite::client::IntoClientRequest) on the
    /// URL, which fills in the websocket headers, then add yours.
    pub async fn connect_ws_with(request: ClientRequest, options: Options) -> Result<Self, Error> {
        let url = request.uri().to_string();
        let host = match (request.uri().scheme_str(), request.uri().host()) {
            (Some("ws"), Some(host)) if !host.is_empty() => {
                format!("{host}:{}", request.uri().port_u16().unwrap_or(80))
            }
            _ => return Err(Error::Url(url)),
        };
        let stream = R::connect_tcp(&host)
            .await
            .map_err(|source| Error::Connect {
                addr: url.clone(),
                source,
            })?;
        let config = options.websocket_config();
        let (ws, _) = async_tungstenite::client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| Error::Handshake {
                addr: url.clone(),
                detail: e.to_string(),
            })?;
        let label = format!("ws:{url}");
        Self::from_ws_labelled(ws, options, label)
    }

    /// Completes the server side of a websocket handshake on an accepted stream, labelled
    /// with the options' label, else `ws`.
    pub async fn accept_ws(stream: impl Io, options: Options) -> Result<Self, Error> {
        Self::accept_ws_with(stream, options, NoCallback).await
    }

    /// [`accept_ws`](Self::accept_ws), with `check` called on the client's handshake request
    /// once it is read and valid: it returns the response to send (with headers of its own if
    /// it likes), or an error response (a status of 400 or more, and a body) that refuses the
    /// handshake, which then fails with [`Error::Handshake`].
    pub async fn accept_ws_with(
        stream: impl Io,
        options: Options,
        check: impl Callback + Unpin,
    ) -> Result<Self, Error> {
        let label = options.label.clone().unwrap_or_else(|| "ws".to_owned());
        let config = options.websocket_config();
        let ws = async_tungstenite::accept_hdr_async_with_config(stream, check, Some(config))
            .await
            .map_err(|e| Error::Handshake {
                addr: label.clone(),
                detail: e.to_string(),
            })?;
        Self::from_ws_labelled(ws, options, label)
    }

    /// A connection over an established websocket, labelled with the options' label, else
    /// `ws`. Its size limits should match `options` (the constructors above see to that).
    pub fn from_ws(ws: WebSocketStream<impl Io>, options: Options) -> Result<Self, Error> {
        Self::from_ws_labelled(ws, options, "ws".to_owned())
    }

    fn from_ws_labelled(
        ws: WebSocketStream<impl Io>,
        options: Options,
        default_label: String,
    ) -> Result<Self, Error> {
        let (this, span) = Self::new(&options, Framing::Messages, default_label, None)?;
        span.in_scope(|| tracing::debug!("websocket open"));
        R::spawn(ws::run::<M, _>(Arc::clone(&this.shared), ws).instrument(span));
        Ok(this)
    }

    /// A websocket over a raw stream whose handshake happened elsewhere.
    pub async fn from_raw_ws(stream: impl Io, role: Role, options: Options) -> Result<Self, Error> {
        let ws =
            WebSocketStream::from_raw_socket(stream, role, Some(options.websocket_config())).await;
        Self::from_ws(ws, options)
    }

    /// The next event, or `None` after `Disconnected` has been delivered.
    pub async fn recv(&mut self) -> Option<Event<M>> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event<M>>> {
        loop {
            {
                let mut state = self.shared.lock();
                let event = state.ep.poll_event();
                // Taking an event may make room in the read-ahead: the reader is woken then.
                self.shared.wake(&mut state);
                if let Some(event) = event {
                    if !state.ep.can_send() && state.reading == Reading::Owner {
                        // The owner leaves with an event while a send may wait for room: the
                        // reader task reads meanwhile, whatever the owner does next.
                        drop(state);
                        self.shared.hand_reading_over();
                        state = self.shared.lock();
                    }
                    if matches!(event, Event::Disconnected(_)) {
                        // Senders now fail, and the writer may finish.
                        self.shared.settle(state);
                    }
                    return Poll::Ready(Some(event));
                }
                if state.ep.is_closed() {
                    return Poll::Ready(None);
                }
                // Receiving: the owner reads, from here.
                state.reading = Reading::Owner;
            }
            // The endpoint has nothing: read more, here, on the owner's own task.
            if stream::poll_read(&self.shared, cx, Reading::Owner) == Poll::Ready(true) {
                continue;
            }
            // About to wait, most likely for an answer to what was just sent: whatever is
            // still queued goes out from here if nobody is writing, rather than wait for the
            // writer task to wake.
            stream::before_wait(&self.shared, cx);
            // About to wait: listen, then look once more, so no wake-up is lost.
            match self.listener.as_mut() {
                None => self.listener = Some(self.shared.events.listen()),
                Some(listener) => {
                    if Pin::new(listener).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.listener = None;
                }
            }
        }
    }

    /// The state shared with the connection's tasks, for the request layer.
    pub(crate) fn shared(&self) -> Arc<Shared<M>> {
        Arc::clone(&self.shared)
    }

    /// A handle for sending from other tasks.
    pub fn sender(&self) -> Sender<M> {
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Encodes and queues `message`, waiting while the send budget is used up.
    pub async fn send(&self, message: &M) -> Result<(), SendError> {
        send(&self.shared, message).await
    }

    /// Completes once the connection has ended (end of stream, read or write failure): no
    /// more messages will arrive beyond those already buffered, and sends will fail.
    pub async fn closed(&self) {
        closed(&self.shared).await;
    }

    /// Starts an orderly close and returns at once; events keep arriving until the end. For a
    /// child this starts the goodbye (if configured) and the shutdown ladder (its first step
    /// closes the child's stdin once everything queued is written); otherwise the write half
    /// is closed once the queue is written, and the peer gets the close timeout to end.
    /// Calling it again changes nothing.
    pub fn close(&self) {
        self.close_because(CloseReason::Normal);
    }

    /// Like [`close`](Self::close), with the status code and reason of the websocket Close
    /// frame this side sends (`close` sends 1000, a normal closure; 1011 is an internal
    /// error). Other transports have no such frame and close as with `close`.
    pub fn close_with(&self, code: u16, reason: &str) {
        self.close_because(CloseReason::Custom(code, reason.to_owned()));
    }

    /// Like [`close`](Self::close), saying why; the endpoint chooses the websocket Close
    /// frame's code and reason from it.
    pub fn close_because(&self, reason: CloseReason) {
        self.shared.handle(|ep, now| ep.close_with(reason, now));
    }

    /// Closes, reads (and drops) the remaining events, and for a child waits until it has
    /// exited, its group has been killed and it has been reaped. The endpoint bounds the wait
    /// for the peer's end: the close timeout for a socket, the ladder and then the close
    /// timeout after its exit for a child.
    pub async fn shutdown(mut self) -> Option<ExitStatus> {
        self.close();
        while self.recv().await.is_some() {}
        self.wait().await
    }

    /// The current child's process id (also its process group id), for a child connection;
    /// a restart changes it.
    pub fn pid(&self) -> Option<u32> {
        self.shared.process().as_ref().map(|p| p.pid())
    }

    /// How a child's whole tree is reached at the end: its cgroup, the subreaper sweep, or
    /// its process group alone; `None` if there is no child.
    pub fn containment(&self) -> Option<Mechanism> {
        self.containment
    }

    /// The child's descendants that outlived the kill of its tree (its containment could not
    /// end them in the time it had): empty when the whole tree is gone, and always empty for
    /// the process group alone, which cannot tell. Complete once [`wait`](Self::wait) or
    /// [`shutdown`](Self::shutdown) has returned.
    pub fn survivors(&self) -> Vec<u32> {
        self.shared
            .process()
            .as_ref()
            .map(|p| p.survivors())
            .unwrap_or_default()
    }

    /// How the current child exited, once it has been reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.process().as_ref().and_then(|p| p.exit_status())
    }

    /// Waits for the child to exit and be reaped (without asking it to), and for no restart
    /// to follow: with a restart policy, the last child; `None` if there is no child.
    ///
    /// The child's output is read meanwhile, as while a send waits: a child that writes
    /// before it exits would otherwise block on a full pipe and never exit, and its end of
    /// output, unread, would be taken for output left open after the exit.
    pub async fn wait(&self) -> Option<ExitStatus> {
        self.shared.process().as_ref()?;
        self.shared.hand_reading_over();
        loop {
            let (pid, reaped) = {
                let process = self.shared.process();
                let process = process.as_ref()?;
                (process.pid(), process.reaped())
            };
            let status = reaped.wait().await;
            // Its end is decided before its reap: a restart, if one follows, is pending now.
            self.shared
                .wait_for(&self.shared.progress, |s| {
                    !s.ep.is_restarting() || s.abandoned
                })
                .await;
            if self.pid() == Some(pid) {
                return Some(status);
            }
        }
    }

    /// How the last child ended, once that end is final (no restart follows): why, its
    /// status, and the last 4 KiB of its standard error when captured. `None` before, and for
    /// a connection without a child. Complete once [`wait`](Self::wait) has returned.
    pub fn end(&self) -> Option<EndReport> {
        let end = self.shared.lock().ep.end()?;
        let stderr_tail = self
            .shared
            .process()
            .as_ref()
            .and_then(|p| p.stderr_tail(TAIL_WAIT));
        Some(EndReport {
            cause: end.cause,
            status: end.status,
            stderr_tail,
        })
    }

    /// A handle that reports this connection's restarts as they are decided.
    pub fn restarts(&self) -> Restarts<M> {
        Restarts {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whether a close has been asked for (by the owner, a linger or an idle timeout).
    pub fn is_closing(&self) -> bool {
        self.shared.lock().ep.is_closing()
    }

    /// Skips the remaining grace periods of a close: a child's group is killed now; any
    /// other peer is closed as with [`close`](Self::close).
    pub fn kill(&self) {
        self.shared.handle(|ep, now| ep.kill(now));
    }

    /// The connection's label.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl<M, R> Stream for Connection<M, R>
where
    M: Serialize + DeserializeOwned + Send + 'static,
    R: Runtime,
{
    type Item = Event<M>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<M>>> {
        self.get_mut().poll_event(cx)
    }
}

impl<M, R> Drop for Connection<M, R>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    fn drop(&mut self) {
        // The endpoint closes (for a child, the ladder starts) and the I/O tasks, if the
        // runtime still runs them, stop and release the transport; a thread of the process
        // layer fires the rest of the ladder, with no runtime needed.
        self.shared.abandon();
        let process = self.shared.process().take();
        if let Some(process) = process {
            let lifetime: Arc<dyn Lifetime> = self.shared.clone();
            process.take_over(lifetime);
        }
    }
}

/// Sessions that send messages typed elsewhere (the `tether` command's standard input) and
/// want to end once every request has been answered.
impl<R: Runtime> Connection<Message, R> {
    /// Tracks the requests sent through [`Sender::send_tracked`], for
    /// [`finish`](Self::finish); every message is still delivered as an event.
    pub fn track_requests(&self) {
        self.shared.lock().ep.track_requests();
    }

    /// Nothing more will be sent: close once every tracked request has been answered, or
    /// after `linger`.
    pub fn finish(&self, linger: std::time::Duration) {
        self.shared.handle(|ep, now| ep.finish(linger, now));
    }
}

/// The restarts of a child connection, reported as they are decided (before each delay). See
/// [`Connection::restarts`].
pub struct Restarts<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for Restarts<M> {
    fn clone(&self) -> Self {
        Restarts {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> std::fmt::Debug for Restarts<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restarts").finish_non_exhaustive()
    }
}

impl<M> Restarts<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// The next restart, in order; `None` once the connection has ended (or its owner left)
    /// and every restart decided has been handed out.
    pub async fn next(&self) -> Option<RestartReport> {
        loop {
            let listener = self.shared.restarted.listen();
            if let Some(report) = self.try_next() {
                return Some(report);
            }
            {
                let state = self.shared.lock();
                // Over: no restart can be decided any more, and every one decided is out.
                let over = (state.abandoned
                    || state.ep.end().is_some()
                    || (state.ep.is_closed() && !state.ep.is_restarting()))
                    && state.reporting == 0
                    && !state.ep.has_restart_report();
                if over {
                    drop(state);
                    // A report made just before the end is still handed out.
                    return self.try_next();
                }
            }
            listener.await;
        }
    }

    /// The next restart already reported, if any.
    pub fn try_next(&self) -> Option<RestartReport> {
        self.shared
            .restarts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }
}

/// A cloneable handle that sends on a connection from any task.
pub struct Sender<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for Sender<M> {
    fn clone(&self) -> Self {
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M> std::fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender<Message> {
    /// [`Connection::finish`], from any task.
    pub fn finish(&self, linger: std::time::Duration) {
        self.shared.handle(|ep, now| ep.finish(linger, now));
    }

    /// Sends `message` (waiting while the send budget is used up) and tracks its requests,
    /// for [`Connection::finish`].
    pub async fn send_tracked(&self, message: &Message) -> Result<(), SendError> {
        send_with(&self.shared, |ep| ep.send_tracked(message)).await
    }

    /// Sends a message as the bytes it was written in ([`Verbatim`]), waiting while the send
    /// budget is used up, and tracks its requests as [`send_tracked`](Self::send_tracked)
    /// does: a relay forwards what it was given without decoding it and encoding it again.
    pub async fn send_verbatim(&self, message: &Verbatim) -> Result<(), SendError> {
        send_with(&self.shared, |ep| ep.send_verbatim(message)).await
    }

    /// Sends `messages` in order as [`send_verbatim`](Self::send_verbatim) sends each, but
    /// queues as many as the send budget takes under one lock and hands them to the writer
    /// together: a relay with lines by the hundred pays for one lock and one wake of the
    /// writer per batch, not per message. Waits while the budget is used up, as
    /// `send_verbatim` does, before each message that finds it so.
    ///
    /// On an error, the messages before the one refused were sent, and none after it; the
    /// error comes with how many were sent.
    pub async fn send_verbatim_all(&self, messages: &[Verbatim]) -> Result<(), (usize, SendError)> {
        let mut sent = 0;
        while sent < messages.len() {
            let queued = send_with(&self.shared, |ep| {
                // The first waits for room; the rest go while there is room. An error on one
                // of them is met again as the first of the next round, and returned then.
                sent += ep.send_verbatim_many(&messages[sent..])?;
                Ok(())
            })
            .await;
            if let Err(err) = queued {
                return Err((sent, err));
            }
        }
        Ok(())
    }
}

impl<M> Sender<M>
where
    M: Serialize + DeserializeOwned + Send + 'static,
{
    /// Encodes and queues `message`, waiting while the send budget is used up. Fails at once
    /// if the message cannot be encoded, after a close, or once the connection has ended.
    pub async fn send(&self, message: &M) -> Result<(), SendError> {
        send(&self.shared, message).await
    }

    /// Queues `message` without waiting: [`SendError::Full`] if the budget is used up.
    pub fn try_send(&self, message: &M) -> Result<(), SendError> {
        let mut state = self.shared.lock();
        if state.abandoned {
            return Err(SendError::Disconnected);
        }
        state.ep.send(message)?;
        stream::queued_detached(&self.shared, state);
        Ok(())
    }

    /// Completes once the connection has ended.
    pub async fn closed(&self) {
        closed(&self.shared).await;
    }

    /// [`Connection::close`], from any task.
    pub fn close(&self) {
        self.close_because(CloseReason::Normal);
    }

    /// [`Connection::close_because`], from any task.
    pub fn close_because(&self, reason: CloseReason) {
        self.shared.handle(|ep, now| ep.close_with(reason, now));
    }

    /// [`Connection::kill`], from any task.
    pub fn kill(&self) {
        self.shared.handle(|ep, now| ep.kill(now));
    }

    /// [`Connection::is_closing`], from any task.
    pub fn is_closing(&self) -> bool {
        self.shared.lock().ep.is_closing()
    }
}

pub(crate) async fn send<M>(shared: &Shared<M>, message: &M) -> Result<(), SendError>
where
    M: Serialize + DeserializeOwned,
{
    send_with(shared, |ep| ep.send(message)).await
}

/// Queues with `send`, waiting while the send budget is used up.
async fn send_with<M>(
    shared: &Shared<M>,
    mut send: impl FnMut(&mut Endpoint<M>) -> Result<(), SendError>,
) -> Result<(), SendError>
where
    M: Serialize + DeserializeOwned,
{
    // A listener costs an allocation: take one only once the budget is found full.
    let mut listener: Option<EventListener> = None;
    poll_fn(|cx| loop {
        let mut state = shared.lock();
        let sent = if state.abandoned {
            // The owner dropped the connection: nothing will ever be written.
            Err(SendError::Disconnected)
        } else {
            send(&mut state.ep)
        };
        match sent {
            Ok(()) => {
                // Written from here if nobody is writing, else by whoever is.
                stream::queued(shared, state, cx);
                return Poll::Ready(Ok(()));
            }
            Err(SendError::Full) => {
                drop(state);
                // Waiting for room, not for an event: the peer is read meanwhile, or a peer
                // that answers while it reads could never make room.
                shared.hand_reading_over();
                match listener.as_mut() {
                    // Listen, then try once more before waiting, so no wake-up is lost.
                    None => listener = Some(shared.progress.listen()),
                    Some(waiting) => {
                        if Pin::new(waiting).poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        listener = None;
                    }
                }
            }
            Err(err) => return Poll::Ready(Err(err)),
        }
    })
    .await
}

async fn closed<M>(shared: &Shared<M>)
where
    M: Serialize + DeserializeOwned,
{
    // Waiting for the end, not for an event: the end is read meanwhile.
    shared.hand_reading_over();
    shared
        .wait_for(&shared.progress, |s| s.ep.is_input_ended() || s.abandoned)
        .await;
}

/// MCP's Streamable HTTP transport (`http.rs`): the one constructor, kept apart.
impl<M, R> Connection<M, R>
where
    M: Serialize + DeserializeOwned + Send + 'static,
    R: Runtime,
{
    /// Connects to an MCP server's Streamable HTTP endpoint at `url`
    /// (`http://HOST[:PORT][/PATH]`), sending `headers` (an `Authorization`, say) with every
    /// request. Each message sent becomes a POST; each message of a response (a JSON body, an
    /// event of an SSE stream, of a POST's or of the `GET` stream) arrives whole, as from a
    /// websocket. [`close`](Self::close) ends the session with `DELETE`. The server reached
    /// is checked at once ([`Error::Connect`]); an HTTP refusal later ends the connection with
    /// a `Disconnected` that names the status, as does the server ending the session.
    pub async fn connect_http(
        url: &str,
        headers: impl IntoIterator<Item = (crate::HeaderName, crate::HeaderValue)>,
        options: Options,
    ) -> Result<Self, Error> {
        let target = crate::http::Target::parse(url)?;
        // A server that cannot be reached fails here, as for every other transport, rather
        // than at the first message; this connection is only a check.
        drop(
            R::connect_tcp(&target.addr)
                .await
                .map_err(|source| Error::Connect {
                    addr: target.addr.clone(),
                    source,
                })?,
        );
        // No websocket keepalive: HTTP has no pings.
        let mut core = options.core().clone();
        core.keepalive = None;
        let options = options.config(core);
        let max_frame = options.core().max_frame;
        let http = crate::http::Http::new(target, headers.into_iter().collect(), max_frame);
        let (this, span) = Self::new(&options, Framing::Messages, url.to_owned(), None)?;
        span.in_scope(|| tracing::debug!("Streamable HTTP open"));
        R::spawn(
            crate::http::run::<M, R>(Arc::clone(&this.shared), Arc::new(http)).instrument(span),
        );
        Ok(this)
    }
}
