//! The gateway's decisions for modern requests: which POST is one, the header check, the call
//! given to a pool program, its answer's way back, its cancellation, and the pool programs'
//! lives (start on demand, probe, translation, restarts). The state is in [`super::pool`].

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use serde_json::{json, Value};

use super::pool::{self, Call, Decided, Era, Head, Phase, Scope};
use super::{
    BodyId, ConnId, Gateway, Owner, PostHead, Program, ProgramId, Reader, ReqState, RequestId,
    Response, Running, Start, ToProgram, SERVER_ERROR,
};
use crate::streamable::modern::{Mirror, DISCOVER, HEADER_MISMATCH, VERSION_META};
use crate::streamable::{self, read_post, Method};
use crate::{ErrorObject, ExitStatus, Id, Message, Notification, Request};

impl Gateway {
    /// A POST body, if it holds a modern request (one request or notification whose `_meta`
    /// names a protocol version): what its HTTP request becomes. `None` for anything else,
    /// which is routed as the legacy era's.
    pub(super) fn modern(
        &mut self,
        request: RequestId,
        conn: ConnId,
        head: &PostHead,
        body: &[u8],
        now: Instant,
    ) -> Option<ReqState> {
        // Most legacy bodies are not parsed twice.
        if !contains(body, VERSION_META.as_bytes()) {
            return None;
        }
        let route_head = streamable::Head {
            method: Method::Post,
            session: None,
            accept: head.accept.as_deref(),
            content_type: head.content_type.as_deref(),
            last_event_id: None,
        };
        let post = read_post(&route_head, body).ok()?;
        if post.batch || post.messages.len() != 1 {
            return None;
        }
        let (message, notification) = match post.messages.into_iter().next()? {
            // Whatever its `_meta` says, an `initialize` starts a legacy session.
            Message::Request(request) if request.method == "initialize" => return None,
            Message::Request(request) => (request, false),
            Message::Notification(n) => (
                Request {
                    id: Id::Null,
                    method: n.method,
                    params: n.params,
                },
                true,
            ),
            _ => return None,
        };
        let mirror = Mirror::of(&message)?;
        let header = |name: &str| {
            head.mirror
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        if let Err(mismatch) = mirror.check(header) {
            let text = format!(
                "the {} header is missing or does not match the body",
                mismatch.header()
            );
            return Some(ReqState::Ready(Response::error(
                400,
                HEADER_MISMATCH,
                &text,
            )));
        }
        if notification {
            // A modern client's notifications need no program: it cancels by closing a
            // stream, and nothing else it may send changes what a pool program does.
            return Some(ReqState::Ready(Response::full(
                202,
                "text/plain",
                Vec::new(),
            )));
        }
        Some(self.call(request, conn, message, post.sse, now))
    }

    /// A modern request becomes a call of the pool program with the fewest calls.
    fn call(
        &mut self,
        request: RequestId,
        conn: ConnId,
        mut message: Request,
        sse: bool,
        now: Instant,
    ) -> ReqState {
        if self.stopping || self.calls.len() >= self.config.max_calls {
            return ReqState::Ready(Response::error(503, SERVER_ERROR, "no more requests now"));
        }
        let Some(slot) = self.pick() else {
            return ReqState::Ready(Response::error(
                503,
                SERVER_ERROR,
                "every pool program failed to stay up (crash loop)",
            ));
        };
        let key = self.id();
        let client_id = std::mem::replace(&mut message.id, Id::from(key));
        let progress = pool::swap_progress(&mut message, key);
        let keepalive = pool::first_keepalive(sse, now, self.config.keepalive);
        if let Some(at) = keepalive {
            self.keepalives.insert((at, key));
        }
        self.calls.insert(
            key,
            Call {
                conn,
                http: request,
                slot,
                client_id,
                method: message.method.clone(),
                request: Some(message),
                progress,
                sse,
                head: Head::Held,
                events: VecDeque::new(),
                answered: false,
                listen: None,
                keepalive,
            },
        );
        self.slots[slot].waiting.push_back(key);
        self.ensure_started(slot);
        self.flush(slot);
        ReqState::Call
    }

    /// The pool program with the fewest calls (the first of equals), unless every one has
    /// failed for good.
    fn pick(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase != Phase::Failed)
            .min_by_key(|(i, s)| (s.load(), *i))
            .map(|(i, _)| i)
    }

