//! The modern era's side of the gateway (MCP's stateless revision, 2026-07-28): a pool of
//! long-lived programs shared by every client whose requests carry their version in `_meta`,
//! and each such request's life as a [`Call`].
//!
//! A legacy client gets a program of its own per session (the rest of the gateway). A modern
//! client has no session: each request is a call, given to the pool program with the fewest
//! calls outstanding, under an id of the bridge's (so ids of different clients never collide
//! at the program), and answered on its own HTTP response. A pool program is started when a
//! call first needs it, asked `server/discover` once to learn its era, and kept for its life;
//! a program that speaks only the legacy era is given `initialize` once, and the bridge
//! translates for it. A program that ends fails its calls and is started again under the
//! restart policy ([`Restarts`]).
//!
//! Held heads: the status of a call's response depends on its answer (a program's `-32601` is
//! 404, an unsupported version 400), so a call's head is held until its first message (the
//! answer, or for a client that takes a stream, a notification for it), or until the first
//! keep-alive is due: then a 200 stream is committed and later errors travel inside it.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{BodyId, ConnId, ProgramId, RequestId, ToProgram};
use crate::restart::{EndCause, RestartPolicy, Restarts};
use crate::streamable::modern::{
    CAPABILITIES_META, CLIENT_INFO_META, DISCOVER, LISTEN, SUBSCRIPTION_META, UNSUPPORTED_VERSION,
    VERSIONS, VERSION_META,
};
use crate::{ErrorObject, ExitStatus, Id, Message, Notification, Request, Response};

/// The legacy revision the bridge speaks to a program that knows only `initialize`.
pub const LEGACY_VERSION: &str = "2025-06-18";

/// A keep-alive comment on a call's event stream.
pub(super) const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The progress token's key in a request's `_meta`.
const PROGRESS_TOKEN: &str = "progressToken";

/// The `_meta` key of a server's name and version in a result.
const SERVER_INFO_META: &str = "io.modelcontextprotocol/serverInfo";

/// What a pool program speaks, learnt once from its answer to `server/discover`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Era {
    /// The modern era: calls go to it as they came, ids and progress tokens rewritten.
    Modern,
    /// Only the legacy era: the bridge initialized it, and keeps what it answered.
    Legacy {
        /// `initialize`'s result.
        init: Value,
    },
}

/// Where a pool program is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not running; started when a call needs it.
    Idle,
    /// Asked for with [`poll_start`](super::Gateway::poll_start), not yet started.
    Starting,
    /// Asked `server/discover` (this id), not yet answered.
    Probing(u64),
    /// A legacy program asked `initialize` (this id), not yet answered.
    Initializing(u64),
    /// Serving calls.
    Ready,
    /// Ended; started again at this time.
    Restarting(Instant),
    /// Ended for good (the crash-loop guard gave up): calls for it are refused.
    Failed,
}

/// One pool program and its calls.
#[derive(Debug)]
pub(super) struct Slot {
    /// Its current program, while it has one.
    pub(super) program: Option<ProgramId>,
    /// The channel its program's waiters wait on.
    pub(super) channel: u64,
    pub(super) phase: Phase,
    pub(super) era: Option<Era>,
    /// What the program must be sent, in order.
    pub(super) queue: VecDeque<ToProgram>,
    /// Calls given to it before it was ready, in order.
    pub(super) waiting: VecDeque<u64>,
    /// Calls sent to it and not yet answered.
    pub(super) outstanding: BTreeSet<u64>,
    /// The probe's (or `initialize`'s) deadline.
    pub(super) deadline: Option<Instant>,
    /// Its program was closed for missing that deadline: its end is a ready timeout.
    pub(super) timed_out: bool,
    pub(super) restarts: Restarts,
}

impl Slot {
    pub(super) fn new(channel: u64, policy: RestartPolicy) -> Self {
        Slot {
            program: None,
            channel,
            phase: Phase::Idle,
            era: None,
            queue: VecDeque::new(),
            waiting: VecDeque::new(),
            outstanding: BTreeSet::new(),
            deadline: None,
            timed_out: false,
            restarts: Restarts::new(policy),
        }
    }

