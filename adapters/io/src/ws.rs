//! The I/O tasks of a websocket connection: text and binary messages carry one JSON-RPC
//! message each, pings are answered and flushed, the keepalive runs, and closing sends a Close
//! frame and reads on until the peer's.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use event_listener::Event;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{future, StreamExt};
use futures_sink::Sink;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tether_core::{Keepalive, KeepaliveAction};

use crate::shared::Shared;
use crate::Runtime;

/// Every task of one websocket connection, as one future for the runtime to spawn.
pub(crate) async fn run<M, S, R>(
    shared: Arc<Shared<M>>,
    ws: WebSocketStream<S>,
    keepalive: Option<(Duration, Duration)>,
) where
    M: Serialize + DeserializeOwned,
    S: AsyncRead + AsyncWrite + Unpin,
    R: Runtime,
{
    let (tx, rx) = ws.split();
    let keepalive =
        keepalive.map(|(interval, timeout)| Keepalive::new(Instant::now(), interval, timeout));
    let last = LastWord::default();
    future::zip(
        read::<M, S, R>(&shared, rx, &last),
        future::zip(
            async {
                write(&shared, tx, &last).await;
                last.sent();
            },
            run_keepalive::<M, R>(&shared, keepalive),
        ),
    )
    .await;
}

/// The frame the peer is owed at the end — the answer to its Close, or our Close after a
/// message over the limit — and whether the writer has sent it (or can send nothing more).
/// The reader hands the end to the owner only after, so that an owner who drops the connection
/// (or exits) on `Disconnected` does not cut it off.
#[derive(Default)]
struct LastWord {
    /// The answer to the peer's Close is queued: the next flush sends it. Set by the reader
    /// under the state lock, together with the flush request.
    owed: AtomicBool,
    done: AtomicBool,
    event: Event,
}

