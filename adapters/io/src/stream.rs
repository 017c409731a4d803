//! The writer task of a byte-stream connection (pipes, TCP, Unix sockets). Reading is done by
//! the owner itself, when it polls for events; writing runs on its own so that a peer blocked
//! writing to us never stalls our writes, and a slow peer never stalls our owner.

use std::sync::Arc;

use futures_io::AsyncWrite;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shared::Shared;

/// How much is read at once; the core's input buffer never holds more than the frame limit
/// plus this.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Writes everything queued in one write and one flush per wake-up, and closes the write half
/// when the core says so.
pub(crate) async fn write<M, Wr>(shared: Arc<Shared<M>>, mut writer: Wr)
where
    M: Serialize + DeserializeOwned,
    Wr: AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    // Taken only when there is nothing to do, then checked once more before waiting.
    let mut listener = None;
    loop {
        let (n, close, stop) = {
            let mut state = shared.lock();
            let n = state.conn.poll_transmit(&mut out);
            let close = state.conn.poll_close_write();
            (n, close, state.abandoned || state.conn.is_closed())
        };
        if n > 0 {
            let written = future::or(
                async { Some(write_flush(&mut writer, &out).await) },
                async {
                    shared.wait_for(&shared.stop, |s| s.abandoned).await;
                    None
                },
            )
            .await;
            let mut state = shared.lock();
            match written {
                None => return,
                Some(Ok(())) => state.conn.handle_transmitted(n),
                Some(Err(err)) => {
                    tracing::debug!(%err, "write failed");
                    state.conn.handle_write_error(err);
                    drop(state);
                    shared.notify_all();
                    return;
                }
            }
            drop(state);
            out.clear();
            shared.progress.notify(usize::MAX);
            continue;
        }
        if close {
            tracing::debug!("closing the write half");
            let _ = writer.close().await;
            return;
        }
        if stop {
            return;
        }
        match listener.take() {
            Some(listener) => listener.await,
            None => listener = Some(shared.output.listen()),
        }
    }
}

async fn write_flush<Wr: AsyncWrite + Unpin>(writer: &mut Wr, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
