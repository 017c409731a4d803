//! Helpers shared by the core's tests: drive a connection the way an adapter does.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test file uses a different subset"
)]

use std::time::Instant;
pub(crate) use tether_core::harness::drain;

use tether_core::{harness, Config, Event, Framing, Message};

/// The origin of virtual time: every later instant is this plus a duration the test chose.
/// The core never reads a clock; this is the tests' one look at one.
#[allow(
    clippy::disallowed_methods,
    reason = "one real instant as the origin of virtual time; the core never reads a clock"
)]
pub(crate) fn base() -> Instant {
    Instant::now()
}

/// Feeds `chunks` one at a time, draining events before each (as a driver must), then ends
/// the input cleanly and drains the rest. This is the fuzz harness's driver, so every test
/// that uses it also checks the input buffer's bound and the end contract.
pub(crate) fn feed(config: Config, chunks: &[&[u8]]) -> Vec<Event<Message>> {
    harness::feed(config, chunks.iter().copied(), true)
}

/// Line framing with the given limit.
pub(crate) fn lines(limit: usize) -> Config {
    Config::new().max_frame(limit).label("test")
}

/// `Content-Length` framing with the given limit.
pub(crate) fn content_length(limit: usize) -> Config {
    Config::new()
        .framing(Framing::ContentLength)
        .max_frame(limit)
        .label("test")
}

/// The method names of the messages among `events`, and a marker for each other event.
pub(crate) fn summary(events: &[Event<Message>]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Message(Message::Notification(n)) => n.method.clone(),
            Event::Message(Message::Request(r)) => format!("request:{}", r.method),
            Event::Message(m) => format!("{m:?}"),
            Event::Malformed(m) => format!("malformed:{}", kind_name(&m.kind)),
            Event::Disconnected(None) => "disconnected".to_owned(),
            Event::Disconnected(Some(d)) => format!("disconnected:{d}"),
        })
        .collect()
}

pub(crate) fn kind_name(kind: &tether_core::MalformedKind) -> &'static str {
    use tether_core::MalformedKind::*;
    match kind {
        InvalidUtf8 { .. } => "utf8",
        InvalidJson { .. } => "json",
        NotJsonRpc { .. } => "not-jsonrpc",
        TooLarge { .. } => "too-large",
        BadHeader { .. } => "header",
        Truncated { .. } => "truncated",
        _ => "other",
    }
}

/// A notification named `n<i>` as one line.
pub(crate) fn note(i: usize) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"method\":\"n{i}\"}}\n")
}

/// The same notification behind `Content-Length` headers.
pub(crate) fn lsp_note(i: usize) -> String {
    let body = format!("{{\"jsonrpc\":\"2.0\",\"method\":\"n{i}\"}}");
    format!("Content-Length: {}\r\n\r\n{body}", body.len())
}
