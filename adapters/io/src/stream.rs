//! The I/O tasks of a byte-stream connection (pipes, TCP, Unix sockets).
//!
//! Reading, like writing, goes by turns ([`Reading`]): the owner reads from its own poll while
//! it receives, so that a message that arrives wakes no other task; whoever waits for room to
//! send, or for the end, hands the turn to the reader task ([`read`]), which reads while the
//! endpoint wants input, so that a peer answering while it reads a large request is never left
//! blocked on a pipe nobody reads. The endpoint's read-ahead bounds what either holds.
//!
//! Whoever has output to move writes it, one at a time: [`Writing`] in the shared state says
//! who holds that turn. A send that finds no write under way writes its message from its own
//! poll, so a lone message (a request about to be awaited) goes out without waking another
//! task. Sends that follow it before the owner waits or reads again leave their messages
//! queued and wake the writer task once; it lets the burst queue up and writes it in one
//! system call. The writer
//! task also takes over whenever the stream is full (only a task can wait for room), and an
//! owner about to wait for events first writes whatever is still queued.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use serde::de::DeserializeOwned;
use serde::Serialize;

use tether_core::Control;

use crate::machine::Guard;
use crate::shared::{Half, ReadHalf, Reader, Reading, Shared, State, Writer, Writing};

/// How much is read at once; the core's input buffer never holds more than the frame limit
/// plus this.
const READ_CHUNK: usize = 64 * 1024;