impl LastWord {
    fn sent(&self) {
        self.done.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    async fn wait(&self) {
        loop {
            let listener = self.event.listen();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }
}

async fn read<M, S, R>(shared: &Shared<M>, mut rx: WebSocketReceiver<S>, last: &LastWord)
where
    M: Serialize + DeserializeOwned,
    S: AsyncRead + AsyncWrite + Unpin,
    R: Runtime,
{
    loop {
        let stop = shared.wait_for(&shared.stop, |s| s.reader_done());
        let Some(item) = future::or(async { Some(rx.next().await) }, async {
            stop.await;
            None
        })
        .await
        else {
            return;
        };
        let mut last_word = false;
        let frame = match item {
            Some(Ok(WsMessage::Text(text))) => Ok(Vec::from(text.as_bytes())),
            Some(Ok(WsMessage::Binary(bytes))) => Ok(Vec::from(bytes)),
            Some(Ok(WsMessage::Ping(_))) => {
                // The pong is queued by the protocol layer; it goes out on the next flush.
                shared.lock().flush_needed = true;
                shared.output.notify(1);
                activity(shared);
                continue;
            }
            Some(Ok(WsMessage::Pong(_) | WsMessage::Frame(_))) => {
                activity(shared);
                continue;
            }
            Some(Ok(WsMessage::Close(_))) => {
                // The protocol layer has queued the answer: have it flushed.
                let mut state = shared.lock();
                state.flush_needed = true;
                last.owed.store(true, Ordering::Release);
                drop(state);
                shared.output.notify(1);
                last_word = true;
                Err(None)
            }
            None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => Err(None),
            Some(Err(err @ WsError::Capacity(_))) => {
                // The peer's message is over the limit: say so in our Close (1009, "Message
                // Too Big") rather than just drop the connection.
                let mut state = shared.lock();
                state
                    .close_frame
                    .get_or_insert((1009, "message over the size limit".to_owned()));
                state.conn.close();
                drop(state);
                shared.output.notify(1);
                // The writer sends it, then ends.
                last_word = true;
                Err(Some(err))
            }
            Some(Err(err)) => Err(Some(err)),
        };
        if last_word {
            // Bounded: a peer that does not read cannot hold the end back.
            future::or(
                last.wait(),
                future::or(
                    shared.wait_for(&shared.stop, |s| s.reader_done()),
                    R::sleep(tether_core::supervisor::DEFAULT_GRACE),
                ),
            )
            .await;
        }
        activity(shared);
        if frame.is_ok() {
            shared
                .wait_for(&shared.input, |s| s.wants_input || s.reader_done())
                .await;
        }
        let mut state = shared.lock();
        if state.reader_done() {
            return;
        }
        let ended = match frame {
            Ok(frame) => {
                let _ = state.conn.handle_frame(frame);
                false
            }
            Err(None) => {
                tracing::debug!("websocket closed by the peer");
                state.conn.handle_eof();
                // Our answering Close frame is queued: flush it.
                state.flush_needed = true;
                true
            }
            Err(Some(err)) => {
                tracing::debug!(%err, "websocket read failed");
                state.conn.handle_read_error(err);
                true
            }
        };
        shared.handed_in(state, ended);
        if ended {
            return;
        }
    }
}

fn activity<M>(shared: &Shared<M>) {
    if let Some(k) = shared.lock().keepalive.as_mut() {
        k.handle_activity(Instant::now());
    }
}

async fn write<M, S>(shared: &Shared<M>, mut tx: WebSocketSender<S>, last: &LastWord)
where
    M: Serialize + DeserializeOwned,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let listener = shared.output.listen();
        let mut frames = Vec::new();
        let (close, flush, ping, stop, owed) = {
            let mut state = shared.lock();
            while let Some(frame) = state.conn.poll_transmit_frame() {
                frames.push(frame);
            }
            (
                state.conn.poll_close_write(),
                std::mem::take(&mut state.flush_needed),
                std::mem::take(&mut state.ping_needed),
                state.abandoned || state.conn.is_closed(),
                last.owed.load(Ordering::Acquire),
            )
        };
        let bytes: usize = frames.iter().map(Vec::len).sum();
        let mut result = Ok(());
        if !frames.is_empty() || flush || ping {
            result = future::or(
                async {
                    for frame in frames {
                        // The core's encoder writes JSON, which is UTF-8.
                        let text = String::from_utf8(frame)
                            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                        feed(&mut tx, WsMessage::text(text)).await?;
                    }
                    if ping {
                        feed(&mut tx, WsMessage::Ping(Vec::new().into())).await?;
                    }
                    poll_fn(|cx| Pin::new(&mut tx).poll_flush(cx)).await
                },
                async {
                    shared.wait_for(&shared.stop, |s| s.abandoned).await;
                    Err(WsError::AlreadyClosed)
                },
            )
            .await;
        }
        if flush && owed {
            // The answer to the peer's Close went out with this flush.
            last.sent();
        }
        match result {
            Ok(()) if bytes > 0 => {
                shared.lock().conn.handle_transmitted(bytes);
                shared.progress.notify(usize::MAX);
                continue;
            }
            Ok(()) => {}
            // The peer's Close has already been answered.
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return,
            Err(err) => {
                tracing::debug!(%err, "websocket write failed");
                shared.lock().conn.handle_write_error(err);
                shared.notify_all();
                return;
            }
        }
        if close {
            // Without a code of the owner's, an orderly close is a normal closure (1000).
            let (code, reason) = shared
                .lock()
                .close_frame
                .take()
                .unwrap_or((1000, String::new()));
            let frame = Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            });
            tracing::debug!(?frame, "sending websocket Close");
            let _ = tx.close(frame).await;
            return;
        }
        if stop {
            return;
        }
        listener.await;
    }
}

async fn feed<S>(tx: &mut WebSocketSender<S>, message: WsMessage) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    poll_fn(|cx| Pin::new(&mut *tx).poll_ready(cx)).await?;
    Pin::new(&mut *tx).start_send(message)
}

/// Fires the keepalive's deadlines: asks the writer for pings, and ends the connection when
/// the peer stays silent.
async fn run_keepalive<M, R>(shared: &Shared<M>, keepalive: Option<Keepalive>)
where
    M: Serialize + DeserializeOwned,
    R: Runtime,
{
    if keepalive.is_none() {
        return;
    }
    shared.lock().keepalive = keepalive;
    loop {
        let deadline = {
            let state = shared.lock();
            if state.reader_done() {
                return;
            }
            state.keepalive.as_ref().and_then(Keepalive::poll_timeout)
        };
        let Some(deadline) = deadline else { return };
        let wait = deadline.saturating_duration_since(Instant::now());
        future::or(
            R::sleep(wait),
            shared.wait_for(&shared.stop, |s| s.reader_done()),
        )
        .await;
        let mut state = shared.lock();
        let Some(k) = state.keepalive.as_mut() else {
            return;
        };
        k.handle_timeout(Instant::now());
        match k.poll_action() {
            Some(KeepaliveAction::Ping) => {
                state.ping_needed = true;
                drop(state);
                shared.output.notify(1);
            }
            Some(KeepaliveAction::TimedOut) => {
                state
                    .conn
                    .handle_timeout_error("no answer to a keepalive ping");
                drop(state);
                shared.notify_all();
                return;
            }
            None => {}
        }
    }
}
