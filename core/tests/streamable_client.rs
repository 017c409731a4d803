//! The Streamable HTTP client in virtual time: the order requests go in, their headers, what
//! each response means, resumption and backoff, and the session's end, with no HTTP and no
//! clock.

mod common;

use std::time::{Duration, Instant};

use common::base;
use serde_json::{json, Value};
use tether_core::streamable::{
    Client, End, Event, Exchange, HttpRequest, Method, Read, ResponseHead, RECONNECTS,
    RECONNECT_DELAY,
};

const PROTOCOL: &str = "2025-06-18";

fn line(message: &Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap();
    line.push(b'\n');
    line
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {}})
}

fn request(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}})
}

fn notification(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": method})
}

fn answer(id: u64, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn head(
    status: u16,
    reason: &'static str,
    content_type: Option<&'static str>,
) -> ResponseHead<'static> {
    ResponseHead {
        status,
        reason: Some(reason),
        session: None,
        content_type,
    }
}

fn ok(content_type: &'static str) -> ResponseHead<'static> {
    head(200, "OK", Some(content_type))
}

const SSE: &str = "text/event-stream";
const JSON: &str = "application/json";

fn requests(client: &mut Client) -> Vec<HttpRequest> {
    std::iter::from_fn(|| client.poll_request()).collect()
}

/// The one request queued.
fn one(client: &mut Client) -> HttpRequest {
    let mut all = requests(client);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

/// The messages received, as text.
fn messages(client: &mut Client) -> Vec<String> {
    std::iter::from_fn(|| client.poll_message())
        .map(|message| String::from_utf8(message).unwrap())
        .collect()
}

fn body(request: &HttpRequest) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

fn data(exchange: Exchange, client: &mut Client, id: Option<&str>, message: &Value, now: Instant) {
    let text = message.to_string();
    let event = Event {
        id,
        data: Some(&text),
        retry: None,
    };
    client.handle_event(exchange, event, now);
}

/// A client whose session `s1` is initialized (by a JSON answer), with the `GET` stream's
/// request returned and every queue emptied.
fn initialized(now: Instant) -> (Client, Exchange) {
    let mut client = Client::new();
    client.handle_message(&line(&initialize(0)), now);
    let init = one(&mut client);
    let mut response = ok(JSON);
    response.session = Some(b"s1");
    assert_eq!(
        client.handle_response(init.exchange, response, now),
        Read::Json
    );
    let body = answer(0, json!({"protocolVersion": PROTOCOL}));
    client.handle_body(init.exchange, body.to_string().as_bytes(), now);
    assert_eq!(messages(&mut client).len(), 1);
    let get = one(&mut client);
    assert_eq!(get.method, Method::Get);
    (client, get.exchange)
}

#[test]
fn initialize_goes_alone_first_and_its_session_and_protocol_go_with_every_later_request() {
    let now = base();
    let mut client = Client::new();
    client.handle_message(&line(&initialize(1)), now);
    client.handle_message(&line(&notification("notifications/initialized")), now);
    client.handle_message(&line(&request(2, "tools/list")), now);
    let init = one(&mut client);
    assert_eq!(init.method, Method::Post);
    assert_eq!(body(&init)["method"], "initialize");
    assert_eq!((init.session, init.protocol_version), (None, None));
    assert!(!client.wants_message());

    let mut response = ok(SSE);
    response.session = Some(b"s1");
    assert_eq!(
        client.handle_response(init.exchange, response, now),
        Read::Events
    );
    // The stream started, but nothing goes before the answer.
    let note = notification("notifications/message");
    data(init.exchange, &mut client, Some("e1"), &note, now);
    assert!(requests(&mut client).is_empty());
    let result = answer(1, json!({"protocolVersion": PROTOCOL}));
    data(init.exchange, &mut client, Some("e2"), &result, now);
    assert_eq!(
        messages(&mut client),
        [note.to_string(), result.to_string()]
    );
    // The answer ends the stream.
    assert!(!client.wants(init.exchange));

    let after = requests(&mut client);
    let kinds: Vec<_> = after.iter().map(|r| r.method).collect();
    assert_eq!(kinds, [Method::Get, Method::Post], "{after:#?}");
    for request in &after {
        assert_eq!(request.session.as_deref(), Some(&b"s1"[..]));
        assert_eq!(
            request.protocol_version.as_deref(),
            Some(PROTOCOL.as_bytes())
        );
        assert_eq!(request.last_event_id, None);
    }
    assert_eq!(body(&after[1])["method"], "notifications/initialized");
    // The notification's 202 lets the request go, with the same headers.
    assert_eq!(
        client.handle_response(after[1].exchange, head(202, "Accepted", None), now),
        Read::Nothing
    );
    let list = one(&mut client);
    assert_eq!(body(&list)["method"], "tools/list");
    assert_eq!(list.session.as_deref(), Some(&b"s1"[..]));
}

#[test]
fn the_protocol_version_comes_from_a_json_answer_too() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(1, "ping")), now);
    let ping = one(&mut client);
    assert_eq!(ping.protocol_version.as_deref(), Some(PROTOCOL.as_bytes()));
    assert_eq!(ping.session.as_deref(), Some(&b"s1"[..]));
}

