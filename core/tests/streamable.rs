//! Streamable HTTP sessions in virtual time: routing, resumption, bounds and endings, with
//! no HTTP and no clock.

mod common;

use std::time::{Duration, Instant};

use common::base;
use serde_json::{json, Value};
use tether_core::streamable::{
    route, Head, Method, Post, Reply, Route, Session, SessionRequest, Settings, Sink, Take, ToChild,
};
use tether_core::{Message, Notification, Request, Response};

fn request(id: u64, method: &str, params: Value) -> Message {
    Message::Request(Request::new(id, method, Some(params)))
}

fn notification(method: &str, params: Value) -> Message {
    Message::Notification(Notification::new(method, Some(params)))
}

fn response(id: u64, result: Value) -> Message {
    Message::Response(Response::success(id, result))
}

fn post(messages: Vec<Message>) -> Post {
    Post {
        messages,
        batch: false,
        sse: true,
    }
}

/// An event's id and message.
fn event(take: Take) -> (String, Value) {
    let Take::Data(bytes) = take else {
        panic!("no event: {take:?}")
    };
    let text = String::from_utf8(bytes).unwrap();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_owned();
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    (id, serde_json::from_str(data).unwrap())
}

fn stream(reply: Reply) -> Sink {
    match reply {
        Reply::Stream { sink, .. } => sink,
        Reply::Status(status) => panic!("no stream: {status:?}"),
    }
}

fn status(reply: Reply) -> u16 {
    match reply {
        Reply::Status(status) => status.code,
        Reply::Stream { .. } => panic!("a stream, not a status"),
    }
}

/// Everything queued for the program.
fn to_child(session: &mut Session) -> Vec<ToChild> {
    std::iter::from_fn(|| session.poll_child()).collect()
}

/// A session that has been initialized, with the program's queue emptied.
fn initialized(settings: Settings, now: Instant) -> Session {
    let mut session = Session::new(settings, now);
    let sink = stream(session.handle_post(post(vec![request(0, "initialize", json!({}))]), now));
    session.handle_child(response(0, json!({"protocolVersion": "2025-06-18"})), now);
    let (_, init) = event(session.take(sink));
    assert_eq!(init["id"], 0);
    assert_eq!(session.take(sink), Take::End);
    session.detach(sink, now);
    let initialized = notification("notifications/initialized", json!({}));
    assert_eq!(
        status(session.handle_post(post(vec![initialized]), now)),
        202
    );
    assert_eq!(to_child(&mut session).len(), 2);
    session
}

#[test]
fn a_request_is_answered_on_its_own_stream_and_the_stream_ends() {
    let now = base();
    let mut session = Session::new(Settings::default(), now);
    let init = request(1, "initialize", json!({}));
    let sink = stream(session.handle_post(post(vec![init.clone()]), now));
    assert_eq!(to_child(&mut session), vec![ToChild::Message(init)]);
    assert_eq!(session.take(sink), Take::Wait);
    session.handle_child(response(1, json!({"ok": true})), now);
    let (id, message) = event(session.take(sink));
    assert_eq!(
        message,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"ok": true}})
    );
    assert!(id.contains('-'), "{id}");
    assert_eq!(session.take(sink), Take::End);
}

#[test]
fn notifications_and_responses_are_accepted_and_forwarded_in_order() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    let messages = vec![
        notification("a", json!({})),
        response(7, json!("answer to the program")),
        notification("b", json!({})),
    ];
    assert_eq!(
        status(session.handle_post(post(messages.clone()), now)),
        202
    );
    let sent: Vec<_> = messages.into_iter().map(ToChild::Message).collect();
    assert_eq!(to_child(&mut session), sent);
}

