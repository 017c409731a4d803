//! The connection state machine: bytes or frames in, events and bytes to write out.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::framing::{ContentLength, InBuf, Lines, Next, StreamFramer};
use crate::transcript::{Direction, Tap, Tapped};
use crate::{
    decode, Config, ConfigError, Disconnect, DisconnectKind, Event, Framing, Malformed,
    MalformedKind, Message, SendError, UsageError, Verbatim,
};

/// One JSON-RPC connection, without any I/O.
///
/// See the [crate documentation](crate) for the order a driver calls these methods in.
/// Inputs are the `handle_*` methods, outputs the `poll_*` methods; [`send`](Self::send) and
/// [`close`](Self::close) are the owner's requests.
pub struct Connection<M = Message> {
    config: Config,
    input: Input,
    /// Events decoded ahead of the owner, in order, before anything still in `input`.
    ahead: VecDeque<Event<M>>,
    /// The frame bytes the events in `ahead` were decoded from.
    ahead_bytes: usize,
    end: End,
    output: Output,
    /// Bytes handed to the driver and not yet reported written.
    in_flight: usize,
    /// Where the answers the endpoint owes the peer lie in the output stream.
    owed: Owed,
    write_failed: bool,
    closing: bool,
    close_write_polled: bool,
    _message: PhantomData<fn(M) -> M>,
}

impl<M> fmt::Debug for Connection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("label", &self.config.label)
            .field("framing", &self.config.framing)
            .field("buffered", &self.buffered())
            .field("ahead", &self.read_ahead().0)
            .field("ahead_bytes", &self.read_ahead().1)
            .field("queued", &self.queued())
            .field("owed", &self.owed())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Input {
    Stream { buf: InBuf, framer: StreamFramer },
    Frames(VecDeque<Inbound>),
}

#[derive(Debug)]
enum Inbound {
    Frame(Vec<u8>),
    TooLarge(Malformed),
}

#[derive(Debug)]
enum Output {
    Stream(Vec<u8>),
    Frames(VecDeque<Vec<u8>>, usize),
}

/// The spans of the output stream that hold answers owed to the peer, counted in bytes since
/// the connection started: what [`Connection::owed`] reports, so that input is held back by
/// the answers a peer does not read, never by the owner's own large sends.
#[derive(Debug, Default)]
struct Owed {
    /// Every byte ever queued, and every byte reported written.
    queued: u64,
    written: u64,
    /// `(start, end)` of each owed span not yet written, oldest first.
    spans: VecDeque<(u64, u64)>,
    /// The bytes of `spans` not yet written.
    pending: usize,
}

impl Owed {
    fn queued(&mut self, n: usize, owed: bool) {
        let start = self.queued;
        self.queued += n as u64;
        if owed && n > 0 {
            self.spans.push_back((start, self.queued));
            self.pending += n;
        }
    }

    fn written(&mut self, n: usize) {
        self.written = (self.written + n as u64).min(self.queued);
        while let Some(&(start, end)) = self.spans.front() {
            if end <= self.written {
                self.spans.pop_front();
            } else {
                if start < self.written {
                    self.spans[0].0 = self.written;
                }
                break;
            }
        }
        self.pending = self
            .spans
            .iter()
            .map(|(start, end)| (end - start) as usize)
            .sum();
    }

    fn clear(&mut self) {
        self.written = self.queued;
        self.spans.clear();
        self.pending = 0;
    }
}

#[derive(Debug)]
enum End {
    Open,
    /// Input has ended; buffered frames drain first, then `Disconnected(reason)`.
    Ending {
        /// A final frame without its terminator is decoded (clean end) or dropped (error).
        flush_partial: bool,
        reason: Option<Disconnect>,
    },
    /// `Disconnected` has been emitted.
    Done,
}