/// Where a push of output stands.
#[derive(Debug, PartialEq, Eq)]
enum Push {
    /// Everything queued is written and flushed; the turn is given back.
    Idle,
    /// The stream cannot take more now; the waker passed in will be called.
    Blocked,
    /// The write half is closed or failed; the turn is given back.
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
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Moves output from the core to the stream until it is all flushed, the stream blocks, or
    /// the write half is done. Only the holder of the turn calls it, so the lock is contended
    /// only by [`release`](Self::release) once the owner is gone.
    fn push<M>(&self, shared: &Shared<M>, cx: &mut Context<'_>) -> Push
    where
        M: Serialize + DeserializeOwned,
    {
        let mut half = self.half.lock().unwrap_or_else(PoisonError::into_inner);
        half.push(shared, cx)
    }

    /// Drops the stream, closing it.
    fn release(&self) {
        self.half
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stream = None;
    }
}

/// Something was just queued (the caller holds the state lock): writes it from the caller's
/// own poll if nobody is writing and no burst is under way, else leaves it to whoever is.
pub(crate) fn queued<M>(shared: &Shared<M>, mut state: Guard<'_, State<M>>, cx: &mut Context<'_>)
where
    M: Serialize + DeserializeOwned,
{
    let Some(writer) = shared.writer() else {
        // A websocket: its writer task sends every frame.
        drop(state);
        shared.output.notify(1);
        return;
    };
    if state.writing != Writing::Idle {
        // Whoever has the turn writes this too, before giving it back.
        return;
    }
    if state.burst {
        // More sends came before anyone waited: the writer task writes them together.
        state.writing = Writing::Task;
        drop(state);
        shared.output.notify(1);
        return;
    }
    state.writing = Writing::Inline;
    state.burst = true;
    drop(state);
    inline(shared, writer, cx);
}

/// Something was queued where no poll is at hand to write it from: the writer task writes it,
/// unless someone already has the turn.
pub(crate) fn queued_detached<M>(shared: &Shared<M>, mut state: Guard<'_, State<M>>)
where
    M: Serialize + DeserializeOwned,
{
    if shared.writer().is_some() {
        if state.writing != Writing::Idle {
            return;
        }
        state.writing = Writing::Task;
    }
    drop(state);
    shared.output.notify(1);
}

/// The owner is about to wait: the burst, if any, is over, and whatever is still queued goes
/// out from the owner's poll if nobody is writing.
pub(crate) fn before_wait<M>(shared: &Shared<M>, cx: &mut Context<'_>)
where
    M: Serialize + DeserializeOwned,
{
    let Some(writer) = shared.writer() else {
        return;
    };
    {
        let mut state = shared.lock();
        state.burst = false;
        if state.writing != Writing::Idle {
            return;
        }
        state.writing = Writing::Inline;
    }
    inline(shared, writer, cx);
}

/// Pushes with the turn taken as [`Writing::Inline`]; a full stream hands the turn to the
/// writer task, the only one that can wait for room.
fn inline<M>(shared: &Shared<M>, writer: &Writer, cx: &mut Context<'_>)
where
    M: Serialize + DeserializeOwned,
{
    if writer.push(shared, cx) == Push::Blocked {
        shared.lock().writing = Writing::Task;
        shared.output.notify(1);
    }
}

impl Half {
    fn push<M>(&mut self, shared: &Shared<M>, cx: &mut Context<'_>) -> Push
    where
        M: Serialize + DeserializeOwned,
    {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return done(shared);
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
                    // Answers owed to the peer are out: input held back for them may go on.
                    if state.ep.poll_read_wake() {
                        shared.wake_reader(&state);
                    }
                    drop(state);
                    shared.progress.notify(usize::MAX);
                    continue;
                }
                if state.ep.poll_transmit(&mut self.out) > 0 {
                    continue;
                }
                let Some(control) = state.ep.poll_control() else {
                    // Nothing left: the turn is given back under the same lock, so whatever
                    // is queued from now on finds it free.
                    state.writing = Writing::Idle;
                    return Push::Idle;
                };
                drop(state);
                match control {
                    Control::CloseWrite => {
                        tracing::debug!("closing the write half");
                        if Pin::new(stream).poll_close(cx).is_pending() {
                            return Push::Blocked;
                        }
                        self.stream = None;
                        return done(shared);
                    }
                    Control::Abort => {
                        self.stream = None;
                        return done(shared);
                    }
                    // Websocket controls: a byte stream has no such frames.
                    Control::Ping | Control::Flush | Control::SendClose { .. } => {}
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
        done(shared)
    }
}

/// The write half is done: the turn is given back, and every later push ends at once.
fn done<M>(shared: &Shared<M>) -> Push
where
    M: Serialize + DeserializeOwned,
{
    shared.lock().writing = Writing::Idle;
    Push::Done
}

/// Writes when it is handed the turn (a burst, a full stream) or woken for output the endpoint
/// decided on (a close, an automatic reply), until the write half is done or the connection
/// is over.
pub(crate) async fn write<M>(shared: Arc<Shared<M>>)
where
    M: Serialize + DeserializeOwned,
{
    let Some(writer) = shared.writer() else {
        return;
    };
    // A restarted child's stream gets a task of its own; this one then stops.
    let generation = writer.generation.load(std::sync::atomic::Ordering::Acquire);
    // Woken: the endpoint may have output for which nobody took the turn.
    let mut woken = true;
    loop {
        if writer.generation.load(std::sync::atomic::Ordering::Acquire) != generation {
            return;
        }
        // Listening before looking: whatever is handed over, queued, closed or abandoned
        // after this point wakes the task.
        let mut notified = shared.output.listen();
        let mine = {
            let mut state = shared.lock();
            if state.abandoned {
                // The owner is gone: close the stream now, whoever else still holds the
                // connection's state.
                drop(state);
                writer.release();
                return;
            }
            match state.writing {
                Writing::Task => true,
                Writing::Idle if woken => {
                    state.writing = Writing::Task;
                    true
                }
                Writing::Idle | Writing::Inline => false,
            }
        };
        if !mine {
            notified.await;
            woken = true;
            continue;
        }
        if woken {
            // Handed a burst: let the sender queue the rest of it before writing, so that it
            // goes out in one system call.
            future::yield_now().await;
        }
        woken = false;
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
        if pushed == Push::Done {
            return;
        }
        // Still the task's turn (woken while full: push, and register, again), or given back:
        // either way the next pass decides.
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    pub(crate) fn new(stream: impl AsyncRead + Send + Unpin + 'static) -> Self {
        Reader {
            half: Mutex::new(ReadHalf {
                stream: Some(Box::new(stream)),
                buf: vec![0; READ_CHUNK],
            }),
        }
    }
}

/// Reads one chunk into the endpoint for `by`, if `by` has the turn (the owner takes it by
/// polling) and the endpoint wants input. `Ready(true)`: the endpoint's state changed (input
/// or its end handed in); `Ready(false)`: nothing to do for `by` now; `Pending`: the stream
/// has nothing yet, and `cx` is woken when it has.
///
/// The chunk is handed in while the read half is still held, so that input read by one
/// reader always goes in before input read by the next.
pub(crate) fn poll_read<M>(shared: &Shared<M>, cx: &mut Context<'_>, by: Reading) -> Poll<bool>
where
    M: Serialize + DeserializeOwned,
{
    let Some(reader) = shared.reader() else {
        return Poll::Ready(false);
    };
    let mut half = reader.half.lock().unwrap_or_else(PoisonError::into_inner);
    let half = &mut *half;
    {
        let state = shared.lock();
        if state.reader_done() {
            // The input ended or the owner left: the read half goes.
            half.stream = None;
            return Poll::Ready(false);
        }
        if state.reading != by || !state.ep.wants_input() {
            return Poll::Ready(false);
        }
    }
    let Some(stream) = half.stream.as_mut() else {
        // No stream while the input goes on: a supervised child's output ended and the next
        // child's is not there yet. Whoever reads is woken when it is.
        return Poll::Pending;
    };
    let result = match Pin::new(stream).poll_read(cx, &mut half.buf) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(result) => result,
    };
    let mut state = shared.lock();
    if state.reader_done() {
        // The endpoint ended the input meanwhile; these bytes come too late.
        half.stream = None;
        return Poll::Ready(true);
    }
    let now = crate::clock::now();
    match result {
        Ok(0) => {
            tracing::debug!("end of stream");
            state.ep.handle_eof(now);
        }
        Ok(n) => {
            // A buffer of the right transport never refuses bytes.
            let _ = state.ep.handle_input(&half.buf[..n], now);
            shared.wake(&mut state);
            drop(state);
            if by == Reading::Task {
                // The owner polls on its own otherwise: it is the one reading.
                shared.events.notify(usize::MAX);
            }
            return Poll::Ready(true);
        }
        Err(err) if err.kind() == io::ErrorKind::Interrupted => return Poll::Ready(true),
        Err(err) => {
            tracing::debug!(%err, "read failed");
            state.ep.handle_read_error(err, now);
        }
    }
    half.stream = None;
    // The owner, waiters on `closed()` and blocked senders learn of the end.
    shared.settle(state);
    Poll::Ready(true)
}

/// Reads while it has the turn: while the owner waits for room to send or for the end, not
/// for an event. Ends with the input or the owner, dropping the read half.
pub(crate) async fn read<M>(shared: Arc<Shared<M>>)
where
    M: Serialize + DeserializeOwned,
{
    loop {
        shared
            .wait_for(&shared.input, |s| s.reader_task_may_go())
            .await;
        if shared.lock().reader_done() {
            if let Some(reader) = shared.reader() {
                reader
                    .half
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .stream = None;
            }
            return;
        }
        // A change of turn, or the end, ends the wait for the stream.
        let changed = shared.input.listen();
        future::or(
            poll_fn(|cx| poll_read(&shared, cx, Reading::Task).map(|_| ())),
            changed,
        )
        .await;
    }
}
