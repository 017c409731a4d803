//! The I/O tasks of a websocket connection: text and binary messages carry one JSON-RPC
//! message each; pings, pongs, Close frames and refused oversized messages are reported to the
//! endpoint, and the Close frames, pings and flushes it asks for are carried out.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{future, StreamExt};
use futures_sink::Sink;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tether_core::Control;

use crate::clock;
use crate::shared::Shared;

/// Every task of one websocket connection, as one future for the runtime to spawn.
pub(crate) async fn run<M, S>(shared: Arc<Shared<M>>, ws: WebSocketStream<S>)
where
    M: Serialize + DeserializeOwned,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (tx, rx) = ws.split();
    future::zip(read(&shared, rx), write(&shared, tx)).await;
}

/// What the reader got from the websocket, as the endpoint takes it.
enum Read {
    Frame(Vec<u8>),
    Ping,
    Pong,
    PeerClose,
    TooLarge(WsError),
    End,
    Failed(WsError),
}

async fn read<M, S>(shared: &Shared<M>, mut rx: WebSocketReceiver<S>)
where
    M: Serialize + DeserializeOwned,
    S: AsyncRead + AsyncWrite + Unpin,
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
        let read = match item {
            Some(Ok(WsMessage::Text(text))) => Read::Frame(Vec::from(text.as_bytes())),
            Some(Ok(WsMessage::Binary(bytes))) => Read::Frame(Vec::from(bytes)),
            Some(Ok(WsMessage::Ping(_))) => Read::Ping,
            Some(Ok(WsMessage::Pong(_) | WsMessage::Frame(_))) => Read::Pong,
            Some(Ok(WsMessage::Close(_))) => Read::PeerClose,
            None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => Read::End,
            Some(Err(err @ WsError::Capacity(_))) => Read::TooLarge(err),
            Some(Err(err)) => Read::Failed(err),
        };
        if let Read::Frame(frame) = read {
            // Backpressure: a frame goes in only while the read-ahead has room.
            shared.wait_for(&shared.input, |s| s.reader_may_go()).await;
            let mut state = shared.lock();
            if state.reader_done() {
                return;
            }
            let _ = state.ep.handle_frame(frame, clock::now());
            shared.wake(&mut state);
            drop(state);
            shared.events.notify(usize::MAX);
            continue;
        }
        let last = !matches!(read, Read::Ping | Read::Pong);
        shared.handle(|ep, now| match read {
            Read::Ping => ep.handle_ping(now),
            Read::Pong => ep.handle_pong(now),
            Read::PeerClose => {
                tracing::debug!("websocket closed by the peer");
                ep.handle_peer_close(now);
            }
            Read::TooLarge(err) => ep.handle_too_large(err, now),
            Read::End => ep.handle_eof(now),
            Read::Failed(err) => {
                tracing::debug!(%err, "websocket read failed");
                ep.handle_read_error(err, now);
            }
            Read::Frame(_) => {}
        });
        if last {
            return;
        }
    }
}

async fn write<M, S>(shared: &Shared<M>, mut tx: WebSocketSender<S>)
where
    M: Serialize + DeserializeOwned,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let listener = shared.output.listen();
        let mut frames = Vec::new();
        let (control, stop) = {
            let mut state = shared.lock();
            while let Some(frame) = state.ep.poll_transmit_frame() {
                frames.push(frame);
            }
            // Controls wait until the frames before them are out.
            let control = match frames.is_empty() {
                true => state.ep.poll_control(),
                false => None,
            };
            (control, state.abandoned || state.ep.is_finished())
        };
        let bytes: usize = frames.iter().map(Vec::len).sum();
        let result = future::or(
            async {
                for frame in frames {
                    // The core's encoder writes JSON, which is UTF-8.
                    let text = String::from_utf8(frame)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    feed(&mut tx, WsMessage::text(text)).await?;
                }
                match &control {
                    Some(Control::Ping) => {
                        feed(&mut tx, WsMessage::Ping(Vec::new().into())).await?
                    }
                    Some(Control::SendClose { code, reason }) => {
                        let frame = CloseFrame {
                            code: CloseCode::from(*code),
                            reason: reason.clone().into(),
                        };
                        tracing::debug!(?frame, "sending websocket Close");
                        return tx.close(Some(frame)).await;
                    }
                    _ => {}
                }
                poll_fn(|cx| Pin::new(&mut tx).poll_flush(cx)).await
            },
            async {
                shared.wait_for(&shared.stop, |s| s.abandoned).await;
                Err(WsError::AlreadyClosed)
            },
        )
        .await;
        if bytes > 0 {
            let mut state = shared.lock();
            state.ep.handle_transmitted(bytes);
            // Answers owed to the peer are out: input held back for them may go on.
            shared.wake(&mut state);
            drop(state);
            shared.progress.notify(usize::MAX);
        }
        match (&control, result) {
            (Some(Control::Abort), _) => return,
            (Some(Control::SendClose { .. }), _) => {
                // Sent or not, nothing more can be written; the endpoint waits for the peer.
                shared.handle(|ep, now| ep.handle_flushed(now));
                return;
            }
            (Some(Control::Flush), Ok(()) | Err(WsError::ConnectionClosed)) => {
                shared.handle(|ep, now| ep.handle_flushed(now));
            }
            (_, Ok(())) => {}
            // The peer's Close has been answered: nothing more can be written.
            (_, Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                shared.handle(|ep, now| ep.handle_flushed(now));
                return;
            }
            (_, Err(err)) => {
                tracing::debug!(%err, "websocket write failed");
                shared.handle(|ep, now| ep.handle_write_error(err, now));
                return;
            }
        }
        if bytes > 0 || control.is_some() {
            continue;
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
