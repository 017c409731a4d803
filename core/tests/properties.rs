//! Property tests: chunking never changes events, the end comes exactly once, memory stays
//! bounded, and the supervisor never kills early and always kills once.

mod common;

use std::time::{Duration, Instant};

use common::{content_length, feed, lines};
use proptest::prelude::*;
use tether_core::{Action, Connection, Event, ExitStatus, Message, Policy, Supervisor};

/// Pieces that exercise every framing path when strung together.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0..50usize)
            .prop_map(|i| format!("{{\"jsonrpc\":\"2.0\",\"method\":\"n{i}\"}}\n").into_bytes()),
        (0..50usize).prop_map(|i| format!("{{\"id\":{i},\"result\":[{i}]}}\r\n").into_bytes()),
        Just(b"\n".to_vec()),
        Just(b"  \r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"{\"id\":true,\"method\":\"x\"}\n".to_vec()),
        Just(b"\xff\xfe\n".to_vec()),
        (1..300usize).prop_map(|n| vec![b'z'; n]),
        (0..40usize).prop_map(|i| {
            let body = format!("{{\"method\":\"c{i}\"}}");
            format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
        }),
        Just(b"Content-Length: 999999\r\n\r\n".to_vec()),
        Just(b"Content-Length: x\r\n\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(piece(), 0..30).prop_map(|pieces| pieces.concat())
}

/// Splits `input` at the given (sorted, deduplicated) points.
fn split<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut last = 0;
    for p in points {
        chunks.push(&input[last..p]);
        last = p;
    }
    chunks.push(&input[last..]);
    chunks
}

fn check_end(events: &[Event<Message>]) -> Result<(), TestCaseError> {
    let ends = events
        .iter()
        .filter(|e| matches!(e, Event::Disconnected(_)))
        .count();
    prop_assert_eq!(ends, 1);
    prop_assert!(matches!(events.last(), Some(Event::Disconnected(None))));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn line_events_do_not_depend_on_chunking(
        input in input(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        limit in 1..200usize,
    ) {
        let whole = feed(lines(limit), &[&input]);
        check_end(&whole)?;
        prop_assert_eq!(feed(lines(limit), &split(&input, &cuts)), whole);
    }

    #[test]
    fn content_length_events_do_not_depend_on_chunking(
        input in input(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        limit in 1..200usize,
    ) {
        let whole = feed(content_length(limit), &[&input]);
        check_end(&whole)?;
        prop_assert_eq!(feed(content_length(limit), &split(&input, &cuts)), whole);
    }

    #[test]
    fn buffered_input_stays_within_the_limit_plus_one_chunk(
        input in input(),
        chunk in 1..64usize,
        limit in 1..200usize,
        lsp in any::<bool>(),
    ) {
        let config = if lsp { content_length(limit) } else { lines(limit) };
        let bound = limit.max(tether_core::framing::MAX_HEADER) + chunk;
        let mut conn = Connection::<Message>::new(config).unwrap();
        for piece in input.chunks(chunk) {
            while conn.poll_event().is_some() {}
            prop_assert!(conn.buffered() <= bound);
            conn.handle_input(piece).unwrap();
            prop_assert!(conn.buffered() <= bound);
        }
    }

    #[test]
    fn the_supervisor_never_kills_early_and_always_kills_once(
        grace_ms in prop::option::of(0..5000u64),
        term_ms in prop::option::of(0..5000u64),
        ops in prop::collection::vec((0..3u8, -3000i64..6000), 0..40),
    ) {
        let policy = Policy {
            close_stdin: grace_ms.map(Duration::from_millis),
            terminate: term_ms.map(Duration::from_millis),
        };
        #[allow(clippy::disallowed_methods, reason = "one base instant for virtual time")]
        let base = Instant::now() + Duration::from_secs(10);
        let mut s = Supervisor::new(policy);
        let mut latest: Option<Instant> = None;
        let mut last_step: Option<(Action, Instant)> = None;
        let mut kills = 0;
        let mut exited = false;
        let mut requested = false;
        for (op, offset) in ops {
            let now = if offset >= 0 {
                base + Duration::from_millis(offset as u64)
            } else {
                base - Duration::from_millis(offset.unsigned_abs())
            };
            let done_before = s.is_done();
            match op {
                0 => { s.request_shutdown(now); requested = true; }
                1 => { s.handle_exit(now, ExitStatus { code: Some(1), signal: None }); exited = true; }
                _ => s.handle_timeout(now),
            }
            let latest = *latest.insert(latest.map_or(now, |l| l.max(now)));
            while let Some(action) = s.poll_action() {
                prop_assert!(!done_before, "an action after done");
                // A step that follows a polite one waits out that step's grace, unless the
                // child has exited.
                if let Some((prev, at)) = last_step {
                    let grace = match prev {
                        Action::CloseStdin => policy.close_stdin,
                        Action::TerminateGroup => policy.terminate,
                        Action::KillGroup | Action::KillDescendants { .. } => {
                            return Err(TestCaseError::fail("an action after the kill"));
                        }
                    };
                    if !exited {
                        prop_assert!(latest >= at + grace.unwrap(), "{action:?} came early");
                    }
                }
                prop_assert!(requested || exited, "an action before any reason");
                if action == Action::KillGroup { kills += 1; }
                last_step = Some((action, latest));
            }
            if let Some(deadline) = s.poll_timeout() {
                prop_assert!(deadline > latest, "a deadline in the past");
            }
        }
        prop_assert!(kills <= 1);
        if exited {
            prop_assert_eq!(kills, 1);
            prop_assert!(s.is_done());
        }
    }
}