    /// Starts pool program `slot` if it is idle.
    fn ensure_started(&mut self, slot: usize) {
        if self.slots[slot].phase != Phase::Idle || self.stopping {
            return;
        }
        let program = ProgramId(self.id());
        let s = &mut self.slots[slot];
        s.phase = Phase::Starting;
        s.program = Some(program);
        let channel = s.channel;
        self.programs.insert(
            program,
            Program {
                owner: Owner::Pool(slot),
                running: Running::Starting,
                queue: VecDeque::new(),
                closing: false,
            },
        );
        self.starts.push_back(Start {
            program,
            client: None,
            channel,
        });
        self.wake_all();
    }

    /// Sends the calls waiting for `slot` once its program is ready.
    fn flush(&mut self, slot: usize) {
        if self.slots[slot].phase != Phase::Ready {
            return;
        }
        while let Some(key) = self.slots[slot].waiting.pop_front() {
            self.dispatch(slot, key);
        }
        self.wake(self.slots[slot].channel);
    }

    /// One call to its ready program, in its era: as it came, or translated (a legacy
    /// program's `server/discover` and `subscriptions/listen` are the bridge's to answer).
    fn dispatch(&mut self, slot: usize, key: u64) {
        let era = self.slots[slot].era.clone();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(mut request) = call.request.take() else {
            return;
        };
        match era {
            Some(Era::Legacy { init }) if request.method == DISCOVER => {
                let result = pool::discover_result(&init);
                let answer = crate::Response::success(call.client_id.clone(), result);
                self.deliver(key, Message::Response(answer), true);
            }
            Some(Era::Legacy { .. }) if pool::is_listen(&request) => {
                if !call.sse {
                    let answer = crate::Response::error(
                        call.client_id.clone(),
                        ErrorObject::new(
                            ErrorObject::INVALID_REQUEST,
                            "subscriptions/listen needs a client that accepts text/event-stream",
                        ),
                    );
                    self.deliver(key, Message::Response(answer), true);
                    return;
                }
                let filter = request
                    .params
                    .as_ref()
                    .and_then(|p| p.get("notifications"))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                call.listen = Some(filter);
                let ack = pool::acknowledged(call);
                self.deliver(key, ack, false);
            }
            Some(Era::Legacy { .. }) => {
                pool::strip_meta(&mut request);
                self.send_call(slot, key, request);
            }
            _ => self.send_call(slot, key, request),
        }
    }

    fn send_call(&mut self, slot: usize, key: u64, request: Request) {
        let s = &mut self.slots[slot];
        s.outstanding.insert(key);
        s.queue
            .push_back(ToProgram::Message(Message::Request(request)));
        let channel = s.channel;
        self.wake(channel);
    }

    /// A message for call `key`'s client: the first decides its head (see
    /// [`pool::decide`]); `last` is its answer, after which the call is over. A client that
    /// takes JSON sees only the answer; a stream keeps at most
    /// [`Config::relay_queue`](super::Config::relay_queue) events untaken besides it.
    pub(super) fn deliver(&mut self, key: u64, message: Message, last: bool) {
        let relay_queue = self.config.relay_queue;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let conn = call.conn;
        if last {
            call.answered = true;
            if let Some(at) = call.keepalive.take() {
                self.keepalives.remove(&(at, key));
            }
            let slot = call.slot;
            self.slots[slot].outstanding.remove(&key);
        }
        self.wake(conn.0);
        let call = match self.calls.get_mut(&key) {
            Some(call) => call,
            None => return,
        };
        match call.head {
            Head::Held => {
                let request = call.http;
                if !last && !call.sse {
                    self.dropped += 1;
                    return;
                }
                match pool::decide(&message, call.sse) {
                    Decided::Full(status, bytes) => {
                        self.forget(key);
                        self.ready(request, Response::full(status, streamable::JSON, bytes));
                    }
                    Decided::Stream => {
                        call.events.push_back(pool::event(&message));
                        self.commit(key, request);
                    }
                }
            }
            Head::Stream(_) => {
                if last || call.events.len() < relay_queue {
                    call.events.push_back(pool::event(&message));
                } else {
                    self.dropped += 1;
                }
            }
        }
    }

    /// Call `key`'s response is a 200 event stream from now on.
    fn commit(&mut self, key: u64, request: RequestId) {
        self.next += 1;
        let body = BodyId(self.next);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.head = Head::Stream(body);
        self.bodies.insert(body, Reader::Call(key));
        let response = Response {
            status: 200,
            headers: vec![
                ("content-type", streamable::EVENT_STREAM.to_owned()),
                ("cache-control", "no-cache".to_owned()),
                ("x-accel-buffering", "no".to_owned()),
            ],
            body: super::Body::Stream(body),
        };
        self.ready(request, response);
    }

