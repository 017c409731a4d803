//! The sans-IO core of tether: JSON-RPC framing and decoding, a connection state machine, and a
//! child-process supervisor.
//!
//! Nothing here performs I/O, reads a clock, spawns a thread or needs an async runtime. Every
//! method returns at once; time, where it matters, is an argument. That is what lets the tokio
//! and smol adapters, a fuzzer and a unit test drive exactly the same code.
//!
//! # Driving a [`Connection`]
//!
//! A connection is built from a [`Config`] (framing, frame limit, send budget, label) and is
//! generic over its message type: [`Message`] by default, or any `Serialize + DeserializeOwned`
//! type of your own. A driver (an adapter) owns the transport and loops:
//!
//! 1. **Drain events.** Call [`Connection::poll_event`] until it returns `None`, handing each
//!    [`Event`] to the owner. It decodes one frame per call, so a driver that stops polling
//!    (because its consumer is slow) also stops reading, and the peer feels backpressure.
//! 2. **Feed input.** Only when `poll_event` returned `None`, read from the transport and call
//!    [`Connection::handle_input`] with the bytes (stream transports: pipes, TCP, Unix
//!    sockets), or [`Connection::handle_frame`] with one whole message (websocket). On end of
//!    stream call [`Connection::handle_eof`]; on a read error
//!    [`Connection::handle_read_error`]. Then go back to 1: buffered frames still come out,
//!    followed by exactly one [`Event::Disconnected`], after which `poll_event` stays `None`.
//! 3. **Write output.** Whenever [`Connection::send`] has queued something, take it all with
//!    [`Connection::poll_transmit`] (one contiguous buffer: one write, one flush) or frame by
//!    frame with [`Connection::poll_transmit_frame`], write it, and report it with
//!    [`Connection::handle_transmitted`]. A write failure goes to
//!    [`Connection::handle_write_error`].
//! 4. **Close.** After [`Connection::close`], once [`Connection::poll_close_write`] returns
//!    `true`, close the write half (the child's stdin, the socket's write side, or send a
//!    websocket Close) and keep reading until the peer ends.
//!
//! Sending is bounded: [`Connection::send`] returns [`SendError::Full`] while the queued and
//! unacknowledged bytes reach the send budget, and [`Connection::can_send`] says when it would
//! succeed. An async `send` waits on that.
//!
//! ## Guarantees
//!
//! - Messages come out in the order their bytes went in, and the same bytes in any chunking
//!   give the same events.
//! - A frame that cannot be decoded is an [`Event::Malformed`] with a typed
//!   [`MalformedKind`] and a short excerpt; the connection goes on with the next frame.
//! - A frame over the limit is reported once and its bytes are dropped as they arrive: the
//!   input buffer never holds more than the limit plus the last chunk handed in (with
//!   `Content-Length` framing, the larger of the limit and the 8 KiB header limit
//!   [`framing::MAX_HEADER`], plus the chunk).
//! - [`Event::Disconnected`] comes exactly once, last: `None` for a clean end, otherwise a
//!   [`Disconnect`] naming the connection's label and what failed.
//!
//! # Driving a [`Supervisor`]
//!
//! One supervisor per child process. The driver reports what happens —
//! [`Supervisor::request_shutdown`] (idempotent), [`Supervisor::handle_exit`] when the child
//! exits, [`Supervisor::handle_timeout`] when the deadline from
//! [`Supervisor::poll_timeout`] passes — and after each call carries out every [`Action`]
//! from [`Supervisor::poll_action`]: close the child's stdin, terminate its process group,
//! kill its process group. [`Supervisor::is_done`] says when the child is gone and its group
//! killed; [`Supervisor::exit_status`] says how it ended. See the [`supervisor`] module for the
//! ladder and for why a driver should kill the group before it reaps the child.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tether_core::{Action, ExitStatus, Policy, Supervisor};
//!
//! let start = Instant::now();
//! let mut sup = Supervisor::new(Policy::graceful(Duration::from_secs(2)));
//! sup.request_shutdown(start);
//! assert_eq!(sup.poll_action(), Some(Action::CloseStdin));
//! let deadline = sup.poll_timeout().unwrap();
//! sup.handle_timeout(deadline);
//! assert_eq!(sup.poll_action(), Some(Action::TerminateGroup));
//! sup.handle_exit(deadline, ExitStatus { code: None, signal: Some(15) });
//! assert_eq!(sup.poll_action(), Some(Action::KillGroup));
//! assert!(sup.is_done());
//! ```
#![deny(missing_docs)]

mod config;
mod connection;
pub mod correlator;
pub mod endpoint;
mod error;
mod event;
pub mod framing;
pub mod gateway;
#[cfg(feature = "harness")]
#[doc(hidden)]
pub mod harness;
mod keepalive;
mod malformed;
pub mod message;
pub mod restart;
pub mod streamable;
pub mod supervisor;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transcript;
mod verbatim;

pub use config::{
    Config, DEFAULT_MAX_FRAME, DEFAULT_READ_AHEAD_BYTES, DEFAULT_READ_AHEAD_EVENTS,
    DEFAULT_SEND_BUDGET,
};
pub use connection::Connection;
pub use correlator::{Completion, Correlator, RpcError};
pub use endpoint::{
    CancelNotification, CloseReason, Control, Endpoint, Goodbye, RespondError, Wake,
};
pub use error::{ConfigError, SendError, UsageError};
pub use event::{Disconnect, DisconnectKind, Event};
pub use framing::Framing;
pub use keepalive::{Keepalive, KeepaliveAction};
pub use malformed::{decode, Malformed, MalformedKind, EXCERPT_LEN};
pub use message::{ErrorObject, Id, Lite, Message, Notification, Request, Response};
pub use restart::{Decision, End, EndCause, Restart, RestartMode, RestartPolicy, Restarts};
pub use supervisor::{Action, ExitStatus, Policy, Supervisor};
pub use verbatim::{Verbatim, VerbatimBatch};