#[test]
fn requests_go_in_order_each_once_the_one_before_is_answered_or_streaming() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(1, "a")), now);
    client.handle_message(&line(&request(2, "b")), now);
    client.handle_message(&line(&request(3, "c")), now);
    let a = one(&mut client);
    assert_eq!(body(&a)["id"], 1);
    // A JSON answer holds the next back until it has been read, so the lines keep the order.
    assert_eq!(
        client.handle_response(a.exchange, ok(JSON), now),
        Read::Json
    );
    assert!(requests(&mut client).is_empty());
    let one_answer = answer(1, json!("one"));
    client.handle_body(a.exchange, one_answer.to_string().as_bytes(), now);
    let b = one(&mut client);
    assert_eq!(body(&b)["id"], 2);
    // A stream lets the next go as soon as it starts.
    assert_eq!(
        client.handle_response(b.exchange, ok(SSE), now),
        Read::Events
    );
    let c = one(&mut client);
    assert_eq!(body(&c)["id"], 3);
    assert!(client.wants(b.exchange));
    assert!(!client.wants_message());
    assert_eq!(messages(&mut client), [one_answer.to_string()]);
}

#[test]
fn answers_to_the_servers_requests_go_at_once_and_hold_nothing_back() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(1, "tools/call")), now);
    let call = one(&mut client);
    assert_eq!(
        client.handle_response(call.exchange, ok(SSE), now),
        Read::Events
    );
    // The server asks something on the call's stream; the answer goes while it is open.
    let sampling = json!({"jsonrpc": "2.0", "id": "s-1", "method": "sampling/createMessage"});
    data(call.exchange, &mut client, None, &sampling, now);
    assert_eq!(messages(&mut client), [sampling.to_string()]);
    let reply = json!({"jsonrpc": "2.0", "id": "s-1", "result": {}});
    client.handle_message(&line(&reply), now);
    let sent = one(&mut client);
    assert_eq!(body(&sent), reply);
    // Unanswered, it holds back nothing.
    assert!(client.wants_message());
    client.handle_message(&line(&notification("n")), now);
    assert_eq!(body(&one(&mut client))["method"], "n");
    assert_eq!(
        client.handle_response(sent.exchange, head(202, "Accepted", None), now),
        Read::Nothing
    );
    assert!(client.wants(call.exchange));
}

#[test]
fn a_stream_dropped_before_its_answer_is_resumed_with_the_last_event_id() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(7, "slow")), now);
    let post = one(&mut client);
    client.handle_response(post.exchange, ok(SSE), now);
    let progress = notification("notifications/progress");
    data(post.exchange, &mut client, Some("e1"), &progress, now);
    client.handle_end(post.exchange, now);
    assert!(!client.wants(post.exchange));
    // The first resumption goes after the wait (no `retry:` came), not before.
    assert!(requests(&mut client).is_empty());
    assert_eq!(client.poll_timeout(), Some(now + RECONNECT_DELAY));
    client.handle_timeout(now + RECONNECT_DELAY - Duration::from_millis(1));
    assert!(requests(&mut client).is_empty());
    let now = now + RECONNECT_DELAY;
    client.handle_timeout(now);
    let get = one(&mut client);
    assert_eq!(get.method, Method::Get);
    assert_eq!(get.last_event_id.as_deref(), Some(&b"e1"[..]));
    assert_eq!(get.session.as_deref(), Some(&b"s1"[..]));
    // It drops too, with nothing new: reopened after the backoff, from the same event.
    client.handle_response(get.exchange, ok(SSE), now);
    client.handle_end(get.exchange, now);
    let deadline = now + RECONNECT_DELAY * 2;
    assert_eq!(client.poll_timeout(), Some(deadline));
    client.handle_timeout(deadline - Duration::from_millis(1));
    assert!(requests(&mut client).is_empty());
    client.handle_timeout(deadline);
    let again = one(&mut client);
    assert_eq!(again.last_event_id.as_deref(), Some(&b"e1"[..]));
    // The answer ends it: nothing more is reopened.
    client.handle_response(again.exchange, ok(SSE), deadline);
    let result = answer(7, json!("done"));
    data(again.exchange, &mut client, Some("e2"), &result, deadline);
    assert!(!client.wants(again.exchange));
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(
        messages(&mut client),
        [progress.to_string(), result.to_string()]
    );
}