impl<M> Connection<M>
where
    M: Serialize + DeserializeOwned,
{
    /// A connection in its initial state, open in both directions.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let (input, output) = match config.framing {
            Framing::Lines => (
                Input::Stream {
                    buf: InBuf::default(),
                    framer: StreamFramer::Lines(Lines::new(config.max_frame)),
                },
                Output::Stream(Vec::new()),
            ),
            Framing::ContentLength => (
                Input::Stream {
                    buf: InBuf::default(),
                    framer: StreamFramer::ContentLength(ContentLength::new(config.max_frame)),
                },
                Output::Stream(Vec::new()),
            ),
            Framing::Messages => (
                Input::Frames(VecDeque::new()),
                Output::Frames(VecDeque::new(), 0),
            ),
        };
        Ok(Connection {
            config,
            input,
            ahead: VecDeque::new(),
            ahead_bytes: 0,
            end: End::Open,
            output,
            in_flight: 0,
            owed: Owed::default(),
            write_failed: false,
            closing: false,
            close_write_polled: false,
            _message: PhantomData,
        })
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Bytes read from a stream transport, whenever [`wants_input`](Self::wants_input)
    /// holds (the owner need not have drained its events: this is the read-ahead). Ignored
    /// once the input has ended.
    ///
    /// Past one frame's worth of buffered bytes, frames are decoded ahead into a bounded queue
    /// as they complete, so that a frame over the limit is found and its bytes dropped as they
    /// arrive even while the owner is not receiving.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), UsageError> {
        let Input::Stream { buf, framer } = &mut self.input else {
            return Err(UsageError::BytesOnMessageTransport);
        };
        if !matches!(self.end, End::Open) {
            return Ok(());
        }
        // Bytes may be dropped on arrival only when nothing buffered comes before them
        // (a skipped body can already be partly buffered when its header is read).
        let rest = if buf.len() == 0 {
            framer.absorb(bytes)
        } else {
            bytes
        };
        if !rest.is_empty() {
            buf.extend(rest, self.config.max_frame);
        }
        let room = self.input_room();
        while self.buffered_input() > room && self.ahead_has_room() {
            let before = self.buffered_input();
            match self.decode_next(false) {
                Some(event) => {
                    // What the event holds: a message, its frame (blank lines skipped before
                    // it aside); a malformed frame, only an excerpt.
                    if matches!(event, Event::Message(_)) {
                        let consumed = before - self.buffered_input();
                        self.ahead_bytes += consumed.min(self.config.max_frame);
                    }
                    self.ahead.push_back(event);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// One whole message from a message transport (a websocket text or binary frame).
    /// Ignored once the input has ended.
    pub fn handle_frame(&mut self, frame: Vec<u8>) -> Result<(), UsageError> {
        let Input::Frames(queue) = &mut self.input else {
            return Err(UsageError::FrameOnStreamTransport);
        };
        if matches!(self.end, End::Open) {
            if frame.len() > self.config.max_frame {
                let limit = self.config.max_frame;
                queue.push_back(Inbound::TooLarge(Malformed::new(
                    MalformedKind::TooLarge {
                        limit,
                        declared: None,
                    },
                    &frame[..limit + 1],
                )));
            } else {
                self.ahead_bytes += frame.len();
                queue.push_back(Inbound::Frame(frame));
            }
        }
        Ok(())
    }

    /// The peer ended the stream cleanly (end of file, websocket Close). Whatever is buffered
    /// is still delivered, including a final line without its newline; then
    /// `Disconnected(None)`.
    pub fn handle_eof(&mut self) {
        self.end_input(true, None);
    }

    /// Reading failed. Complete frames already buffered are delivered, then
    /// `Disconnected(Some(..))` naming the error.
    pub fn handle_read_error(&mut self, detail: impl fmt::Display) {
        self.end_input(false, Some(DisconnectKind::Read(detail.to_string())));
    }

    /// Writing failed. Nothing more will be written and every later [`send`](Self::send)
    /// fails; input already buffered is still delivered, then `Disconnected(Some(..))`.
    pub fn handle_write_error(&mut self, detail: impl fmt::Display) {
        self.write_failed = true;
        match &mut self.output {
            Output::Stream(buf) => *buf = Vec::new(),
            Output::Frames(queue, bytes) => {
                queue.clear();
                *bytes = 0;
            }
        }
        self.in_flight = 0;
        self.owed.clear();
        self.end_input(false, Some(DisconnectKind::Write(detail.to_string())));
    }

    /// The transport gave up on an unresponsive peer (for example a keepalive ping that was
    /// never answered). Handled like a read error.
    pub fn handle_timeout_error(&mut self, detail: impl fmt::Display) {
        self.end_input(false, Some(DisconnectKind::Timeout(detail.to_string())));
    }

    /// `n` bytes handed out by [`poll_transmit`](Self::poll_transmit) or
    /// [`poll_transmit_frame`](Self::poll_transmit_frame) have been written.
    pub fn handle_transmitted(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
        self.owed.written(n);
    }

    fn end_input(&mut self, flush_partial: bool, kind: Option<DisconnectKind>) {
        if matches!(self.end, End::Open) {
            self.end = End::Ending {
                flush_partial,
                reason: kind.map(|kind| Disconnect {
                    label: self.config.label.clone(),
                    kind,
                }),
            };
        }
    }

    /// A supervised child ended and another takes its place (see
    /// [`Endpoint`](crate::Endpoint)): what the old one's output left buffered is decoded as at
    /// a clean end, `extra` events follow it, and the input and output start over for the new
    /// child's pipes. What was handed out to write and not reported written is forgotten (it
    /// went to the old pipe). Events already decoded stay, in order. After `Disconnected`, it
    /// changes nothing.
    pub(crate) fn restart_transport(&mut self, extra: Vec<Event<M>>) {
        if matches!(self.end, End::Done) {
            return;
        }
        while let Some(event) = self.decode_next(true) {
            self.ahead.push_back(event);
        }
        self.ahead.extend(extra);
        if let Input::Stream { buf, framer } = &mut self.input {
            buf.clear();
            *framer = match framer {
                StreamFramer::Lines(_) => StreamFramer::Lines(Lines::new(self.config.max_frame)),
                StreamFramer::ContentLength(_) => {
                    StreamFramer::ContentLength(ContentLength::new(self.config.max_frame))
                }
            };
        }
        self.end = End::Open;
        self.write_failed = false;
        self.closing = false;
        self.close_write_polled = false;
        self.in_flight = 0;
        self.owed.clear();
    }

    // ----- requests from the owner -------------------------------------------------------

    /// Encodes `message` and queues it behind everything queued before it.
    ///
    /// Fails without queueing anything if the message cannot be encoded, if the send budget
    /// is used up ([`SendError::Full`]: wait for [`handle_transmitted`](Self::handle_transmitted)
    /// and try again), after [`close`](Self::close), or once the connection can no longer
    /// write.
    pub fn send(&mut self, message: &M) -> Result<(), SendError> {
        self.send_value(message)
    }

    /// Queues a message kept as its bytes ([`Verbatim`]) behind everything queued, as
    /// [`send`](Self::send) would queue it once encoded: framed for the transport, under the
    /// same budget and with the same errors.
    pub fn send_verbatim(&mut self, message: &Verbatim) -> Result<(), SendError> {
        self.push(false, |out| {
            out.extend_from_slice(message.as_bytes());
            Ok(())
        })
    }

    /// [`send`](Self::send) for any serializable value: the endpoint's own messages
    /// (automatic replies, cancel notifications, goodbyes) whatever the connection's type.
    pub(crate) fn send_value<T: Serialize + ?Sized>(
        &mut self,
        message: &T,
    ) -> Result<(), SendError> {
        self.queue(message, false)
    }

    /// Encodes `message` behind everything queued; `owed` bypasses the send budget and counts
    /// the bytes as owed to the peer.
    fn queue<T: Serialize + ?Sized>(&mut self, message: &T, owed: bool) -> Result<(), SendError> {
        self.push(owed, |out| {
            serde_json::to_writer(out, message).map_err(SendError::Encode)
        })
    }

    /// Queues one message that `write` appends to the given buffer, framed for the transport,
    /// behind everything queued; `owed` bypasses the send budget and counts the bytes as owed
    /// to the peer. Nothing is queued if `write` fails.
    fn push(
        &mut self,
        owed: bool,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), SendError>,
    ) -> Result<(), SendError> {
        if self.write_failed || matches!(self.end, End::Done) {
            return Err(SendError::Disconnected);
        }
        if self.closing {
            return Err(SendError::Closed);
        }
        if !owed && !self.can_send() {
            return Err(SendError::Full);
        }
        let before = self.queued();
        match &mut self.output {
            Output::Stream(buf) => {
                let body = buf.len();
                if let Err(err) = write(buf) {
                    buf.truncate(body);
                    return Err(err);
                }
                if self.config.framing == Framing::ContentLength {
                    Tap::see(
                        &self.config.tap,
                        Tapped::Frame(Direction::Out, &buf[body..]),
                    );
                    // The header goes in front once the body's length is known.
                    let header = format!("Content-Length: {}\r\n\r\n", buf.len() - body);
                    buf.splice(body..body, header.into_bytes());
                } else {
                    // Compact JSON never holds a raw newline, but a hand-written `Serialize`
                    // (a pretty raw value, say) or bytes kept as written might; outside
                    // strings it is whitespace, and inside them JSON allows none.
                    if memchr::memchr(b'\n', &buf[body..]).is_some() {
                        for b in &mut buf[body..] {
                            if *b == b'\n' {
                                *b = b' ';
                            }
                        }
                    }
                    Tap::see(
                        &self.config.tap,
                        Tapped::Frame(Direction::Out, &buf[body..]),
                    );
                    buf.push(b'\n');
                }
            }
            Output::Frames(queue, bytes) => {
                let mut frame = Vec::new();
                write(&mut frame)?;
                Tap::see(&self.config.tap, Tapped::Frame(Direction::Out, &frame));
                *bytes += frame.len();
                queue.push_back(frame);
            }
        }
        self.owed.queued(self.queued() - before, owed);
        Ok(())
    }

    /// Queues a message the endpoint owes the peer (an automatic reply), whatever the send
    /// budget: the endpoint bounds these by holding back input instead.
    pub(crate) fn send_owed<T: Serialize + ?Sized>(
        &mut self,
        message: &T,
    ) -> Result<(), SendError> {
        self.queue(message, true)
    }

    /// Asks for an orderly close: no more sends are accepted, and once everything queued has
    /// been written, [`poll_close_write`](Self::poll_close_write) tells the driver to close
    /// its write half (the child's stdin, the socket's write side, a websocket Close). Input
    /// is still read until the peer ends it. Calling it again changes nothing.
    pub fn close(&mut self) {
        self.closing = true;
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next event, decoding at most one frame. `None` means "nothing until more input":
    /// read more and call [`handle_input`](Self::handle_input) (or `handle_frame`,
    /// `handle_eof`, ...). After `Disconnected` it is always `None`.
    pub fn poll_event(&mut self) -> Option<Event<M>> {
        let (flush_partial, ended) = match &self.end {
            End::Open => (false, false),
            End::Ending { flush_partial, .. } => (*flush_partial, true),
            End::Done => return None,
        };
        if let Some(event) = self.ahead.pop_front() {
            if self.ahead.is_empty() {
                self.ahead_bytes = 0;
            }
            return Some(event);
        }
        if let Some(event) = self.decode_next(flush_partial) {
            return Some(event);
        }
        if let Input::Stream { buf, .. } = &mut self.input {
            if ended {
                buf.clear();
            }
        }
        if !ended {
            return None;
        }
        match std::mem::replace(&mut self.end, End::Done) {
            End::Ending { reason, .. } => {
                Tap::see(&self.config.tap, Tapped::End(reason.as_ref()));
                Some(Event::Disconnected(reason))
            }
            _ => None,
        }
    }

    /// Decodes the next frame held in the input, if a whole one is there.
    fn decode_next(&mut self, flush_partial: bool) -> Option<Event<M>> {
        // Each branch builds its event in place: a decoded message is moved as little as
        // possible, which is measurable at a million messages a second.
        let tap = &self.config.tap;
        match &mut self.input {
            Input::Stream { buf, framer } => match framer.next(buf, flush_partial) {
                Next::Frame {
                    start,
                    len,
                    consume,
                } => {
                    let frame = &buf.pending()[start..start + len];
                    Tap::see(tap, Tapped::Frame(Direction::In, frame));
                    let event = decode_event(frame);
                    buf.consume(consume);
                    Some(event)
                }
                Next::Malformed(m) => {
                    Tap::see(tap, Tapped::Discarded(&m));
                    Some(Event::Malformed(m))
                }
                Next::Pending => None,
            },
            Input::Frames(queue) => {
                let inbound = queue.pop_front()?;
                let event = match inbound {
                    Inbound::Frame(frame) => {
                        self.ahead_bytes = self.ahead_bytes.saturating_sub(frame.len());
                        Tap::see(tap, Tapped::Frame(Direction::In, &frame));
                        decode_event(&frame)
                    }
                    Inbound::TooLarge(m) => {
                        Tap::see(tap, Tapped::Discarded(&m));
                        Event::Malformed(m)
                    }
                };
                if queue.is_empty() {
                    self.ahead_bytes = 0;
                }
                Some(event)
            }
        }
    }

    /// Moves every queued byte of a stream transport into `out`, to be written with one write
    /// and one flush. If `out` is empty its allocation is swapped with the queue's, so no byte
    /// is copied. Returns how many bytes were moved; report them written with
    /// [`handle_transmitted`](Self::handle_transmitted). Always 0 on a message transport.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let Output::Stream(buf) = &mut self.output else {
            return 0;
        };
        let n = buf.len();
        if out.is_empty() {
            std::mem::swap(out, buf);
        } else {
            out.extend_from_slice(buf);
            buf.clear();
        }
        self.in_flight += n;
        n
    }

    /// The next encoded message for a message transport, in order. Report its length written
    /// with [`handle_transmitted`](Self::handle_transmitted). Always `None` on a stream.
    pub fn poll_transmit_frame(&mut self) -> Option<Vec<u8>> {
        let Output::Frames(queue, bytes) = &mut self.output else {
            return None;
        };
        let frame = queue.pop_front()?;
        *bytes -= frame.len();
        self.in_flight += frame.len();
        Some(frame)
    }

    /// `true`, once, when the driver should close its write half: after
    /// [`close`](Self::close), with everything queued written.
    pub fn poll_close_write(&mut self) -> bool {
        if self.is_close_write_due() {
            self.close_write_polled = true;
            Tap::see(&self.config.tap, Tapped::Closed);
            return true;
        }
        false
    }
}

