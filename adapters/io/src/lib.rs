//! What the tether adapters share, written once: the child-process layer and the async
//! drivers, over futures-io traits and a small [`Runtime`] trait.
//!
//! Use it through `tether-tokio` or `tether-smol`, which implement [`Runtime`] and name the
//! types for their runtime; the API is the same in both, so switching runtimes is a change of
//! import.
//!
//! The drivers decide nothing themselves: every protocol decision is the core
//! [`tether_core::Connection`]'s, every lifetime decision the core
//! [`tether_core::Supervisor`]'s. They move bytes between the transport and the core, map the
//! supervisor's actions to system calls, and wake whoever waits.
//!
//! Transports: byte streams (a child's pipes, TCP and Unix sockets, any reader and writer),
//! websockets, and MCP's Streamable HTTP ([`Connection::connect_http`]), whose requests,
//! headers, resumptions and waits are the core `streamable::Client`'s decisions.
#![deny(missing_docs)]

mod clock;
mod connection;
mod error;
mod http;
mod listener;
mod machine;
mod options;
pub mod process;
mod record;
mod rpc;
mod runtime;
mod shared;
mod stream;
mod ws;

pub use clock::now;
pub use connection::{Connection, Restarts, Sender};
pub use error::Error;
pub use http::{check_http_url, HyperIo};
pub use hyper::header::{HeaderName, HeaderValue};
pub use listener::Listener;
pub use machine::{Driver, Machine, Shards, Waiters, Wake, SHARDS};
pub use options::Options;
pub use process::contain::{Containment, Mechanism};
pub use process::{ChildOptions, EndReport, Limits, RestartReport, Stderr};
pub use record::Recorder;
pub use rpc::{CancelNotification, Client, Inbound, Incoming, Responder, RpcOptions};
pub use runtime::{Io, Runtime};

pub use async_tungstenite;
pub use async_tungstenite::tungstenite::protocol::Role;
pub use tether_core::{
    CloseReason, Disconnect, DisconnectKind, ErrorObject, Event, ExitStatus, Framing, Goodbye, Id,
    Lite, Malformed, MalformedKind, Message, Notification, Policy, Request, Response, RpcError,
    SendError, Verbatim,
};
pub use tether_core::{EndCause, RestartMode, RestartPolicy};
