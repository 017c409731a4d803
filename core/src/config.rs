//! How a connection and its endpoint frame, limit, name and time themselves.
//!
//! One value holds every setting the core decides with, so that an adapter's options are this
//! plus what only the adapter knows (where a child's standard error goes, say).

use std::time::Duration;

use crate::supervisor::DEFAULT_GRACE;
use crate::{ConfigError, Framing, Goodbye, Policy, RestartPolicy};

/// The default frame limit: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// The default outgoing byte budget: 8 MiB.
pub const DEFAULT_SEND_BUDGET: usize = 8 << 20;
/// The default number of messages decoded ahead of an owner that is not receiving: 128.
pub const DEFAULT_READ_AHEAD_EVENTS: usize = 128;
/// The default bytes of frames decoded ahead of an owner that is not receiving: 16 MiB.
pub const DEFAULT_READ_AHEAD_BYTES: usize = 16 << 20;

/// Every setting of a connection and its endpoint. Start from [`Config::new`] and change what
/// you need with the builder methods; read a setting back through its field (each builder
/// method documents what its field means). [`Connection::new`](crate::Connection::new) and
/// [`Endpoint::new`](crate::Endpoint::new) validate it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// See [`Config::framing`].
    pub framing: Framing,
    /// See [`Config::max_frame`].
    pub max_frame: usize,
    /// See [`Config::send_budget`].
    pub send_budget: usize,
    /// The most events held decoded ahead of the owner; see [`Config::read_ahead`].
    pub read_ahead_events: usize,
    /// The most frame bytes held decoded ahead of the owner; see [`Config::read_ahead`].
    pub read_ahead_bytes: usize,
    /// See [`Config::label`].
    pub label: String,
    /// See [`Config::policy`].
    pub policy: Policy,
    /// See [`Config::goodbye`].
    pub goodbye: Option<Goodbye>,
    /// See [`Config::restart`].
    pub restart: RestartPolicy,
    /// See [`Config::close_timeout`].
    pub close_timeout: Duration,
    /// Ping interval and timeout; see [`Config::keepalive`].
    pub keepalive: Option<(Duration, Duration)>,
    /// See [`Config::idle_timeout`].
    pub idle_timeout: Option<Duration>,
    /// See [`Config::answer_malformed`].
    pub answer_malformed: bool,
    /// Sees every frame in and out, and the end (a recording); see [`Config::tap`].
    pub tap: Option<crate::transcript::Tap>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            framing: Framing::Lines,
            max_frame: DEFAULT_MAX_FRAME,
            send_budget: DEFAULT_SEND_BUDGET,
            read_ahead_events: DEFAULT_READ_AHEAD_EVENTS,
            read_ahead_bytes: DEFAULT_READ_AHEAD_BYTES,
            label: "peer".to_owned(),
            policy: Policy::default(),
            goodbye: None,
            restart: RestartPolicy::default(),
            close_timeout: DEFAULT_GRACE,
            keepalive: None,
            idle_timeout: None,
            answer_malformed: false,
            tap: None,
        }
    }
}

impl Config {
    /// Line framing, a 16 MiB frame limit, an 8 MiB send budget, labelled `peer`; for a child
    /// the default ladder (close stdin, 2 s, terminate, 2 s, kill) with no goodbye; 2 s for the
    /// peer to close; no keepalive, no idle timeout, malformed frames not answered.
    pub fn new() -> Self {
        Config::default()
    }

    /// How messages are delimited.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// The largest frame accepted, in bytes; a longer one is reported as
    /// [`MalformedKind::TooLarge`](crate::MalformedKind::TooLarge) and discarded. Must be at
    /// least 1. With line framing it counts the line without its `\n` but with a `\r` before
    /// it, so that the verdict never depends on whether the `\n` had arrived yet.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// How many encoded bytes may wait to be written before a send is refused with
    /// [`SendError::Full`](crate::SendError::Full). One message may overshoot it: a send is
    /// accepted whenever the queue is below the budget. Must be at least 1.
    pub fn send_budget(mut self, bytes: usize) -> Self {
        self.send_budget = bytes;
        self
    }

    /// How far input is read ahead of an owner that is not receiving (busy, or waiting to
    /// send): the input buffer holds up to one frame at the frame limit (plus the last chunk
    /// read), and beyond it up to `events` frames, of at most `bytes` bytes together (one frame
    /// is always taken), wait decoded. Only when both are full does
    /// [`Endpoint::wants_input`](crate::Endpoint::wants_input) turn false and the peer get held
    /// back by its own pipe or socket. So the input side never holds more than the frame limit
    /// plus one chunk plus `bytes` (plus one frame); a peer that answers while it reads can
    /// always finish answering a request that the owner is still waiting to send. Both must be
    /// at least 1; the defaults are 128 events and 16 MiB.
    pub fn read_ahead(mut self, events: usize, bytes: usize) -> Self {
        self.read_ahead_events = events;
        self.read_ahead_bytes = bytes;
        self
    }

    /// The name used in disconnect reasons and logs, for example `child:my-server (pid 42)`.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// A child's shutdown ladder.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// What a child is told before its shutdown ladder starts (LSP's `shutdown` and `exit`).
    pub fn goodbye(mut self, goodbye: Option<Goodbye>) -> Self {
        self.goodbye = goodbye;
        self
    }

    /// Both grace periods of the default ladder, the wait for a goodbye's answer, and the
    /// time a close waits for the peer.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.policy = Policy::graceful(grace);
        self.close_timeout = grace;
        self
    }

    /// How long a close waits for the peer's end (its websocket Close, or the end of its
    /// output once a child has exited) before giving up on it.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Websocket keepalive: ping after `interval` of silence from the peer, give up `timeout`
    /// after the ping. Byte streams have no ping and ignore it.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some((interval, timeout));
        self
    }

    /// Close the connection after this long with no message in either direction.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Answer each malformed frame from the peer with a JSON-RPC error whose id is null:
    /// `-32600` for JSON that is not JSON-RPC, `-32700` for anything else (JSON-RPC 2.0 §5).
    /// For a server facing clients; off by default.
    pub fn answer_malformed(mut self, on: bool) -> Self {
        self.answer_malformed = on;
        self
    }

    /// How a child is supervised across its ends: restarts, their delays, the crash-loop
    /// guard and the ready deadline (default: never restarted, no ready deadline). Only an
    /// endpoint for a child uses it.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Whether the settings can work; every constructor checks this too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_frame == 0 {
            return Err(ConfigError::ZeroMaxFrame);
        }
        if self.send_budget == 0 {
            return Err(ConfigError::ZeroSendBudget);
        }
        if self.read_ahead_events == 0 || self.read_ahead_bytes == 0 {
            return Err(ConfigError::ZeroReadAhead);
        }
        Ok(())
    }
}
