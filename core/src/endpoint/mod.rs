//! One machine over everything a driver holds: the connection, the child's supervisor, the
//! websocket keepalive and close handshake, request dispatch, linger and idle timers.
//!
//! A driver makes one [`Endpoint`] per connection and keeps to one contract:
//!
//! - **Inputs** are `handle_*` calls, each with the current time where time matters: bytes or
//!   whole frames read ([`handle_input`](Endpoint::handle_input),
//!   [`handle_frame`](Endpoint::handle_frame)), the end of input or a read error, a write
//!   error, bytes written, a websocket ping, pong or Close, a message over the transport's own
//!   limit, the child's exit, and [`handle_timeout`](Endpoint::handle_timeout) when the
//!   deadline from [`poll_timeout`](Endpoint::poll_timeout) passes.
//! - **Outputs** are `poll_*` calls, drained after every input: events for the owner
//!   ([`poll_event`](Endpoint::poll_event)), bytes or frames to write
//!   ([`poll_transmit`](Endpoint::poll_transmit),
//!   [`poll_transmit_frame`](Endpoint::poll_transmit_frame)), transport controls
//!   ([`poll_control`](Endpoint::poll_control): close the write half, send a Close frame or a
//!   ping, flush, abort) and signals for the child's process group
//!   ([`poll_action`](Endpoint::poll_action)).
//! - **One timer**: [`poll_timeout`](Endpoint::poll_timeout) is the earliest of every
//!   deadline (the ladder's grace periods, keepalive, request deadlines, the wait for the
//!   peer's close, the drain after the child's exit, linger, idle), kept in one table.
//!
//! Every decision is made here and can be tested in virtual time: the close codes, how long a
//! close waits for the peer, when the end is handed to the owner, what the peer is answered
//! when nobody else answers it, how a batch is answered, what a goodbye says.

mod dispatch;
mod timers;
mod unsent;

use std::fmt;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{
    Action, Config, ConfigError, Connection, Decision, End, EndCause, ErrorObject, Event,
    ExitStatus, Framing, Id, Keepalive, KeepaliveAction, Message, Notification, Request, Response,
    Restart, Restarts, RpcError, SendError, Supervisor, UsageError, Verbatim,
};
use dispatch::{Dispatch, Mode};
use timers::{Timer, Timers};
use unsent::Unsent;

pub use dispatch::{CancelNotification, RespondError};

/// What a child is told before the shutdown ladder starts: a request (with the id
/// `"tether:goodbye"`), whose answer is awaited for at most the first grace period, then a
/// notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goodbye {
    /// The Language Server Protocol's: the `shutdown` request, then the `exit` notification.
    Lsp,
    /// A request and a notification of your own (both without params).
    Custom {
        /// The request's method.
        request: String,
        /// The notification's method.
        notification: String,
    },
}

impl Goodbye {
    fn methods(&self) -> (&str, &str) {
        match self {
            Goodbye::Lsp => ("shutdown", "exit"),
            Goodbye::Custom {
                request,
                notification,
            } => (request, notification),
        }
    }
}

/// Why this side closes, which decides the websocket Close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// An ordinary end: 1000.
    Normal,
    /// This side is going away (a server shutting down): 1001.
    GoingAway,
    /// The program behind this connection ended: 1000 if it exited with status 0, else 1011
    /// with the status.
    ProgramEnded(ExitStatus),
    /// The program behind this connection could not be started: 1011.
    ProgramFailed,
    /// Nothing went either way for the idle timeout: 1000.
    Idle,
    /// A code and reason of the owner's choosing.
    Custom(u16, String),
}

impl CloseReason {
    /// The websocket Close frame's status code and reason.
    pub fn frame(&self) -> (u16, String) {
        match self {
            CloseReason::Normal => (1000, String::new()),
            CloseReason::GoingAway => (1001, "going away".to_owned()),
            CloseReason::ProgramEnded(status) if status.success() => {
                (1000, "the program exited".to_owned())
            }
            CloseReason::ProgramEnded(status) => (1011, format!("the program ended: {status}")),
            CloseReason::ProgramFailed => (1011, "cannot start the program".to_owned()),
            CloseReason::Idle => (1000, "idle timeout".to_owned()),
            CloseReason::Custom(code, reason) => (*code, reason.clone()),
        }
    }
}

/// What the driver must do to the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Close the write half of a byte stream (the child's stdin, the socket's write side);
    /// everything queued has been written.
    CloseWrite,
    /// Send a websocket Close frame with this code and reason, flush it, then report
    /// [`Endpoint::handle_flushed`]; everything queued has been written.
    SendClose {
        /// The status code.
        code: u16,
        /// The reason.
        reason: String,
    },
    /// Send a websocket ping.
    Ping,
    /// Flush what the websocket library queued by itself (a pong, the answer to the peer's
    /// Close), then report [`Endpoint::handle_flushed`].
    Flush,
    /// Give the transport up: stop reading and writing and drop it.
    Abort,
}

/// What [`Endpoint::poll_wake`] says needs waking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Wake {
    /// Something is queued to write, or a transport control is due.
    pub write: bool,
    /// The earliest deadline moved earlier (or appeared): the timer must re-arm.
    pub timer: bool,
    /// Results of requests became available to [`Endpoint::take_result`].
    pub results: bool,
    /// [`Endpoint::wants_input`] turned true again: the reader must look.
    pub read: bool,
}

/// How the input is to end once the last word owed to the peer has gone out.
#[derive(Debug)]
enum DeferredEnd {
    Eof,
    ReadError(String),
}

/// How a supervised child's output or input failed while a restart could still follow: held
/// back from the connection until the child's end is decided.
#[derive(Debug)]
enum Down {
    Eof,
    ReadError(String),
    WriteError(String),
}

/// The supervision of a child across its ends (see [`crate::restart`]).
#[derive(Debug)]
struct Supervision {
    restarts: Restarts,
    /// The current child's output or input ended; held while a restart may follow.
    down: Option<Down>,
    /// A restart decided, waiting for its delay.
    pending: Option<Restart>,
    /// The delay has passed: the driver must start the next child.
    respawn_due: bool,
    /// The requests of ours the ended child could have read and had not answered when its
    /// restart was decided; those still unanswered once its output is all delivered are
    /// answered with an error.
    doomed: Option<Vec<Id>>,
    /// The owner's requests not yet handed to the driver, which the next child gets instead
    /// (kept only when a restart may follow).
    unsent: Unsent,
    /// After a restart, how many events of the old child are still to be delivered before
    /// its unanswered requests are answered.
    old_events: Option<usize>,
    /// Restarts decided and not yet polled by the driver.
    reports: std::collections::VecDeque<Restart>,
    /// The current child sent something (its ready deadline is met).
    ready: bool,
    /// The current child missed its ready deadline and the ladder is ending it.
    ready_failed: bool,
    /// The ladder was started by the supervision (a missed ready deadline, an output that
    /// ended), not by the owner: the child's stdin is closed, but the connection still takes
    /// sends, for the next child.
    own_ladder: bool,
    /// The current child's memory limit killed it (reported by the driver).
    oom: bool,
    /// A close was asked for while the current child's output was still open.
    requested_open: bool,
    /// The ladder signalled the current child's group before it exited.
    signalled: bool,
    /// The last child's end, once it is final.
    end: Option<End>,
    /// The latest child's end, final or not.
    last: Option<End>,
}

