//! The `endpoint_ops` target: arbitrary sequences of an endpoint's inputs, the owner's
//! requests, time, and the driver draining outputs in any order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{arbitrary_duration, arbitrary_grace, arbitrary_message, Reader, LABEL};
use crate::framing::MAX_HEADER;
use crate::{
    Action, CancelNotification, CloseReason, Config, Control, Endpoint, ErrorObject, Event,
    ExitStatus, Framing, Goodbye, Id, Message, Notification, Policy, Response, RpcError,
    UsageError,
};

/// How many times `handle_timeout` at one instant may leave a deadline at that instant before
/// the endpoint is taken to be stuck (a zero keepalive timeout takes two: ping, give up).
const SETTLE_ROUNDS: usize = 8;

/// Arbitrary sequences of every public input of an `Endpoint<Message>` (with or without a
/// child), the owner's requests, time moving forwards by any amount or backwards, and outputs
/// drained in any order, the way a driver keeping the endpoint's contract would make them.
/// After every step: `Disconnected` at most once and nothing after it, `is_finished` only
/// after it, no deadline in the past after `handle_timeout`, deadlines that settle, no control
/// after `Abort`, nothing written after the write half is closed, the group killed at most
/// once and nothing after that, each request's result taken at most once, `poll_wake` never
/// hiding work or an earlier deadline, `wants_input` true to the bytes owed, input buffered
/// within the frame limit plus the chunk, and what one event makes the endpoint owe bounded by
/// the frame limit. At the end, the input is ended, every deadline passed and the child made
/// to exit: exactly one `Disconnected`, every request made while serving answered once, and
/// the endpoint finished.
///
/// `base` is the origin of virtual time; the harness only adds offsets to it.
///
/// Layout: framing (1 byte: modulo 3, lines, content-length, messages); flags (1 byte: bit 0
/// a child, bit 1 keepalive, bit 2 idle timeout, bit 3 answer malformed frames, bit 4 a
/// goodbye, bit 5 its kind, LSP or custom); frame limit (2 bytes, modulo 512, plus 1); send
/// budget (2 bytes, modulo 1024, plus 1); the close timeout (a duration); the ladder's
/// close-stdin and terminate graces (each a grace); with bit 1, the keepalive interval and
/// timeout (durations); with bit 2, the idle timeout (a duration); with bits 4 and 5, the
/// custom goodbye's request and notification methods (texts). Then operations, each an
/// opcode byte (modulo 32) and its operands:
///
/// - transport: 0 bytes read (a chunk), 1 a frame (a chunk), 2 a message from the peer (a
///   message), 3 the peer's answer to request number 1 + (byte modulo 8) (a byte: even for a
///   result, odd for an error), 4 end of input, 5 read error, 6 write error, 7 ping, 8 pong,
///   9 the peer's Close, 10 a message over the transport's limit, 11 bytes written (2 bytes,
///   modulo what is in flight plus 1), 12 a flush or Close frame done, 13 the child's exit (a
///   byte, even for an exit code, then the code byte, otherwise a signal byte);
/// - time: 14 forwards by a duration, 15 backwards by a duration, 16 `handle_timeout` now,
///   17 at the deadline, 18 a nanosecond before the deadline;
/// - the owner: 19 send a message (a byte, odd for `send_tracked`; a message), 20 close (a
///   byte modulo 4: normal, going away, idle, a custom code from 2 more bytes), 21 finish (a
///   duration of linger), 22 the request layer (a byte modulo 4: `track_requests`, `serve`
///   with a cancel notification, `serve` without, `set_serving` toggled), 23 a request (a
///   text method; a byte, 0 modulo 3 for no timeout, otherwise then a duration), 24 answer the
///   peer's request number (byte) among those owed (a byte modulo 3: a result, an error,
///   declined), 25 cancel our request number (byte), 26 take the result of our request number
///   (byte);
/// - outputs: 27 one event, 28 every event, 29 what is queued to write (all bytes, or one
///   frame), 30 one control, 31 one action.
///
/// Operations a driver must not make at that point (input while `wants_input` is false,
/// transport inputs after
/// `Abort`, a second exit, a flush nobody asked for) are skipped.
pub fn endpoint_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let framing = match r.u8() % 3 {
        0 => Framing::Lines,
        1 => Framing::ContentLength,
        _ => Framing::Messages,
    };
    let flags = r.u8();
    let max_frame = usize::from(r.u16() % 512) + 1;
    let budget = usize::from(r.u16() % 1024) + 1;
    // The read-ahead comes from the limit, so that the layout stays that of older seeds.
    let mut config = Config::new()
        .framing(framing)
        .max_frame(max_frame)
        .read_ahead(1 + max_frame % 4, max_frame)
        .send_budget(budget)
        .label(LABEL)
        .close_timeout(arbitrary_duration(&mut r))
        .policy(Policy {
            close_stdin: arbitrary_grace(&mut r),
            terminate: arbitrary_grace(&mut r),
        })
        .answer_malformed(flags & 8 != 0);
    if flags & 2 != 0 {
        config = config.keepalive(arbitrary_duration(&mut r), arbitrary_duration(&mut r));
    }
    if flags & 4 != 0 {
        config = config.idle_timeout(Some(arbitrary_duration(&mut r)));
    }
    if flags & 16 != 0 {
        config = config.goodbye(Some(match flags & 32 {
            0 => Goodbye::Lsp,
            _ => Goodbye::Custom {
                request: r.text(),
                notification: r.text(),
            },
        }));
    }
    let child = flags & 1 != 0;
    let mut ops = Ops::new(config, child, base);
    while !r.is_empty() {
        ops.step(&mut r);
        ops.after_step();
    }
    ops.finish();
}

