//! Fuzz harness bodies: each turns arbitrary bytes into inputs for one entry point of the core
//! and asserts the contracts this crate documents, panicking at the first one broken.
//!
//! They are test code, not API: compiled only with the `harness` feature, which the fuzz crate
//! and the core's own tests turn on, and hidden from the docs even then. Living in the library
//! still keeps them in step with the code they exercise, since `cargo clippy --all-targets`
//! and `cargo test` build them. `fuzz/` holds one-line cargo-fuzz targets that call them, and
//! `tests/fuzz_seeds.rs` replays the committed seeds and regressions through them on stable.
//!
//! One file per fuzz target; this module holds what they share: the byte reader, the
//! encodings below, and the stream driver (`feed`, `drain`) that the core's tests use too.
//!
//! Every function accepts any input: a read past the end gives zero (or nothing), so no input
//! is rejected and every input means something. Each documents how it reads its bytes, which
//! is what a hand-made seed has to follow. Numbers are big-endian. Shared encodings:
//!
//! - a *grace* is a byte that is 0 modulo 6 for none, otherwise followed by a duration.
//! - a *duration* is a kind byte (modulo 5) and its operand: zero; milliseconds from 1 byte;
//!   seconds from 2 bytes; [`Duration::MAX`], a wait that never ends; nanoseconds from 8 bytes.
//! - a *time* is a 2-byte count of milliseconds shifted left by a 1-byte amount (modulo 32),
//!   added to the `base` instant the caller supplies.
//! - a *chunk* is a length byte and that many bytes.
//! - a *message* is a kind byte (modulo 6: request, notification, success response, error
//!   response, batch of requests, nested batch) and the bytes its fields are made from.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::framing::MAX_HEADER;
use crate::{
    Config, Connection, Disconnect, DisconnectKind, ErrorObject, Event, Framing, Id, Message,
    Notification, Request, Response,
};

mod connection_ops;
mod content_length;
mod endpoint_ops;
mod gateway_ops;
mod keepalive_ops;
mod lines;
mod message;
mod restart_ops;
mod streamable_client_ops;
mod streamable_ops;
mod supervisor_ops;

pub use connection_ops::connection_ops;
pub use content_length::content_length;
pub use endpoint_ops::endpoint_ops;
pub use gateway_ops::gateway_ops;
pub use keepalive_ops::keepalive_ops;
pub use lines::lines;
pub use message::message;
pub use restart_ops::restart_ops;
pub use streamable_client_ops::streamable_client_ops;
pub use streamable_ops::streamable_ops;
pub use supervisor_ops::supervisor_ops;

/// The label every harness connection carries, so that disconnect reasons can be predicted.
const LABEL: &str = "fuzz";

/// Reads fuzzer bytes as numbers and slices; past the end every read is zero or empty.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(std::array::from_fn(|_| self.u8()))
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes.
    fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    /// Up to 15 bytes as text, invalid UTF-8 replaced.
    fn text(&mut self) -> String {
        let n = usize::from(self.u8() % 16);
        String::from_utf8_lossy(self.bytes(n)).into_owned()
    }
}

/// The body of `lines` and `content_length`, which differ only in the framing.
fn stream(framing: Framing, data: &[u8]) {
    let mut r = Reader::new(data);
    let max_frame = usize::from(r.u16() % 4096) + 1;
    let clean_end = r.u8() % 2 == 0;
    let sizes: Vec<usize> = (0..r.u8() % 8).map(|_| usize::from(r.u8())).collect();
    let input = r.rest();
    let config = Config::new()
        .framing(framing)
        .max_frame(max_frame)
        .label(LABEL);

    let whole = feed(config.clone(), [input], clean_end);
    let split = feed(config, split(input, &sizes), clean_end);
    assert_eq!(whole, split, "chunking changed the events");
}

/// Cuts `input` into chunks of the given sizes, taken in turn.
fn split<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.iter().all(|&s| s == 0) {
        return input.chunks(1).collect();
    }
    let mut chunks = Vec::new();
    let mut rest = input;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks
}