/// The conformance suite's `sse-retry` client scenario, in virtual time: a POST's stream
/// primes with an event id and `retry: 500`, then closes before the answer. The client must
/// wait those 500 ms, not a moment less, then resume with `GET` and `Last-Event-ID`.
#[test]
fn a_posts_stream_cut_before_its_answer_is_resumed_after_the_servers_retry() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(3, "tools/call")), now);
    let post = one(&mut client);
    assert_eq!(
        client.handle_response(post.exchange, ok(SSE), now),
        Read::Events
    );
    let priming = Event {
        id: Some("event-1"),
        data: Some(""),
        retry: Some(500),
    };
    client.handle_event(post.exchange, priming, now);
    let cut = now + Duration::from_millis(50);
    client.handle_end(post.exchange, cut);
    assert!(!client.wants(post.exchange));
    let due = cut + Duration::from_millis(500);
    assert_eq!(client.poll_timeout(), Some(due));
    // Time that jumps back, or not far enough, reopens nothing.
    client.handle_timeout(now);
    client.handle_timeout(due - Duration::from_millis(1));
    assert!(requests(&mut client).is_empty());
    client.handle_timeout(due);
    let get = one(&mut client);
    assert_eq!(get.method, Method::Get);
    assert_eq!(get.last_event_id.as_deref(), Some(&b"event-1"[..]));
    assert_eq!(get.session.as_deref(), Some(&b"s1"[..]));
    assert_eq!(get.protocol_version.as_deref(), Some(PROTOCOL.as_bytes()));
    // The answer comes on the resumed stream; the request is done, nothing waits.
    assert_eq!(
        client.handle_response(get.exchange, ok(SSE), due),
        Read::Events
    );
    let result = answer(3, json!({"content": []}));
    data(get.exchange, &mut client, Some("event-2"), &result, due);
    assert!(!client.wants(get.exchange));
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(messages(&mut client), [result.to_string()]);
}

#[test]
fn a_stream_dropped_with_no_event_id_is_not_resumed() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(7, "slow")), now);
    let post = one(&mut client);
    client.handle_response(post.exchange, ok(SSE), now);
    client.handle_end(post.exchange, now);
    assert!(requests(&mut client).is_empty());
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn an_empty_get_stream_is_reopened_with_a_doubling_wait_and_then_given_up() {
    let mut now = base();
    let (mut client, mut get) = initialized(now);
    // The first GET and every reopening come back empty (or fail).
    for attempt in 1..=RECONNECTS + 1 {
        if attempt % 2 == 0 {
            client.handle_failure(get, "connection refused", now);
        } else {
            assert_eq!(client.handle_response(get, ok(SSE), now), Read::Events);
            client.handle_end(get, now);
        }
        if attempt > RECONNECTS {
            break;
        }
        let wait = RECONNECT_DELAY * 2u32.pow(attempt);
        assert_eq!(client.poll_timeout(), Some(now + wait), "attempt {attempt}");
        now += wait;
        client.handle_timeout(now);
        let reopened = one(&mut client);
        assert_eq!(reopened.method, Method::Get);
        get = reopened.exchange;
    }
    assert_eq!(client.poll_timeout(), None);
    assert!(requests(&mut client).is_empty());
    assert_eq!(
        client.poll_warning().as_deref(),
        Some("the GET stream keeps failing; no longer reopened")
    );
    // The POSTs go on.
    client.handle_message(&line(&request(1, "ping")), now);
    assert_eq!(one(&mut client).method, Method::Post);
    assert!(messages(&mut client).is_empty());
}

#[test]
fn a_stream_that_received_something_starts_the_count_again() {
    let now = base();
    let (mut client, get) = initialized(now);
    client.handle_failure(get, "reset", now);
    assert_eq!(client.poll_timeout(), Some(now + RECONNECT_DELAY * 2));
    let later = now + RECONNECT_DELAY * 2;
    client.handle_timeout(later);
    let get = one(&mut client).exchange;
    client.handle_response(get, ok(SSE), later);
    let ping = request(9, "ping");
    data(get, &mut client, Some("g1"), &ping, later);
    client.handle_end(get, later);
    assert_eq!(client.poll_timeout(), Some(later + RECONNECT_DELAY));
    client.handle_timeout(later + RECONNECT_DELAY);
    let reopened = one(&mut client);
    assert_eq!(reopened.last_event_id.as_deref(), Some(&b"g1"[..]));
}

#[test]
fn the_servers_retry_sets_the_wait() {
    let now = base();
    let (mut client, get) = initialized(now);
    client.handle_response(get, ok(SSE), now);
    let priming = Event {
        id: Some("p0"),
        data: Some(""),
        retry: Some(3000),
    };
    client.handle_event(get, priming, now);
    // A priming event is no message.
    assert!(messages(&mut client).is_empty());
    client.handle_end(get, now);
    assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(3)));
    client.handle_timeout(now + Duration::from_secs(3));
    let reopened = one(&mut client);
    assert_eq!(reopened.last_event_id.as_deref(), Some(&b"p0"[..]));
    // Empty now: the server's wait, doubled.
    client.handle_failure(reopened.exchange, "reset", now + Duration::from_secs(3));
    assert_eq!(client.poll_timeout(), Some(now + Duration::from_secs(9)));
    // A wait of ages is held to the longest wait.
    let later = now + Duration::from_secs(9);
    client.handle_timeout(later);
    let reopened = one(&mut client);
    client.handle_response(reopened.exchange, ok(SSE), later);
    let ages = Event {
        id: Some("p1"),
        data: None,
        retry: Some(u64::MAX),
    };
    client.handle_event(reopened.exchange, ages, later);
    client.handle_end(reopened.exchange, later);
    assert_eq!(
        client.poll_timeout(),
        Some(later + tether_core::streamable::MAX_RECONNECT_DELAY)
    );
}

