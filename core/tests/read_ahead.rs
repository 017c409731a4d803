//! The read-ahead rule, in virtual time: input keeps being taken while the owner is not
//! receiving, up to a bounded read-ahead; the owner's own sends never hold input back; the
//! answers the endpoint owes a peer that does not read them do.

mod common;

use std::time::Instant;

use common::base;
use proptest::prelude::*;
use serde_json::json;
use tether_core::{Config, Endpoint, Event, Framing, Message, Notification, Request};

fn endpoint(config: Config, now: Instant) -> Endpoint {
    Endpoint::new(config.label("test"), now).unwrap()
}

fn line(method: &str) -> Vec<u8> {
    format!("{{\"jsonrpc\":\"2.0\",\"method\":\"{method}\"}}\n").into_bytes()
}

fn methods(ep: &mut Endpoint) -> Vec<String> {
    std::iter::from_fn(|| ep.poll_event())
        .map(|event| match event {
            Event::Message(Message::Notification(n)) => n.method,
            Event::Malformed(m) => format!("malformed: {m}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Everything queued to write, reported written.
fn drain_output(ep: &mut Endpoint) -> usize {
    let mut out = Vec::new();
    let n = ep.poll_transmit(&mut out);
    ep.handle_transmitted(n);
    n
}

#[test]
fn input_is_taken_while_the_owner_is_not_receiving_until_the_read_ahead_is_full() {
    let now = base();
    // Room for 64 bytes of raw input, then 3 events decoded ahead.
    let mut ep = endpoint(Config::new().max_frame(64).read_ahead(3, 1 << 20), now);
    let mut fed = 0;
    while ep.wants_input() {
        ep.handle_input(&line(&format!("m{fed}")), now).unwrap();
        fed += 1;
        assert!(fed < 100, "the read-ahead never filled");
    }
    // 64 bytes hold two 33-byte lines; past them, three more are decoded ahead.
    assert!(
        fed >= 5,
        "only {fed} lines taken before the read-ahead was full"
    );
    let got = methods(&mut ep);
    assert_eq!(got, (0..fed).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert!(ep.wants_input());
}

#[test]
fn the_owner_draining_the_read_ahead_wakes_the_reader() {
    let now = base();
    let mut ep = endpoint(Config::new().max_frame(64).read_ahead(2, 1 << 20), now);
    while ep.wants_input() {
        ep.handle_input(&line("x"), now).unwrap();
    }
    // The driver learns the reader is held back, then that it may read again.
    assert!(!ep.poll_wake().read);
    assert!(ep.poll_event().is_some());
    let mut woken = ep.poll_wake().read;
    while !woken {
        assert!(ep.poll_event().is_some(), "drained without a wake");
        woken = ep.poll_wake().read;
    }
    assert!(ep.wants_input());
}

#[test]
fn the_owners_large_send_never_holds_input_back() {
    let now = base();
    let mut ep = endpoint(Config::new().send_budget(1024), now);
    let big = "x".repeat(100_000);
    let request = Message::Request(Request::new(
        1,
        "process/write",
        Some(json!({ "data": big })),
    ));
    ep.send(&request).unwrap();
    // Far past twice the budget, and nothing of it written yet: the peer's output (its echo
    // of what it has read so far) must still be read, or neither side can finish.
    let mut out = Vec::new();
    let n = ep.poll_transmit(&mut out);
    assert!(n > 2 * 1024);
    assert!(ep.wants_input());
    ep.handle_input(&line("process/output"), now).unwrap();
    assert_eq!(methods(&mut ep), ["process/output"]);
    ep.handle_transmitted(n);
    assert!(ep.wants_input());
}

#[test]
fn answers_owed_to_a_peer_that_does_not_read_them_hold_input_back() {
    let now = base();
    let mut ep = endpoint(Config::new().send_budget(200), now);
    ep.serve(None);
    ep.set_serving(false);
    let mut id = 0;
    // Each request is answered -32601 at once; nothing is ever written.
    while ep.wants_input() {
        id += 1;
        let request = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"nobody\"}}\n");
        ep.handle_input(request.as_bytes(), now).unwrap();
        while ep.poll_event().is_some() {}
        assert!(id < 1000, "the owed answers never held input back");
    }
    assert!(id > 1);
    assert!(!ep.poll_wake().read);
    assert!(drain_output(&mut ep) >= 400);
    assert!(ep.wants_input());
    assert!(
        ep.poll_wake().read,
        "the reader is not woken once the answers are out"
    );
}

#[test]
fn a_line_over_the_limit_is_dropped_as_it_arrives_while_the_owner_is_away() {
    let now = base();
    let mut ep = endpoint(Config::new().max_frame(1000).read_ahead(4, 1 << 20), now);
    ep.handle_input(&line("before"), now).unwrap();
    // A line of 10 MB in 1 KiB chunks, with the owner not receiving.
    let chunk = vec![b'z'; 1024];
    for _ in 0..10_000 {
        assert!(ep.wants_input(), "reading stopped inside an overlong line");
        ep.handle_input(&chunk, now).unwrap();
        let debug = format!("{ep:?}");
        let buffered: usize = debug
            .split("buffered: ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .expect("the buffered count");
        assert!(buffered <= 1000 + 1024, "{buffered} bytes held");
    }
    ep.handle_input(b"\n", now).unwrap();
    ep.handle_input(&line("after"), now).unwrap();
    let got = methods(&mut ep);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "before");
    assert!(got[1].starts_with("malformed: "), "{got:?}");
    assert_eq!(got[2], "after");
}

#[test]
fn websocket_frames_are_read_ahead_up_to_the_bound() {
    let now = base();
    let mut ep = Endpoint::<Message>::new(
        Config::new()
            .framing(Framing::Messages)
            .read_ahead(5, 1 << 20)
            .label("ws"),
        now,
    )
    .unwrap();
    let mut fed = 0;
    while ep.wants_input() {
        let frame = serde_json::to_vec(&Message::Notification(Notification::new(
            format!("f{fed}"),
            None,
        )))
        .unwrap();
        ep.handle_frame(frame, now).unwrap();
        fed += 1;
        assert!(fed < 100);
    }
    assert_eq!(fed, 5);
    assert_eq!(methods(&mut ep).len(), 5);
    assert!(ep.wants_input());
}

/// The input buffer's bytes, and the events and bytes read ahead, from the endpoint's `Debug`
/// output (its connection's counts).
fn held(ep: &Endpoint) -> (usize, usize, usize) {
    let debug = format!("{ep:?}");
    let count = |name: &str| -> usize {
        debug
            .split(name)
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {debug}"))
    };
    (
        count("buffered: "),
        count("ahead: "),
        count("ahead_bytes: "),
    )
}

proptest! {
    /// Whatever the interleaving of reading ahead and receiving, the events are those of the
    /// input in order, and the read-ahead never holds more than its bounds.
    #[test]
    fn interleaving_reads_and_receives_changes_nothing(
        lens in prop::collection::vec(1..200usize, 1..60),
        polls in prop::collection::vec(0..4usize, 1..60),
        limit in 50..400usize,
        events in 1..6usize,
    ) {
        let now = base();
        let mut ep = endpoint(Config::new().max_frame(limit).read_ahead(events, limit), now);
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            let method = format!("{i}{}", "p".repeat(*len));
            input.extend_from_slice(&line(&method));
            expected.push(if method.len() + 30 > limit { None } else { Some(method) });
        }
        let mut got = Vec::new();
        let mut rest = &input[..];
        let mut step = 0;
        while !rest.is_empty() {
            if ep.wants_input() {
                let n = rest.len().min(37);
                ep.handle_input(&rest[..n], now).unwrap();
                rest = &rest[n..];
                // The memory bound: the buffer within the limit plus the chunk, the read-ahead
                // within its events and its bytes plus one frame.
                let (buffered, ahead, ahead_bytes) = held(&ep);
                prop_assert!(buffered <= limit + 37, "{} bytes buffered", buffered);
                prop_assert!(ahead <= events, "{} events ahead", ahead);
                prop_assert!(ahead_bytes <= 2 * limit + 37, "{} bytes ahead", ahead_bytes);
            }
            for _ in 0..polls[step % polls.len()] {
                if let Some(event) = ep.poll_event() {
                    got.push(event);
                }
            }
            if !ep.wants_input() {
                // A full read-ahead: the owner must receive for reading to go on.
                got.extend(ep.poll_event());
            }
            step += 1;
        }
        ep.handle_eof(now);
        got.extend(std::iter::from_fn(|| ep.poll_event()));
        let got: Vec<Option<String>> = got
            .into_iter()
            .filter(|e| !matches!(e, Event::Disconnected(_)))
            .map(|e| match e {
                Event::Message(Message::Notification(n)) => Some(n.method),
                _ => None,
            })
            .collect();
        // Lines near the limit may go either way on the exact byte count; compare those that
        // are clearly within it.
        prop_assert_eq!(got.len(), expected.len());
        for (got, expected) in got.iter().zip(&expected) {
            if expected.is_some() {
                prop_assert_eq!(got, expected);
            }
        }
    }
}
