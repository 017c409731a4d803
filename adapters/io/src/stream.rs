//! Writing a byte-stream connection (pipes, TCP, Unix sockets). Reading is done by the owner
//! itself, when it polls for events.
//!
//! The write half sits behind a lock that whoever has output to move may take. The writer
//! task moves everything queued in one write and one flush per wake-up, so a burst of sends
//! costs one system call; and an owner about to wait for events first writes what is queued
//! itself if no write is under way, so a request followed by a wait for its answer goes out
//! without a hand-over to another thread (most of a round trip's latency otherwise).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_io::AsyncWrite;
use futures_lite::future;
use serde::de::DeserializeOwned;
use serde::Serialize;

use tether_core::Control;

use crate::shared::Shared;

/// How much is read at once; the core's input buffer never holds more than the frame limit
/// plus this.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// The write half of a byte stream and the batch being written.
pub(crate) struct Writer {
    half: Mutex<Half>,
}

struct Half {
    /// Dropped once closed or failed: for pipes, only dropping the descriptor closes it.
    stream: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// The batch taken from the core, and how much of it is written.
    out: Vec<u8>,
    written: usize,
}

/// Where a push of output stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Everything queued is written and flushed.
    Idle,
    /// The stream cannot take more now; the waker passed in will be called.
    Blocked,
    /// The write half is closed or failed.
    Done,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(stream: impl AsyncWrite + Send + Unpin + 'static) -> Self {
        Writer {
            half: Mutex::new(Half {
                stream: Some(Box::new(stream)),
                out: Vec::new(),
                written: 0,
            }),
        }
    }

    /// Moves output from the core to the stream until it is all flushed, the stream blocks, or
    /// the write half is done. `None` when another task is pushing already.
    pub(crate) fn try_push<M>(&self, shared: &Shared<M>, cx: &mut Context<'_>) -> Option<Push>
    where
        M: Serialize + DeserializeOwned,
    {
        let mut half = match self.half.try_lock() {
            Ok(half) => half,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(half.push(shared, cx))
    }

    /// Drops the stream, closing it.
    fn release(&self) {
        self.half
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stream = None;
    }

    /// Like [`try_push`](Self::try_push), waiting for the lock.
    fn push<M>(&self, shared: &Shared<M>, cx: &mut Context<'_>) -> Push
    where
        M: Serialize + DeserializeOwned,
    {
        let mut half = self.half.lock().unwrap_or_else(PoisonError::into_inner);
        half.push(shared, cx)
    }
}

impl Half {
    fn push<M>(&mut self, shared: &Shared<M>, cx: &mut Context<'_>) -> Push
    where
        M: Serialize + DeserializeOwned,
    {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Push::Done;
            };
            if self.written == self.out.len() {
                let mut state = shared.lock();
                if !self.out.is_empty() {
                    // The last batch is fully written: flush it before it counts as sent.
                    drop(state);
                    match Pin::new(stream).poll_flush(cx) {
                        Poll::Pending => return Push::Blocked,
                        Poll::Ready(Err(err)) => return self.fail(shared, err),
                        Poll::Ready(Ok(())) => {}
                    }
                    state = shared.lock();
                    state.ep.handle_transmitted(self.out.len());
                    self.out.clear();
                    self.written = 0;
                    drop(state);
                    shared.progress.notify(usize::MAX);
                    continue;
                }
                if state.ep.poll_transmit(&mut self.out) > 0 {
                    continue;
                }
                let control = state.ep.poll_control();
                drop(state);
                match control {
                    None => return Push::Idle,
                    Some(Control::CloseWrite) => {
                        tracing::debug!("closing the write half");
                        if Pin::new(stream).poll_close(cx).is_pending() {
                            return Push::Blocked;
                        }
                        self.stream = None;
                        return Push::Done;
                    }
                    Some(Control::Abort) => {
                        self.stream = None;
                        return Push::Done;
                    }
                    // Websocket controls: a byte stream has no such frames.
                    Some(Control::Ping | Control::Flush | Control::SendClose { .. }) => {}
                }
                continue;
            }
            match Pin::new(stream).poll_write(cx, &self.out[self.written..]) {
                Poll::Pending => return Push::Blocked,
                Poll::Ready(Ok(0)) => {
                    return self.fail(shared, io::Error::from(io::ErrorKind::WriteZero))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(err)) => return self.fail(shared, err),
            }
        }
    }

    fn fail<M>(&mut self, shared: &Shared<M>, err: io::Error) -> Push
    where
        M: Serialize + DeserializeOwned,
    {
        tracing::debug!(%err, "write failed");
        self.stream = None;
        self.out.clear();
        self.written = 0;
        shared.handle(|ep, now| ep.handle_write_error(err, now));
        Push::Done
    }
}

/// Pushes output whenever a sender could not finish it itself, until the write half is done
/// or the connection is over.
pub(crate) async fn write<M>(shared: Arc<Shared<M>>, writer: Arc<Writer>)
where
    M: Serialize + DeserializeOwned,
{
    loop {
        // Listening before pushing: whatever is queued, closed or abandoned after this point
        // wakes the task. A sender that pushed meanwhile may also have taken the stream's
        // waker for itself; it notifies `output` so that this task pushes, and registers, again.
        let mut notified = shared.output.listen();
        let pushed = future::or(
            poll_fn(|cx| match writer.push(&shared, cx) {
                Push::Blocked => Poll::Pending,
                other => Poll::Ready(other),
            }),
            async {
                (&mut notified).await;
                Push::Blocked
            },
        )
        .await;
        if shared.lock().abandoned {
            // The owner is gone: close the stream now, whoever else still holds the writer.
            writer.release();
            return;
        }
        match pushed {
            Push::Done => return,
            Push::Blocked => continue,
            // Even after the end was delivered, an owner may still close its write half.
            Push::Idle => {
                notified.await;
                // Woken by a send: let the sender queue whatever else it has before writing,
                // so that a burst goes out in one system call.
                future::yield_now().await;
            }
        }
    }
}
