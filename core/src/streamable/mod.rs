//! MCP's Streamable HTTP transport, server side, with no HTTP in it: which request starts a
//! session and which is refused, how each message from the program reaches the right open
//! stream, the event ids, and the bounded buffer a reconnecting client replays from.
//!
//! The adapter parses HTTP (with an HTTP library), generates session ids, owns the program and
//! moves bytes. For each request it reads the few headers that matter into a [`Head`], and
//! asks [`route`] what the request is. A new session is a [`Session`], created by the
//! adapter under a fresh random id; every later request of that session goes to
//! [`Session::handle_post`], [`handle_get`](Session::handle_get) or
//! [`handle_delete`](Session::handle_delete), each answering with a [`Reply`]: a status, or a
//! stream whose events the adapter takes with [`Session::take`] as its response body is
//! polled. What the program says goes in through [`Session::handle_child`]; what it must be
//! sent comes out of [`Session::poll_child`].
//!
//! The client side is [`Client`], the same way: it says which request to make and what each
//! response means; the adapter makes the requests.
//!
//! Time is an argument, as everywhere in this crate: the session's idle deadline is
//! [`Session::poll_timeout`], acted on by [`Session::handle_timeout`].

mod client;
pub mod modern;
mod route;
mod session;
mod stream;

pub use client::{
    Client, End, Event, Exchange, HttpRequest, Read, ResponseHead, EXCHANGE_FAILED,
    MAX_RECONNECT_DELAY, QUOTE, RECONNECTS, RECONNECT_DELAY,
};
pub use route::{route, Head, Method, Post, Route, SessionRequest};
pub use session::{Reply, Session, Settings, Sink, Take, ToChild};

/// The header that names a session, in requests and in the response that starts one.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// The header that names the last event a reconnecting client received.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";

/// The media type of a JSON body.
pub const JSON: &str = "application/json";

/// The media type of a stream of server-sent events.
pub const EVENT_STREAM: &str = "text/event-stream";

/// A status with, for an error, a JSON-RPC error response as its body (with a null id, since
/// the refusal answers the HTTP request, not one message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The HTTP status code.
    pub code: u16,
    /// A JSON body, if any.
    pub body: Option<Vec<u8>>,
}

impl Status {
    /// A status with no body.
    pub fn empty(code: u16) -> Self {
        Status { code, body: None }
    }

    /// A status whose body is a JSON-RPC error with `message`. The code is `-32000` (a
    /// server error), or `-32700` for a body that is not JSON.
    pub fn error(code: u16, rpc_code: i64, message: &str) -> Self {
        let response =
            crate::Response::error(crate::Id::Null, crate::ErrorObject::new(rpc_code, message));
        Status {
            code,
            body: Some(encode(&crate::Message::Response(response))),
        }
    }

    /// 404: the session named is unknown or has ended; the client starts a new one.
    pub fn unknown_session() -> Self {
        Status::error(404, SERVER_ERROR, "session not found")
    }

    /// 413: the body is over the limit.
    pub fn too_large() -> Self {
        Status::error(413, SERVER_ERROR, "the request body is too large")
    }
}

/// The JSON-RPC code of the refusals, an implementation-defined server error.
const SERVER_ERROR: i64 = -32000;

/// A message as JSON. Encoding a message this crate built or decoded never fails (a batch
/// is never empty or nested); if it did, the result is a JSON-RPC error, not a panic.
fn encode(message: &crate::Message) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_else(|_| {
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"unencodable message"}}"#
            .to_vec()
    })
}

/// A message as JSON, for the gateway's modern calls (the same encoding as every event here).
pub(crate) fn encode_message(message: &crate::Message) -> Vec<u8> {
    encode(message)
}

/// A POST's messages and answer mode (its `Content-Type` and `Accept` checked), or why it is
/// refused: the same reading for a modern request as for a session's.
pub(crate) use route::post as read_post;