/// How much of the request layer the owner has turned on (it only ever goes up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Off,
    Track,
    Serve,
}

/// A request made through [`Endpoint::request`].
#[derive(Debug)]
struct Ours {
    id: Id,
    /// Made while serving: its result must come exactly once, unless cancelled.
    serving: bool,
    cancelled: bool,
    taken: bool,
    /// How many `results` wakes had been seen when it was made.
    wakes_before: u64,
}

/// An endpoint, the driver's side of it, and what the contract lets the driver expect.
struct Ops {
    ep: Endpoint,
    child: bool,
    framing: Framing,
    max_frame: usize,
    budget: usize,
    /// The driver's clock, which may go backwards; `latest` is the latest time it showed.
    now: Instant,
    latest: Instant,
    mode: Mode,
    disconnected: bool,
    aborted: bool,
    /// `CloseWrite` or `SendClose` has been polled.
    write_closed: bool,
    /// `Flush` and `SendClose` controls polled and not yet reported done.
    flushes_owed: usize,
    /// Bytes handed to the driver and not yet reported written.
    in_flight: usize,
    exited: bool,
    killed: bool,
    /// `KillDescendants` has come (once, after the exit).
    descended: bool,
    terminated: bool,
    ours: Vec<Ours>,
    /// The peer's requests delivered while serving and not yet answered, by encoded id.
    owed: Vec<Id>,
    owed_keys: BTreeSet<String>,
    /// The deadline the driver's timer is armed for, as `poll_wake` told it.
    armed: Option<Instant>,
    results_wakes: u64,
}

impl Ops {
    fn new(config: Config, child: bool, base: Instant) -> Self {
        let framing = config.framing;
        let max_frame = config.max_frame;
        let budget = config.send_budget;
        let ep = match child {
            true => Endpoint::for_child(config, base),
            false => Endpoint::new(config, base),
        }
        .expect("a valid configuration");
        let mut ops = Ops {
            ep,
            child,
            framing,
            max_frame,
            budget,
            now: base,
            latest: base,
            mode: Mode::Off,
            disconnected: false,
            aborted: false,
            write_closed: false,
            flushes_owed: 0,
            in_flight: 0,
            exited: false,
            killed: false,
            descended: false,
            terminated: false,
            ours: Vec::new(),
            owed: Vec::new(),
            owed_keys: BTreeSet::new(),
            armed: None,
            results_wakes: 0,
        };
        ops.after_step();
        ops
    }

    fn is_stream(&self) -> bool {
        self.framing != Framing::Messages
    }

