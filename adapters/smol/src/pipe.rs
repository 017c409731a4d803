//! A child's stdout that spares the empty read after each message.

use std::io;
use std::pin::Pin;
use std::process::ChildStdout;
use std::task::{ready, Context, Poll};

use async_io::Async;
use smol::io::AsyncRead;

/// A child's stdout, registered with smol's reactor.
///
/// A read that comes back short has emptied the pipe. `Async` would read again at once, get
/// `EAGAIN`, and only then wait for readiness: one wasted system call per message on a
/// request-and-answer path. After a short read this waits for readiness first instead (tokio's
/// pipes keep the same note inside their readiness).
#[derive(Debug)]
pub struct PipeReader {
    pipe: Async<ChildStdout>,
    /// The last read came back short: the pipe was empty after it.
    emptied: bool,
}

impl PipeReader {
    pub(crate) fn new(stdout: ChildStdout) -> io::Result<Self> {
        Ok(Self {
            pipe: Async::new(stdout)?,
            emptied: false,
        })
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.emptied {
            // Readiness registered now is level-triggered: bytes that came in the meantime
            // wake at once, so none is missed.
            ready!(self.pipe.poll_readable(cx))?;
            self.emptied = false;
        }
        let n = ready!(Pin::new(&mut self.pipe).poll_read(cx, buf))?;
        self.emptied = n > 0 && n < buf.len();
        Poll::Ready(Ok(n))
    }
}
