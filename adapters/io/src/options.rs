//! How a connection is built: the core's [`Config`] (every setting the endpoint decides
//! with), plus what only the drivers know: the label's default, and how a child is spawned.

use std::time::Duration;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use tether_core::{Config, Framing, Goodbye, Policy, RestartPolicy};

use crate::process::contain::Containment;
use crate::process::{ChildOptions, Stderr};

/// Everything a connection is configured with. Start from [`Options::new`] and change what
/// you need; every constructor validates the result. The settings the core decides with are a
/// [`Config`]: set one whole with [`config`](Self::config), read it back with
/// [`core`](Self::core), or use the shortcuts below, each of which sets the `Config` setting
/// of the same name.
#[derive(Debug, Clone, Default)]
pub struct Options {
    core: Config,
    pub(crate) label: Option<String>,
    pub(crate) child: ChildOptions,
}

/// Shortcuts to the [`Config`] builder methods of the same names (whose docs say what each
/// setting means), so that options are built in one chain.
macro_rules! config_shortcuts {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {$(
        #[doc = concat!("Sets [`Config::", stringify!($name), "`].")]
        pub fn $name(mut self, $($arg: $ty),*) -> Self {
            self.core = self.core.$name($($arg),*);
            self
        }
    )*};
}

impl Options {
    /// Line framing, 16 MiB frames, an 8 MiB send budget, a read-ahead of 128 events and
    /// 16 MiB beyond one frame, stderr logged, the default ladder
    /// (close stdin, 2 s, terminate, 2 s, kill), the strongest containment available, no
    /// keepalive, 2 s to close.
    pub fn new() -> Self {
        Options::default()
    }

    /// Every setting the core decides with, at once.
    pub fn config(mut self, config: Config) -> Self {
        self.core = config;
        self
    }

    /// The settings the core decides with (its label is the default one).
    pub fn core(&self) -> &Config {
        &self.core
    }

    config_shortcuts! {
        framing(framing: Framing),
        max_frame(bytes: usize),
        send_budget(bytes: usize),
        read_ahead(events: usize, bytes: usize),
        policy(policy: Policy),
        goodbye(goodbye: Option<Goodbye>),
        grace(grace: Duration),
        keepalive(interval: Duration, timeout: Duration),
        close_timeout(timeout: Duration),
        idle_timeout(timeout: Option<Duration>),
        answer_malformed(on: bool),
        restart(policy: RestartPolicy),
    }

    /// The name in disconnect reasons and logs (by default the program and pid, address or
    /// URL).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Where the child's standard error goes.
    pub fn stderr(mut self, stderr: Stderr) -> Self {
        self.child.stderr = stderr;
        self
    }

    /// How the child's whole tree is reached at the end (default: the strongest available,
    /// see [`Containment`]).
    pub fn contain(mut self, contain: Containment) -> Self {
        self.child.contain = contain;
        self
    }

    /// Memory, process and CPU limits for the child's tree, through cgroups; spawning fails
    /// if they cannot be enforced here (see [`Limits::check`](crate::Limits::check)).
    pub fn limits(mut self, limits: crate::Limits) -> Self {
        self.child.limits = limits;
        self
    }

    /// Whether the direct child gets `SIGKILL` if the spawning thread dies (Linux).
    pub fn parent_death_signal(mut self, on: bool) -> Self {
        self.child.parent_death_signal = on;
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
            .max_message_size(Some(self.core.max_frame))
            .max_frame_size(Some(self.core.max_frame))
    }

    /// The framing chosen for byte streams.
    pub(crate) fn stream_framing(&self) -> Framing {
        self.core.framing
    }

    pub(crate) fn config_for(&self, framing: Framing, label: String) -> Config {
        self.core.clone().framing(framing).label(label)
    }
}
