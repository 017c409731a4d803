//! What an async runtime must provide: a spawner, a timer, and its own pipes and sockets as
//! futures-io streams. Everything else is written once, in this crate.
//!
//! An implementation is a zero-sized marker type and about a hundred lines that name the
//! runtime's own functions (`tether-tokio` and `tether-smol` are the examples). The rules that
//! the signatures cannot say are written on each item below; the conformance suite
//! (`tether-conformance`) checks them against real children and sockets, with one call.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};

/// A byte stream the runtime can read and write.
///
/// `Send + 'static`: a stream is moved into tasks given to [`Runtime::spawn`] (a websocket's
/// I/O task) or boxed into a [`Connection`](crate::Connection), which its owner may move
/// between tasks. `Unpin`: the drivers poll streams through `Pin::new(&mut stream)` and split
/// them with `futures_lite::io::split`, without pinning them in place.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One async runtime, as the drivers need it. Implemented by `tether-tokio` and `tether-smol`.
///
/// The implementing type is a marker, never instantiated: every method is an associated
/// function. `Send + Sync + Sized + 'static` cost such a type nothing and let generic code
/// carry `R` anywhere (in `PhantomData`, across tasks) without repeating bounds.
///
/// The drivers call every function from within the runtime: from a task it runs, or from a
/// thread inside its context (the `Connection` constructors are documented to need that).
///
/// Every future returned here must be `Send`: the drivers await them inside tasks handed to
/// [`spawn`](Self::spawn), and inside futures (`shutdown`, the `connect_*` constructors,
/// `Listener::accept`) that their users spawn on multi-threaded runtimes. A future may be
/// dropped before it completes (the drivers race sleeps against other events, and callers may
/// race any of them); dropping must cancel it cleanly.
pub trait Runtime: Send + Sync + Sized + 'static {
    /// The read end of a child's stdout pipe.
    ///
    /// The connection's owner reads it on its own task, through `Pin::new`, and the reader is
    /// boxed into the connection, which may move between threads: hence `Send + Unpin +
    /// 'static`. End of file is `Ok(0)`. Dropping it closes the descriptor.
    type PipeReader: AsyncRead + Send + Unpin + 'static;
    /// The write end of a child's stdin pipe.
    ///
    /// `Send + Unpin + 'static` because it moves into the writer task given to
    /// [`spawn`](Self::spawn) and is polled through `Pin::new` by that task and by the owner.
    ///
    /// **Dropping it must close the descriptor**, at once, with no duplicate of it left open
    /// anywhere (a helper thread, a `dup` kept by the reactor): the driver closes a child's
    /// stdin by dropping the writer (`poll_close` on a pipe need not close anything), and that
    /// end of file is how a child learns to exit before the ladder's signals.
    type PipeWriter: AsyncWrite + Send + Unpin + 'static;
    /// A connected TCP stream, with `TCP_NODELAY` set (see
    /// [`connect_tcp`](Self::connect_tcp)).
    type TcpStream: Io;
    /// A bound TCP listener.
    ///
    /// `Sync` as well as `Send`: [`Listener::accept`](crate::Listener::accept) borrows it
    /// across an await, and a future holding `&T` is `Send` only if `T` is `Sync`.
    type TcpListener: Send + Sync + 'static;
    /// A connected Unix stream socket.
    #[cfg(unix)]
    type UnixStream: Io;
    /// A bound Unix listener. `Sync` for the same reason as
    /// [`TcpListener`](Self::TcpListener).
    #[cfg(unix)]
    type UnixListener: Send + Sync + 'static;

    /// Runs `future` to completion in the background, detached: nothing is returned, and
    /// nothing the caller drops may cancel it (a smol `Task` must be `detach`ed; a tokio
    /// `JoinHandle` may simply be dropped). It must make progress while the caller goes on,
    /// including while the caller waits for what the task does.
    ///
    /// Spawned tasks may outlive the runtime: when a runtime shuts down, it just stops polling
    /// (and drops) them, and the drivers allow for that. The tasks only move bytes and wake
    /// waiters; nothing that must happen — closing a child's stdin, signalling its process
    /// group, killing and reaping it — depends on them. The process layer does all of that on
    /// threads of its own, so a connection dropped after its runtime has gone still takes its
    /// whole process tree with it.
    fn spawn(future: impl Future<Output = ()> + Send + 'static);

    /// Completes after `duration`.
    ///
    /// A zero duration must complete at once or on the next turn of the timer, never hang: the
    /// drivers compute `deadline.saturating_duration_since(now)`, which is zero for a deadline
    /// already past. A huge duration (up to `Duration::MAX`, from a caller's "never" timeout)
    /// must not panic or overflow `Instant + Duration`: it is a sleep that never completes,
    /// and the drivers race it against other events.
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send;

    /// Registers a child's stdout with the runtime.
    ///
    /// The pipe comes from `std::process` in blocking mode; the implementation must put the
    /// descriptor in non-blocking mode and register it with the runtime's reactor (tokio's
    /// `pipe::Receiver::from_owned_fd` and async-io's `Async::new` both do). A blocking read
    /// would stall a thread the runtime needs, and a child that stops writing would hang the
    /// owner for good. The runtime takes the descriptor's ownership.
    fn pipe_reader(stdout: ChildStdout) -> io::Result<Self::PipeReader>;

    /// Registers a child's stdin with the runtime: non-blocking and registered with the
    /// reactor, like [`pipe_reader`](Self::pipe_reader), so that a child that stops reading
    /// makes the writer wait for readiness (holding back senders) instead of blocking a thread.
    /// See [`PipeWriter`](Self::PipeWriter) on dropping it.
    fn pipe_writer(stdin: ChildStdin) -> io::Result<Self::PipeWriter>;

    /// Connects to `addr` (`host:port`).
    ///
    /// The stream must have `TCP_NODELAY` set. The drivers already batch: each wake-up writes
    /// everything queued in one write and one flush. With Nagle's algorithm on, a small request
    /// written while an earlier one is unacknowledged waits for the peer's delayed ACK (up to
    /// 40 ms on Linux) and a round trip costs that instead of microseconds.
    fn connect_tcp(addr: &str) -> impl Future<Output = io::Result<Self::TcpStream>> + Send;

    /// Binds a listener on `addr` (`host:port`; port 0 picks one).
    fn bind_tcp(addr: &str) -> impl Future<Output = io::Result<Self::TcpListener>> + Send;

    /// Accepts the next connection, with `TCP_NODELAY` set on it as in
    /// [`connect_tcp`](Self::connect_tcp), and the peer's address.
    fn accept_tcp(
        listener: &Self::TcpListener,
    ) -> impl Future<Output = io::Result<(Self::TcpStream, SocketAddr)>> + Send;

    /// The address a listener is bound to (with the port picked for port 0).
    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr>;

    /// Connects to the Unix socket at `path`.
    #[cfg(unix)]
    fn connect_unix(path: &Path) -> impl Future<Output = io::Result<Self::UnixStream>> + Send;

    /// Binds a Unix listener at `path`. Synchronous, as binding a Unix socket never waits
    /// (`Listener::bind_unix` is a plain function).
    #[cfg(unix)]
    fn bind_unix(path: &Path) -> io::Result<Self::UnixListener>;

    /// Accepts the next connection.
    #[cfg(unix)]
    fn accept_unix(
        listener: &Self::UnixListener,
    ) -> impl Future<Output = io::Result<Self::UnixStream>> + Send;
}