    /// The held request `request` is answered with `response`.
    fn ready(&mut self, request: RequestId, response: Response) {
        if let Some(req) = self.requests.get_mut(&request) {
            req.state = ReqState::Ready(response);
            self.finish_ready(request);
        }
    }

    /// Call `key`'s client left before its answer (its stream was dropped, or its connection
    /// closed): the program is told with `notifications/cancelled` under the bridge's id, and
    /// nothing more of it goes to anyone.
    pub(super) fn cancel(&mut self, key: u64) {
        let Some(call) = self.forget(key) else {
            return;
        };
        if call.answered {
            return;
        }
        let s = &mut self.slots[call.slot];
        s.waiting.retain(|k| *k != key);
        if s.outstanding.remove(&key) && s.phase == Phase::Ready {
            s.queue.push_back(pool::cancelled(key));
            let channel = s.channel;
            self.wake(channel);
        }
    }

    /// The calls whose response nobody took (its connection is gone): cancelled, and a
    /// stream made for one forgotten, since no reader will drop it.
    pub(super) fn cancel_untaken(&mut self, untaken: &BTreeSet<RequestId>) {
        if untaken.is_empty() {
            return;
        }
        let gone: Vec<(u64, Head)> = self
            .calls
            .iter()
            .filter(|(_, c)| untaken.contains(&c.http))
            .map(|(k, c)| (*k, c.head))
            .collect();
        for (key, head) in gone {
            if let Head::Stream(body) = head {
                self.bodies.remove(&body);
            }
            self.call_dropped(key);
        }
    }

    /// The next piece of call `key`'s stream.
    pub(super) fn take_call(&mut self, key: u64) -> streamable::Take {
        let Some(call) = self.calls.get_mut(&key) else {
            return streamable::Take::End;
        };
        match call.events.pop_front() {
            Some(bytes) => streamable::Take::Data(bytes),
            None if call.answered => streamable::Take::End,
            None => streamable::Take::Wait,
        }
    }

    /// Call `key`'s stream was sent, or its connection is gone: an unanswered call is
    /// cancelled; an answered one is over.
    pub(super) fn call_dropped(&mut self, key: u64) {
        match self.calls.get(&key) {
            Some(call) if call.answered => {
                self.forget(key);
            }
            Some(_) => self.cancel(key),
            None => {}
        }
    }

    // ---- pool programs ----------------------------------------------------------------

    /// Pool program `slot` started (or could not): it is probed with `server/discover`, and
    /// must answer within the policy's ready timeout (else the handshake timeout).
    pub(super) fn pool_started(
        &mut self,
        slot: usize,
        program: ProgramId,
        started: bool,
        now: Instant,
    ) {
        if !started {
            self.programs.remove(&program);
            self.pool_ended(slot, None, false, now);
            return;
        }
        let probe = self.id();
        let within = (self.config.restart.ready_timeout).unwrap_or(self.config.handshake_timeout);
        let deadline = now.checked_add(within);
        let s = &mut self.slots[slot];
        s.restarts.handle_start(now);
        s.phase = Phase::Probing(probe);
        s.deadline = deadline;
        s.queue.push_back(ToProgram::Message(pool::probe(probe)));
        let channel = s.channel;
        self.wake(channel);
        if self.stopping {
            self.close_program(program);
        }
    }

    /// What pool program `slot` said: an answer to the bridge's probe or `initialize`, an
    /// answer to a call, a notification for a call or for the listen streams, or a request
    /// of its own (refused: a modern client takes none).
    pub(super) fn pool_message(&mut self, slot: usize, message: Message) {
        match message {
            Message::Batch(messages) => {
                for message in messages {
                    self.pool_message(slot, message);
                }
            }
            Message::Request(request) => {
                let max = self.config.max_calls;
                let s = &mut self.slots[slot];
                // A program that asks without reading its answers is not owed a growing queue.
                if s.queue.len() >= max {
                    self.dropped += 1;
                    return;
                }
                s.queue.push_back(pool::refuse_program_request(request.id));
                let channel = s.channel;
                self.wake(channel);
            }
            Message::Response(response) => {
                let Some(key) = id_number(&response.id) else {
                    self.dropped += 1;
                    return;
                };
                match self.slots[slot].phase {
                    Phase::Probing(probe) if probe == key => {
                        self.probed(slot, response.result.is_ok())
                    }
                    Phase::Initializing(init) if init == key => {
                        self.initialized(slot, response.result.ok())
                    }
                    _ if self.slots[slot].outstanding.contains(&key) => {
                        let Some(call) = self.calls.get(&key) else {
                            return;
                        };
                        let mut response = pool::restore_result(response, call);
                        if matches!(self.slots[slot].era, Some(Era::Legacy { .. })) {
                            pool::modernize(&mut response, &call.method);
                        }
                        self.deliver(key, Message::Response(response), true);
                    }
                    _ => self.dropped += 1,
                }
            }
            Message::Notification(notification) => self.pool_notification(slot, notification),
        }
    }