    /// Calls it holds: waiting and outstanding.
    pub(super) fn load(&self) -> usize {
        self.waiting.len() + self.outstanding.len()
    }
}

/// Where a call's response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// Not decided: the HTTP request waits.
    Held,
    /// A 200 event stream, read as this body.
    Stream(BodyId),
}

/// One modern request, from its POST to its answer (or its cancellation).
#[derive(Debug)]
pub(super) struct Call {
    /// The connection it came on (a stream's waiters wait on its channel).
    pub(super) conn: ConnId,
    /// The HTTP request it answers.
    pub(super) http: RequestId,
    /// The pool program it was given to.
    pub(super) slot: usize,
    /// The id the client gave it.
    pub(super) client_id: Id,
    /// The request as it will go to the program (its id already the bridge's), until sent.
    pub(super) request: Option<Request>,
    /// Its method.
    pub(super) method: String,
    /// The progress token the client gave, replaced by the bridge's at the program.
    pub(super) progress: Option<Value>,
    /// Whether the client takes an event stream.
    pub(super) sse: bool,
    pub(super) head: Head,
    /// Events for the stream, not yet taken.
    pub(super) events: VecDeque<Vec<u8>>,
    /// The answer was queued: the stream ends once its events are taken.
    pub(super) answered: bool,
    /// A `subscriptions/listen` the bridge serves itself for a legacy program: the
    /// notifications it asked for.
    pub(super) listen: Option<Value>,
    /// The next keep-alive (streams only).
    pub(super) keepalive: Option<Instant>,
}

/// A call's first message decides its response: its status and whether it is a stream.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decided {
    /// A whole JSON body with this status.
    Full(u16, Vec<u8>),
    /// A 200 event stream.
    Stream,
}

/// How the first message for a call decides its head: an error answer maps to its status
/// (-32601 is 404, an unsupported version 400), any answer to a client that takes JSON is a
/// whole body, and anything for a client that takes a stream starts one.
pub(super) fn decide(message: &Message, sse: bool) -> Decided {
    if let Message::Response(response) = message {
        let status = match &response.result {
            Err(e) if e.code == ErrorObject::METHOD_NOT_FOUND => Some(404),
            Err(e) if e.code == UNSUPPORTED_VERSION => Some(400),
            _ => None,
        };
        if let Some(status) = status {
            return Decided::Full(status, crate::streamable::encode_message(message));
        }
        if !sse {
            return Decided::Full(200, crate::streamable::encode_message(message));
        }
    }
    Decided::Stream
}

/// `message` as one server-sent event (no id: a modern stream is never resumed).
pub(super) fn event(message: &Message) -> Vec<u8> {
    let json = crate::streamable::encode_message(message);
    let mut bytes = Vec::with_capacity(json.len() + 8);
    bytes.extend_from_slice(b"data: ");
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(b"\n\n");
    bytes
}