/// The id of the goodbye request.
const GOODBYE_ID: &str = "tether:goodbye";

/// Why a frame a websocket library refused ends the connection.
const TOO_LARGE_CLOSE: u16 = 1009;

/// One connection and everything around it, without any I/O. See the [module
/// documentation](self).
pub struct Endpoint<M = Message> {
    conn: Connection<M>,
    supervisor: Option<Supervisor>,
    keepalive: Option<Keepalive>,
    dispatch: Dispatch,
    timers: Timers,
    controls: std::collections::VecDeque<Control>,
    actions: std::collections::VecDeque<Action>,
    /// Set by the request layer of `Endpoint<Message>`: sees each message before the owner.
    router: Option<fn(&mut Dispatch, M) -> Option<M>>,
    close_timeout: Duration,
    idle_timeout: Option<Duration>,
    answer_malformed: bool,
    goodbye: Option<Goodbye>,
    /// Why this side closes, once it does.
    close_reason: Option<CloseReason>,
    /// The end of input waits for the last word to the peer to be flushed.
    deferred_end: Option<DeferredEnd>,
    /// The owner has nothing more to send: close once no request is pending.
    finishing: bool,
    /// The latest time handed in; decisions made while polling use it.
    now: Instant,
    /// The earliest deadline as last told by [`poll_wake`](Endpoint::poll_wake).
    reported_deadline: Option<Instant>,
    /// [`wants_input`](Endpoint::wants_input) as last told by
    /// [`poll_wake`](Endpoint::poll_wake).
    reported_wants_input: bool,
    /// [`Control::Abort`] has been queued: the transport is given up.
    aborted: bool,
    /// For a child: its restarts, ready deadline and end.
    supervision: Option<Supervision>,
    /// Events held until the answers owed to the owner's unanswered requests are delivered
    /// (the connection's end waits behind them).
    tail: std::collections::VecDeque<M>,
    /// The connection's end, delivered after `tail`.
    held_end: Option<Event<M>>,
}

impl<M> fmt::Debug for Endpoint<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("conn", &self.conn)
            .field("supervisor", &self.supervisor)
            .field("dispatch", &self.dispatch)
            .field("close_reason", &self.close_reason)
            .finish_non_exhaustive()
    }
}