    fn pool_notification(&mut self, slot: usize, notification: Notification) {
        if let Some((key, scope)) = pool::scoped_to(&notification) {
            if self.slots[slot].outstanding.contains(&key) {
                if let Some(call) = self.calls.get(&key) {
                    let restored = pool::restore(notification, call, scope);
                    self.deliver(key, Message::Notification(restored), false);
                    return;
                }
            }
            if scope == Scope::Progress {
                self.dropped += 1;
                return;
            }
        }
        let legacy = matches!(self.slots[slot].era, Some(Era::Legacy { .. }));
        let listeners: Vec<u64> = if legacy {
            self.calls
                .iter()
                .filter(|(_, c)| {
                    c.listen
                        .as_ref()
                        .is_some_and(|filter| pool::wants(filter, &notification))
                })
                .map(|(k, _)| *k)
                .collect()
        } else {
            Vec::new()
        };
        if listeners.is_empty() {
            // Not tied to any call (a log message without a request on a pipe): nobody's.
            self.dropped += 1;
        }
        for key in listeners {
            if let Some(call) = self.calls.get(&key) {
                let tagged = pool::tagged(&notification, call);
                self.deliver(key, tagged, false);
            }
        }
    }

    /// The probe's answer: a result is the modern era; an error, the legacy era, which the
    /// bridge initializes once.
    fn probed(&mut self, slot: usize, modern: bool) {
        if modern {
            let s = &mut self.slots[slot];
            s.era = Some(Era::Modern);
            s.phase = Phase::Ready;
            s.deadline = None;
            self.flush(slot);
            return;
        }
        let id = self.id();
        let s = &mut self.slots[slot];
        s.phase = Phase::Initializing(id);
        s.queue.push_back(ToProgram::Message(pool::initialize(id)));
        let channel = s.channel;
        self.wake(channel);
    }

    /// `initialize`'s answer from a legacy program: ready (and `notifications/initialized`
    /// sent), or refused: its calls fail and it is closed.
    fn initialized(&mut self, slot: usize, result: Option<Value>) {
        let Some(init) = result else {
            let why = "the program refused both server/discover and initialize";
            self.fail_waiting(slot, why);
            if let Some(program) = self.slots[slot].program {
                self.close_program(program);
            }
            return;
        };
        let s = &mut self.slots[slot];
        s.era = Some(Era::Legacy { init });
        s.phase = Phase::Ready;
        s.deadline = None;
        s.queue.push_back(ToProgram::Message(Message::Notification(
            Notification::new("notifications/initialized", None),
        )));
        self.flush(slot);
    }

    /// The calls waiting for `slot` get an error: its program will not serve them.
    fn fail_waiting(&mut self, slot: usize, why: &str) {
        let waiting: Vec<u64> = self.slots[slot].waiting.drain(..).collect();
        for key in waiting {
            self.fail(key, why);
        }
    }

    /// Call `key` gets a JSON-RPC error saying `why`.
    fn fail(&mut self, key: u64, why: &str) {
        if let Some(call) = self.calls.get(&key) {
            let error = pool::failed(call.client_id.clone(), why);
            self.deliver(key, error, true);
        }
    }

