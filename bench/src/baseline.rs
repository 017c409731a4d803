//! The baselines: a JSON-RPC client written the way the common tokio approach writes one.
//!
//! A reader task turns the child's stdout into lines, skips blank ones, parses each with
//! `serde_json::from_str` into an untagged message enum and hands it on through a bounded
//! `tokio::sync::mpsc` channel (capacity 128). Writing serializes each message, writes it and a
//! newline, and flushes, once per message. Two flavours differ only in how lines are cut:
//! `BufReader::lines()` with a `BufWriter`, or tokio-util's `LinesCodec` with a length limit.
//!
//! The writer is owned by the caller rather than put behind a mutex or a writer task: that is
//! the cheapest form of the approach, so the ratios against it are not flattered.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_lite::StreamExt;
use futures_sink::Sink;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

use crate::client::{Client, Incoming};

/// Events between the reader task and the consumer, as such clients usually bound them.
const CHANNEL: usize = 128;

/// A JSON-RPC message as such clients usually model it: serde tries each shape in turn.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum RpcMessage {
    Request(RpcRequest),
    Notification(RpcNotification),
    Response(RpcResponse),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RpcRequest {
    jsonrpc: String,
    id: Value,
    method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RpcNotification {
    jsonrpc: String,
    method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RpcResponse {
    jsonrpc: String,
    id: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// The reader task's common step: skip a blank line, parse the rest and pass it on. `false`
/// once the consumer is gone.
async fn deliver(line: &str, events: &mpsc::Sender<Incoming<RpcMessage>>) -> bool {
    if line.trim().is_empty() {
        return true;
    }
    let event = match serde_json::from_str::<RpcMessage>(line) {
        Ok(message) => Incoming::Message(message),
        Err(_) => Incoming::Malformed,
    };
    events.send(event).await.is_ok()
}

/// A spawned child, with both ends of the channel its reader task will feed.
struct Started {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    tx: mpsc::Sender<Incoming<RpcMessage>>,
    events: mpsc::Receiver<Incoming<RpcMessage>>,
}

fn start(mut command: Command) -> io::Result<Started> {
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let (tx, events) = mpsc::channel(CHANNEL);
    Ok(Started {
        child,
        stdin,
        stdout,
        tx,
        events,
    })
}

async fn wait(mut child: Child) -> io::Result<bool> {
    Ok(child.wait().await?.success())
}

fn request_id(message: &RpcMessage) -> Option<u64> {
    match message {
        RpcMessage::Request(request) => request.id.as_u64(),
        _ => None,
    }
}

/// `BufReader::lines()` in, `BufWriter` with a flush per message out.
#[derive(Debug)]
pub(crate) struct Lines {
    child: Child,
    writer: BufWriter<ChildStdin>,
    events: mpsc::Receiver<Incoming<RpcMessage>>,
}

impl Client for Lines {
    type Out = RpcMessage;
    type In = RpcMessage;

    fn spawn(command: Command, _max_frame: usize) -> io::Result<Self> {
        let Started {
            child,
            stdin,
            stdout,
            tx,
            events,
        } = start(command)?;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if !deliver(&line, &tx).await {
                    return;
                }
            }
        });
        Ok(Lines {
            child,
            writer: BufWriter::new(stdin),
            events,
        })
    }

    async fn recv(&mut self) -> Option<Incoming<RpcMessage>> {
        self.events.recv().await
    }

    async fn send(&mut self, message: &RpcMessage) -> io::Result<()> {
        let json = serde_json::to_string(message)?;
        self.writer.write_all(json.as_bytes()).await?;
        self.writer.write_all(b"\n").await?;
        self.writer.flush().await
    }

    async fn finish(self) -> io::Result<bool> {
        drop(self.writer);
        wait(self.child).await
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn request_id(message: &RpcMessage) -> Option<u64> {
        request_id(message)
    }
}

/// tokio-util's `FramedRead` and `FramedWrite` with a length-limited `LinesCodec`; writes go
/// through the sink, which flushes each message as `SinkExt::send` does.
#[derive(Debug)]
pub(crate) struct Codec {
    child: Child,
    writer: FramedWrite<ChildStdin, LinesCodec>,
    events: mpsc::Receiver<Incoming<RpcMessage>>,
}

impl Client for Codec {
    type Out = RpcMessage;
    type In = RpcMessage;

    fn spawn(command: Command, max_frame: usize) -> io::Result<Self> {
        let Started {
            child,
            stdin,
            stdout,
            tx,
            events,
        } = start(command)?;
        tokio::spawn(async move {
            let mut frames = FramedRead::new(stdout, LinesCodec::new_with_max_length(max_frame));
            // After a codec error the stream yields `None` once, which ends this loop: the
            // usual way to write it loses the connection at the first overlong line.
            while let Some(frame) = frames.next().await {
                let delivered = match frame {
                    Ok(line) => deliver(&line, &tx).await,
                    Err(_) => tx.send(Incoming::Malformed).await.is_ok(),
                };
                if !delivered {
                    return;
                }
            }
        });
        Ok(Codec {
            child,
            writer: FramedWrite::new(stdin, LinesCodec::new_with_max_length(max_frame)),
            events,
        })
    }

    async fn recv(&mut self) -> Option<Incoming<RpcMessage>> {
        self.events.recv().await
    }

    async fn send(&mut self, message: &RpcMessage) -> io::Result<()> {
        let json = serde_json::to_string(message)?;
        let mut sink = Pin::new(&mut self.writer);
        poll_fn(|cx| Sink::<String>::poll_ready(sink.as_mut(), cx))
            .await
            .map_err(io::Error::other)?;
        sink.as_mut().start_send(json).map_err(io::Error::other)?;
        poll_fn(|cx| Sink::<String>::poll_flush(sink.as_mut(), cx))
            .await
            .map_err(io::Error::other)
    }

    async fn finish(self) -> io::Result<bool> {
        drop(self.writer);
        wait(self.child).await
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn request_id(message: &RpcMessage) -> Option<u64> {
        request_id(message)
    }
}