#[test]
fn progress_goes_to_the_stream_of_the_request_that_asked_for_it() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    let with_token = |id, token: &str| {
        request(
            id,
            "tools/call",
            json!({"name": "slow", "_meta": {"progressToken": token}}),
        )
    };
    let a = stream(session.handle_post(post(vec![with_token(1, "a")]), now));
    let b = stream(session.handle_post(post(vec![with_token(2, "b")]), now));
    session.handle_child(
        notification(
            "notifications/progress",
            json!({"progressToken": "a", "progress": 1}),
        ),
        now,
    );
    session.handle_child(
        notification(
            "notifications/progress",
            json!({"progressToken": "b", "progress": 1}),
        ),
        now,
    );
    assert_eq!(event(session.take(a)).1["params"]["progressToken"], "a");
    assert_eq!(event(session.take(b)).1["params"]["progressToken"], "b");
    session.handle_child(response(2, json!({})), now);
    session.handle_child(response(1, json!({})), now);
    assert_eq!(event(session.take(a)).1["id"], 1);
    assert_eq!(event(session.take(b)).1["id"], 2);
    assert_eq!(session.take(a), Take::End);
    assert_eq!(session.take(b), Take::End);
}

#[test]
fn unrelated_messages_go_to_the_get_stream_else_the_newest_request_stream_else_wait() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    // Nothing open: kept for the next GET.
    session.handle_child(notification("early", json!({})), now);
    let get = stream(session.handle_get(None, now));
    assert_eq!(event(session.take(get)).1["method"], "early");
    // A GET is open: it takes them even while a request is in progress.
    let call = stream(session.handle_post(post(vec![request(1, "tools/call", json!({}))]), now));
    session.handle_child(notification("during", json!({})), now);
    assert_eq!(event(session.take(get)).1["method"], "during");
    assert_eq!(session.take(call), Take::Wait);
    // The GET's connection is gone: the newest open request stream takes them, requests of
    // the program included.
    session.detach(get, now);
    let newer = stream(session.handle_post(post(vec![request(2, "tools/call", json!({}))]), now));
    session.handle_child(request(50, "sampling/createMessage", json!({})), now);
    assert_eq!(
        event(session.take(newer)).1["method"],
        "sampling/createMessage"
    );
    assert_eq!(session.take(call), Take::Wait);
}

#[test]
fn a_second_get_takes_the_stream_over() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    let first = stream(session.handle_get(None, now));
    let second = stream(session.handle_get(None, now));
    assert_eq!(session.take(first), Take::End);
    session.handle_child(notification("n", json!({})), now);
    assert_eq!(event(session.take(second)).1["method"], "n");
    // The replaced reader's end changes nothing for the new one.
    session.detach(first, now);
    session.handle_child(notification("m", json!({})), now);
    assert_eq!(event(session.take(second)).1["method"], "m");
}

#[test]
fn a_lost_request_stream_resumes_after_the_last_event_id_without_a_gap() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    let call = request(
        9,
        "tools/call",
        json!({"name": "slow", "_meta": {"progressToken": 9}}),
    );
    let sink = stream(session.handle_post(post(vec![call]), now));
    let progress = |n| {
        notification(
            "notifications/progress",
            json!({"progressToken": 9, "progress": n}),
        )
    };
    session.handle_child(progress(1), now);
    session.handle_child(progress(2), now);
    let (first, _) = event(session.take(sink));
    // The connection drops after the first event was taken (the second may or may not have
    // reached the client: it is sent again).
    let _ = session.take(sink);
    session.detach(sink, now);
    session.handle_child(progress(3), now);
    session.handle_child(response(9, json!({"done": true})), now);
    let resumed = stream(session.handle_get(Some(&first), now));
    let rest: Vec<Value> = std::iter::from_fn(|| match session.take(resumed) {
        Take::Data(bytes) => Some(event(Take::Data(bytes)).1),
        _ => None,
    })
    .collect();
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert_eq!(rest[0]["params"]["progress"], 2);
    assert_eq!(rest[1]["params"]["progress"], 3);
    assert_eq!(rest[2]["result"]["done"], true);
    assert_eq!(session.take(resumed), Take::End);
}

#[test]
fn the_get_stream_resumes_too() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    let get = stream(session.handle_get(None, now));
    session.handle_child(notification("one", json!({})), now);
    let (one, _) = event(session.take(get));
    session.detach(get, now);
    session.handle_child(notification("two", json!({})), now);
    let again = stream(session.handle_get(Some(&one), now));
    assert_eq!(event(session.take(again)).1["method"], "two");
    assert_eq!(session.take(again), Take::Wait);
}

