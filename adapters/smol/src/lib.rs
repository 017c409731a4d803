//! tether on smol: JSON-RPC connections over child processes, TCP and Unix sockets and
//! websockets, with the child's whole process tree tied to the connection.
//!
//! This crate only names smol's timer, spawner, pipes and sockets; everything else is
//! `tether-io`, shared with `tether-tokio`, whose API is the same. Background work runs on
//! smol's global executor, so connections work under `smol::block_on`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_smol::{Connection, Event, Message, Options, Request};
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
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::time::Duration;

use async_io::{Async, Timer};

pub use tether_io::*;

mod pipe;

pub use pipe::PipeReader;

/// The smol runtime, as tether's drivers need it.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

/// A connection driven by smol (see [`tether_io::Connection`]).
pub type Connection<M = Message> = tether_io::Connection<M, Smol>;

/// A listener driven by smol (see [`tether_io::Listener`]).
pub type Listener = tether_io::Listener<Smol>;

impl Runtime for Smol {
    type PipeReader = PipeReader;
    type PipeWriter = Async<ChildStdin>;
    type TcpStream = async_net::TcpStream;
    type TcpListener = async_net::TcpListener;
    type UnixStream = async_net::unix::UnixStream;
    type UnixListener = async_net::unix::UnixListener;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(future).detach();
    }

    async fn sleep(duration: Duration) {
        Timer::after(duration).await;
    }

    fn pipe_reader(stdout: ChildStdout) -> io::Result<Self::PipeReader> {
        PipeReader::new(stdout)
    }

    fn pipe_writer(stdin: ChildStdin) -> io::Result<Self::PipeWriter> {
        Async::new(stdin)
    }

    async fn connect_tcp(addr: &str) -> io::Result<Self::TcpStream> {
        let stream = async_net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn bind_tcp(addr: &str) -> io::Result<Self::TcpListener> {
        async_net::TcpListener::bind(addr).await
    }

    async fn accept_tcp(listener: &Self::TcpListener) -> io::Result<(Self::TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    fn tcp_local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn connect_unix(path: &Path) -> io::Result<Self::UnixStream> {
        async_net::unix::UnixStream::connect(path).await
    }

    fn bind_unix(path: &Path) -> io::Result<Self::UnixListener> {
        async_net::unix::UnixListener::bind(path)
    }

    async fn accept_unix(listener: &Self::UnixListener) -> io::Result<Self::UnixStream> {
        Ok(listener.accept().await?.0)
    }
}
