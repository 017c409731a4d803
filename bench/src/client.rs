//! What a scenario needs from a contender, and tether's side of it.
//!
//! Every contender speaks to a real child over real pipes with its own message type, so each
//! pays for its own framing, decoding and encoding; the scenarios are written once, generic
//! over this trait, so they do exactly the same work around each contender.

use std::io;
use std::process::Command;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tether_io::{Event, Message, Options, Runtime};

/// What came in: a message, or a frame that did not decode.
pub(crate) enum Incoming<M> {
    Message(M),
    Malformed,
}

/// One JSON-RPC client over a child's stdin and stdout.
pub(crate) trait Client: Sized {
    /// The contender's own type for the messages it sends.
    type Out: Serialize + DeserializeOwned;
    /// The contender's own type for the messages it receives (the same as `Out` unless the
    /// library types each direction apart, as rmcp does).
    type In: Serialize;

    /// Spawns `command` with piped stdin and stdout; frames over `max_frame` bytes are
    /// refused where the contender has such a limit.
    fn spawn(command: Command, max_frame: usize) -> io::Result<Self>;

    /// The next message or malformed frame; `None` once the child's output has ended.
    async fn recv(&mut self) -> Option<Incoming<Self::In>>;

    /// Writes `message` (or queues it, where the contender queues).
    async fn send(&mut self, message: &Self::Out) -> io::Result<()>;

    /// Closes the child's stdin once everything sent is written, waits for its exit, and
    /// says whether it exited with status 0.
    async fn finish(self) -> io::Result<bool>;

    /// The contender's runtime's timer.
    async fn sleep(duration: Duration);

    /// The id of a request, as the echo child sends it back.
    fn request_id(message: &Self::In) -> Option<u64>;
}

/// tether, under either runtime, through its public API only.
impl<R: Runtime> Client for tether_io::Connection<Message, R> {
    type Out = Message;
    type In = Message;

    fn spawn(command: Command, max_frame: usize) -> io::Result<Self> {
        tether_io::Connection::spawn(command, Options::new().max_frame(max_frame))
            .map_err(io::Error::other)
    }

    async fn recv(&mut self) -> Option<Incoming<Message>> {
        loop {
            match tether_io::Connection::recv(self).await? {
                Event::Message(message) => return Some(Incoming::Message(message)),
                Event::Malformed(_) => return Some(Incoming::Malformed),
                // The last event: the next call returns `None`.
                Event::Disconnected(_) => {}
            }
        }
    }

    async fn send(&mut self, message: &Message) -> io::Result<()> {
        tether_io::Connection::send(self, message)
            .await
            .map_err(io::Error::other)
    }

    async fn finish(self) -> io::Result<bool> {
        let status = self.shutdown().await;
        Ok(status.is_some_and(|status| status.code == Some(0)))
    }

    async fn sleep(duration: Duration) {
        R::sleep(duration).await;
    }

    fn request_id(message: &Message) -> Option<u64> {
        match message {
            Message::Request(request) => match &request.id {
                tether_io::Id::Number(n) => n.as_u64(),
                _ => None,
            },
            _ => None,
        }
    }
}
