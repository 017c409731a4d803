//! The I/O tasks of a byte-stream connection (pipes, TCP, Unix sockets): one reads, one
//! writes, concurrently, so that a peer blocked writing to us never stalls our writes.

use std::sync::Arc;

use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shared::Shared;

/// How much is read at once; the input buffer never holds more than the frame limit plus this.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Both tasks, as one future for the runtime to spawn.
pub(crate) async fn run<M, Rd, Wr>(shared: Arc<Shared<M>>, reader: Rd, writer: Wr)
where
    M: Serialize + DeserializeOwned,
    Rd: AsyncRead + Unpin,
    Wr: AsyncWrite + Unpin,
{
    future::zip(read(&shared, reader), write(&shared, writer)).await;
}

/// Reads one chunk ahead of the owner, and hands it to the core only once the owner has
/// drained every event: an owner that stops polling stops the reading too.
async fn read<M, Rd>(shared: &Shared<M>, mut reader: Rd)
where
    M: Serialize + DeserializeOwned,
    Rd: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let stop = shared.wait_for(&shared.input, |s| s.reader_done());
        let Some(result) = future::or(async { Some(reader.read(&mut buf).await) }, async {
            stop.await;
            None
        })
        .await
        else {
            return;
        };
        if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::Interrupted) {
            continue;
        }
        shared
            .wait_for(&shared.input, |s| s.wants_input || s.reader_done())
            .await;
        let mut state = shared.lock();
        if state.reader_done() {
            return;
        }
        let ended = match result {
            Ok(0) => {
                tracing::debug!("end of stream");
                state.conn.handle_eof();
                true
            }
            Ok(n) => {
                // A buffer of the right transport never refuses bytes.
                let _ = state.conn.handle_input(&buf[..n]);
                false
            }
            Err(err) => {
                tracing::debug!(%err, "read failed");
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

/// Writes everything queued in one write and one flush per wake-up, and closes the write half
/// when the core says so.
async fn write<M, Wr>(shared: &Shared<M>, mut writer: Wr)
where
    M: Serialize + DeserializeOwned,
    Wr: AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    loop {
        let listener = shared.output.listen();
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
                    shared.wait_for(&shared.output, |s| s.abandoned).await;
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
        listener.await;
    }
}

async fn write_flush<Wr: AsyncWrite + Unpin>(writer: &mut Wr, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