/// Queries: they need no bounds on the message type.
impl<M> Connection<M> {
    /// Whether [`send`](Self::send) would accept a message now as far as the budget goes.
    pub fn can_send(&self) -> bool {
        self.queued() + self.in_flight < self.config.send_budget
    }

    /// Bytes queued to write and not yet handed to the driver.
    pub fn queued(&self) -> usize {
        match &self.output {
            Output::Stream(buf) => buf.len(),
            Output::Frames(_, bytes) => *bytes,
        }
    }

    /// Input bytes (or whole frames' bytes) held, not yet decoded.
    pub fn buffered(&self) -> usize {
        match &self.input {
            Input::Stream { buf, .. } => buf.len(),
            Input::Frames(queue) => queue
                .iter()
                .map(|f| match f {
                    Inbound::Frame(v) => v.len(),
                    Inbound::TooLarge(_) => 0,
                })
                .sum(),
        }
    }

    /// Bytes of answers owed to the peer (automatic replies) not yet reported written.
    pub fn owed(&self) -> usize {
        self.owed.pending
    }

    /// Whether the driver should read more: the input has not ended and the read-ahead is
    /// not full (see [`Config::read_ahead`]). For a stream, the input buffer is within one
    /// frame's worth of bytes (past it, what the read-ahead takes was decoded ahead); for a
    /// message transport, fewer frames wait than the read-ahead holds.
    pub fn wants_input(&self) -> bool {
        if !matches!(self.end, End::Open) {
            return false;
        }
        match &self.input {
            // Past the room, `handle_input` has decoded ahead all the read-ahead takes; room
            // made there later by the owner is not room in the buffer.
            Input::Stream { .. } => self.buffered_input() <= self.input_room(),
            Input::Frames(queue) => {
                queue.is_empty()
                    || queue.len() < self.config.read_ahead_events
                        && self.ahead_bytes < self.config.read_ahead_bytes
            }
        }
    }