impl<M> Endpoint<M>
where
    M: Serialize + DeserializeOwned,
{
    /// An endpoint for a peer that is not our child (a socket, a websocket, a pair of
    /// streams), open from `now`.
    pub fn new(config: Config, now: Instant) -> Result<Self, ConfigError> {
        let keepalive = match (config.framing, config.keepalive) {
            (Framing::Messages, Some((interval, timeout))) => {
                Some(Keepalive::new(now, interval, timeout))
            }
            _ => None,
        };
        let mut endpoint = Endpoint {
            close_timeout: config.close_timeout,
            idle_timeout: config.idle_timeout,
            answer_malformed: config.answer_malformed,
            goodbye: None,
            conn: Connection::new(config)?,
            supervisor: None,
            keepalive,
            dispatch: Dispatch::new(),
            timers: Timers::default(),
            controls: Default::default(),
            actions: Default::default(),
            router: None,
            close_reason: None,
            deferred_end: None,
            finishing: false,
            now,
            reported_deadline: None,
            reported_wants_input: true,
            aborted: false,
            supervision: None,
            tail: Default::default(),
            held_end: None,
        };
        endpoint.touch(now);
        endpoint.sync_timers();
        Ok(endpoint)
    }

    /// An endpoint for a child process just spawned: closing it runs the goodbye (if one is
    /// configured) and the shutdown ladder from the config.
    pub fn for_child(config: Config, now: Instant) -> Result<Self, ConfigError> {
        let policy = config.policy;
        let goodbye = config.goodbye.clone();
        let restart = config.restart;
        let mut endpoint = Endpoint::new(config, now)?;
        endpoint.supervisor = Some(Supervisor::new(policy));
        endpoint.goodbye = goodbye;
        endpoint.supervision = Some(Supervision {
            restarts: Restarts::new(restart),
            down: None,
            pending: None,
            respawn_due: false,
            doomed: None,
            unsent: Unsent::default(),
            old_events: None,
            reports: Default::default(),
            ready: false,
            ready_failed: false,
            own_ladder: false,
            oom: false,
            requested_open: false,
            signalled: false,
            end: None,
            last: None,
        });
        endpoint.child_started(now);
        endpoint.sync_timers();
        Ok(endpoint)
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Bytes read from a stream transport. Call it whenever [`wants_input`](Self::wants_input)
    /// holds, whether or not the owner has drained its events.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<(), UsageError> {
        self.observe(now);
        self.conn.handle_input(bytes)?;
        if !bytes.is_empty() {
            self.child_ready();
        }
        self.touch(now);
        self.sync_timers();
        Ok(())
    }

    /// One whole message from a message transport (a websocket text or binary frame), under
    /// the same condition as [`handle_input`](Self::handle_input).
    pub fn handle_frame(&mut self, frame: Vec<u8>, now: Instant) -> Result<(), UsageError> {
        self.observe(now);
        self.conn.handle_frame(frame)?;
        self.activity(now);
        self.touch(now);
        self.sync_timers();
        Ok(())
    }

    /// The peer sent a websocket ping; the library queued the pong, which is flushed.
    pub fn handle_ping(&mut self, now: Instant) {
        self.observe(now);
        self.activity(now);
        self.push_control(Control::Flush);
        self.sync_timers();
    }

    /// The peer sent a websocket pong (or any other frame that is not a message).
    pub fn handle_pong(&mut self, now: Instant) {
        self.observe(now);
        self.activity(now);
        self.sync_timers();
    }

    /// The peer sent a websocket Close; the library queued the answer. The answer is flushed
    /// before the end is handed to the owner (bounded by the close timeout), so that an owner
    /// that exits on `Disconnected` does not cut it off.
    pub fn handle_peer_close(&mut self, now: Instant) {
        self.observe(now);
        self.activity(now);
        if !self.conn.is_input_ended() && self.deferred_end.is_none() {
            self.deferred_end = Some(DeferredEnd::Eof);
            self.push_control(Control::Flush);
            self.timers
                .set_earliest(Timer::Close, now.checked_add(self.close_timeout));
        }
        self.sync_timers();
    }

    /// The transport refused a message over its size limit (a websocket library enforcing
    /// the frame limit itself). The peer is told with a Close 1009, then the connection ends
    /// with a read error.
    pub fn handle_too_large(&mut self, detail: impl fmt::Display, now: Instant) {
        self.observe(now);
        if !self.conn.is_input_ended() && self.deferred_end.is_none() {
            self.deferred_end = Some(DeferredEnd::ReadError(detail.to_string()));
            self.close_reason = Some(CloseReason::Custom(
                TOO_LARGE_CLOSE,
                "message over the size limit".to_owned(),
            ));
            self.conn.close();
            self.timers
                .set_earliest(Timer::Close, now.checked_add(self.close_timeout));
        }
        self.sync_timers();
    }

    /// The peer ended the stream (end of file; a websocket stream's end). An end that waited
    /// for our last word to the peer comes now: nothing more can reach it.
    pub fn handle_eof(&mut self, now: Instant) {
        self.observe(now);
        if self.hold_down(Down::Eof, now) {
            return self.sync_timers();
        }
        match self.deferred_end.is_some() {
            true => self.release_end(),
            false => self.conn.handle_eof(),
        }
        self.sync_timers();
    }

    /// Reading failed.
    pub fn handle_read_error(&mut self, detail: impl fmt::Display, now: Instant) {
        self.observe(now);
        if self.hold_down(Down::ReadError(detail.to_string()), now) {
            return self.sync_timers();
        }
        self.deferred_end = None;
        self.conn.handle_read_error(detail);
        self.sync_timers();
    }

    /// Writing failed: nothing more is written, every later send fails, and the connection
    /// ends with the error once buffered input is delivered.
    pub fn handle_write_error(&mut self, detail: impl fmt::Display, now: Instant) {
        self.observe(now);
        if self.hold_down(Down::WriteError(detail.to_string()), now) {
            return self.sync_timers();
        }
        self.deferred_end = None;
        self.conn.handle_write_error(detail);
        self.sync_timers();
    }

    /// `n` bytes handed out by `poll_transmit` or `poll_transmit_frame` have been written.
    pub fn handle_transmitted(&mut self, n: usize) {
        self.conn.handle_transmitted(n);
    }

    /// A [`Control::Flush`] or [`Control::SendClose`] has gone out: the last word owed to
    /// the peer, if that was it, is said, and the end can be handed to the owner.
    pub fn handle_flushed(&mut self, now: Instant) {
        self.observe(now);
        let last_word_out = match self.deferred_end {
            Some(DeferredEnd::Eof) => true,
            // Our 1009 Close has gone once the write half is closed.
            Some(DeferredEnd::ReadError(_)) => self.conn.is_write_closed(),
            None => false,
        };
        if last_word_out {
            self.release_end();
        }
        self.sync_timers();
    }

    /// The child has exited (detected, ideally before it is reaped). Its process group is
    /// killed at once; its output gets the close timeout to end (a descendant that left the
    /// group may hold it open).
    pub fn handle_exit(&mut self, status: ExitStatus, now: Instant) {
        self.observe(now);
        let Some(supervisor) = self.supervisor.as_mut() else {
            return;
        };
        let first = supervisor.exit_status().is_none();
        supervisor.handle_exit(now, status);
        self.take_supervisor_actions();
        if first {
            // Whatever path the ladder took, descendants that left the group are reached
            // now: the group kill alone cannot.
            self.actions.push_back(Action::KillDescendants {
                within: self.close_timeout,
            });
            if self.decide_end(status, now) {
                // A restart follows: the old output needs no drain, the next child brings
                // its own.
                return self.sync_timers();
            }
        }
        if !self.conn.is_input_ended() {
            self.timers
                .set_earliest(Timer::Drain, now.checked_add(self.close_timeout));
        }
        self.sync_timers();
    }

    /// Time has passed: fires every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        if let Some(supervisor) = self.supervisor.as_mut() {
            supervisor.handle_timeout(now);
        }
        self.take_supervisor_actions();
        if let Some(keepalive) = self.keepalive.as_mut() {
            keepalive.handle_timeout(now);
            match keepalive.poll_action() {
                Some(KeepaliveAction::Ping) => self.push_control(Control::Ping),
                Some(KeepaliveAction::TimedOut) => {
                    self.keepalive = None;
                    self.give_up("no answer to a keepalive ping".to_owned());
                }
                None => {}
            }
        }
        self.dispatch.correlator.handle_timeout(now);
        self.dispatch.collect();
        self.after_answers(now);
        for timer in self.timers.expired(now).collect::<Vec<_>>() {
            match timer {
                // Mirrors of the parts' own deadlines, handled above.
                Timer::Ladder | Timer::Keepalive | Timer::Requests => {}
                Timer::Close => match self.deferred_end.is_some() {
                    // The last word could not be flushed in time: end all the same.
                    true => self.release_end(),
                    false if !self.conn.is_input_ended() => self.give_up(format!(
                        "the peer did not close within {:?}",
                        self.close_timeout
                    )),
                    false => {}
                },
                Timer::Drain => {
                    if !self.conn.is_input_ended() {
                        self.give_up(format!(
                            "the child exited but its output stayed open for {:?}",
                            self.close_timeout
                        ));
                    }
                }
                Timer::Linger => self.close(now),
                Timer::Idle => self.close_with(CloseReason::Idle, now),
                Timer::Ready => self.ready_missed(now),
                Timer::Exit => self.release_down(),
                Timer::Restart => {
                    if let Some(supervision) = self.supervision.as_mut() {
                        supervision.respawn_due = supervision.pending.is_some();
                    }
                }
            }
        }
        self.flush_outbox();
        self.sync_timers();
    }

    // ----- requests from the owner -------------------------------------------------------

    /// Encodes `message` and queues it behind everything queued before it. See
    /// [`Connection::send`].
    pub fn send(&mut self, message: &M) -> Result<(), SendError> {
        self.conn.send(message)?;
        if self.idle_timeout.is_some() {
            let now = self.now;
            self.touch(now);
            self.sync_timers();
        }
        Ok(())
    }

    /// Whether [`send`](Self::send) would accept a message now as far as the budget goes.
    pub fn can_send(&self) -> bool {
        self.conn.can_send()
    }

    /// Starts an orderly close: for a child, the goodbye (if any) and then the shutdown
    /// ladder; otherwise no more sends, the write half closed once everything queued is
    /// written (a websocket Close 1000), and the peer given the close timeout to end.
    /// Calling it again changes nothing.
    pub fn close(&mut self, now: Instant) {
        self.close_with(CloseReason::Normal, now);
    }

    /// [`close`](Self::close), saying why (the websocket Close frame's code and reason).
    /// The first reason given counts.
    pub fn close_with(&mut self, reason: CloseReason, now: Instant) {
        self.observe(now);
        if self.close_reason.is_none() {
            self.close_reason = Some(reason);
            self.note_request();
            if self.cancel_restart() {
                self.flush_outbox();
                return self.sync_timers();
            }
            match self.supervisor.is_some() {
                true => self.start_goodbye(now),
                false => {
                    self.conn.close();
                    if !self.conn.is_input_ended() {
                        self.timers
                            .set_earliest(Timer::Close, now.checked_add(self.close_timeout));
                    }
                }
            }
        }
        self.flush_outbox();
        self.sync_timers();
    }

    /// Skips the remaining grace periods: for a child, no more sends, and its group is
    /// killed now, whatever stage of the goodbye or the ladder it was at. For any other peer,
    /// the same as [`close`](Self::close).
    pub fn kill(&mut self, now: Instant) {
        self.observe(now);
        if self.supervisor.is_some() && self.close_reason.is_none() {
            self.close_reason = Some(CloseReason::Normal);
            self.note_request();
            if self.cancel_restart() {
                self.flush_outbox();
                return self.sync_timers();
            }
        }
        match self.supervisor.as_mut() {
            Some(supervisor) => {
                supervisor.request_kill(now);
                self.conn.close();
                self.take_supervisor_actions();
            }
            None => self.close(now),
        }
        self.flush_outbox();
        self.sync_timers();
    }

    /// The owner has nothing more to send: close once every request it sent has been
    /// answered, or after `linger`, whichever comes first. Requests are known to the
    /// endpoint when sent through [`send_tracked`](Endpoint::send_tracked) or
    /// [`request`](Endpoint::request).
    pub fn finish(&mut self, linger: Duration, now: Instant) {
        self.observe(now);
        self.finishing = true;
        self.timers
            .set_earliest(Timer::Linger, now.checked_add(linger));
        self.after_answers(now);
        self.sync_timers();
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next event for the owner, decoding at most one frame; `None` means nothing until
    /// more input (or time). `Disconnected` comes exactly once, last.
    pub fn poll_event(&mut self) -> Option<Event<M>> {
        loop {
            let (event, from_conn) = match self.tail.pop_front() {
                Some(message) => (Event::Message(message), false),
                None => match self.held_end.take() {
                    Some(end) => (end, false),
                    None => match self.conn.poll_event() {
                        Some(event) => {
                            self.count_old_event();
                            (event, true)
                        }
                        None => {
                            // Everything the ended child said is delivered: its unanswered
                            // requests are answered now.
                            if self.supervision.as_ref().is_some_and(|s| {
                                s.down.is_some() && s.pending.is_some() && s.doomed.is_some()
                            }) {
                                self.settle_unanswered();
                                if !self.tail.is_empty() {
                                    continue;
                                }
                            }
                            return None;
                        }
                    },
                },
            };
            if from_conn && matches!(event, Event::Disconnected(_)) {
                // The child's unanswered requests are answered first, if a child there is.
                let answers = self.unanswered_answers(None);
                if !answers.is_empty() {
                    self.tail.extend(answers);
                    self.held_end = Some(event);
                    continue;
                }
            }
            let event = match event {
                Event::Message(message) => match self.router {
                    Some(route) => match route(&mut self.dispatch, message) {
                        Some(message) => Event::Message(message),
                        None => {
                            self.after_routing();
                            continue;
                        }
                    },
                    None => Event::Message(message),
                },
                Event::Malformed(malformed) => {
                    if self.answer_malformed && !self.conn.is_input_ended() {
                        self.dispatch.answer_malformed(&malformed);
                    }
                    Event::Malformed(malformed)
                }
                Event::Disconnected(reason) => {
                    self.dispatch.disconnect();
                    // A goodbye under way can no longer be answered: it ends, and the ladder
                    // goes on.
                    let now = self.now;
                    self.after_answers(now);
                    if self.dispatch.mode == Mode::Serve {
                        // Nobody can talk to the peer any more: a child is shut down.
                        let now = self.now;
                        self.close(now);
                    }
                    self.timers.set(Timer::Close, None);
                    self.timers.set(Timer::Linger, None);
                    self.timers.set(Timer::Idle, None);
                    self.timers.set(Timer::Drain, None);
                    self.sync_timers();
                    return Some(Event::Disconnected(reason));
                }
            };
            self.after_routing();
            return Some(event);
        }
    }

    /// Whether the driver should read more input now, whether or not the owner is receiving:
    /// the input has not ended, the read-ahead is not full (see
    /// [`Config::read_ahead`](crate::Config::read_ahead)), and the answers the endpoint owes
    /// the peer have not piled up past twice the send budget (a peer that sends requests and
    /// never reads their answers is held back rather than allowed to grow the queue). The
    /// owner's own sends never hold input back: a peer answering while it reads a large
    /// request must be read, or neither side could finish.
    pub fn wants_input(&self) -> bool {
        self.conn.wants_input() && self.conn.owed() < 2 * self.conn.send_budget()
    }

    /// See [`Connection::poll_transmit`]. Nothing while a supervised child is down (its
    /// output ended, or a restart waits for its delay): what the owner sends meanwhile waits
    /// for the next child, rather than go to a pipe nobody reads.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        if self.is_child_down() {
            return 0;
        }
        let n = self.conn.poll_transmit(out);
        self.note_handed_out(n);
        n
    }

    /// Whether the current child is gone or going, and another may follow.
    fn is_child_down(&self) -> bool {
        self.supervision
            .as_ref()
            .is_some_and(|s| s.down.is_some() || s.pending.is_some() || s.own_ladder)
    }

    /// See [`Connection::poll_transmit_frame`].
    pub fn poll_transmit_frame(&mut self) -> Option<Vec<u8>> {
        let frame = self.conn.poll_transmit_frame()?;
        self.note_handed_out(frame.len());
        Some(frame)
    }

    /// The next thing to do to the transport, in order.
    pub fn poll_control(&mut self) -> Option<Control> {
        if let Some(control) = self.controls.pop_front() {
            return Some(control);
        }
        if self.aborted {
            return None;
        }
        if self.conn.poll_close_write() {
            return Some(match self.conn.config().framing {
                Framing::Messages => {
                    let (code, reason) =
                        self.close_reason.get_or_insert(CloseReason::Normal).frame();
                    Control::SendClose { code, reason }
                }
                _ => Control::CloseWrite,
            });
        }
        None
    }

    /// Which of the driver's waiters what happened since the last call concerns: a driver
    /// whose writer, timer and request callers wait apart asks after every call it makes, so
    /// that a decision taken while polling (a close once the last answer arrived, an
    /// automatic reply, a new deadline) wakes whoever carries it out.
    pub fn poll_wake(&mut self) -> Wake {
        let next = self.timers.next();
        let timer = match (next, self.reported_deadline) {
            (Some(next), Some(reported)) => next < reported,
            (Some(_), None) => true,
            (None, _) => false,
        };
        self.reported_deadline = next;
        Wake {
            read: self.poll_read_wake(),
            write: !self.controls.is_empty()
                || !self.aborted
                    && (self.conn.queued() > 0 && !self.is_child_down()
                        || self.conn.is_close_write_due()),
            timer,
            results: std::mem::take(&mut self.dispatch.results_ready),
        }
    }

    /// The part of [`poll_wake`](Self::poll_wake) that concerns the reader alone: whether
    /// [`wants_input`](Self::wants_input) turned true again since it was last told. For a
    /// driver's writer, which frees room for input by writing owed answers and has no business
    /// with the other waiters.
    pub fn poll_read_wake(&mut self) -> bool {
        let wants_input = self.wants_input();
        let read = wants_input && !self.reported_wants_input;
        self.reported_wants_input = wants_input;
        read
    }

    /// The next signal for the child's process group, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- supervision: the driver's side ---------------------------------------------------

    /// The child's memory limit killed it (the driver read its cgroup's OOM record): its end,
    /// reported next with [`handle_exit`](Self::handle_exit), is `oom`.
    pub fn handle_oom(&mut self, now: Instant) {
        self.observe(now);
        if let Some(supervision) = self.supervision.as_mut() {
            supervision.oom = true;
        }
    }

    /// `true`, once per restart, when the restart's delay has passed: the driver starts the
    /// next child now and reports [`handle_respawned`](Self::handle_respawned) (or
    /// [`handle_respawn_failed`](Self::handle_respawn_failed)). Its transport replaces the old
    /// one; nothing is read from the old one after that.
    pub fn poll_respawn(&mut self) -> bool {
        let Some(supervision) = self.supervision.as_mut() else {
            return false;
        };
        std::mem::take(&mut supervision.respawn_due) && supervision.pending.is_some()
    }

    /// The next child is running, on a new transport: the old child's buffered output is
    /// delivered, its unanswered requests are answered with an error, and the connection goes
    /// on with the new child (what the owner queued meanwhile is written to it).
    pub fn handle_respawned(&mut self, now: Instant) {
        self.observe(now);
        let Some(supervision) = self.supervision.as_mut() else {
            return;
        };
        if supervision.pending.take().is_none() {
            return;
        }
        // What the old child left buffered is decoded ahead of anything the new one says; its
        // unanswered requests are answered once the last of it is delivered.
        self.conn.restart_transport(Vec::new());
        if self
            .supervision
            .as_ref()
            .is_some_and(|s| s.doomed.is_some())
        {
            match self.conn.read_ahead().0 {
                0 => self.settle_unanswered(),
                left => {
                    if let Some(supervision) = self.supervision.as_mut() {
                        supervision.old_events = Some(left);
                    }
                }
            }
        }
        self.dispatch.new_peer();
        let policy = self.conn.config().policy;
        self.supervisor = Some(Supervisor::new(policy));
        if let Some(supervision) = self.supervision.as_mut() {
            supervision.down = None;
            supervision.ready_failed = false;
            supervision.own_ladder = false;
            supervision.oom = false;
            supervision.requested_open = false;
            supervision.signalled = false;
        }
        self.child_started(now);
        self.flush_outbox();
        self.sync_timers();
    }

    /// The next child could not be started: the end of the one before is final, and the
    /// connection ends with `detail`.
    pub fn handle_respawn_failed(&mut self, detail: impl fmt::Display, now: Instant) {
        self.observe(now);
        let Some(supervision) = self.supervision.as_mut() else {
            return;
        };
        let Some(restart) = supervision.pending.take() else {
            return;
        };
        supervision.end = Some(restart.end);
        supervision.down = Some(Down::ReadError(format!(
            "cannot restart the program: {detail}"
        )));
        self.conn.close();
        self.release_down();
        self.sync_timers();
    }

    /// The next restart decided, in order: for the owner's report (`restart` events). Each is
    /// handed out once.
    pub fn poll_restart(&mut self) -> Option<Restart> {
        self.supervision.as_mut()?.reports.pop_front()
    }

    /// Whether a restart decided is waiting for [`poll_restart`](Self::poll_restart).
    pub fn has_restart_report(&self) -> bool {
        self.supervision
            .as_ref()
            .is_some_and(|s| !s.reports.is_empty())
    }

    /// How the last child ended, once that end is final (no restart follows): the cause and
    /// the status.
    pub fn end(&self) -> Option<End> {
        self.supervision.as_ref()?.end
    }

    /// Whether a restart is scheduled and its child not started yet.
    pub fn is_restarting(&self) -> bool {
        self.supervision
            .as_ref()
            .is_some_and(|s| s.pending.is_some())
    }

    // ----- queries ------------------------------------------------------------------------

    /// Whether the input has ended (the end may not have been polled yet).
    pub fn is_input_ended(&self) -> bool {
        self.conn.is_input_ended()
    }

    /// Whether `Disconnected` has been emitted.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Whether a close has been asked for.
    pub fn is_closing(&self) -> bool {
        self.close_reason.is_some()
    }

    /// Whether nothing is left to decide: `Disconnected` emitted and, for a child, the child
    /// exited with its group killed.
    pub fn is_finished(&self) -> bool {
        self.conn.is_closed()
            && self.actions.is_empty()
            && self.supervisor.as_ref().is_none_or(Supervisor::is_done)
    }

    /// How the child exited, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.supervisor.as_ref().and_then(Supervisor::exit_status)
    }

    /// The connection's label.
    pub fn label(&self) -> &str {
        self.conn.config().label.as_str()
    }

    /// The configuration of the connection.
    pub fn config(&self) -> &Config {
        self.conn.config()
    }

    // ----- internals ----------------------------------------------------------------------

    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// A message went one way or the other: the idle timer starts again.
    fn touch(&mut self, now: Instant) {
        if let Some(idle) = self.idle_timeout {
            self.timers.set(Timer::Idle, now.checked_add(idle));
        }
    }

    fn activity(&mut self, now: Instant) {
        if let Some(keepalive) = self.keepalive.as_mut() {
            keepalive.handle_activity(now);
        }
    }

    /// The peer is unresponsive: drop the transport and end with a timeout. Nothing more is
    /// asked of the transport after the abort.
    fn give_up(&mut self, detail: String) {
        self.deferred_end = None;
        if !self.aborted {
            self.aborted = true;
            self.controls.clear();
            self.controls.push_back(Control::Abort);
        }
        self.conn.handle_timeout_error(detail);
    }

    /// Queues a control for the transport, unless it has been given up.
    fn push_control(&mut self, control: Control) {
        if !self.aborted {
            self.controls.push_back(control);
        }
    }

    fn release_end(&mut self) {
        match self.deferred_end.take() {
            Some(DeferredEnd::Eof) => self.conn.handle_eof(),
            Some(DeferredEnd::ReadError(detail)) => self.conn.handle_read_error(detail),
            None => {}
        }
    }

    fn start_goodbye(&mut self, now: Instant) {
        let methods = self
            .goodbye
            .as_ref()
            .map(|g| (g.methods().0.to_owned(), g.methods().1.to_owned()));
        let Some((request, _)) = methods else {
            return self.start_ladder(now);
        };
        if self.conn.is_input_ended() {
            // The child's output has ended: no answer can come, and the ladder goes on alone.
            return self.start_ladder(now);
        }
        let grace = self
            .supervisor
            .as_ref()
            .map(|s| s.policy().close_stdin.or(s.policy().terminate))
            .unwrap_or_default()
            .unwrap_or(self.close_timeout);
        // An id of its own, which no request of the owner's can be waiting on.
        let id = Id::from(GOODBYE_ID);
        let tracked = self.dispatch.correlator.track(now, id.clone(), Some(grace));
        self.dispatch.collect();
        let sent = tracked.is_ok() && {
            self.dispatch.goodbye = Some(id.clone());
            let request = Request::new(id, request, None);
            self.conn.send_value(&Message::Request(request)).is_ok()
        };
        if !sent {
            self.end_goodbye(now);
        }
    }

    /// The goodbye's request was answered or given up on: the notification, then the ladder.
    fn end_goodbye(&mut self, now: Instant) {
        if let Some(id) = self.dispatch.goodbye.take() {
            self.dispatch.correlator.settle(&id);
            if let Some(goodbye) = &self.goodbye {
                let notification = Notification::new(goodbye.methods().1, None);
                let _ = self.conn.send_value(&Message::Notification(notification));
            }
        }
        self.start_ladder(now);
    }

    fn start_ladder(&mut self, now: Instant) {
        if let Some(supervisor) = self.supervisor.as_mut() {
            supervisor.request_shutdown(now);
        }
        self.take_supervisor_actions();
    }

    fn take_supervisor_actions(&mut self) {
        let Some(supervisor) = self.supervisor.as_mut() else {
            return;
        };
        let running = supervisor.exit_status().is_none();
        let own_ladder = self.supervision.as_ref().is_some_and(|s| s.own_ladder);
        while let Some(action) = supervisor.poll_action() {
            match action {
                Action::CloseStdin if own_ladder && self.close_reason.is_none() => {
                    // Only this child's stdin: what the owner sends waits for the next one.
                    if !self.aborted {
                        self.controls.push_back(Control::CloseWrite);
                    }
                }
                Action::CloseStdin => self.conn.close(),
                signal => {
                    if running {
                        if let Some(supervision) = self.supervision.as_mut() {
                            supervision.signalled = true;
                        }
                    }
                    self.actions.push_back(signal)
                }
            }
        }
    }

    // ----- supervision across children ------------------------------------------------------

    /// A child has started: its ready deadline runs from now.
    fn child_started(&mut self, now: Instant) {
        let Some(supervision) = self.supervision.as_mut() else {
            return;
        };
        supervision.restarts.handle_start(now);
        let ready = supervision.restarts.policy().ready_timeout;
        supervision.ready = ready.is_none();
        self.timers
            .set(Timer::Ready, ready.and_then(|t| now.checked_add(t)));
    }

    /// The child sent something: it is ready.
    fn child_ready(&mut self) {
        if let Some(supervision) = self.supervision.as_mut() {
            if !supervision.ready {
                supervision.ready = true;
                self.timers.set(Timer::Ready, None);
            }
        }
    }

    /// The ready deadline passed with nothing from the child: the ladder ends it, and its end
    /// is a failure to start (which a restart may follow).
    fn ready_missed(&mut self, now: Instant) {
        let Some(supervision) = self.supervision.as_mut() else {
            return;
        };
        let running = self
            .supervisor
            .as_ref()
            .is_some_and(|s| s.exit_status().is_none() && !s.is_shutting_down());
        if supervision.ready || !running || self.close_reason.is_some() {
            return;
        }
        supervision.ready_failed = true;
        supervision.own_ladder = true;
        if let Some(supervisor) = self.supervisor.as_mut() {
            supervisor.request_shutdown(now);
        }
        self.take_supervisor_actions();
    }

    /// A close or kill was asked for: if the child's output was still open, its end is
    /// `requested`.
    fn note_request(&mut self) {
        let open = !self.conn.is_input_ended();
        let running = self
            .supervisor
            .as_ref()
            .is_some_and(|s| s.exit_status().is_none());
        if let Some(supervision) = self.supervision.as_mut() {
            supervision.requested_open |= open && running && supervision.down.is_none();
        }
    }

    /// The child's output ended, or writing to it failed, while a restart could still follow,
    /// or with requests unanswered whose answers are to name the child's end: the end is held
    /// back from the connection until the child's end is decided (for the answers alone, at
    /// most the close timeout). Returns whether it was held.
    fn hold_down(&mut self, down: Down, now: Instant) -> bool {
        let closing = self.close_reason.is_some();
        let exited = self
            .supervisor
            .as_ref()
            .is_none_or(|s| s.exit_status().is_some());
        let unanswered = !self.dispatch.unanswered().is_empty();
        let Some(supervision) = self.supervision.as_mut() else {
            return false;
        };
        if supervision.end.is_some() {
            return false;
        }
        let may_restart = supervision.restarts.may_restart() && !closing;
        let wait_exit = !exited && unanswered;
        if !may_restart && !wait_exit {
            return false;
        }
        if supervision.down.is_none() {
            supervision.down = Some(down);
            if !may_restart {
                self.timers
                    .set(Timer::Exit, now.checked_add(self.close_timeout));
            } else if !exited {
                // A child that can no longer be heard (or told) is of no use running: the
                // ladder ends it, and its end decides whether another follows.
                supervision.own_ladder = true;
                if let Some(supervisor) = self.supervisor.as_mut() {
                    supervisor.request_shutdown(now);
                }
                self.take_supervisor_actions();
            }
        }
        true
    }

    /// Requests `ids` were just queued: while a restart may follow, where their message ends is
    /// kept, to tell whether the ended child could have read them.
    fn note_queued<'a>(&mut self, ids: impl IntoIterator<Item = &'a Id>) {
        let queued = self.conn.queued();
        if let Some(supervision) = self.supervision.as_mut() {
            if supervision.restarts.may_restart() {
                supervision.unsent.queued(queued, ids);
            }
        }
    }

    /// `n` bytes of output were handed to the driver.
    fn note_handed_out(&mut self, n: usize) {
        if let Some(supervision) = self.supervision.as_mut() {
            supervision.unsent.handed_out(n);
        }
    }

    /// The child's end is known: its cause, and whether another child follows. Returns whether
    /// a restart was scheduled.
    fn decide_end(&mut self, status: ExitStatus, now: Instant) -> bool {
        let closing = self.close_reason.is_some();
        let Some(supervision) = self.supervision.as_mut() else {
            return false;
        };
        self.timers.set(Timer::Ready, None);
        let cause = if supervision.oom {
            EndCause::Oom
        } else if supervision.ready_failed {
            EndCause::ReadyTimeout
        } else if supervision.requested_open || supervision.signalled && closing {
            EndCause::Requested
        } else if status.success() {
            EndCause::Exited
        } else {
            EndCause::Failed
        };
        supervision.last = Some(End { cause, status });
        let decision = match closing {
            // Nothing restarts after tether's own shutdown.
            true => Decision::End(cause),
            false => supervision.restarts.handle_end(cause, status, now),
        };
        match decision {
            Decision::Restart(restart) => {
                // A request still queued was never seen by the child that ended: the next
                // child gets it, and answers it.
                let mut doomed = self.dispatch.unanswered();
                doomed.retain(|id| !supervision.unsent.contains(id));
                supervision.doomed = Some(doomed);
                supervision.pending = Some(restart);
                supervision.reports.push_back(restart);
                self.timers
                    .set(Timer::Restart, now.checked_add(restart.delay));
                true
            }
            Decision::End(cause) => {
                supervision.end = Some(End { cause, status });
                if cause == EndCause::CrashLoop {
                    // The session ends: nothing is sent to a child that is gone.
                    self.conn.close();
                }
                self.release_down();
                false
            }
        }
    }

    /// What was held back reaches the connection: the child's end is final.
    fn release_down(&mut self) {
        self.timers.set(Timer::Exit, None);
        let Some(down) = self.supervision.as_mut().and_then(|s| s.down.take()) else {
            return;
        };
        match down {
            Down::Eof => self.conn.handle_eof(),
            Down::ReadError(detail) => self.conn.handle_read_error(detail),
            Down::WriteError(detail) => self.conn.handle_write_error(detail),
        }
    }

    /// A close while a restart waits for its delay: no restart follows, and the end of the
    /// child that was to be replaced is final. Returns whether a restart was cancelled.
    fn cancel_restart(&mut self) -> bool {
        let Some(supervision) = self.supervision.as_mut() else {
            return false;
        };
        let Some(restart) = supervision.pending.take() else {
            return false;
        };
        supervision.respawn_due = false;
        supervision.end = Some(restart.end);
        // A restart that will not happen is not reported, if it was not yet.
        supervision.reports.retain(|r| *r != restart);
        self.timers.set(Timer::Restart, None);
        self.conn.close();
        if supervision.down.is_none() {
            // The old child's output never ended: it is given up as ended now.
            supervision.down = Some(Down::Eof);
        }
        self.release_down();
        true
    }

    /// The answers owed to the owner's unanswered requests to the current child: a `-32603`
    /// error response for each, naming the child's end. Empty when requests are not tracked
    /// or there is no child.
    fn unanswered_answers(&mut self, ids: Option<Vec<Id>>) -> Vec<M> {
        let Some(supervision) = self.supervision.as_ref() else {
            return Vec::new();
        };
        let ids = match ids {
            Some(ids) => ids
                .into_iter()
                .filter(|id| self.dispatch.correlator.is_pending(id))
                .collect(),
            None => self.dispatch.unanswered(),
        };
        if ids.is_empty() {
            return Vec::new();
        }
        let end = supervision
            .end
            .or(supervision.last)
            .map(|end| format!("the program ended ({end}) before answering"))
            .unwrap_or_else(|| "the program's output ended before it answered".to_owned());
        ids.into_iter()
            .filter_map(|id| {
                let error = ErrorObject::new(ErrorObject::INTERNAL_ERROR, end.clone());
                let response = Message::Response(Response::error(id, error));
                // Built as JSON-RPC, read back as the connection's message type.
                let bytes = serde_json::to_vec(&response).ok()?;
                crate::decode::<M>(&bytes).ok()
            })
            .collect()
    }

    /// The current child's end is decided and its output is in: its unanswered requests are
    /// answered with an error, behind whatever it said, once.
    fn settle_unanswered(&mut self) {
        let Some(doomed) = self.supervision.as_mut().and_then(|s| s.doomed.take()) else {
            return;
        };
        let answers = self.unanswered_answers(Some(doomed));
        // Delivered next, ahead of anything the next child says.
        self.tail.extend(answers);
    }

    /// An event of the connection was delivered: if it was the last the old child left
    /// buffered at a restart, the old child's unanswered requests are answered next.
    fn count_old_event(&mut self) {
        let Some(supervision) = self.supervision.as_mut() else {
            return;
        };
        if let Some(left) = supervision.old_events.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                supervision.old_events = None;
                self.settle_unanswered();
            }
        }
    }

    /// After a message was routed: what it settled may finish a goodbye or a linger, and
    /// what it made owed goes out.
    fn after_routing(&mut self) {
        let now = self.now;
        self.after_answers(now);
        self.flush_outbox();
        self.sync_timers();
    }

    fn after_answers(&mut self, now: Instant) {
        if self.dispatch.goodbye_settled() {
            self.end_goodbye(now);
        }
        if self.finishing && self.dispatch.pending() == 0 && self.close_reason.is_none() {
            self.close(now);
        }
    }

    /// Queues what the request layer decided to send. These are answers owed to the peer
    /// and go out whatever the send budget; [`wants_input`](Self::wants_input) bounds them.
    fn flush_outbox(&mut self) {
        while let Some(message) = self.dispatch.outbox.pop_front() {
            if self.conn.send_owed(&message).is_err() {
                // The connection can no longer write; nothing owed can be delivered.
                self.dispatch.outbox.clear();
            }
        }
    }

    fn sync_timers(&mut self) {
        let ladder = self.supervisor.as_ref().and_then(Supervisor::poll_timeout);
        self.timers.set(Timer::Ladder, ladder);
        let keepalive = self.keepalive.as_ref().and_then(Keepalive::poll_timeout);
        self.timers.set(Timer::Keepalive, keepalive);
        self.timers
            .set(Timer::Requests, self.dispatch.correlator.poll_timeout());
        if self.conn.is_closed() {
            // Nothing but the child's ladder can matter after the end.
            for timer in [Timer::Keepalive, Timer::Requests] {
                self.timers.set(timer, None);
            }
        }
    }
}

