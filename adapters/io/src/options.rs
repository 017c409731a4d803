//! How a connection is built: framing, limits, label, child supervision, websocket keepalive.

use std::time::Duration;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use tether_core::{Config, Framing, Goodbye, Policy};

use crate::process::{ChildOptions, Stderr};

/// Everything a connection is configured with. Start from [`Options::new`] and change what
/// you need; every constructor validates the result.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Framing, frame limit and send budget, as the core connection takes them.
    core: Config,
    pub(crate) label: Option<String>,
    pub(crate) child: ChildOptions,
}

impl Options {
    /// Line framing, 16 MiB frames, an 8 MiB send budget, stderr logged, the default ladder
    /// (close stdin, 2 s, terminate, 2 s, kill), no keepalive, 2 s to close.
    pub fn new() -> Self {
        Options::default()
    }

    /// How a byte stream is framed (ignored by websockets, which carry whole messages).
    pub fn framing(mut self, framing: Framing) -> Self {
        self.core = self.core.framing(framing);
        self
    }

    /// The largest message accepted, in bytes; websocket frame and message limits too.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.core = self.core.max_frame(bytes);
        self
    }

    /// How many encoded bytes may wait to be written before `send` waits.
    pub fn send_budget(mut self, bytes: usize) -> Self {
        self.core = self.core.send_budget(bytes);
        self
    }

    /// The name in disconnect reasons and logs (by default the program, address or URL).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The child's shutdown ladder.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.core = self.core.policy(policy);
        self
    }

    /// What the child is told before its ladder starts (LSP's `shutdown` and `exit`).
    pub fn goodbye(mut self, goodbye: Option<Goodbye>) -> Self {
        self.core = self.core.goodbye(goodbye);
        self
    }

    /// Sets both grace periods of the default ladder, and the time a close waits for the peer.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.core = self.core.grace(grace);
        self
    }

    /// Where the child's standard error goes.
    pub fn stderr(mut self, stderr: Stderr) -> Self {
        self.child.stderr = stderr;
        self
    }

    /// Whether the direct child gets `SIGKILL` if the spawning thread dies (Linux).
    pub fn parent_death_signal(mut self, on: bool) -> Self {
        self.child.parent_death_signal = on;
        self
    }

    /// Websocket keepalive: ping after `interval` of silence, give up `timeout` later.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.core = self.core.keepalive(interval, timeout);
        self
    }

    /// How long a close waits for the peer's end (its Close frame, or end of stream).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.core = self.core.close_timeout(timeout);
        self
    }

    /// Close after this long with no message either way.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.core = self.core.idle_timeout(timeout);
        self
    }

    /// Answer each malformed frame from the peer with a JSON-RPC error (id null).
    pub fn answer_malformed(mut self, on: bool) -> Self {
        self.core = self.core.answer_malformed(on);
        self
    }

    /// Records every frame in and out, and the end, with `recorder`.
    pub fn record(mut self, recorder: &crate::Recorder) -> Self {
        self.core = self.core.tap(Some(recorder.tap()));
        self
    }

    /// The websocket limits that match these options, for a handshake made outside tether
    /// (hand the stream to `Connection::from_ws` afterwards).
    pub fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.core.get_max_frame()))
            .max_frame_size(Some(self.core.get_max_frame()))
    }

    /// The framing chosen for byte streams.
    pub(crate) fn stream_framing(&self) -> Framing {
        self.core.get_framing()
    }

    pub(crate) fn config(&self, framing: Framing, label: String) -> Config {
        self.core.clone().framing(framing).label(label)
    }
}
