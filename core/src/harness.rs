//! Fuzz harness bodies: each turns arbitrary bytes into inputs for one entry point of the core
//! and asserts the contracts this crate documents, panicking at the first one broken.
//!
//! They live in the library and are always compiled, so that ordinary builds, clippy and the
//! docs keep them in step with the code they exercise. `fuzz/` holds one-line cargo-fuzz
//! targets that call them, and `tests/fuzz_seeds.rs` replays the committed seeds and
//! regressions through them on stable.
//!
//! Every function accepts any input: a read past the end gives zero (or nothing), so no input
//! is rejected and every input means something. Each documents how it reads its bytes, which
//! is what a hand-made seed has to follow. Numbers are big-endian. Shared encodings:
//!
//! - a *duration* is a kind byte (modulo 5) and its operand: zero; milliseconds from 1 byte;
//!   seconds from 2 bytes; [`Duration::MAX`], a wait that never ends; nanoseconds from 8 bytes.
//! - a *time* is a 2-byte count of milliseconds shifted left by a 1-byte amount (modulo 32),
//!   added to the `base` instant the caller supplies.
//! - a *chunk* is a length byte and that many bytes.
//! - a *message* is a kind byte (modulo 6: request, notification, success response, error
//!   response, batch of requests, nested batch) and the bytes its fields are made from.
//!
//! None of this is meant for a driver; it is public only so that the fuzz crate and the tests
//! can reach it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::framing::MAX_HEADER;
use crate::{
    decode, Action, Config, Connection, Disconnect, DisconnectKind, ErrorObject, Event, ExitStatus,
    Framing, Id, Keepalive, KeepaliveAction, Lite, MalformedKind, Message, Notification, Policy,
    Request, Response, SendError, Supervisor, UsageError, EXCERPT_LEN,
};

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

// ----- stream framing -----------------------------------------------------------------------

/// Newline-delimited framing: the bytes split anywhere give exactly the events of the bytes
/// handed in at once, and the input buffer stays within the frame limit plus one chunk.
///
/// Layout: frame limit (2 bytes, taken modulo 4096, plus 1); how the input ends (1 byte: even
/// for end of stream, odd for a read error); how many chunk sizes follow (1 byte, modulo 8);
/// the chunk sizes (1 byte each, used in turn; none, or all zero, means byte by byte); then
/// the stream itself.
pub fn lines(data: &[u8]) {
    stream(Framing::Lines, data);
}