/// Drives a stream connection the way the crate docs tell an adapter to: drain the events
/// before every chunk, end the input, drain again. Checks the buffer bound after every chunk
/// and the end contract at the end, and returns every event.
///
/// `clean_end` ends the input with end of stream, otherwise with a read error. The core's
/// tests drive their stream connections through this too, so that every one of them checks
/// the same bounds and end contract as the fuzzer.
pub fn feed<'a>(
    config: Config,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    clean_end: bool,
) -> Vec<Event<Message>> {
    // The `Content-Length` framer holds a header block of up to `MAX_HEADER` bytes while it
    // waits for the blank line that ends it, whatever the frame limit.
    let limit = match config.framing {
        Framing::ContentLength => config.max_frame.max(MAX_HEADER),
        _ => config.max_frame,
    };
    let mut conn = Connection::<Message>::new(config).expect("a valid configuration");
    let mut events = Vec::new();
    for chunk in chunks {
        drain(&mut conn, &mut events);
        conn.handle_input(chunk)
            .expect("a stream connection takes bytes");
        assert!(
            conn.buffered() <= limit + chunk.len(),
            "{} bytes buffered, over the bound of {limit} plus a {}-byte chunk",
            conn.buffered(),
            chunk.len()
        );
    }
    if clean_end {
        conn.handle_eof();
    } else {
        conn.handle_read_error("fuzz read error");
    }
    drain(&mut conn, &mut events);
    let reason = (!clean_end).then(|| DisconnectKind::Read("fuzz read error".to_owned()));
    check_disconnected_last(&events, reason);

    // Once ended, the connection ignores input and stays silent.
    conn.handle_input(b"{\"method\":\"late\"}\n")
        .expect("a stream connection takes bytes");
    conn.handle_eof();
    assert!(conn.poll_event().is_none(), "an event after Disconnected");
    assert!(conn.is_closed());
    events
}

/// Polls every event the connection has ready into `events`, as a driver does before it
/// feeds more input.
pub fn drain(conn: &mut Connection<Message>, events: &mut Vec<Event<Message>>) {
    while let Some(event) = conn.poll_event() {
        events.push(event);
    }
}

/// Exactly one `Disconnected`, last, with the reason the input ended for.
fn check_disconnected_last(events: &[Event<Message>], reason: Option<DisconnectKind>) {
    let ends = events
        .iter()
        .filter(|e| matches!(e, Event::Disconnected(_)))
        .count();
    assert_eq!(ends, 1, "Disconnected must come exactly once");
    let expected = reason.map(|kind| Disconnect {
        label: LABEL.to_owned(),
        kind,
    });
    assert_eq!(
        events.last(),
        Some(&Event::Disconnected(expected)),
        "Disconnected must come last, with the reason the input ended for"
    );
}

/// A message built from fuzzer bytes, including some that cannot be encoded (an empty batch, a
/// nested batch).
fn arbitrary_message(r: &mut Reader<'_>) -> Message {
    match r.u8() % 6 {
        0 => Request::new(arbitrary_id(r), r.text(), arbitrary_params(r)).into(),
        1 => Notification::new(r.text(), arbitrary_params(r)).into(),
        2 => Response::success(arbitrary_id(r), Value::String(r.text())).into(),
        3 => {
            let code = r.u64() as i64;
            Response::error(arbitrary_id(r), ErrorObject::new(code, r.text())).into()
        }
        4 => Message::Batch(
            (0..r.u8() % 4)
                .map(|_| Request::new(arbitrary_id(r), r.text(), arbitrary_params(r)).into())
                .collect(),
        ),
        _ => Message::Batch(vec![Message::Batch(vec![Notification::new(
            r.text(),
            None,
        )
        .into()])]),
    }
}

fn arbitrary_id(r: &mut Reader<'_>) -> Id {
    match r.u8() % 4 {
        0 => Id::Null,
        1 => Id::from(r.u64()),
        2 => Id::from(r.u64() as i64),
        _ => Id::String(r.text()),
    }
}

fn arbitrary_params(r: &mut Reader<'_>) -> Option<Value> {
    match r.u8() % 4 {
        0 => None,
        1 => Some(json!([r.text(), r.u64(), -1.5])),
        2 => Some(json!({ r.text(): { "nested": [null, true] } })),
        _ => Some(Value::Null),
    }
}

/// A duration, as the module documentation describes it.
fn arbitrary_duration(r: &mut Reader<'_>) -> Duration {
    match r.u8() % 5 {
        0 => Duration::ZERO,
        1 => Duration::from_millis(r.u8().into()),
        2 => Duration::from_secs(r.u16().into()),
        3 => Duration::MAX,
        _ => Duration::from_nanos(r.u64()),
    }
}

/// A grace period, or none: a byte that is 0 modulo 6 for none, otherwise followed by a
/// duration.
fn arbitrary_grace(r: &mut Reader<'_>) -> Option<Duration> {
    match r.u8() % 6 {
        0 => None,
        _ => Some(arbitrary_duration(r)),
    }
}

/// A time, as the module documentation describes it: `base` plus up to about four and a half
/// years, in steps that range from a millisecond to weeks.
fn arbitrary_time(base: Instant, r: &mut Reader<'_>) -> Instant {
    base + Duration::from_millis(u64::from(r.u16()) << (r.u8() % 32))
}