#[test]
fn a_resumption_that_would_miss_events_is_refused() {
    let now = base();
    let settings = Settings::default().buffer(300);
    let mut session = initialized(settings, now);
    for bad in ["nonsense", "99-1", "0-999999"] {
        assert_eq!(status(session.handle_get(Some(bad), now)), 400, "{bad}");
    }
    let get = stream(session.handle_get(None, now));
    session.handle_child(notification("first", json!({})), now);
    let (first, _) = event(session.take(get));
    session.detach(get, now);
    // Nobody reads: over the buffer, events for a client that is gone are dropped, oldest
    // first, and counted.
    let big = "x".repeat(100);
    for n in 0..5 {
        session.handle_child(notification("later", json!({ "n": n, "pad": big })), now);
    }
    assert!(session.dropped() > 0);
    assert!(session.kept() <= 300);
    assert!(session.wants_child_output());
    assert_eq!(status(session.handle_get(Some(&first), now)), 400);
    // A plain GET gets what is left, the newest.
    let get = stream(session.handle_get(None, now));
    let (_, newest) = event(session.take(get));
    assert!(newest["params"]["n"].as_u64().unwrap() > 0);
}

#[test]
fn a_connected_client_that_does_not_read_holds_the_program_back_instead_of_losing_events() {
    let now = base();
    let mut session = initialized(Settings::default().buffer(300), now);
    let get = stream(session.handle_get(None, now));
    let big = "x".repeat(100);
    for n in 0..5 {
        session.handle_child(notification("n", json!({ "n": n, "pad": big })), now);
    }
    assert!(!session.wants_child_output());
    assert_eq!(session.dropped(), 0);
    for n in 0..5 {
        assert_eq!(event(session.take(get)).1["params"]["n"], n);
    }
    assert!(session.wants_child_output());
    assert!(session.kept() <= 300);
    // Held back again, then closed: reading goes on, so the program's end is seen however
    // slowly the client reads what it was sent.
    for n in 5..10 {
        session.handle_child(notification("n", json!({ "n": n, "pad": big })), now);
    }
    assert!(!session.wants_child_output());
    session.close(now);
    assert!(session.wants_child_output());
    assert_eq!(event(session.take(get)).1["params"]["n"], 5);
}

#[test]
fn a_reused_id_and_too_many_streams_are_refused() {
    let now = base();
    let mut session = initialized(Settings::default().max_streams(2), now);
    let _a = stream(session.handle_post(post(vec![request(1, "x", json!({}))]), now));
    assert_eq!(
        status(session.handle_post(post(vec![request(1, "y", json!({}))]), now)),
        400
    );
    let twice = vec![request(5, "x", json!({})), request(5, "y", json!({}))];
    assert_eq!(status(session.handle_post(post(twice), now)), 400);
    let _b = stream(session.handle_post(post(vec![request(2, "x", json!({}))]), now));
    assert_eq!(
        status(session.handle_post(post(vec![request(3, "x", json!({}))]), now)),
        429
    );
    // The string id "1" is not the number 1.
    session.handle_child(response(2, json!({})), now);
    let string_id = Message::Request(Request::new("1", "x", None));
    let _c = stream(session.handle_post(post(vec![string_id]), now));
    assert_eq!(to_child(&mut session).len(), 3);
}

#[test]
fn json_answers_wait_for_every_response_and_keep_the_batch_shape() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    let batch = Post {
        messages: vec![
            request(1, "a", json!({})),
            notification("n", json!({})),
            request(2, "b", json!({})),
        ],
        batch: true,
        sse: false,
    };
    let sink = match session.handle_post(batch, now) {
        Reply::Stream { sink, sse: false } => sink,
        other => panic!("{other:?}"),
    };
    session.handle_child(notification("unrelated", json!({})), now);
    session.handle_child(response(2, json!("b")), now);
    assert_eq!(session.take(sink), Take::Wait);
    session.handle_child(response(1, json!("a")), now);
    let Take::Data(body) = session.take(sink) else {
        panic!()
    };
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body[0]["result"], "b");
    assert_eq!(body[1]["result"], "a");
    assert_eq!(session.take(sink), Take::End);
    // One request without a batch: one object.
    let single = Post {
        messages: vec![request(3, "c", json!({}))],
        batch: false,
        sse: false,
    };
    let sink = stream(session.handle_post(single, now));
    session.handle_child(response(3, json!("c")), now);
    let Take::Data(body) = session.take(sink) else {
        panic!()
    };
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["result"], "c");
}