    /// Events decoded ahead of the owner and not yet polled, and the frame bytes they came
    /// from (for a message transport: frames handed in and not yet polled).
    pub fn read_ahead(&self) -> (usize, usize) {
        match &self.input {
            Input::Stream { .. } => (self.ahead.len(), self.ahead_bytes),
            Input::Frames(queue) => (queue.len(), self.ahead_bytes),
        }
    }

    /// How many bytes a stream's input buffer holds before frames are decoded ahead: one
    /// frame at the limit (a `Content-Length` header block may need more).
    fn input_room(&self) -> usize {
        match self.config.framing {
            Framing::ContentLength => self.config.max_frame.max(crate::framing::MAX_HEADER),
            _ => self.config.max_frame,
        }
    }

    fn buffered_input(&self) -> usize {
        match &self.input {
            Input::Stream { buf, .. } => buf.len(),
            Input::Frames(_) => 0,
        }
    }

    /// Whether one more event may be decoded ahead; the first always may.
    fn ahead_has_room(&self) -> bool {
        self.ahead.is_empty()
            || self.ahead.len() < self.config.read_ahead_events
                && self.ahead_bytes < self.config.read_ahead_bytes
    }

    /// The send budget.
    pub(crate) fn send_budget(&self) -> usize {
        self.config.send_budget
    }

    /// Whether [`poll_close_write`](Self::poll_close_write) would say yes.
    pub(crate) fn is_close_write_due(&self) -> bool {
        self.closing
            && !self.close_write_polled
            && !self.write_failed
            && self.queued() == 0
            && self.in_flight == 0
    }

    /// Whether the driver has been told to close the write half.
    pub(crate) fn is_write_closed(&self) -> bool {
        self.close_write_polled
    }

    /// Whether the input has ended (the end may not have been polled yet).
    pub fn is_input_ended(&self) -> bool {
        !matches!(self.end, End::Open)
    }

    /// Whether `Disconnected` has been emitted.
    pub fn is_closed(&self) -> bool {
        matches!(self.end, End::Done)
    }

    /// The configuration this connection was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Decodes one frame straight into the event that reports it.
fn decode_event<M: DeserializeOwned>(frame: &[u8]) -> Event<M> {
    match decode::<M>(frame) {
        Ok(message) => Event::Message(message),
        Err(malformed) => Event::Malformed(malformed),
    }
}