#[test]
fn a_405_to_get_means_no_get_stream() {
    let now = base();
    let (mut client, get) = initialized(now);
    let refused = head(405, "Method Not Allowed", None);
    assert_eq!(client.handle_response(get, refused, now), Read::Nothing);
    assert!(!client.wants(get));
    assert_eq!(client.poll_timeout(), None);
    assert!(requests(&mut client).is_empty());
    assert!(messages(&mut client).is_empty());
    assert_eq!(client.poll_end(), None);
}

#[test]
fn once_the_session_has_ended_no_stream_waits_to_be_reopened() {
    let now = base();
    let (mut client, get) = initialized(now);
    client.handle_failure(get, "reset", now);
    assert!(client.poll_timeout().is_some());
    client.handle_message(&line(&request(1, "ping")), now);
    let ping = one(&mut client);
    client.handle_response(ping.exchange, head(404, "Not Found", None), now);
    assert!(client.poll_end().is_some());
    assert_eq!(client.poll_timeout(), None);
    client.handle_timeout(now + Duration::from_secs(60));
    assert!(requests(&mut client).is_empty());
}

#[test]
fn a_404_once_the_session_exists_ends_it_with_the_reason() {
    let now = base();
    let (mut client, get) = initialized(now);
    client.handle_message(&line(&request(1, "ping")), now);
    client.handle_message(&line(&request(2, "ping")), now);
    let ping = one(&mut client);
    let gone = head(404, "Not Found", Some(JSON));
    assert_eq!(
        client.handle_response(ping.exchange, gone, now),
        Read::Nothing
    );
    assert_eq!(
        client.poll_end(),
        Some(End {
            reason: Some("the server ended the session (HTTP 404 to POST)".into())
        })
    );
    assert_eq!(client.poll_end(), None);
    assert!(client.is_ended());
    // Nothing more is sent, nor wanted, nor said.
    assert!(!client.wants(get));
    assert!(requests(&mut client).is_empty());
    client.handle_close(now);
    assert!(requests(&mut client).is_empty());
    assert!(messages(&mut client).is_empty());
}

#[test]
fn a_refused_post_ends_the_session_with_the_status_and_the_body_as_the_reason() {
    let now = base();
    let mut client = Client::new();
    client.handle_message(&line(&request(1, "tools/list")), now);
    client.handle_message(&line(&request(2, "tools/list")), now);
    let first = one(&mut client);
    // Without a session, a 404 is a refusal like any other.
    let refused = head(404, "Not Found", Some(JSON));
    assert_eq!(
        client.handle_response(first.exchange, refused, now),
        Read::Quote { limit: 4096 }
    );
    assert!(requests(&mut client).is_empty());
    assert_eq!(client.poll_end(), None);
    client.handle_body(first.exchange, b"{\"error\":\n  \"no session\"}\n", now);
    assert_eq!(
        client.poll_end(),
        Some(End {
            reason: Some("HTTP 404 Not Found from POST: {\"error\": \"no session\"}".into())
        })
    );
    // Nothing is received from a refusal, and nothing more is sent.
    assert!(messages(&mut client).is_empty());
    assert!(requests(&mut client).is_empty());
    assert!(!client.wants(first.exchange));

    // An empty body: the status alone.
    let mut client = Client::new();
    client.handle_message(&line(&initialize(1)), now);
    let init = one(&mut client);
    let unauthorized = head(401, "Unauthorized", None);
    client.handle_response(init.exchange, unauthorized, now);
    client.handle_failure(init.exchange, "connection reset", now);
    assert_eq!(
        client.poll_end(),
        Some(End {
            reason: Some("HTTP 401 Unauthorized from POST:".into())
        })
    );
}

#[test]
fn a_refused_get_stream_is_given_up_with_a_warning_and_the_posts_go_on() {
    let now = base();
    let (mut client, get) = initialized(now);
    let refused = head(400, "Bad Request", None);
    assert_eq!(
        client.handle_response(get, refused, now),
        Read::Quote { limit: 4096 }
    );
    client.handle_body(get, b"no GET here", now);
    assert_eq!(
        client.poll_warning().as_deref(),
        Some("HTTP 400 Bad Request from GET: no GET here; the stream is not reopened")
    );
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(client.poll_end(), None);
    client.handle_message(&line(&request(1, "ping")), now);
    assert_eq!(one(&mut client).method, Method::Post);
}

#[test]
fn a_failed_post_ends_the_session_with_the_reason() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(1, "ping")), now);
    let ping = one(&mut client);
    client.handle_failure(ping.exchange, "connection reset", now);
    assert_eq!(
        client.poll_end(),
        Some(End {
            reason: Some("POST failed: connection reset".into())
        })
    );
}

