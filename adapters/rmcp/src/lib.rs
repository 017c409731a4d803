//! rmcp's [`Transport`](rmcp::transport::Transport) over a tether connection, so that an rmcp
//! client (or server) gets tether's framing limits, its reports of malformed lines and its
//! ownership of the peer's whole process tree by changing one line:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rmcp::ServiceExt;
//! use tether_rmcp::ChildTransport;
//! use tether_tokio::Options;
//!
//! let mut command = std::process::Command::new("npx");
//! command.args(["-y", "@modelcontextprotocol/server-everything"]);
//! let client = ().serve(ChildTransport::spawn(command, Options::new())?).await?;
//! let tools = client.list_tools(Default::default()).await?;
//! println!("{} tools", tools.tools.len());
//! client.cancel().await?; // the shutdown ladder: close stdin, grace, SIGTERM, grace, SIGKILL
//! # Ok(()) }
//! ```
//!
//! What the transport does with what tether reports:
//! - a malformed line (invalid JSON, over the frame limit, not UTF-8), and a JSON message that
//!   is not one rmcp's role can take, is logged with `tracing` at `warn` and skipped: the
//!   connection goes on;
//! - the end of the connection (the child exited or closed its stdout, a socket closed, a read
//!   or write failed) is logged, and [`receive`](rmcp::transport::Transport::receive) returns
//!   `None` after it, which ends rmcp's service and fails its pending requests;
//! - [`close`](rmcp::transport::Transport::close), which rmcp calls when its service ends
//!   (`cancel`, `close`, the peer gone), runs [`Connection::shutdown`]: for a child, the
//!   shutdown ladder, until the child has exited, its process group is killed and it is reaped;
//! - dropping the transport (the runtime gone before `close`) drops the connection, which kills
//!   the child's process tree on threads of its own.
//!
//! The tether connection carries [`serde_json::Value`], converted to and from rmcp's message
//! types here, for two reasons. A tether connection has one message type for both directions,
//! while rmcp's are two different enums for a role (what the client sends is not what it
//! receives). And a line that is valid JSON but not a message rmcp knows still reaches this
//! crate whole, in its place in the order, so it is logged with its method and id rather than
//! only as a parse error; every message rmcp can take is handed over unchanged, in the order
//! it arrived.
#![deny(missing_docs)]

use std::borrow::Cow;
use std::future::Future;
use std::process::Command;

use rmcp::service::{RxJsonRpcMessage, ServiceRole, TxJsonRpcMessage};
use serde::Deserialize;
use serde_json::Value;
use tether_tokio::{Connection, Error, Event, Options, SendError, Sender};
use tokio::sync::{mpsc, oneshot};

/// A message on its way to the connection, and where to report whether the connection took
/// it.
type Outgoing = (Value, oneshot::Sender<Result<(), SendError>>);

/// rmcp's transport over any tether connection: a child process, TCP, a Unix socket, a
/// websocket. It serves either role: `().serve(transport)` for a client, `handler.serve(..)`
/// for a server.
///
/// rmcp sends each message from a task of its own, so the order those tasks run in is not the
/// order rmcp sent in. The transport keeps rmcp's order: each message is queued, in the order
/// `send` is called, for one task that hands them to the connection one after the other, and
/// the future `send` returns completes once the connection has taken the message (encoded and
/// queued it for writing, within its send budget).
#[derive(Debug)]
pub struct Transport {
    /// `None` once closed.
    conn: Option<Connection<Value>>,
    /// `None` once closed: later sends fail.
    outbox: Option<mpsc::UnboundedSender<Outgoing>>,
}

impl Transport {
    /// Wraps `conn`. Must be called from within a tokio runtime: it starts the task that hands
    /// messages to the connection in order.
    pub fn new(conn: Connection<Value>) -> Transport {
        let (outbox, queue) = mpsc::unbounded_channel();
        tokio::spawn(forward(conn.sender(), queue));
        Transport {
            conn: Some(conn),
            outbox: Some(outbox),
        }
    }

    /// The child's process id (also its process group id), for a child connection that has
    /// not been closed.
    pub fn pid(&self) -> Option<u32> {
        self.conn.as_ref().and_then(Connection::pid)
    }

    fn queue(&self, item: Result<Value, serde_json::Error>) -> QueuedSend {
        let value = item.map_err(SendError::Encode)?;
        let outbox = self.outbox.as_ref().ok_or(SendError::Closed)?;
        let (done, taken) = oneshot::channel();
        outbox
            .send((value, done))
            .map_err(|_| SendError::Disconnected)?;
        Ok(taken)
    }