/// `Content-Length` framing, checked exactly like [`lines`] and with the same layout.
pub fn content_length(data: &[u8]) {
    stream(Framing::ContentLength, data);
}

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
fn feed<'a>(
    config: Config,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    clean_end: bool,
) -> Vec<Event<Message>> {
    // The `Content-Length` framer holds a header block of up to `MAX_HEADER` bytes while it
    // waits for the blank line that ends it, whatever the frame limit.
    let limit = match config.get_framing() {
        Framing::ContentLength => config.get_max_frame().max(MAX_HEADER),
        _ => config.get_max_frame(),
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

fn drain(conn: &mut Connection<Message>, events: &mut Vec<Event<Message>>) {
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

// ----- message model ------------------------------------------------------------------------

/// The message model: every accepted frame survives encode → decode unchanged, with and
/// without the version member ([`Lite`]); every rejected frame is a decoding
/// [`Malformed`](crate::Malformed)
/// with a bounded excerpt. The whole input is one frame.
pub fn message(data: &[u8]) {
    let decoded = decode::<Message>(data);
    let lite = decode::<Lite<Message>>(data);
    match decoded {
        Ok(message) => {
            assert_eq!(lite, Ok(Lite(message.clone())), "Lite decodes differently");
            let encoded = serde_json::to_vec(&message).expect("a decoded message encodes");
            // Line framing writes each message on one line.
            assert!(!encoded.contains(&b'\n'), "an encoding spans lines");
            assert_eq!(
                decode::<Message>(&encoded),
                Ok(message.clone()),
                "encode then decode changed the message"
            );
            let lite_encoded =
                serde_json::to_vec(&Lite(message.clone())).expect("a decoded message encodes");
            assert!(!lite_encoded.contains(&b'\n'), "an encoding spans lines");
            assert_eq!(
                decode::<Message>(&lite_encoded),
                Ok(message),
                "encode without the version, then decode, changed the message"
            );
        }
        Err(malformed) => {
            assert_eq!(
                lite.err().as_ref(),
                Some(&malformed),
                "Lite decodes differently"
            );
            assert!(
                matches!(
                    malformed.kind,
                    MalformedKind::InvalidUtf8 { .. }
                        | MalformedKind::InvalidJson { .. }
                        | MalformedKind::NotJsonRpc { .. }
                ),
                "decoding reported a framing failure: {malformed}"
            );
            assert!(malformed.excerpt.chars().count() <= EXCERPT_LEN);
        }
    }
}

// ----- connection operations ----------------------------------------------------------------

/// Arbitrary sequences of a connection's inputs, outputs and requests, on any framing, with
/// the contracts checked after every step and a full drain at the end.
///
/// Layout: framing (1 byte: modulo 3, lines, content-length, messages); frame limit (2 bytes,
/// modulo 512, plus 1); send budget (2 bytes, modulo 1024, plus 1); then operations, each an
/// opcode byte (modulo 14) and its operands: 0 input a chunk, 1 a frame (a chunk), 2 input
/// an encoded message, 3 end of stream, 4 read error, 5 write error, 6 keepalive timeout,
/// 7 send a message, 8 poll one event, 9 poll until none, 10 take what is queued to
/// transmit, 11 report part of it written (2 bytes, modulo what is in flight plus 1),
/// 12 close, 13 poll whether to close the write half.
pub fn connection_ops(data: &[u8]) {
    let mut r = Reader::new(data);
    let framing = match r.u8() % 3 {
        0 => Framing::Lines,
        1 => Framing::ContentLength,
        _ => Framing::Messages,
    };
    let max_frame = usize::from(r.u16() % 512) + 1;
    let budget = usize::from(r.u16() % 1024) + 1;
    let config = Config::new()
        .framing(framing)
        .max_frame(max_frame)
        .send_budget(budget)
        .label(LABEL);
    let mut ops = Ops::new(config);
    while !r.is_empty() {
        ops.step(&mut r);
        ops.check();
    }
    ops.finish();
}

/// How the input ended, the first time it did.
#[derive(Debug, Clone, Copy)]
enum End {
    Eof,
    Read,
    Write,
    Timeout,
}

impl End {
    fn apply(self, conn: &mut Connection<Message>) {
        match self {
            End::Eof => conn.handle_eof(),
            End::Read => conn.handle_read_error("fuzz read error"),
            End::Write => conn.handle_write_error("fuzz write error"),
            End::Timeout => conn.handle_timeout_error("fuzz timeout"),
        }
    }

    fn reason(self) -> Option<DisconnectKind> {
        match self {
            End::Eof => None,
            End::Read => Some(DisconnectKind::Read("fuzz read error".to_owned())),
            End::Write => Some(DisconnectKind::Write("fuzz write error".to_owned())),
            End::Timeout => Some(DisconnectKind::Timeout("fuzz timeout".to_owned())),
        }
    }
}

/// A connection together with a model of what it must do, kept by the driver's side.
struct Ops {
    conn: Connection<Message>,
    config: Config,
    /// Chunks (or frames) handed in before the input ended, to replay in one go at the end.
    input: Vec<Vec<u8>>,
    end: Option<End>,
    events: Vec<Event<Message>>,
    /// Every accepted message's encoding, in order: what the peer must receive.
    expected: VecDeque<Vec<u8>>,
    /// Bytes of the current expected message already handed to the driver (streams only).
    expected_offset: usize,
    /// Handed to the driver and not yet reported written: the model of the in-flight count.
    unwritten: Vec<u8>,
    /// The longest accepted encoding, which is how far the send budget may be overshot.
    longest: usize,
    write_failed: bool,
    closing: bool,
    close_write_seen: bool,
}

impl Ops {
    fn new(config: Config) -> Self {
        Ops {
            conn: Connection::new(config.clone()).expect("a valid configuration"),
            config,
            input: Vec::new(),
            end: None,
            events: Vec::new(),
            expected: VecDeque::new(),
            expected_offset: 0,
            unwritten: Vec::new(),
            longest: 0,
            write_failed: false,
            closing: false,
            close_write_seen: false,
        }
    }

    fn is_stream(&self) -> bool {
        self.config.get_framing() != Framing::Messages
    }

    fn disconnected(&self) -> bool {
        self.events
            .last()
            .is_some_and(|e| matches!(e, Event::Disconnected(_)))
    }

    /// Reads one operation and carries it out, checking what it returns.
    fn step(&mut self, r: &mut Reader<'_>) {
        match r.u8() % 14 {
            0 => self.input(r.chunk().to_vec()),
            1 => self.frame(r.chunk().to_vec()),
            2 => {
                // A well-formed message, so that decoding paths are reached, not just errors.
                let message = arbitrary_message(r);
                if let Ok(body) = serde_json::to_vec(&message) {
                    let bytes = self.framed(body);
                    if self.is_stream() {
                        self.input(bytes);
                    } else {
                        self.frame(bytes);
                    }
                }
            }
            3 => self.end(End::Eof),
            4 => self.end(End::Read),
            5 => self.end(End::Write),
            6 => self.end(End::Timeout),
            7 => self.send(&arbitrary_message(r)),
            8 => {
                self.poll();
            }
            9 => while self.poll() {},
            10 => self.transmit(),
            11 => {
                let n = usize::from(r.u16()) % (self.unwritten.len() + 1);
                self.written(n);
            }
            12 => {
                self.conn.close();
                self.closing = true;
            }
            _ => self.poll_close_write(),
        }
    }

    /// A message body framed as this connection writes it.
    fn framed(&self, body: Vec<u8>) -> Vec<u8> {
        match self.config.get_framing() {
            Framing::Lines => [body, b"\n".to_vec()].concat(),
            Framing::ContentLength => [
                format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes(),
                body,
            ]
            .concat(),
            Framing::Messages => body,
        }
    }

    fn input(&mut self, bytes: Vec<u8>) {
        let result = self.conn.handle_input(&bytes);
        if self.is_stream() {
            assert_eq!(result, Ok(()));
            if self.end.is_none() {
                self.input.push(bytes);
            }
        } else {
            assert_eq!(result, Err(UsageError::BytesOnMessageTransport));
        }
    }

    fn frame(&mut self, frame: Vec<u8>) {
        let result = self.conn.handle_frame(frame.clone());
        if self.is_stream() {
            assert_eq!(result, Err(UsageError::FrameOnStreamTransport));
        } else {
            assert_eq!(result, Ok(()));
            if self.end.is_none() {
                self.input.push(frame);
            }
        }
    }

    fn end(&mut self, end: End) {
        end.apply(&mut self.conn);
        if let End::Write = end {
            // The transport failed: what the driver still held is lost with it.
            self.write_failed = true;
            self.unwritten.clear();
            self.expected.clear();
            self.expected_offset = 0;
            assert_eq!(self.conn.queued(), 0, "a write error leaves bytes queued");
        }
        self.end.get_or_insert(end);
    }

    fn send(&mut self, message: &Message) {
        let used = self.conn.queued() + self.unwritten.len();
        let budget = self.config.get_send_budget();
        assert_eq!(self.conn.can_send(), used < budget, "can_send disagrees");
        let queued = self.conn.queued();
        let result = self.conn.send(message);
        if result.is_err() {
            assert_eq!(
                self.conn.queued(),
                queued,
                "a refused send changed the queue"
            );
        }
        let encoded = serde_json::to_vec(message);
        match (result, encoded) {
            (Err(SendError::Disconnected), _) => {
                assert!(
                    self.write_failed || self.disconnected(),
                    "refused as disconnected"
                )
            }
            (Err(SendError::Closed), _) => {
                assert!(self.closing && !self.write_failed && !self.disconnected())
            }
            (Err(SendError::Full), _) => assert!(
                !self.closing && !self.write_failed && !self.disconnected() && used >= budget,
                "refused as full with {used} of {budget} bytes used"
            ),
            (Err(SendError::Encode(_)), Err(_)) => assert!(
                !self.closing && !self.write_failed && !self.disconnected() && used < budget
            ),
            (Ok(()), Ok(body)) => {
                assert!(!self.closing && !self.write_failed && !self.disconnected());
                assert!(used < budget, "accepted with {used} of {budget} bytes used");
                let frame = self.framed(body);
                self.longest = self.longest.max(frame.len());
                assert_eq!(self.conn.queued(), queued + frame.len(), "queued bytes");
                self.expected.push_back(frame);
            }
            (result, encoded) => {
                panic!("send returned {result:?} for a message whose encoding is {encoded:?}")
            }
        }
    }

    /// Polls one event; returns whether there was one.
    fn poll(&mut self) -> bool {
        let was_disconnected = self.disconnected();
        match self.conn.poll_event() {
            Some(event) => {
                assert!(!was_disconnected, "{event:?} after Disconnected");
                self.events.push(event);
                true
            }
            None => false,
        }
    }

    fn transmit(&mut self) {
        if self.is_stream() {
            assert!(self.conn.poll_transmit_frame().is_none());
            let before = self.unwritten.len();
            let n = self.conn.poll_transmit(&mut self.unwritten);
            assert_eq!(n, self.unwritten.len() - before, "poll_transmit's count");
            assert_eq!(self.conn.queued(), 0, "poll_transmit left bytes queued");
            let mut handed = &self.unwritten[before..];
            // The bytes handed out continue the expected messages exactly where the last
            // hand-out stopped.
            while !handed.is_empty() {
                let next = self.expected.front().expect("bytes nobody sent");
                let left = &next[self.expected_offset..];
                let take = left.len().min(handed.len());
                assert_eq!(&handed[..take], &left[..take], "transmitted bytes differ");
                handed = &handed[take..];
                self.expected_offset += take;
                if self.expected_offset == next.len() {
                    self.expected.pop_front();
                    self.expected_offset = 0;
                }
            }
        } else {
            let mut out = Vec::new();
            assert_eq!(self.conn.poll_transmit(&mut out), 0);
            assert!(out.is_empty());
            if let Some(frame) = self.conn.poll_transmit_frame() {
                assert_eq!(
                    Some(&frame),
                    self.expected.front(),
                    "transmitted frame differs"
                );
                self.expected.pop_front();
                self.unwritten.extend_from_slice(&frame);
            }
        }
    }

    fn written(&mut self, n: usize) {
        self.conn.handle_transmitted(n);
        self.unwritten.drain(..n);
    }

    fn poll_close_write(&mut self) {
        let due = self.closing
            && !self.close_write_seen
            && !self.write_failed
            && self.conn.queued() == 0
            && self.unwritten.is_empty();
        assert_eq!(self.conn.poll_close_write(), due, "poll_close_write");
        self.close_write_seen |= due;
    }

    /// What holds after every step.
    fn check(&self) {
        let ends = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::Disconnected(_)))
            .count();
        assert!(ends <= 1, "Disconnected came {ends} times");
        assert!(
            ends == 0 || self.disconnected(),
            "an event after Disconnected"
        );
        assert_eq!(self.conn.is_closed(), self.disconnected());
        assert_eq!(self.conn.is_input_ended(), self.end.is_some());
        if self.write_failed {
            assert_eq!(self.conn.queued(), 0, "bytes queued after a write error");
        }
        let used = self.conn.queued() + self.unwritten.len();
        let bound = self.config.get_send_budget() - 1 + self.longest;
        assert!(
            used == 0 || used <= bound,
            "{used} bytes queued or in flight, over the budget plus one message ({bound})"
        );
        let pending: usize = self.expected.iter().map(Vec::len).sum();
        assert_eq!(
            self.conn.queued(),
            pending - self.expected_offset,
            "queued bytes are not the sent messages not yet handed out"
        );
    }

    /// Ends the input if nothing did, drains everything, and compares with a connection that
    /// was handed the same input in one go.
    fn finish(mut self) {
        let end = match self.end {
            Some(end) => end,
            None => {
                self.end(End::Eof);
                End::Eof
            }
        };
        while self.poll() {}
        self.check();
        check_disconnected_last(&self.events, end.reason());

        let mut reference = Connection::<Message>::new(self.config.clone()).expect("valid");
        if self.is_stream() {
            reference
                .handle_input(&self.input.concat())
                .expect("a stream connection takes bytes");
        } else {
            for frame in &self.input {
                reference
                    .handle_frame(frame.clone())
                    .expect("a message connection takes frames");
            }
        }
        end.apply(&mut reference);
        let mut events = Vec::new();
        drain(&mut reference, &mut events);
        assert_eq!(
            self.events, events,
            "the events depend on how input was handed in"
        );

        // Everything still queued goes out and is written, in order.
        loop {
            self.transmit();
            let n = self.unwritten.len();
            if n == 0 {
                break;
            }
            self.written(n);
            self.check();
        }
        if self.write_failed {
            assert!(!self.conn.poll_close_write(), "close after a write error");
        } else {
            assert!(self.expected.is_empty(), "sent messages never transmitted");
            if self.closing && !self.close_write_seen {
                assert!(self.conn.poll_close_write(), "close never became due");
            }
        }
        assert!(matches!(
            self.conn
                .send(&Message::Notification(Notification::new("late", None))),
            Err(SendError::Disconnected)
        ));
    }
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

// ----- supervisor operations ----------------------------------------------------------------

/// Arbitrary sequences of shutdown requests, exits and timeouts at arbitrary times (forwards
/// and backwards from `base`) under an arbitrary [`Policy`], with the ladder checked after
/// every step: nothing early, nothing twice, nothing after the end, the group always killed
/// once the child has exited.
///
/// `base` is the origin of virtual time; the harness only adds offsets to it, so any instant
/// will do (the core never reads a clock, so the caller supplies it).
///
/// Layout: the close-stdin grace, then the terminate grace (each a byte that is 0 modulo 6 for
/// none, otherwise followed by a duration); then operations, each an opcode byte (modulo 5)
/// and its operands: 0 request shutdown at a time, 1 exit at a time with a status (a byte
/// that is even for an exit code, then the code byte; the same for a signal), 2 a timeout at
/// a time, 3 a timeout at the supervisor's deadline, 4 a timeout a nanosecond before it.
pub fn supervisor_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let policy = Policy {
        close_stdin: arbitrary_grace(&mut r),
        terminate: arbitrary_grace(&mut r),
    };
    let mut ladder = Ladder::new(policy, base);
    while !r.is_empty() {
        ladder.step(&mut r);
    }
    ladder.finish();
}

fn arbitrary_grace(r: &mut Reader<'_>) -> Option<Duration> {
    match r.u8() % 6 {
        0 => None,
        _ => Some(arbitrary_duration(r)),
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

/// A time, as the module documentation describes it: `base` plus up to about four and a half
/// years, in steps that range from a millisecond to weeks.
fn arbitrary_time(base: Instant, r: &mut Reader<'_>) -> Instant {
    base + Duration::from_millis(u64::from(r.u16()) << (r.u8() % 32))
}

/// A supervisor together with what it has been told and what it has done.
struct Ladder {
    sup: Supervisor,
    policy: Policy,
    base: Instant,
    /// The latest time handed in: the supervisor ignores time that goes backwards.
    now: Option<Instant>,
    shutdown: bool,
    exit: Option<ExitStatus>,
    /// Every action, with the time of the step that produced it.
    actions: Vec<(Action, Instant)>,
}

impl Ladder {
    fn new(policy: Policy, base: Instant) -> Self {
        Ladder {
            sup: Supervisor::new(policy),
            policy,
            base,
            now: None,
            shutdown: false,
            exit: None,
            actions: Vec::new(),
        }
    }

    /// Reads one operation, carries it out, and checks the actions it produced.
    fn step(&mut self, r: &mut Reader<'_>) {
        let was_done = self.sup.is_done();
        let mut exits_now = false;
        let at = match r.u8() % 5 {
            0 => {
                let at = arbitrary_time(self.base, r);
                self.sup.request_shutdown(at);
                self.shutdown = true;
                at
            }
            1 => {
                let at = arbitrary_time(self.base, r);
                let status = ExitStatus {
                    code: (r.u8() % 2 == 0).then(|| i32::from(r.u8())),
                    signal: (r.u8() % 2 == 0).then(|| i32::from(r.u8())),
                };
                self.sup.handle_exit(at, status);
                exits_now = self.exit.is_none();
                self.exit.get_or_insert(status);
                at
            }
            2 => {
                let at = arbitrary_time(self.base, r);
                self.sup.handle_timeout(at);
                at
            }
            3 => self.fire_deadline(Duration::ZERO),
            _ => self.fire_deadline(Duration::from_nanos(1)),
        };
        self.observe(at, was_done, exits_now);
    }

    /// Calls `handle_timeout` at the supervisor's own deadline less `early`, or at the
    /// latest time if it has none.
    fn fire_deadline(&mut self, early: Duration) -> Instant {
        let at = match self.sup.poll_timeout() {
            Some(deadline) => deadline.checked_sub(early).unwrap_or(deadline),
            None => self.now.unwrap_or(self.base),
        };
        self.sup.handle_timeout(at);
        at
    }

    /// Drains the actions of a step that happened at `at` and checks them and the state.
    fn observe(&mut self, at: Instant, was_done: bool, exits_now: bool) {
        let now = self.now.map_or(at, |last| last.max(at));
        self.now = Some(now);
        while let Some(action) = self.sup.poll_action() {
            assert!(!was_done, "{action:?} after the supervisor was done");
            self.check_action(action, now, exits_now);
            self.actions.push((action, now));
        }
        self.check_state(now);
    }

    fn last_of(&self, action: Action) -> Option<Instant> {
        self.actions
            .iter()
            .find(|(a, _)| *a == action)
            .map(|&(_, t)| t)
    }

    /// Whether the wait that followed `step` (taken under `grace`) has run out by `now`.
    fn waited(&self, step: Action, grace: Duration, now: Instant) -> bool {
        self.last_of(step)
            .and_then(|t| t.checked_add(grace))
            .is_some_and(|deadline| deadline <= now)
    }

    fn check_action(&self, action: Action, now: Instant, exits_now: bool) {
        assert!(
            self.last_of(Action::KillGroup).is_none(),
            "{action:?} after KillGroup"
        );
        assert!(
            self.last_of(action).is_none(),
            "{action:?} came twice: {:?}",
            self.actions
        );
        let exited_before = self.exit.is_some() && !exits_now;
        match action {
            Action::CloseStdin => {
                assert!(self.shutdown && self.policy.close_stdin.is_some());
                assert!(
                    self.actions.is_empty(),
                    "CloseStdin after {:?}",
                    self.actions
                );
            }
            Action::TerminateGroup => {
                assert!(self.shutdown && self.policy.terminate.is_some());
                assert!(!exited_before, "TerminateGroup after the child exited");
                if let Some(grace) = self.policy.close_stdin {
                    assert!(
                        self.waited(Action::CloseStdin, grace, now),
                        "TerminateGroup before the close-stdin grace ran out: {:?} at {:?}",
                        self.actions,
                        now - self.base
                    );
                }
            }
            Action::KillGroup => {
                if exits_now {
                    return;
                }
                assert!(self.shutdown, "KillGroup with no shutdown and no exit");
                let ready = match (self.policy.close_stdin, self.policy.terminate) {
                    (_, Some(grace)) => self.waited(Action::TerminateGroup, grace, now),
                    (Some(grace), None) => self.waited(Action::CloseStdin, grace, now),
                    (None, None) => true,
                };
                assert!(
                    ready,
                    "KillGroup before its grace ran out: {:?} at {:?} under {:?}",
                    self.actions,
                    now - self.base,
                    self.policy
                );
            }
        }
    }

    /// When the next step of the ladder is due, if one is: the grace after the last polite
    /// step, unless the child has exited or the grace reaches past any representable time.
    fn expected_deadline(&self) -> Option<Instant> {
        if self.exit.is_some() {
            return None;
        }
        let &(last, at) = self.actions.last()?;
        let grace = match last {
            Action::CloseStdin => self.policy.close_stdin,
            Action::TerminateGroup => self.policy.terminate,
            Action::KillGroup => None,
        }?;
        at.checked_add(grace)
    }

    fn check_state(&self, now: Instant) {
        let deadline = self.sup.poll_timeout();
        if let Some(deadline) = deadline {
            assert!(deadline >= now, "poll_timeout is in the past");
        }
        assert_eq!(
            deadline,
            self.expected_deadline(),
            "poll_timeout after {:?} under {:?}",
            self.actions,
            self.policy
        );
        let killed = self.last_of(Action::KillGroup).is_some();
        assert_eq!(self.sup.is_killed(), killed);
        assert_eq!(self.sup.is_shutting_down(), self.shutdown);
        assert_eq!(self.sup.exit_status(), self.exit);
        if self.exit.is_some() {
            assert!(killed, "the child exited and its group was not killed");
        }
        assert_eq!(self.sup.is_done(), self.exit.is_some());
    }

    /// Lets every deadline pass, then has the child exit: the ladder must reach the group kill
    /// unless a grace never runs out, and the supervisor must then be done.
    fn finish(mut self) {
        while let Some(deadline) = self.sup.poll_timeout() {
            self.sup.handle_timeout(deadline);
            self.observe(deadline, false, false);
        }
        if self.shutdown && self.exit.is_none() {
            let endless = |grace: Option<Duration>, step| {
                grace.is_some_and(|g| {
                    self.last_of(step)
                        .is_some_and(|t: Instant| t.checked_add(g).is_none())
                })
            };
            assert!(
                self.last_of(Action::KillGroup).is_some()
                    || endless(self.policy.close_stdin, Action::CloseStdin)
                    || endless(self.policy.terminate, Action::TerminateGroup),
                "the ladder stopped short of the kill: {:?}",
                self.actions
            );
        }
        let at = self.now.unwrap_or(self.base);
        let status = ExitStatus {
            code: Some(0),
            signal: None,
        };
        let was_done = self.sup.is_done();
        let exits_now = self.exit.is_none();
        self.sup.handle_exit(at, status);
        self.exit.get_or_insert(status);
        self.observe(at, was_done, exits_now);
        assert!(self.sup.is_done());
    }
}

// ----- keepalive operations -----------------------------------------------------------------

/// Arbitrary sequences of activity and timeouts at arbitrary times (forwards and backwards
/// from `base`, where the keepalive starts), checked against a model of the keepalive after
/// every step: a ping exactly when `interval` of silence has passed, a give-up exactly when
/// `timeout` has passed since an unanswered ping, nothing after giving up, and a deadline that
/// is always the model's.
///
/// Layout: the interval, then the timeout (each a duration); then operations, each an opcode
/// byte (modulo 4): 0 activity at a time, 1 a timeout at a time, 2 a timeout at the deadline,
/// 3 a timeout a nanosecond before it.
pub fn keepalive_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let interval = arbitrary_duration(&mut r);
    let timeout = arbitrary_duration(&mut r);
    let mut keepalive = Keepalive::new(base, interval, timeout);
    // The model: the latest time, the last sign of life, the unanswered ping, the verdict.
    let mut now = base;
    let mut alive_at = base;
    let mut ping_at: Option<Instant> = None;
    let mut timed_out = false;
    while !r.is_empty() {
        let deadline = keepalive.poll_timeout();
        let expected_deadline = if timed_out {
            None
        } else {
            match ping_at {
                Some(ping) => ping.checked_add(timeout),
                None => alive_at.checked_add(interval),
            }
        };
        assert_eq!(deadline, expected_deadline, "poll_timeout");
        if let Some(deadline) = deadline {
            assert!(deadline >= now, "poll_timeout is in the past");
        }
        let op = r.u8() % 4;
        let at = match op {
            0 | 1 => arbitrary_time(base, &mut r),
            2 => deadline.unwrap_or(now),
            _ => deadline.map_or(now, |d| d.checked_sub(Duration::from_nanos(1)).unwrap_or(d)),
        };
        now = now.max(at);
        let expected = if op == 0 {
            keepalive.handle_activity(at);
            if !timed_out {
                alive_at = now;
                ping_at = None;
            }
            None
        } else {
            keepalive.handle_timeout(at);
            match expected_deadline {
                Some(due) if due <= now => Some(if ping_at.is_some() {
                    timed_out = true;
                    KeepaliveAction::TimedOut
                } else {
                    ping_at = Some(now);
                    KeepaliveAction::Ping
                }),
                _ => None,
            }
        };
        assert_eq!(
            keepalive.poll_action(),
            expected,
            "the action at {:?}",
            now - base
        );
        assert_eq!(
            keepalive.poll_action(),
            None,
            "a second action from one input"
        );
    }
}