/// The request layer, for the JSON-RPC message model.
impl Endpoint<Message> {
    /// Tracks the requests in every message sent through
    /// [`send_tracked`](Self::send_tracked), so that [`finish`](Self::finish) knows what is
    /// still unanswered; every message is still delivered to the owner.
    pub fn track_requests(&mut self) {
        if self.dispatch.mode == Mode::Off {
            self.dispatch.mode = Mode::Track;
        }
        self.router = Some(Dispatch::route);
    }

    /// Sends `message` and tracks the requests in it.
    pub fn send_tracked(&mut self, message: &Message) -> Result<(), SendError> {
        self.send(message)?;
        self.note_queued(unsent::request_ids(message));
        let now = self.now;
        self.dispatch.track(now, message);
        self.sync_timers();
        Ok(())
    }

    /// Sends a message kept as its bytes (see [`Verbatim`]) and tracks the requests in it, as
    /// [`send_tracked`](Self::send_tracked) does for a [`Message`]: a relay forwards what it
    /// was given without decoding it into values and encoding it again.
    pub fn send_verbatim(&mut self, message: &Verbatim) -> Result<(), SendError> {
        self.send_verbatim_many(std::slice::from_ref(message))
            .map(drop)
    }

    /// [`send_verbatim`](Self::send_verbatim) for the messages at the front of `messages`,
    /// in order, while the send budget has room: returns how many were queued (at least one,
    /// unless there were none), or why the first could not be. The timers and the tracking of requests are brought up
    /// to date once for them all, which is what a relay forwarding a chunk of input by the
    /// hundred would otherwise pay for each.
    pub fn send_verbatim_many(&mut self, messages: &[Verbatim]) -> Result<usize, SendError> {
        let mut sent = 0;
        for message in messages {
            match self.conn.send_verbatim(message) {
                Ok(()) => self.note_queued(message.requests()),
                Err(err) if sent == 0 => return Err(err),
                // Met again as the first of the next call.
                Err(_) => break,
            }
            sent += 1;
        }
        let now = self.now;
        self.touch(now);
        let ids = messages[..sent].iter().flat_map(Verbatim::requests);
        self.dispatch.track_ids(now, ids);
        self.sync_timers();
        Ok(sent)
    }

