//! A client's endpoint and a scripted peer, wired together in virtual time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::peer::{PeerOutput, ScriptedPeer};
use super::script::{Mismatch, Script};
use crate::transcript::{Direction, Tap, Tapped};
use crate::{Action, Config, ConfigError, Control, Endpoint, Event, ExitStatus, Framing, Message};

/// A clock that moves only when told to. The origin is any instant the caller picks (a test
/// reads the real clock once, for a base); from then on, time is only ever added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualClock {
    origin: Instant,
    now: Instant,
}

impl VirtualClock {
    /// A clock standing at `origin`.
    pub fn new(origin: Instant) -> Self {
        VirtualClock {
            origin,
            now: origin,
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// How far the clock has moved since its origin.
    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    /// Moves the clock to `to`; an earlier instant leaves it where it is.
    pub fn advance_to(&mut self, to: Instant) {
        self.now = self.now.max(to);
    }
}

/// The frames the client's endpoint encodes, collected by its tap.
type Sent = Arc<Mutex<Vec<Vec<u8>>>>;

/// An [`Endpoint`] (the client under test) and a [`ScriptedPeer`] (its peer), exchanging
/// frames with no process, no runtime and no real time.
///
/// The client works on [`endpoint`](Self::endpoint) (requests, sends, results), then calls
/// [`run`](Self::run) to let the two sides exchange everything they can without time
/// passing, or [`advance`](Self::advance) to walk time forward through every deadline on the
/// way. The endpoint's events are collected for [`take_events`](Self::take_events). A frame
/// the script did not expect fails the call with a [`Mismatch`] (expected against received).
///
/// For a child endpoint ([`Session::child`]), the script's exit is the child's, and the
/// endpoint's signals end the peer as they would a process (`SIGTERM`: 15, `SIGKILL`: 9).
/// The session sets the config's [`tap`](Config::tap) to see what the client sends.
#[derive(Debug)]
pub struct Session {
    clock: VirtualClock,
    endpoint: Endpoint<Message>,
    peer: ScriptedPeer,
    sent: Sent,
    events: Vec<Event<Message>>,
    /// The peer's output has ended.
    output_closed: bool,
    /// The peer no longer reads: it exited, or the client closed its side.
    input_closed: bool,
    exited: Option<ExitStatus>,
    /// The endpoint dropped the transport.
    aborted: bool,
}

impl Session {
    /// The client speaks to a child process played by `script`.
    pub fn child(config: Config, script: Script, origin: Instant) -> Result<Self, ConfigError> {
        Self::start(config, script, origin, true)
    }

    /// The client speaks to a peer that is not its child (a socket, a websocket with
    /// [`Framing::Messages`]) played by `script`; an exit in the script only ends its output.
    pub fn peer(config: Config, script: Script, origin: Instant) -> Result<Self, ConfigError> {
        Self::start(config, script, origin, false)
    }

    fn start(
        config: Config,
        script: Script,
        origin: Instant,
        child: bool,
    ) -> Result<Self, ConfigError> {
        let sent = Sent::default();
        let tap = {
            let sent = Arc::clone(&sent);
            Tap::new(move |tapped| {
                if let Tapped::Frame(Direction::Out, frame) = tapped {
                    lock(&sent).push(frame.to_vec());
                }
            })
        };
        let config = config.tap(Some(tap));
        let endpoint = match child {
            true => Endpoint::for_child(config, origin)?,
            false => Endpoint::new(config, origin)?,
        };
        Ok(Session {
            clock: VirtualClock::new(origin),
            endpoint,
            peer: ScriptedPeer::new(script),
            sent,
            events: Vec::new(),
            output_closed: false,
            input_closed: false,
            exited: None,
            aborted: false,
        })
    }

    /// The client's endpoint.
    pub fn endpoint(&mut self) -> &mut Endpoint<Message> {
        &mut self.endpoint
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// How much virtual time has passed.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// The scripted peer, to see where it stands.
    pub fn peer_state(&self) -> &ScriptedPeer {
        &self.peer
    }

    /// How the peer exited, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exited
    }

    /// The endpoint's events since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Event<Message>> {
        std::mem::take(&mut self.events)
    }

    /// Lets both sides exchange everything they can at the current time: the endpoint's
    /// events are collected, what it writes is handed to the peer, its controls and signals
    /// are carried out, and the peer's output is handed back, until nothing moves.
    pub fn run(&mut self) -> Result<(), Mismatch> {
        while self.step()? {}
        Ok(())
    }

    /// Walks virtual time forward by `by`: each deadline of the endpoint on the way fires at
    /// its instant, with an exchange after each.
    pub fn advance(&mut self, by: Duration) -> Result<(), Mismatch> {
        let target = self.clock.now() + by;
        self.run()?;
        while let Some(deadline) = self.endpoint.poll_timeout().filter(|d| *d <= target) {
            self.clock.advance_to(deadline);
            self.endpoint.handle_timeout(self.clock.now());
            self.run()?;
        }
        self.clock.advance_to(target);
        self.endpoint.handle_timeout(target);
        self.run()
    }

    /// Walks time forward, deadline by deadline, until the endpoint has nothing left to
    /// decide ([`Endpoint::is_finished`]) or `limit` has passed; then checks that the script
    /// was played to its end.
    pub fn finish(&mut self, limit: Duration) -> Result<(), Mismatch> {
        let limit = self.clock.now() + limit;
        self.run()?;
        while !self.endpoint.is_finished() {
            match self.endpoint.poll_timeout().filter(|d| *d <= limit) {
                Some(deadline) => {
                    self.clock.advance_to(deadline);
                    self.endpoint.handle_timeout(self.clock.now());
                    self.run()?;
                }
                None => break,
            }
        }
        self.peer.check_done()
    }

    /// One round of the exchange; whether anything moved.
    fn step(&mut self) -> Result<bool, Mismatch> {
        let now = self.clock.now();
        let mut moved = false;
        while let Some(event) = self.endpoint.poll_event() {
            self.events.push(event);
            moved = true;
        }
        let mut bytes = Vec::new();
        let n = self.endpoint.poll_transmit(&mut bytes);
        self.endpoint.handle_transmitted(n);
        while let Some(frame) = self.endpoint.poll_transmit_frame() {
            self.endpoint.handle_transmitted(frame.len());
        }
        let sent = std::mem::take(&mut *lock(&self.sent));
        for frame in sent {
            moved = true;
            if !self.input_closed && !self.aborted {
                self.peer.handle_frame(&frame)?;
            }
        }
        while let Some(control) = self.endpoint.poll_control() {
            moved = true;
            match control {
                Control::CloseWrite => self.client_closed()?,
                Control::SendClose { .. } => {
                    self.client_closed()?;
                    self.endpoint.handle_flushed(now);
                }
                Control::Flush => self.endpoint.handle_flushed(now),
                Control::Ping => self.endpoint.handle_pong(now),
                Control::Abort => self.aborted = true,
            }
        }
        while let Some(action) = self.endpoint.poll_action() {
            moved = true;
            let signal = match action {
                Action::TerminateGroup => 15,
                Action::KillGroup => 9,
                // The scripted peer has no descendants; its exit came before this.
                Action::CloseStdin | Action::KillDescendants { .. } => continue,
            };
            if self.exited.is_none() && self.peer.dies_of(signal) {
                self.peer_exited(
                    ExitStatus {
                        code: None,
                        signal: Some(signal),
                    },
                    now,
                );
            }
        }
        // Frames go in only when the endpoint wants input; a close or an exit goes at once.
        let takes = self.endpoint.wants_input() || self.endpoint.is_input_ended();
        if self.exited.is_none() && takes {
            if let Some(output) = self.peer.poll_output() {
                moved = true;
                match output {
                    PeerOutput::Frame(frame) => self.peer_wrote(frame, now),
                    PeerOutput::Close => self.close_output(now),
                    PeerOutput::Exit(status) => self.peer_exited(status, now),
                }
            }
        }
        Ok(moved)
    }

    fn client_closed(&mut self) -> Result<(), Mismatch> {
        if self.input_closed {
            return Ok(());
        }
        self.input_closed = true;
        self.peer.handle_close()
    }

    fn peer_wrote(&mut self, mut frame: Vec<u8>, now: Instant) {
        if self.output_closed || self.aborted {
            return;
        }
        // A buffer of the right transport never refuses its input.
        let _ = match self.endpoint.config().framing {
            Framing::Messages => self.endpoint.handle_frame(frame, now),
            Framing::Lines => {
                frame.push(b'\n');
                self.endpoint.handle_input(&frame, now)
            }
            Framing::ContentLength => {
                let mut bytes = format!("Content-Length: {}\r\n\r\n", frame.len()).into_bytes();
                bytes.append(&mut frame);
                self.endpoint.handle_input(&bytes, now)
            }
        };
    }

    fn close_output(&mut self, now: Instant) {
        if self.output_closed {
            return;
        }
        self.output_closed = true;
        if !self.aborted {
            match self.endpoint.config().framing {
                Framing::Messages => self.endpoint.handle_peer_close(now),
                _ => self.endpoint.handle_eof(now),
            }
        }
    }

    fn peer_exited(&mut self, status: ExitStatus, now: Instant) {
        self.close_output(now);
        self.input_closed = true;
        self.exited = Some(status);
        self.endpoint.handle_exit(status, now);
    }
}

fn lock(sent: &Sent) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
    sent.lock().unwrap_or_else(PoisonError::into_inner)
}
