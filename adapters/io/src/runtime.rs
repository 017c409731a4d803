//! What an async runtime must provide: a spawner, a timer, and its own pipes and sockets as
//! futures-io streams. Everything else is written once, in this crate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};

/// A byte stream the runtime can read and write.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One async runtime, as the drivers need it. Implemented by `tether-tokio` and `tether-smol`.
pub trait Runtime: Send + Sync + Sized + 'static {
    /// The read end of a child's stdout pipe.
    type PipeReader: AsyncRead + Send + Unpin + 'static;
    /// The write end of a child's stdin pipe.
    type PipeWriter: AsyncWrite + Send + Unpin + 'static;
    /// A connected TCP stream.
    type TcpStream: Io;
    /// A bound TCP listener.
    type TcpListener: Send + Sync + 'static;
    /// A connected Unix stream socket.
    #[cfg(unix)]
    type UnixStream: Io;
    /// A bound Unix listener.
    #[cfg(unix)]
    type UnixListener: Send + Sync + 'static;

    /// Runs `future` to completion in the background.
    fn spawn(future: impl Future<Output = ()> + Send + 'static);

    /// Completes after `duration`.
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send;

    /// Registers a child's stdout with the runtime.
    fn pipe_reader(stdout: ChildStdout) -> io::Result<Self::PipeReader>;

    /// Registers a child's stdin with the runtime.
    fn pipe_writer(stdin: ChildStdin) -> io::Result<Self::PipeWriter>;

    /// Connects to `addr` (`host:port`).
    fn connect_tcp(addr: &str) -> impl Future<Output = io::Result<Self::TcpStream>> + Send;

    /// Binds a listener on `addr` (`host:port`; port 0 picks one).
    fn bind_tcp(addr: &str) -> impl Future<Output = io::Result<Self::TcpListener>> + Send;

    /// Accepts the next connection.
    fn accept_tcp(
        listener: &Self::TcpListener,
    ) -> impl Future<Output = io::Result<(Self::TcpStream, SocketAddr)>> + Send;

    /// The address a listener is bound to.
    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr>;

    /// Connects to the Unix socket at `path`.
    #[cfg(unix)]
    fn connect_unix(path: &Path) -> impl Future<Output = io::Result<Self::UnixStream>> + Send;

    /// Binds a Unix listener at `path`.
    #[cfg(unix)]
    fn bind_unix(path: &Path) -> io::Result<Self::UnixListener>;

    /// Accepts the next connection.
    #[cfg(unix)]
    fn accept_unix(
        listener: &Self::UnixListener,
    ) -> impl Future<Output = io::Result<Self::UnixStream>> + Send;
}
