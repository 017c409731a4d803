//! hyper's I/O traits over the futures-io streams every runtime here hands out, so that one
//! HTTP stack serves and connects under tokio and smol alike.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use hyper::rt::ReadBufCursor;

/// The largest read made at once; hyper asks again while there is more.
const CHUNK: usize = 16 * 1024;

/// A futures-io stream as hyper sees it: hand it to `hyper::client::conn::http1::handshake`
/// or `hyper::server::conn::http1::Builder::serve_connection`.
#[derive(Debug)]
pub struct HyperIo<S>(pub S);

impl<S: AsyncRead + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // hyper's cursor hands out uninitialised memory only through `unsafe`; reading into
        // an initialised buffer and copying costs one copy of each chunk and no `unsafe`.
        // `put_slice` panics past the cursor's room, so never read more than it has.
        let mut chunk = [0; CHUNK];
        let room = buf.remaining().min(CHUNK);
        let n = std::task::ready!(Pin::new(&mut self.0).poll_read(cx, &mut chunk[..room]))?;
        buf.put_slice(&chunk[..n]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