    /// Pool program `slot` ended (or never started): its calls in flight get an error, and
    /// the restart policy decides whether it starts again, after which delay, or (a crash
    /// loop) never: later calls are then refused. Without a restart, it starts again when a
    /// call needs it.
    pub(super) fn pool_ended(
        &mut self,
        slot: usize,
        status: Option<ExitStatus>,
        closing: bool,
        now: Instant,
    ) {
        let s = &mut self.slots[slot];
        s.program = None;
        s.era = None;
        s.deadline = None;
        s.queue.clear();
        let outstanding: Vec<u64> = std::mem::take(&mut s.outstanding).into_iter().collect();
        let listens: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.slot == slot && c.listen.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in outstanding.into_iter().chain(listens) {
            self.fail(key, pool::ENDED);
        }
        let timed_out = std::mem::take(&mut self.slots[slot].timed_out);
        let cause = pool::end_cause(
            status,
            timed_out && !self.stopping,
            closing || self.stopping,
        );
        let status = status.unwrap_or(ExitStatus {
            code: None,
            signal: None,
        });
        let decision = self.slots[slot].restarts.handle_end(cause, status, now);
        let s = &mut self.slots[slot];
        s.phase = match decision {
            _ if self.stopping => Phase::Idle,
            crate::restart::Decision::Restart(restart) => match now.checked_add(restart.delay) {
                Some(at) => Phase::Restarting(at),
                None => Phase::Failed,
            },
            crate::restart::Decision::End(crate::restart::EndCause::CrashLoop) => Phase::Failed,
            crate::restart::Decision::End(_) => Phase::Idle,
        };
        if !matches!(s.phase, Phase::Restarting(_)) {
            self.fail_waiting(slot, pool::ENDED);
        }
        self.wake_all();
    }

    /// The bridge is stopping: the calls waiting for a pool program that is not running (idle,
    /// or in a restart's delay) get an error now, since it will not start again.
    pub(super) fn pool_stop(&mut self) {
        for slot in 0..self.slots.len() {
            if matches!(self.slots[slot].phase, Phase::Idle | Phase::Restarting(_)) {
                self.slots[slot].phase = Phase::Idle;
                self.fail_waiting(slot, "the bridge is stopping");
            }
        }
    }

    /// The pool's deadlines: restarts, probes, keep-alives.
    pub(super) fn pool_timeout(&self) -> Option<Instant> {
        let slots = self.slots.iter().filter_map(|s| match s.phase {
            Phase::Restarting(at) => Some(at),
            _ => s.deadline,
        });
        let keepalive = self.keepalives.first().map(|(at, _)| *at);
        slots.chain(keepalive).min()
    }

    /// Fires the pool's deadlines due at `now`: a restart starts its program; a probe not
    /// answered in time fails the waiting calls and closes the program; a stream due a
    /// keep-alive gets one (a held head is committed to a 200 stream first).
    pub(super) fn pool_fire(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            match self.slots[slot].phase {
                Phase::Restarting(at) if at <= now => {
                    self.slots[slot].phase = Phase::Idle;
                    self.ensure_started(slot);
                }
                Phase::Probing(_) | Phase::Initializing(_)
                    if self.slots[slot].deadline.is_some_and(|at| at <= now) =>
                {
                    self.slots[slot].deadline = None;
                    self.slots[slot].timed_out = true;
                    self.fail_waiting(slot, "the program did not answer the bridge in time");
                    if let Some(program) = self.slots[slot].program {
                        self.close_program(program);
                    }
                }
                _ => {}
            }
        }
        let every = self.config.keepalive;
        while let Some(&(at, key)) = self.keepalives.first() {
            if at > now {
                break;
            }
            self.keepalives.pop_first();
            let Some(call) = self.calls.get_mut(&key) else {
                continue;
            };
            call.keepalive = now.checked_add(every);
            if let Some(next) = call.keepalive {
                self.keepalives.insert((next, key));
            }
            if call.events.len() < self.config.relay_queue {
                call.events.push_back(pool::KEEP_ALIVE.to_vec());
            }
            let conn = call.conn;
            if call.head == Head::Held {
                let request = call.http;
                self.commit(key, request);
            }
            self.wake(conn.0);
        }
    }

    /// Removes call `key`, and its keep-alive.
    fn forget(&mut self, key: u64) -> Option<Call> {
        let call = self.calls.remove(&key)?;
        if let Some(at) = call.keepalive {
            self.keepalives.remove(&(at, key));
        }
        Some(call)
    }

    /// The next message for pool program `slot`.
    pub(super) fn poll_pool(&mut self, slot: usize) -> Option<ToProgram> {
        self.slots.get_mut(slot)?.queue.pop_front()
    }

    /// Decides that pool program `slot` is to be closed: what it was to be sent is dropped.
    pub(super) fn close_pool(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        self.dropped += s.queue.len() as u64;
        s.queue.clear();
        s.queue.push_back(ToProgram::Close);
        let channel = s.channel;
        self.wake(channel);
    }
}

/// A JSON-RPC id the bridge made: a non-negative integer.
fn id_number(id: &Id) -> Option<u64> {
    match id {
        Id::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