#[test]
fn close_with_a_session_sends_delete_and_ends_once_it_is_answered() {
    let now = base();
    let (mut client, get) = initialized(now);
    client.handle_message(&line(&request(1, "ping")), now);
    let ping = one(&mut client);
    client.handle_close(now);
    // The request before goes first: the DELETE waits for its answer.
    assert!(requests(&mut client).is_empty());
    client.handle_response(ping.exchange, ok(JSON), now);
    client.handle_body(
        ping.exchange,
        answer(1, json!({})).to_string().as_bytes(),
        now,
    );
    let delete = one(&mut client);
    assert_eq!(delete.method, Method::Delete);
    assert_eq!(delete.session.as_deref(), Some(&b"s1"[..]));
    assert!(delete.body.is_empty());
    assert_eq!(client.poll_end(), None);
    // While closing, a stream that ends is not reopened.
    client.handle_response(get, ok(SSE), now);
    client.handle_end(get, now);
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(
        client.handle_response(delete.exchange, ok(JSON), now),
        Read::Nothing
    );
    assert_eq!(client.poll_end(), Some(End { reason: None }));
    assert_eq!(messages(&mut client).len(), 1);
}

#[test]
fn close_without_a_session_ends_at_once() {
    let now = base();
    let mut client = Client::new();
    client.handle_close(now);
    assert!(requests(&mut client).is_empty());
    assert_eq!(client.poll_end(), Some(End { reason: None }));
}

#[test]
fn a_delete_refused_or_failed_still_ends_the_session() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_close(now);
    let delete = one(&mut client);
    client.handle_failure(delete.exchange, "connection refused", now);
    assert_eq!(client.poll_end(), Some(End { reason: None }));
}

#[test]
fn a_body_that_is_neither_json_nor_sse_is_a_warning_and_one_unreadable_ends_the_session() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(1, "a")), now);
    client.handle_message(&line(&request(2, "b")), now);
    let a = one(&mut client);
    assert_eq!(
        client.handle_response(a.exchange, ok("text/html"), now),
        Read::Quote { limit: 4096 }
    );
    client.handle_body(a.exchange, b"<p>hello</p>", now);
    let b = one(&mut client);
    client.handle_response(b.exchange, ok(JSON), now);
    assert_eq!(
        client.poll_warning().as_deref(),
        Some("HTTP 200 OK: a body that is neither JSON nor SSE: <p>hello</p>")
    );
    assert_eq!(client.poll_end(), None);
    client.handle_failure(b.exchange, "length limit exceeded", now);
    assert!(messages(&mut client).is_empty());
    assert_eq!(
        client.poll_end(),
        Some(End {
            reason: Some("the JSON response could not be read: length limit exceeded".into())
        })
    );
}

#[test]
fn messages_come_whole_as_sent_and_blank_ones_are_not_sent() {
    let now = base();
    let (mut client, get) = initialized(now);
    client.handle_message(b"   \n", now);
    assert!(requests(&mut client).is_empty());
    client.handle_response(get, ok(SSE), now);
    let event = Event {
        id: None,
        data: Some("{\"jsonrpc\":\"2.0\",\n\"method\":\"n\"}"),
        retry: None,
    };
    client.handle_event(get, event, now);
    assert_eq!(
        messages(&mut client),
        ["{\"jsonrpc\":\"2.0\",\n\"method\":\"n\"}"]
    );
}

// The modern era (2026-07-28): chosen message by message by `params._meta`.

const MODERN: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

fn modern(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = meta();
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn header<'r>(request: &'r HttpRequest, name: &str) -> Option<&'r str> {
    let mut found = request.mirrored.iter().filter(|(n, _)| *n == name);
    let value = found.next().map(|(_, v)| v.as_str());
    assert!(found.next().is_none(), "{name} twice: {request:#?}");
    value
}