/// The `_meta` a bridge's own modern request carries.
fn bridge_meta() -> Value {
    json!({
        VERSION_META: VERSIONS[0],
        CAPABILITIES_META: {},
        CLIENT_INFO_META: {"name": "tether-bridge", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// The probe: `server/discover` at the modern revision.
pub(super) fn probe(id: u64) -> Message {
    Message::Request(Request::new(
        id,
        DISCOVER,
        Some(json!({ "_meta": bridge_meta() })),
    ))
}

/// `initialize` for a legacy-only program, declaring no client capabilities.
pub(super) fn initialize(id: u64) -> Message {
    Message::Request(Request::new(
        id,
        "initialize",
        Some(json!({
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "tether-bridge", "version": env!("CARGO_PKG_VERSION")},
        })),
    ))
}

/// What a legacy program's `initialize` result says, as a `server/discover` result.
pub(super) fn discover_result(init: &Value) -> Value {
    let mut result = json!({
        "resultType": "complete",
        "cacheScope": "private",
        "ttlMs": 0,
        "supportedVersions": VERSIONS,
        "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
    });
    if let Some(instructions) = init.get("instructions") {
        result["instructions"] = instructions.clone();
    }
    if let Some(info) = init.get("serverInfo") {
        result["_meta"] = json!({ SERVER_INFO_META: info });
    }
    result
}

/// A modern request made fit for a legacy program: the modern keys of `_meta` removed (an
/// empty `_meta` with them).
pub(super) fn strip_meta(request: &mut Request) {
    let Some(Value::Object(params)) = request.params.as_mut() else {
        return;
    };
    let empty = match params.get_mut("_meta") {
        Some(Value::Object(meta)) => {
            for key in [VERSION_META, CAPABILITIES_META, CLIENT_INFO_META] {
                meta.remove(key);
            }
            meta.is_empty()
        }
        _ => false,
    };
    if empty {
        params.remove("_meta");
    }
}

/// Replaces the progress token of `request`'s `_meta` with `token`, giving back the client's.
pub(super) fn swap_progress(request: &mut Request, token: u64) -> Option<Value> {
    let meta = request.params.as_mut()?.get_mut("_meta")?.as_object_mut()?;
    let theirs = meta.get(PROGRESS_TOKEN)?.clone();
    meta.insert(PROGRESS_TOKEN.to_owned(), json!(token));
    Some(theirs)
}

/// The call a program's notification belongs to, if it names one of the bridge's ids: a
/// progress token, or a listen stream's subscription id.
pub(super) fn scoped_to(notification: &Notification) -> Option<(u64, Scope)> {
    let params = notification.params.as_ref()?;
    if let Some(token) = params.get(PROGRESS_TOKEN).and_then(Value::as_u64) {
        return Some((token, Scope::Progress));
    }
    let id = params.get("_meta")?.get(SUBSCRIPTION_META)?.as_u64()?;
    Some((id, Scope::Subscription))
}

/// Which of the bridge's ids a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// `params.progressToken`.
    Progress,
    /// `params._meta[subscriptionId]`.
    Subscription,
}

/// A program's notification as its call's client must see it: the client's own progress
/// token or subscription id in place of the bridge's.
pub(super) fn restore(mut notification: Notification, call: &Call, scope: Scope) -> Notification {
    if let Some(params) = notification.params.as_mut().and_then(Value::as_object_mut) {
        match scope {
            Scope::Progress => {
                if let Some(token) = &call.progress {
                    params.insert(PROGRESS_TOKEN.to_owned(), token.clone());
                }
            }
            Scope::Subscription => {
                if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
                    meta.insert(SUBSCRIPTION_META.to_owned(), id_value(&call.client_id));
                }
            }
        }
    }
    notification
}

/// A program's result as the client must see it: a listen result's subscription id is the
/// client's.
pub(super) fn restore_result(mut response: Response, call: &Call) -> Response {
    response.id = call.client_id.clone();
    if let Ok(Value::Object(result)) = response.result.as_mut() {
        if let Some(meta) = result.get_mut("_meta").and_then(Value::as_object_mut) {
            if meta.contains_key(SUBSCRIPTION_META) {
                meta.insert(SUBSCRIPTION_META.to_owned(), id_value(&call.client_id));
            }
        }
    }
    response
}

fn id_value(id: &Id) -> Value {
    serde_json::to_value(id).unwrap_or(Value::Null)
}

/// A legacy program's result made a modern one: `resultType` (absent means complete, but
/// clients validate), and for the results the modern revision lets clients cache, a private
/// scope that is stale at once (a legacy program says nothing about caching).
pub(super) fn modernize(response: &mut Response, method: &str) {
    let Ok(Value::Object(result)) = response.result.as_mut() else {
        return;
    };
    result
        .entry("resultType")
        .or_insert_with(|| json!("complete"));
    let cacheable = matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    );
    if cacheable {
        result
            .entry("cacheScope")
            .or_insert_with(|| json!("private"));
        result.entry("ttlMs").or_insert_with(|| json!(0));
    }
}

/// The list-changed notifications a legacy program sends, and the `subscriptions/listen`
/// filter key that asks for each.
fn filter_key(method: &str) -> Option<&'static str> {
    match method {
        "notifications/tools/list_changed" => Some("toolsListChanged"),
        "notifications/prompts/list_changed" => Some("promptsListChanged"),
        "notifications/resources/list_changed" => Some("resourcesListChanged"),
        _ => None,
    }
}