#[test]
fn delete_ends_the_session_and_shuts_the_program_down() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    let get = stream(session.handle_get(None, now));
    let call = stream(session.handle_post(post(vec![request(4, "slow", json!({}))]), now));
    to_child(&mut session);
    assert_eq!(status(session.handle_delete(now)), 200);
    assert!(!session.is_open());
    assert_eq!(to_child(&mut session), vec![ToChild::Close]);
    // The request in progress is answered with an error; every stream ends.
    let (_, answer) = event(session.take(call));
    assert_eq!(answer["id"], 4);
    assert_eq!(answer["error"]["code"], -32603);
    assert_eq!(session.take(call), Take::End);
    assert_eq!(session.take(get), Take::End);
    assert_eq!(status(session.handle_delete(now)), 404);
    assert_eq!(status(session.handle_get(None, now)), 404);
    let late = post(vec![request(5, "x", json!({}))]);
    assert_eq!(status(session.handle_post(late, now)), 404);
    assert!(!session.is_ended());
    session.handle_child_end(now);
    assert!(session.is_ended());
}

#[test]
fn the_programs_end_answers_what_is_pending_and_ends_the_session() {
    let now = base();
    let mut session = initialized(Settings::default(), now);
    let call = stream(session.handle_post(post(vec![request(4, "slow", json!({}))]), now));
    session.handle_child_end(now);
    assert!(session.is_ended() && !session.is_open());
    let (_, answer) = event(session.take(call));
    assert_eq!(answer["error"]["message"], "the program ended");
    assert_eq!(session.take(call), Take::End);
    assert!(to_child(&mut session).is_empty(), "nothing to close");
    session.handle_child(notification("too late", json!({})), now);
    assert_eq!(status(session.handle_get(None, now)), 404);
}

#[test]
fn an_idle_session_ends_after_the_timeout_and_only_then() {
    let start = base();
    let idle = Duration::from_secs(60);
    let mut session = initialized(Settings::default().idle_timeout(Some(idle)), start);
    assert_eq!(session.poll_timeout(), Some(start + idle));
    // An open stream is not idle, however long.
    let later = start + Duration::from_secs(30);
    let get = stream(session.handle_get(None, later));
    assert_eq!(session.poll_timeout(), None);
    let much_later = start + Duration::from_secs(600);
    session.handle_timeout(much_later);
    assert!(session.is_open());
    session.detach(get, much_later);
    assert_eq!(session.poll_timeout(), Some(much_later + idle));
    session.handle_timeout(much_later + idle - Duration::from_millis(1));
    assert!(session.is_open());
    session.handle_timeout(much_later + idle);
    assert!(!session.is_open());
    assert_eq!(to_child(&mut session), vec![ToChild::Close]);
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn a_pending_request_keeps_the_session_alive_without_a_stream() {
    let now = base();
    let idle = Duration::from_secs(5);
    let mut session = initialized(Settings::default().idle_timeout(Some(idle)), now);
    let call = stream(session.handle_post(post(vec![request(1, "slow", json!({}))]), now));
    session.detach(call, now);
    assert_eq!(session.poll_timeout(), None);
    session.handle_child(response(1, json!({})), now + idle);
    assert_eq!(session.poll_timeout(), Some(now + idle + idle));
}

#[test]
fn routing_starts_a_session_only_from_an_initialize() {
    let head = Head {
        method: Method::Post,
        session: None,
        accept: Some("application/json, text/event-stream"),
        content_type: Some("application/json"),
        last_event_id: None,
    };
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
    let Route::Start(post) = route(&head, init) else {
        panic!()
    };
    let now = base();
    let mut session = Session::new(Settings::default(), now);
    let sink = stream(session.handle_post(post, now));
    assert_eq!(session.take(sink), Take::Wait);
    let delete = Head {
        method: Method::Delete,
        session: Some("abc"),
        ..head
    };
    assert_eq!(
        route(&delete, b""),
        Route::Session {
            id: "abc".into(),
            request: SessionRequest::Delete
        }
    );
}
