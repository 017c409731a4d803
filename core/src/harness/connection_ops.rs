//! The `connection_ops` target: arbitrary sequences of a connection's operations.

use std::collections::VecDeque;

use super::{arbitrary_message, check_disconnected_last, drain, Reader, LABEL};
use crate::{
    Config, Connection, DisconnectKind, Event, Framing, Message, Notification, SendError,
    UsageError,
};

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
        self.config.framing != Framing::Messages
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
        match self.config.framing {
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
        let budget = self.config.send_budget;
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
        let bound = self.config.send_budget - 1 + self.longest;
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