    fn step(&mut self, r: &mut Reader<'_>) {
        match r.u8() % 32 {
            0 => {
                let chunk = r.chunk();
                self.input(chunk);
            }
            1 => {
                let chunk = r.chunk().to_vec();
                self.frame(chunk);
            }
            2 => {
                let message = arbitrary_message(r);
                self.peer_sends(&message);
            }
            3 => {
                let id = Id::from(u64::from(r.u8() % 8) + 1);
                let response = match r.u8() % 2 {
                    0 => Response::success(id, json!("fuzz")),
                    _ => Response::error(id, ErrorObject::new(-1, "fuzz")),
                };
                self.peer_sends(&response.into());
            }
            4 => {
                self.transport(|ep, now| ep.handle_eof(now));
            }
            5 => {
                self.transport(|ep, now| ep.handle_read_error("fuzz read error", now));
            }
            6 => {
                if self.transport(|ep, now| ep.handle_write_error("fuzz write error", now)) {
                    // What the driver held is lost with the transport.
                    self.in_flight = 0;
                }
            }
            7 => self.message_transport(|ep, now| ep.handle_ping(now)),
            8 => self.message_transport(|ep, now| ep.handle_pong(now)),
            9 => self.message_transport(|ep, now| ep.handle_peer_close(now)),
            10 => self.message_transport(|ep, now| ep.handle_too_large("fuzz too large", now)),
            11 => {
                let n = usize::from(r.u16()) % (self.in_flight + 1);
                if !self.aborted {
                    self.ep.handle_transmitted(n);
                    self.in_flight -= n;
                }
            }
            12 => {
                if self.flushes_owed > 0 && !self.aborted {
                    self.flushes_owed -= 1;
                    self.ep.handle_flushed(self.now);
                }
            }
            13 => {
                let status = arbitrary_status(r);
                self.exit(status);
            }
            14 => {
                let by = arbitrary_duration(r);
                self.set_now(self.now.checked_add(by).unwrap_or(self.now));
            }
            15 => {
                let by = arbitrary_duration(r);
                self.now = self.now.checked_sub(by).unwrap_or(self.now);
            }
            16 => self.timeout(self.now),
            17 => {
                if let Some(deadline) = self.ep.poll_timeout() {
                    self.set_now(deadline);
                    self.timeout(deadline);
                }
            }
            18 => {
                if let Some(deadline) = self.ep.poll_timeout() {
                    let at = deadline
                        .checked_sub(Duration::from_nanos(1))
                        .unwrap_or(deadline);
                    self.set_now(at);
                    self.timeout(at);
                }
            }
            19 => {
                let tracked = r.u8() % 2 == 1;
                let message = arbitrary_message(r);
                let _ = match tracked {
                    true => self.ep.send_tracked(&message),
                    false => self.ep.send(&message),
                };
            }
            20 => {
                let reason = match r.u8() % 4 {
                    0 => CloseReason::Normal,
                    1 => CloseReason::GoingAway,
                    2 => CloseReason::Idle,
                    _ => CloseReason::Custom(r.u16(), "fuzz".to_owned()),
                };
                self.ep.close_with(reason, self.now);
            }
            21 => {
                let linger = arbitrary_duration(r);
                self.ep.finish(linger, self.now);
            }
            22 => self.request_layer(r.u8()),
            23 => {
                let method = r.text();
                let timeout = match r.u8() % 3 {
                    0 => None,
                    _ => Some(arbitrary_duration(r)),
                };
                self.request(method, timeout);
            }
            24 => {
                let index = r.u8();
                let how = r.u8() % 3;
                self.answer(index, how);
            }
            25 => {
                if let Some(ours) = pick(&mut self.ours, r.u8()) {
                    ours.cancelled = true;
                    let id = ours.id.clone();
                    self.ep.cancel(&id);
                    assert!(!self.ep.is_pending(&id), "{id} pending after its cancel");
                }
            }
            26 => {
                let index = r.u8();
                self.take_result(index);
            }
            27 => {
                self.poll_event();
            }
            28 => while self.poll_event() {},
            29 => {
                self.transmit();
            }
            30 => {
                self.poll_control();
            }
            _ => {
                self.poll_action();
            }
        }
    }

