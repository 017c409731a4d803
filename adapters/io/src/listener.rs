//! Accepting line-framed connections on a TCP or Unix socket.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Connection, Error, Options, Runtime};

/// A bound socket that turns each accepted stream into a [`Connection`].
pub struct Listener<R: Runtime> {
    socket: Socket<R>,
    options: Options,
}

enum Socket<R: Runtime> {
    Tcp(R::TcpListener),
    #[cfg(unix)]
    Unix(R::UnixListener, std::path::PathBuf),
}

impl<R: Runtime> std::fmt::Debug for Listener<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl<R: Runtime> Listener<R> {
    /// Binds `addr` (`host:port`; port 0 picks one).
    pub async fn bind_tcp(addr: &str, options: Options) -> Result<Self, Error> {
        let socket = R::bind_tcp(addr).await.map_err(|source| Error::Connect {
            addr: addr.to_owned(),
            source,
        })?;
        Ok(Listener {
            socket: Socket::Tcp(socket),
            options,
        })
    }

    /// Binds a Unix socket at `path`.
    #[cfg(unix)]
    pub fn bind_unix(path: impl AsRef<std::path::Path>, options: Options) -> Result<Self, Error> {
        let path = path.as_ref();
        let socket = R::bind_unix(path).map_err(|source| Error::Connect {
            addr: path.display().to_string(),
            source,
        })?;
        Ok(Listener {
            socket: Socket::Unix(socket, path.to_owned()),
            options,
        })
    }

    /// The TCP address bound, for a TCP listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.socket {
            Socket::Tcp(socket) => R::tcp_local_addr(socket).ok(),
            #[cfg(unix)]
            Socket::Unix(..) => None,
        }
    }

    /// Waits for the next peer and returns its connection.
    pub async fn accept<M>(&self) -> Result<Connection<M, R>, Error>
    where
        M: Serialize + DeserializeOwned + Send + 'static,
    {
        let options = self.options.clone();
        match &self.socket {
            Socket::Tcp(socket) => {
                let (stream, peer) =
                    R::accept_tcp(socket)
                        .await
                        .map_err(|source| Error::Connect {
                            addr: "accept".to_owned(),
                            source,
                        })?;
                Connection::from_stream_labelled(stream, options, format!("tcp:{peer}"))
            }
            #[cfg(unix)]
            Socket::Unix(socket, path) => {
                let stream = R::accept_unix(socket)
                    .await
                    .map_err(|source| Error::Connect {
                        addr: path.display().to_string(),
                        source,
                    })?;
                Connection::from_stream_labelled(
                    stream,
                    options,
                    format!("unix:{}", path.display()),
                )
            }
        }
    }
}
