//! tether on tokio: JSON-RPC connections over child processes, TCP and Unix sockets and
//! websockets, with the child's whole process tree tied to the connection.
//!
//! This crate only names tokio's timer, spawner, pipes and sockets; everything else is
//! `tether-io`, shared with `tether-smol`, whose API is the same.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_tokio::{Connection, Event, Message, Options, Request};
//!
//! let mut conn: Connection = Connection::spawn(std::process::Command::new("my-server"), Options::new())?;
//! conn.send(&Request::new(1, "ping", None).into()).await?;
//! if let Some(Event::Message(reply)) = conn.recv().await {
//!     println!("{reply:?}");
//! }
//! let status = conn.shutdown().await;
//! println!("{status:?}");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio_util::compat::Compat;

pub use tether_io::*;
/// tokio's own streams go to [`Connection::from_io`] through these: `reader.compat()`,
/// `writer.compat_write()`.
pub use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// The tokio runtime, as tether's drivers need it. Connections must be made from within a
/// tokio runtime with I/O and time enabled.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

/// A connection driven by tokio (see [`tether_io::Connection`]).
pub type Connection<M = Message> = tether_io::Connection<M, Tokio>;

/// A listener driven by tokio (see [`tether_io::Listener`]).
pub type Listener = tether_io::Listener<Tokio>;

impl Runtime for Tokio {
    type PipeReader = Compat<pipe::Receiver>;
    type PipeWriter = Compat<pipe::Sender>;
    type TcpStream = Compat<tokio::net::TcpStream>;
    type TcpListener = tokio::net::TcpListener;
    type UnixStream = Compat<tokio::net::UnixStream>;
    type UnixListener = tokio::net::UnixListener;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(future);
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }

    fn pipe_reader(stdout: ChildStdout) -> io::Result<Self::PipeReader> {
        Ok(pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?.compat())
    }

    fn pipe_writer(stdin: ChildStdin) -> io::Result<Self::PipeWriter> {
        Ok(pipe::Sender::from_owned_fd(OwnedFd::from(stdin))?.compat_write())
    }

    async fn connect_tcp(addr: &str) -> io::Result<Self::TcpStream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream.compat())
    }

    async fn bind_tcp(addr: &str) -> io::Result<Self::TcpListener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept_tcp(listener: &Self::TcpListener) -> io::Result<(Self::TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream.compat(), peer))
    }

    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn connect_unix(path: &Path) -> io::Result<Self::UnixStream> {
        Ok(tokio::net::UnixStream::connect(path).await?.compat())
    }

    fn bind_unix(path: &Path) -> io::Result<Self::UnixListener> {
        tokio::net::UnixListener::bind(path)
    }

    async fn accept_unix(listener: &Self::UnixListener) -> io::Result<Self::UnixStream> {
        Ok(listener.accept().await?.0.compat())
    }
}