    /// Moves the driver's clock; the latest time shown is kept.
    fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.latest = self.latest.max(now);
    }

    /// Reports a transport event, unless the driver has given the transport up. Returns
    /// whether it was reported.
    fn transport(&mut self, handle: impl FnOnce(&mut Endpoint, Instant)) -> bool {
        if self.aborted {
            return false;
        }
        handle(&mut self.ep, self.now);
        true
    }

    /// A websocket-only event: a byte stream has no pings or Close frames.
    fn message_transport(&mut self, handle: impl FnOnce(&mut Endpoint, Instant)) {
        if !self.is_stream() {
            self.transport(handle);
        }
    }

    /// Whether a driver may hand in input now: not after `Abort`, and not while
    /// `wants_input` says no (unless the input has ended, when it is ignored). Events need not
    /// be drained first: that is the read-ahead.
    fn may_feed(&mut self) -> bool {
        !self.aborted && (self.ep.wants_input() || self.ep.is_input_ended())
    }

    fn input(&mut self, bytes: &[u8]) {
        if !self.is_stream() {
            let result = self.ep.handle_input(bytes, self.now);
            assert_eq!(result, Err(UsageError::BytesOnMessageTransport));
            return;
        }
        if !self.may_feed() {
            return;
        }
        // Input after the end is ignored: what is buffered came with an earlier chunk.
        let taken = !self.ep.is_input_ended();
        self.ep
            .handle_input(bytes, self.now)
            .expect("a stream endpoint takes bytes");
        if taken {
            self.check_buffered(bytes.len());
        }
    }

    fn frame(&mut self, frame: Vec<u8>) {
        if self.is_stream() {
            let result = self.ep.handle_frame(frame, self.now);
            assert_eq!(result, Err(UsageError::FrameOnStreamTransport));
            return;
        }
        if !self.may_feed() {
            return;
        }
        let len = frame.len();
        let taken = !self.ep.is_input_ended();
        self.ep
            .handle_frame(frame, self.now)
            .expect("a message endpoint takes frames");
        if taken {
            self.check_buffered(len);
        }
    }

    /// A message from the peer, framed for this transport.
    fn peer_sends(&mut self, message: &Message) {
        let Ok(body) = serde_json::to_vec(message) else {
            return;
        };
        match self.framing {
            Framing::Lines => self.input(&[body, b"\n".to_vec()].concat()),
            Framing::ContentLength => {
                let header = format!("Content-Length: {}\r\n\r\n", body.len());
                self.input(&[header.into_bytes(), body].concat());
            }
            Framing::Messages => self.frame(body),
        }
    }

    fn exit(&mut self, status: ExitStatus) {
        if !self.child || self.exited {
            return;
        }
        self.exited = true;
        self.ep.handle_exit(status, self.now);
        assert_eq!(self.ep.exit_status(), Some(status));
    }

    /// `handle_timeout(at)`: no deadline is left before `at`, and deadlines left at `at`
    /// (zero grace periods, zero timeouts) settle within a few more calls at the same time.
    fn timeout(&mut self, at: Instant) {
        for _ in 0..SETTLE_ROUNDS {
            self.ep.handle_timeout(at);
            // A driver re-arms its timer after every firing.
            self.armed = self.ep.poll_timeout();
            match self.ep.poll_timeout() {
                Some(deadline) if deadline == at => continue,
                Some(deadline) => {
                    assert!(deadline > at, "a deadline in the past after handle_timeout");
                    return;
                }
                None => return,
            }
        }
        panic!("deadlines at {at:?} never settle: {:?}", self.ep);
    }

    fn request_layer(&mut self, choice: u8) {
        match choice % 4 {
            0 => {
                self.ep.track_requests();
                self.mode = self.mode.max(Mode::Track);
            }
            1 => {
                let cancel: CancelNotification = Arc::new(|id: &Id| {
                    Notification::new("$/cancelRequest", Some(json!({ "id": id })))
                });
                self.ep.serve(Some(cancel));
                self.mode = Mode::Serve;
            }
            2 => {
                self.ep.serve(None);
                self.mode = Mode::Serve;
            }
            _ => {
                let serving = choice & 4 != 0;
                self.ep.set_serving(serving);
            }
        }
    }

    fn request(&mut self, method: String, timeout: Option<Duration>) {
        let ended = self.ep.is_input_ended() || self.disconnected;
        match self.ep.request(method, None, timeout, self.now) {
            Ok(id) => {
                assert!(!ended, "a request accepted after the input ended");
                assert!(self.ep.is_pending(&id), "a new request is not pending");
                assert!(
                    self.ours
                        .iter()
                        .all(|o| o.id != id || o.taken || !o.serving),
                    "request id {id} reused while its result is owed"
                );
                self.ours.push(Ours {
                    id,
                    serving: self.mode == Mode::Serve,
                    cancelled: false,
                    taken: false,
                    wakes_before: self.results_wakes,
                });
            }
            Err(RpcError::Disconnected) => assert!(ended, "refused as disconnected while open"),
            Err(RpcError::Send(_)) => {}
            Err(other) => panic!("request refused with {other:?}"),
        }
    }

    /// Answers, or declines, one of the peer's requests still owed an answer.
    fn answer(&mut self, index: u8, how: u8) {
        if self.owed.is_empty() {
            return;
        }
        let id = self.owed.remove(usize::from(index) % self.owed.len());
        self.owed_keys.remove(&key(&id));
        match how {
            0 => {
                let result = self.ep.respond(id.clone(), Ok(Value::Null));
                assert_eq!(result.is_ok(), !self.disconnected, "respond to {id}");
            }
            1 => {
                let error = ErrorObject::new(ErrorObject::INTERNAL_ERROR, "fuzz");
                let result = self.ep.respond(id.clone(), Err(error));
                assert_eq!(result.is_ok(), !self.disconnected, "respond to {id}");
            }
            _ => self.ep.decline(id),
        }
    }

    fn take_result(&mut self, index: u8) {
        let wakes = self.results_wakes;
        let Some(ours) = pick(&mut self.ours, index) else {
            return;
        };
        if let Some(result) = self.ep.take_result(&ours.id) {
            assert!(!ours.taken, "a second result for {}: {result:?}", ours.id);
            assert!(!ours.cancelled, "a result for cancelled {}", ours.id);
            assert!(
                wakes > ours.wakes_before,
                "a result for {} with no results wake since it was made",
                ours.id
            );
            ours.taken = true;
        }
    }

    /// Polls one event; returns whether there was one.
    fn poll_event(&mut self) -> bool {
        let (_, queued_before) = self.counts();
        let Some(event) = self.ep.poll_event() else {
            return false;
        };
        assert!(!self.disconnected, "{event:?} after Disconnected");
        match &event {
            Event::Disconnected(_) => {
                self.disconnected = true;
                self.owed.clear();
                self.owed_keys.clear();
            }
            Event::Message(message) if self.mode == Mode::Serve => self.note_owed(message),
            _ => {}
        }
        // One frame makes the endpoint owe at most an answer per request in it (each about
        // the size of the request), or one error for a frame that was not a message, and
        // perhaps a goodbye's notification.
        let (_, queued) = self.counts();
        let bound = 8 * self.max_frame + 512;
        assert!(
            queued <= queued_before + bound,
            "{event:?} made the endpoint owe {} bytes, over {bound}",
            queued - queued_before
        );
        true
    }

    /// The peer's requests in a message delivered while serving are owed an answer.
    fn note_owed(&mut self, message: &Message) {
        match message {
            Message::Request(request) => {
                let new = self.owed_keys.insert(key(&request.id));
                assert!(new, "request {} delivered twice while owed", request.id);
                self.owed.push(request.id.clone());
            }
            Message::Batch(items) => items.iter().for_each(|item| self.note_owed(item)),
            _ => {}
        }
    }

    /// Takes what is queued to write; returns how many bytes that was.
    fn transmit(&mut self) -> usize {
        if self.aborted {
            return 0;
        }
        let n = match self.framing {
            Framing::Messages => self.ep.poll_transmit_frame().map_or(0, |frame| frame.len()),
            _ => self.ep.poll_transmit(&mut Vec::new()),
        };
        assert!(
            n == 0 || !self.write_closed,
            "{n} bytes to write after the write half was closed"
        );
        self.in_flight += n;
        n
    }

    /// Writes everything queued and carries out every control, reporting each done.
    fn write_everything(&mut self) {
        while !self.aborted {
            let wrote = self.transmit();
            if self.in_flight > 0 {
                self.ep.handle_transmitted(self.in_flight);
                self.in_flight = 0;
            }
            let controlled = self.poll_control();
            while self.flushes_owed > 0 && !self.aborted {
                self.flushes_owed -= 1;
                self.ep.handle_flushed(self.now);
            }
            self.after_step();
            if wrote == 0 && !controlled {
                break;
            }
        }
    }

    /// Polls one control; returns whether there was one.
    fn poll_control(&mut self) -> bool {
        let Some(control) = self.ep.poll_control() else {
            return false;
        };
        assert!(!self.aborted, "{control:?} after Abort");
        match control {
            Control::CloseWrite | Control::SendClose { .. } => {
                assert!(!self.write_closed, "the write half closed twice");
                assert_eq!(
                    matches!(control, Control::SendClose { .. }),
                    !self.is_stream(),
                    "{control:?} on this transport"
                );
                self.write_closed = true;
                if !self.is_stream() {
                    self.flushes_owed += 1;
                }
            }
            Control::Flush | Control::Ping => {
                assert!(!self.is_stream(), "{control:?} on a byte stream");
                if control == Control::Flush {
                    self.flushes_owed += 1;
                }
            }
            Control::Abort => self.aborted = true,
        }
        true
    }

    /// Polls one action; returns whether there was one.
    fn poll_action(&mut self) -> bool {
        let Some(action) = self.ep.poll_action() else {
            return false;
        };
        assert!(self.child, "{action:?} with no child");
        assert!(!self.descended, "{action:?} after KillDescendants");
        match action {
            Action::CloseStdin => panic!("CloseStdin is the endpoint's to carry out"),
            Action::TerminateGroup => {
                assert!(!self.killed, "{action:?} after KillGroup");
                assert!(!self.terminated, "TerminateGroup twice");
                self.terminated = true;
            }
            Action::KillGroup => {
                assert!(!self.killed, "KillGroup twice");
                self.killed = true;
            }
            // Once, after the exit, and after the group kill that the exit brings.
            Action::KillDescendants { .. } => {
                assert!(self.killed, "KillDescendants before KillGroup");
                assert!(self.exited, "KillDescendants before the exit");
                self.descended = true;
            }
        }
        true
    }

    /// The connection's buffered and queued bytes. The endpoint has no query for them; its
    /// `Debug` output carries its connection's.
    fn counts(&self) -> (usize, usize) {
        (self.count("buffered: "), self.count("queued: "))
    }

    /// One byte or event count from the connection's `Debug` output.
    fn count(&self, name: &str) -> usize {
        let debug = format!("{:?}", self.ep);
        let field = |name: &str| -> usize {
            let start = debug
                .find(name)
                .unwrap_or_else(|| panic!("no {name} in {debug}"))
                + name.len();
            let digits: String = debug[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().expect("a byte count")
        };
        field(name)
    }

    /// Input held never exceeds the frame limit (the `Content-Length` header limit, if
    /// larger) plus the chunk just handed in, and the read-ahead beyond it its own bounds:
    /// as many events as it holds, and its bytes (here the frame limit) plus one frame.
    fn check_buffered(&self, chunk: usize) {
        let limit = match self.framing {
            Framing::ContentLength => self.max_frame.max(MAX_HEADER),
            Framing::Lines => self.max_frame,
            // Queued frames are the read-ahead itself.
            Framing::Messages => 2 * self.max_frame,
        };
        let (buffered, _) = self.counts();
        assert!(
            buffered <= limit + chunk,
            "{buffered} bytes buffered, over {limit} plus a {chunk}-byte chunk"
        );
        let (ahead, ahead_bytes) = (self.count("ahead: "), self.count("ahead_bytes: "));
        assert!(ahead <= 1 + self.max_frame % 4, "{ahead} events read ahead");
        assert!(
            ahead_bytes <= 2 * self.max_frame + chunk,
            "{ahead_bytes} bytes read ahead"
        );
    }

    /// What holds after every step, with the driver asking `poll_wake` as it does after
    /// every call.
    fn after_step(&mut self) {
        let wake = self.ep.poll_wake();
        if wake.timer {
            self.armed = self.ep.poll_timeout();
        }
        if wake.results {
            self.results_wakes += 1;
        }
        if let Some(deadline) = self.ep.poll_timeout() {
            assert!(
                self.armed.is_some_and(|armed| armed <= deadline),
                "the deadline {deadline:?} is earlier than the timer armed from poll_wake, {:?}",
                self.armed
            );
        }
        if !wake.write && !self.aborted {
            assert_eq!(self.ep.poll_transmit(&mut Vec::new()), 0, "bytes hidden");
            assert_eq!(self.ep.poll_transmit_frame(), None, "a frame hidden");
            assert_eq!(self.ep.poll_control(), None, "a control hidden");
        }

        assert_eq!(self.ep.is_closed(), self.disconnected, "is_closed");
        if self.ep.is_finished() {
            assert!(self.disconnected, "finished before Disconnected");
            assert!(
                !self.child || (self.exited && self.killed),
                "finished with the child not known to be gone"
            );
        }
        let (_, queued) = self.counts();
        let owed = self.count("owed: ");
        assert!(
            owed <= queued + self.in_flight,
            "{owed} bytes owed of those pending"
        );
        let open = !self.ep.is_input_ended();
        if self.ep.wants_input() {
            assert!(open, "wants_input after the end of input");
            assert!(
                owed < 2 * self.budget,
                "wants_input with {owed} bytes owed under a budget of {}",
                self.budget
            );
        } else if open && owed < 2 * self.budget {
            // Only a full read-ahead holds input back then.
            let ahead = self.count("ahead: ");
            let full = match self.framing {
                Framing::Messages => {
                    ahead > self.max_frame % 4 || self.count("ahead_bytes: ") >= self.max_frame
                }
                // A stream's buffer past its room: what the read-ahead takes was decoded.
                Framing::Lines => self.counts().0 > self.max_frame,
                Framing::ContentLength => self.counts().0 > self.max_frame.max(MAX_HEADER),
            };
            assert!(full, "input held back with room in the read-ahead");
        }
    }

    /// Ends everything as a patient driver would: writes what is queued, answers every
    /// control, ends the input, lets every deadline pass, has the child exit; then checks
    /// the end.
    fn finish(mut self) {
        for _ in 0..4 * SETTLE_ROUNDS {
            while self.poll_event() {}
            self.write_everything();
            if !self.aborted && !self.ep.is_input_ended() {
                self.ep.handle_eof(self.now);
            }
            while self.poll_event() {}
            self.write_everything();
            if let Some(deadline) = self.ep.poll_timeout() {
                let at = deadline.max(self.now);
                self.set_now(at);
                self.timeout(at);
            }
            while self.poll_action() {}
            self.after_step();
            if self.disconnected && self.ep.poll_timeout().is_none() {
                break;
            }
        }
        assert!(
            self.disconnected,
            "no Disconnected after the end: {:?}",
            self.ep
        );
        assert!(
            self.ep.poll_event().is_none(),
            "an event after Disconnected"
        );

        let wakes = self.results_wakes;
        for ours in &mut self.ours {
            if ours.serving && !ours.cancelled && !ours.taken {
                assert!(
                    self.ep.take_result(&ours.id).is_some(),
                    "request {} made while serving never got a result",
                    ours.id
                );
                assert!(wakes > ours.wakes_before, "no results wake for {}", ours.id);
            }
        }

        let status = ExitStatus {
            code: Some(0),
            signal: None,
        };
        self.exit(status);
        while self.poll_action() {}
        self.after_step();
        assert!(
            self.ep.is_finished(),
            "not finished at the end: {:?}",
            self.ep
        );
    }
}

fn arbitrary_status(r: &mut Reader<'_>) -> ExitStatus {
    match r.u8() % 2 {
        0 => ExitStatus {
            code: Some(i32::from(r.u8())),
            signal: None,
        },
        _ => ExitStatus {
            code: None,
            signal: Some(i32::from(r.u8())),
        },
    }
}

/// One of `items`, chosen by a byte.
fn pick<T>(items: &mut [T], index: u8) -> Option<&mut T> {
    let len = items.len();
    (len > 0).then(|| &mut items[usize::from(index) % len])
}

/// An id as the endpoint tells ids apart: by their JSON.
fn key(id: &Id) -> String {
    serde_json::to_string(id).expect("an id encodes")
}