    async fn next_message<R: ServiceRole>(&mut self) -> Option<RxJsonRpcMessage<R>> {
        let conn = self.conn.as_mut()?;
        loop {
            match conn.recv().await? {
                Event::Message(value) => match message::<R>(value) {
                    Ok(message) => return Some(message),
                    Err((value, err)) => tracing::warn!(
                        label = conn.label(),
                        method = value.get("method").and_then(serde_json::Value::as_str),
                        id = value.get("id").map(|id| id.to_string()),
                        error = %err,
                        "skipped a message that is not an MCP message for this role"
                    ),
                },
                Event::Malformed(malformed) => tracing::warn!(
                    label = conn.label(),
                    kind = %malformed.kind,
                    excerpt = %malformed.excerpt,
                    "skipped a malformed message"
                ),
                Event::Disconnected(None) => {
                    tracing::debug!(label = conn.label(), "the peer ended the connection");
                }
                Event::Disconnected(Some(reason)) => {
                    tracing::warn!(%reason, "the connection failed");
                }
            }
        }
    }

    /// Stops sending and shuts the connection down (for a child: the ladder, until it is
    /// reaped). Closing twice changes nothing.
    async fn shutdown(&mut self) {
        self.outbox = None;
        let Some(conn) = self.conn.take() else {
            return;
        };
        let label = conn.label().to_owned();
        if let Some(status) = conn.shutdown().await {
            tracing::info!(%label, %status, "the child has exited");
        }
    }
}

/// What [`Transport::queue`] gives: the receiver of the connection's answer, or why the
/// message was not queued.
type QueuedSend = Result<oneshot::Receiver<Result<(), SendError>>, SendError>;

/// A `Value` as one of the messages `R` receives; the value back with the error if not.
fn message<R: ServiceRole>(
    value: Value,
) -> Result<RxJsonRpcMessage<R>, (Value, serde_json::Error)> {
    // Deserializing from a reference leaves the value for the log line.
    match RxJsonRpcMessage::<R>::deserialize(&value) {
        Ok(message) => Ok(message),
        Err(err) => Err((value, err)),
    }
}

/// Hands queued messages to the connection in the order they were queued, until the
/// transport is closed or dropped.
async fn forward(sender: Sender<Value>, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some((value, done)) = queue.recv().await {
        // The sender may have stopped waiting (rmcp dropped its task): nothing to report.
        let _ = done.send(sender.send(&value).await);
    }
}

async fn taken(queued: QueuedSend) -> Result<(), SendError> {
    // The forwarding task gone without an answer means the connection is gone.
    queued?.await.unwrap_or(Err(SendError::Disconnected))
}

impl<R: ServiceRole> rmcp::transport::Transport<R> for Transport {
    type Error = SendError;

    fn name() -> Cow<'static, str> {
        "tether".into()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<R>,
    ) -> impl Future<Output = Result<(), SendError>> + Send + 'static {
        // Queued now, not when the future is first polled: that keeps rmcp's order.
        taken(self.queue(serde_json::to_value(&item)))
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<R>>> + Send {
        self.next_message::<R>()
    }

    async fn close(&mut self) -> Result<(), SendError> {
        self.shutdown().await;
        Ok(())
    }
}

/// rmcp's transport over a child process that tether spawns and owns: the child runs in its
/// own process group, `close` runs the shutdown ladder, dropping the transport kills the whole
/// tree, and the child's exit ends the service. A thin case of [`Transport`].
#[derive(Debug)]
pub struct ChildTransport {
    inner: Transport,
}

impl ChildTransport {
    /// Spawns `command` in its own process group and speaks to it over its stdin and stdout
    /// with the framing and limits of `options`. Must be called from within a tokio runtime.
    pub fn spawn(command: Command, options: Options) -> Result<ChildTransport, Error> {
        let conn = Connection::spawn(command, options)?;
        Ok(ChildTransport {
            inner: Transport::new(conn),
        })
    }

    /// The child's process id (also its process group id), until the transport is closed.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }
}

impl<R: ServiceRole> rmcp::transport::Transport<R> for ChildTransport {
    type Error = SendError;

    fn name() -> Cow<'static, str> {
        "tether child".into()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<R>,
    ) -> impl Future<Output = Result<(), SendError>> + Send + 'static {
        <Transport as rmcp::transport::Transport<R>>::send(&mut self.inner, item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<R>>> + Send {
        self.inner.next_message::<R>()
    }

    async fn close(&mut self) -> Result<(), SendError> {
        self.inner.shutdown().await;
        Ok(())
    }
}
