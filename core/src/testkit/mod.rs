//! Testing a client of a JSON-RPC peer without the peer: a scripted peer, a virtual clock,
//! and scripts read from recorded transcripts (behind the `testkit` feature).
//!
//! - A [`Script`] says what the peer does: expect a request for a method and reply, send a
//!   notification, wait for the client to close, close, exit with a status. Or it comes from
//!   a session recorded with `tether run --record FILE` ([`Script::from_transcript`]).
//! - A [`ScriptedPeer`] plays a script, sans-IO: frames in, frames and an exit out. When the
//!   client sends something else, it says what it expected and what it received
//!   ([`Mismatch`]).
//! - A [`Session`] wires the client's [`Endpoint`](crate::Endpoint) to a scripted peer in
//!   virtual time ([`VirtualClock`]): no process, no runtime, no waiting. A request timeout
//!   of five seconds takes no time at all.
//!
//! # Example: initialize, then a tool call that times out
//!
//! The client under test initializes, then calls a tool and gives up after five seconds,
//! telling the peer with MCP's `notifications/cancelled`; then it closes, and the child
//! exits.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//!
//! use serde_json::json;
//! use tether_core::testkit::{Script, Session};
//! use tether_core::{Config, Event, Id, Notification, RpcError};
//!
//! let script = Script::new()
//!     .expect_request("initialize")
//!     .reply(json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}}))
//!     .expect_notification("notifications/initialized")
//!     .expect_request("tools/call") // and never answer it
//!     .expect_notification("notifications/cancelled")
//!     .await_close()
//!     .exit(0);
//! let mut session = Session::child(Config::new(), script, Instant::now())?;
//! let cancel = Arc::new(|id: &Id| {
//!     Notification::new("notifications/cancelled", Some(json!({"requestId": id})))
//! });
//! session.endpoint().serve(Some(cancel));
//!
//! let now = session.now();
//! let init = session.endpoint().request("initialize", None, Some(Duration::from_secs(10)), now)?;
//! session.run()?;
//! let answer = session.endpoint().take_result(&init).unwrap()?;
//! assert_eq!(answer["protocolVersion"], "2025-06-18");
//! session.endpoint().send(&Notification::new("notifications/initialized", None).into())?;
//!
//! let call = session.endpoint().request(
//!     "tools/call",
//!     Some(json!({"name": "slow", "arguments": {}})),
//!     Some(Duration::from_secs(5)),
//!     now,
//! )?;
//! session.advance(Duration::from_secs(5))?;
//! assert!(matches!(session.endpoint().take_result(&call), Some(Err(RpcError::TimedOut))));
//! assert_eq!(session.elapsed(), Duration::from_secs(5));
//!
//! let now = session.now();
//! session.endpoint().close(now);
//! session.finish(Duration::from_secs(10))?;
//! assert!(matches!(session.take_events().last(), Some(Event::Disconnected(None))));
//! assert_eq!(session.exit_status().and_then(|s| s.code), Some(0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod peer;
mod script;
mod session;

pub use peer::{PeerOutput, ScriptedPeer};
pub use script::{Expect, Matching, Mismatch, Script, Step};
pub use session::{Session, VirtualClock};