    /// Turns the request layer on: responses to [`request`](Self::request)s become results
    /// ([`take_result`](Self::take_result)) instead of events, requests timed out or
    /// cancelled are followed by `cancel` (if given), and the peer's requests are owed an
    /// answer ([`respond`](Self::respond), [`decline`](Self::decline)). A response no request
    /// of ours waits for is delivered as an event.
    pub fn serve(&mut self, cancel: Option<CancelNotification>) {
        self.dispatch.mode = Mode::Serve;
        self.dispatch.cancel = cancel;
        self.router = Some(Dispatch::route);
    }

    /// Whether anyone answers the peer's requests. When not, each is answered `-32601` at
    /// once instead of being delivered.
    pub fn set_serving(&mut self, serving: bool) {
        self.dispatch.serving = serving;
    }

    /// Sends a request with a fresh id, failing with [`RpcError::TimedOut`] unless answered
    /// within `timeout`. Its result comes through [`take_result`](Self::take_result).
    pub fn request(
        &mut self,
        method: impl Into<String>,
        params: Option<Value>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Id, RpcError> {
        self.observe(now);
        if self.conn.is_closed() || self.conn.is_input_ended() {
            return Err(RpcError::Disconnected);
        }
        let request = self
            .dispatch
            .correlator
            .request(now, method, params, timeout);
        // The correlator may have completed others whose deadline passed.
        self.dispatch.collect();
        self.flush_outbox();
        let request: Request = request?;
        let id = request.id.clone();
        if let Err(err) = self.send(&Message::Request(request)) {
            self.dispatch.correlator.settle(&id);
            return Err(RpcError::Send(err.to_string()));
        }
        self.note_queued([&id]);
        self.sync_timers();
        Ok(id)
    }

    /// The result of request `id`, once it has one: the peer's answer, a timeout, a
    /// cancellation or the end of the connection.
    pub fn take_result(&mut self, id: &Id) -> Option<Result<Value, RpcError>> {
        self.dispatch.take_result(id)
    }

    /// Whether request `id` is still waiting for its answer.
    pub fn is_pending(&self, id: &Id) -> bool {
        self.dispatch.correlator.is_pending(id)
    }

    /// The caller gave up on request `id`: it stops being pending and the peer gets the
    /// cancel notification, if one is configured and the request was still pending.
    pub fn cancel(&mut self, id: &Id) {
        self.dispatch.cancel(id);
        self.flush_outbox();
        self.sync_timers();
    }

    /// Answers the peer's request `id`. An answer to a request of a batch waits until the
    /// whole batch is answered, then every answer goes out as one array.
    pub fn respond(
        &mut self,
        id: Id,
        result: Result<Value, ErrorObject>,
    ) -> Result<(), RespondError> {
        self.dispatch.respond(id, result)?;
        self.flush_outbox();
        Ok(())
    }

    /// Nobody will answer the peer's request `id`: it is answered `-32603`.
    pub fn decline(&mut self, id: Id) {
        self.dispatch.decline(id);
        self.flush_outbox();
    }

    /// How many requests of ours wait for an answer.
    pub fn pending_requests(&self) -> usize {
        self.dispatch.pending()
    }
}