/// Whether a translated listen stream asked for `notification`.
pub(super) fn wants(filter: &Value, notification: &Notification) -> bool {
    match filter_key(&notification.method) {
        Some(key) => filter.get(key).and_then(Value::as_bool) == Some(true),
        None => {
            notification.method == "notifications/resources/updated"
                && notification
                    .params
                    .as_ref()
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str)
                    .is_some_and(|uri| {
                        filter
                            .get("resourceSubscriptions")
                            .and_then(Value::as_array)
                            .is_some_and(|uris| uris.iter().any(|u| u.as_str() == Some(uri)))
                    })
        }
    }
}

/// What the bridge honours of a listen filter for a legacy program: the list-changed kinds.
pub(super) fn honoured(filter: &Value) -> Value {
    let mut honoured = Map::new();
    for key in [
        "toolsListChanged",
        "promptsListChanged",
        "resourcesListChanged",
    ] {
        if filter.get(key).and_then(Value::as_bool) == Some(true) {
            honoured.insert(key.to_owned(), Value::Bool(true));
        }
    }
    Value::Object(honoured)
}

/// The acknowledgement that opens a translated listen stream.
pub(super) fn acknowledged(call: &Call) -> Message {
    let honoured = call.listen.as_ref().map(honoured).unwrap_or_default();
    Message::Notification(Notification::new(
        "notifications/subscriptions/acknowledged",
        Some(json!({
            "notifications": honoured,
            "_meta": { SUBSCRIPTION_META: id_value(&call.client_id) },
        })),
    ))
}

/// A translated listen stream's copy of a legacy program's change notification.
pub(super) fn tagged(notification: &Notification, call: &Call) -> Message {
    let mut params = match notification.params.clone() {
        Some(Value::Object(params)) => params,
        _ => Map::new(),
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert(SUBSCRIPTION_META.to_owned(), id_value(&call.client_id));
    }
    Message::Notification(Notification::new(
        notification.method.clone(),
        Some(Value::Object(params)),
    ))
}

/// `notifications/cancelled` for the bridge's id of a call whose client left.
pub(super) fn cancelled(id: u64) -> ToProgram {
    ToProgram::Message(Message::Notification(Notification::new(
        "notifications/cancelled",
        Some(json!({"requestId": id, "reason": "the client closed the request's stream"})),
    )))
}

/// Why a program ended, for the restart policy: closed for missing its probe's deadline, or
/// by the bridge, or by itself.
pub(super) fn end_cause(status: Option<ExitStatus>, timed_out: bool, closing: bool) -> EndCause {
    match status {
        _ if timed_out => EndCause::ReadyTimeout,
        _ if closing => EndCause::Requested,
        Some(status) if status.success() => EndCause::Exited,
        _ => EndCause::Failed,
    }
}

/// Why a call failed when its program ended (or could not start) before answering.
pub(super) const ENDED: &str = "the program ended before answering";

/// The error a call gets when its program will not answer it, saying `why`.
pub(super) fn failed(id: Id, why: &str) -> Message {
    Message::Response(Response::error(
        id,
        ErrorObject::new(ErrorObject::INTERNAL_ERROR, why),
    ))
}

/// The answer to a program's own request: a modern client takes none over the bridge.
pub(super) fn refuse_program_request(id: Id) -> ToProgram {
    ToProgram::Message(Message::Response(Response::error(
        id,
        ErrorObject::new(
            ErrorObject::METHOD_NOT_FOUND,
            "the bridge's modern clients take no requests from the program",
        ),
    )))
}

/// The first keep-alive of a call that takes a stream, or `None`.
pub(super) fn first_keepalive(sse: bool, now: Instant, every: Duration) -> Option<Instant> {
    sse.then(|| now.checked_add(every)).flatten()
}

/// Whether `request` is the listen method.
pub(super) fn is_listen(request: &Request) -> bool {
    request.method == LISTEN
}