fn cancel(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": id, "reason": "no longer wanted"}})
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn a_modern_request_goes_alone_without_session_with_its_mirrored_headers() {
    let now = base();
    // Even beside a legacy session: no session id, no negotiated version, no GET stream.
    let (mut client, _) = initialized(now);
    let call = modern(5, "tools/call", json!({"name": "météo", "arguments": {}}));
    client.handle_message(&line(&call), now);
    let post = one(&mut client);
    assert_eq!(post.method, Method::Post);
    assert_eq!(body(&post), call);
    assert_eq!((&post.session, &post.protocol_version), (&None, &None));
    assert_eq!(post.last_event_id, None);
    assert_eq!(header(&post, "mcp-protocol-version"), Some(MODERN));
    assert_eq!(header(&post, "mcp-method"), Some("tools/call"));
    assert_eq!(header(&post, "mcp-name"), Some("=?base64?bcOpdMOpbw==?="));
    // A method that names nothing has no Mcp-Name; legacy requests mirror nothing.
    let list = modern(6, "tools/list", json!({}));
    client.handle_message(&line(&list), now);
    let post = one(&mut client);
    assert_eq!(header(&post, "mcp-name"), None);
    assert_eq!(header(&post, "mcp-method"), Some("tools/list"));
    client.handle_message(&line(&request(7, "ping")), now);
    let legacy = one(&mut client);
    assert!(legacy.mirrored.is_empty());
    assert_eq!(legacy.session.as_deref(), Some(&b"s1"[..]));

    // With no session at all, nothing but the POST goes, and closing ends at once.
    let mut client = Client::new();
    let discover = modern(1, "server/discover", json!({}));
    client.handle_message(&line(&discover), now);
    let post = one(&mut client);
    assert_eq!(header(&post, "mcp-method"), Some("server/discover"));
    assert_eq!(
        client.handle_response(post.exchange, ok(JSON), now),
        Read::Json
    );
    let result = answer(1, json!({"supportedVersions": [MODERN]}));
    client.handle_body(post.exchange, result.to_string().as_bytes(), now);
    assert_eq!(messages(&mut client), [result.to_string()]);
    assert!(!client.wants(post.exchange));
    // No GET stream was opened by it.
    assert!(requests(&mut client).is_empty());
    client.handle_close(now);
    assert!(requests(&mut client).is_empty());
    assert_eq!(client.poll_end(), Some(End { reason: None }));
}

#[test]
fn a_modern_stream_brings_its_notifications_in_order_then_the_answer_and_ends() {
    let now = base();
    let mut client = Client::new();
    let call = modern(3, "tools/call", json!({"name": "chatty"}));
    client.handle_message(&line(&call), now);
    let post = one(&mut client);
    assert_eq!(
        client.handle_response(post.exchange, ok(SSE), now),
        Read::Events
    );
    let log = notification("notifications/message");
    let progress = notification("notifications/progress");
    data(post.exchange, &mut client, None, &log, now);
    data(post.exchange, &mut client, None, &progress, now);
    assert!(client.wants(post.exchange));
    let result = answer(3, json!({"content": []}));
    data(post.exchange, &mut client, None, &result, now);
    assert!(!client.wants(post.exchange));
    assert_eq!(
        messages(&mut client),
        [log.to_string(), progress.to_string(), result.to_string()]
    );
    // Its end afterwards is nothing; nothing is resumed, nothing waits.
    client.handle_end(post.exchange, now);
    assert_eq!(client.poll_timeout(), None);
    assert!(requests(&mut client).is_empty());
    assert!(messages(&mut client).is_empty());
}

#[test]
fn modern_requests_in_flight_together_each_have_their_own_exchange() {
    let now = base();
    let mut client = Client::new();
    for id in 1..=3 {
        client.handle_message(
            &line(&modern(id, "tools/call", json!({"name": "slow"}))),
            now,
        );
        // None holds the next back, before or after its response starts.
        assert!(client.wants_message());
    }
    let posts = requests(&mut client);
    assert_eq!(posts.len(), 3);
    let exchanges: Vec<_> = posts.iter().map(|p| p.exchange).collect();
    for exchange in &exchanges {
        assert_eq!(
            client.handle_response(*exchange, ok(SSE), now),
            Read::Events
        );
    }
    // Answered in any order, each on its own stream.
    for (index, id) in [(2, 3), (0, 1), (1, 2)] {
        data(
            exchanges[index],
            &mut client,
            None,
            &answer(id, json!(id)),
            now,
        );
        assert!(!client.wants(exchanges[index]));
    }
    let ids: Vec<_> = messages(&mut client)
        .iter()
        .map(|m| value(m)["id"].clone())
        .collect();
    assert_eq!(ids, [json!(3), json!(1), json!(2)]);
}

#[test]
fn a_modern_notification_is_posted_the_same_way_and_202_is_its_end() {
    let now = base();
    let mut client = Client::new();
    let mut note = notification("notifications/roots/list_changed");
    note["params"] = json!({"_meta": meta()});
    client.handle_message(&line(&note), now);
    let post = one(&mut client);
    assert_eq!(header(&post, "mcp-protocol-version"), Some(MODERN));
    assert_eq!(
        header(&post, "mcp-method"),
        Some("notifications/roots/list_changed")
    );
    assert_eq!(post.session, None);
    // Closing waits for its 202, then ends.
    client.handle_close(now);
    assert_eq!(client.poll_end(), None);
    assert!(client.wants(post.exchange));
    assert_eq!(
        client.handle_response(post.exchange, head(202, "Accepted", None), now),
        Read::Nothing
    );
    assert_eq!(client.poll_end(), Some(End { reason: None }));
    assert!(messages(&mut client).is_empty());

    // Refused, it is a warning: there is nobody to answer.
    let mut client = Client::new();
    client.handle_message(&line(&note), now);
    let post = one(&mut client);
    let refused = head(400, "Bad Request", Some(JSON));
    assert_eq!(
        client.handle_response(post.exchange, refused, now),
        Read::Json
    );
    let error = json!({"jsonrpc": "2.0", "id": null,
        "error": {"code": -32022, "message": "Unsupported protocol version"}});
    client.handle_body(post.exchange, error.to_string().as_bytes(), now);
    assert_eq!(
        client.poll_warning().as_deref(),
        Some("a notification was not delivered: Unsupported protocol version")
    );
    assert!(messages(&mut client).is_empty());
    assert_eq!(client.poll_end(), None);
}

#[test]
fn initialize_still_selects_the_legacy_flow_and_a_legacy_cancel_is_posted() {
    let now = base();
    let (mut client, _) = initialized(now);
    client.handle_message(&line(&request(1, "tools/call")), now);
    let call = one(&mut client);
    assert!(call.mirrored.is_empty());
    client.handle_response(call.exchange, ok(SSE), now);
    client.handle_message(&line(&cancel(1)), now);
    let posted = one(&mut client);
    assert_eq!(body(&posted), cancel(1));
    assert_eq!(posted.session.as_deref(), Some(&b"s1"[..]));
    // The legacy stream is not dropped for it: the server decides.
    assert!(client.wants(call.exchange));
}

#[test]
fn cancelling_a_modern_request_in_flight_closes_its_stream_instead_of_posting() {
    let now = base();
    let mut client = Client::new();
    client.handle_message(
        &line(&modern(1, "tools/call", json!({"name": "slow"}))),
        now,
    );
    client.handle_message(
        &line(&modern(2, "tools/call", json!({"name": "slow"}))),
        now,
    );
    let posts = requests(&mut client);
    let (first, second) = (posts[0].exchange, posts[1].exchange);
    client.handle_response(first, ok(SSE), now);
    let log = notification("notifications/message");
    data(first, &mut client, None, &log, now);
    client.handle_message(&line(&cancel(1)), now);
    // Nothing is posted; the exchange is no longer wanted (its connection is dropped).
    assert!(requests(&mut client).is_empty());
    assert!(!client.wants(first));
    assert!(client.wants(second));
    // What came before the cancel still goes; nothing of it after.
    data(first, &mut client, None, &answer(1, json!("late")), now);
    client.handle_end(first, now);
    assert_eq!(messages(&mut client), [log.to_string()]);
    // A request not yet answered by its head is cancelled the same way.
    client.handle_message(&line(&cancel(2)), now);
    assert!(!client.wants(second));
    assert_eq!(client.handle_response(second, ok(JSON), now), Read::Nothing);
    assert!(requests(&mut client).is_empty());
    // A cancel naming nothing in flight is posted as it is.
    client.handle_message(&line(&cancel(1)), now);
    assert_eq!(body(&one(&mut client)), cancel(1));
    assert!(messages(&mut client).is_empty());
    assert_eq!(client.poll_end(), None);
}

#[test]
fn a_cancel_behind_a_held_queue_still_closes_the_modern_stream_at_once() {
    let now = base();
    let mut client = Client::new();
    client.handle_message(
        &line(&modern(9, "tools/call", json!({"name": "slow"}))),
        now,
    );
    let modern_post = one(&mut client);
    // A legacy initialize holds everything behind it until it is answered.
    client.handle_message(&line(&initialize(1)), now);
    let init = one(&mut client);
    client.handle_message(&line(&request(2, "ping")), now);
    assert!(requests(&mut client).is_empty());
    client.handle_message(&line(&cancel(9)), now);
    assert!(!client.wants(modern_post.exchange));
    // The queue goes on in order, without the cancel.
    client.handle_response(init.exchange, ok(JSON), now);
    let result = answer(1, json!({"protocolVersion": PROTOCOL}));
    client.handle_body(init.exchange, result.to_string().as_bytes(), now);
    let after: Vec<_> = requests(&mut client).iter().map(body).collect();
    assert_eq!(after, [request(2, "ping")]);
}

#[test]
fn a_refusals_json_rpc_error_is_the_requests_answer_with_its_id() {
    let now = base();
    let mut client = Client::new();
    client.handle_message(&line(&modern(4, "tools/call", json!({"name": "x"}))), now);
    client.handle_message(&line(&modern(5, "nope/nothing", json!({}))), now);
    let posts = requests(&mut client);
    // 400 with -32020, its id null (the server could not trust the body): ours is put in.
    let mismatch = head(400, "Bad Request", Some(JSON));
    assert_eq!(
        client.handle_response(posts[0].exchange, mismatch, now),
        Read::Json
    );
    let error = json!({"code": -32020, "message": "mcp-name header does not match"});
    let refusal = json!({"jsonrpc": "2.0", "id": null, "error": error});
    client.handle_body(posts[0].exchange, refusal.to_string().as_bytes(), now);
    // 404 with -32601.
    let unknown = head(404, "Not Found", Some("application/json; charset=utf-8"));
    assert_eq!(
        client.handle_response(posts[1].exchange, unknown, now),
        Read::Json
    );
    let missing = json!({"code": -32601, "message": "Method not found", "data": {"m": 1}});
    let refusal = json!({"jsonrpc": "2.0", "id": 5, "error": missing});
    client.handle_body(posts[1].exchange, refusal.to_string().as_bytes(), now);
    let got: Vec<_> = messages(&mut client).iter().map(|m| value(m)).collect();
    assert_eq!(
        got,
        [
            json!({"jsonrpc": "2.0", "id": 4, "error": error}),
            json!({"jsonrpc": "2.0", "id": 5, "error": missing}),
        ]
    );
    // The session goes on.
    assert_eq!(client.poll_end(), None);
    assert!(!client.is_ended());
    client.handle_message(&line(&modern(6, "tools/list", json!({}))), now);
    assert_eq!(one(&mut client).method, Method::Post);
}

#[test]
fn a_refusal_without_a_json_rpc_error_becomes_one_naming_the_status() {
    let now = base();
    let mut client = Client::new();
    for id in 1..=4 {
        client.handle_message(&line(&modern(id, "tools/list", json!({}))), now);
    }
    let posts = requests(&mut client);
    // A body that is text.
    let refused = head(401, "Unauthorized", Some("text/plain"));
    assert_eq!(
        client.handle_response(posts[0].exchange, refused, now),
        Read::Quote { limit: 4096 }
    );
    client.handle_body(posts[0].exchange, b"missing or\nwrong token", now);
    // No body at all.
    let refused = head(406, "Not Acceptable", None);
    client.handle_response(posts[1].exchange, refused, now);
    client.handle_failure(posts[1].exchange, "connection reset", now);
    // JSON that is no JSON-RPC error.
    let refused = head(500, "Internal Server Error", Some(JSON));
    client.handle_response(posts[2].exchange, refused, now);
    client.handle_body(posts[2].exchange, b"{\"detail\": \"boom\"}", now);
    // A 202 to a request: no answer will come.
    client.handle_response(posts[3].exchange, head(202, "Accepted", None), now);
    client.handle_body(posts[3].exchange, b"", now);
    let got: Vec<_> = messages(&mut client).iter().map(|m| value(m)).collect();
    let error = |id: u64, message: &str, status: u16| {
        json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": tether_core::streamable::EXCHANGE_FAILED,
            "message": message, "data": {"status": status}}})
    };
    assert_eq!(
        got,
        [
            error(
                1,
                "HTTP 401 Unauthorized from POST: missing or wrong token",
                401
            ),
            error(2, "HTTP 406 Not Acceptable from POST", 406),
            error(
                3,
                "HTTP 500 Internal Server Error from POST: {\"detail\": \"boom\"}",
                500
            ),
            error(4, "HTTP 202 Accepted from POST", 202),
        ]
    );
    assert_eq!(client.poll_end(), None);
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn a_modern_exchange_that_fails_is_answered_and_the_session_goes_on() {
    let now = base();
    let mut client = Client::new();
    for id in 1..=4 {
        client.handle_message(&line(&modern(id, "tools/list", json!({}))), now);
    }
    let posts = requests(&mut client);
    // Unreachable.
    client.handle_failure(posts[0].exchange, "connection refused", now);
    // A stream cut before its answer, even with an event id: never resumed.
    client.handle_response(posts[1].exchange, ok(SSE), now);
    let log = notification("notifications/message");
    data(posts[1].exchange, &mut client, Some("e1"), &log, now);
    client.handle_end(posts[1].exchange, now);
    // A JSON body that cannot be read, and one that answers something else.
    client.handle_response(posts[2].exchange, ok(JSON), now);
    client.handle_failure(posts[2].exchange, "length limit exceeded", now);
    client.handle_response(posts[3].exchange, ok(JSON), now);
    let other = answer(99, json!({}));
    client.handle_body(posts[3].exchange, other.to_string().as_bytes(), now);
    let got: Vec<_> = messages(&mut client).iter().map(|m| value(m)).collect();
    let error = |id: u64, message: &str| {
        json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": tether_core::streamable::EXCHANGE_FAILED, "message": message}})
    };
    assert_eq!(
        got,
        [
            error(1, "POST failed: connection refused"),
            log.clone(),
            error(2, "the stream ended before the answer"),
            error(
                3,
                "the JSON response could not be read: length limit exceeded"
            ),
            other,
            error(4, "the JSON response does not answer the request"),
        ]
    );
    assert_eq!(client.poll_timeout(), None);
    assert!(requests(&mut client).is_empty());
    assert_eq!(client.poll_end(), None);
}

#[test]
fn a_batch_or_an_older_version_in_meta_stays_in_the_legacy_era() {
    let now = base();
    let mut client = Client::new();
    let mut old = modern(1, "tools/list", json!({}));
    old["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-06-18");
    client.handle_message(&line(&old), now);
    let post = one(&mut client);
    assert!(post.mirrored.is_empty());
    // Legacy: held until answered, and a refusal ends the session.
    assert!(!client.wants_message());
    client.handle_response(post.exchange, head(400, "Bad Request", None), now);
    client.handle_body(post.exchange, b"", now);
    assert!(client.poll_end().is_some());

    let mut client = Client::new();
    let batch = json!([modern(1, "tools/list", json!({}))]);
    client.handle_message(&line(&batch), now);
    assert!(one(&mut client).mirrored.is_empty());
}
