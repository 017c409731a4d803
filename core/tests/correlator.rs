//! The correlator in virtual time: every tracked request completes exactly once.

use std::time::{Duration, Instant};

use serde_json::json;
use tether_core::{Completion, Correlator, ErrorObject, Id, Response, RpcError};

#[allow(
    clippy::disallowed_methods,
    reason = "one base instant; the tests then add to it"
)]
fn t0() -> Instant {
    Instant::now()
}

fn completions(c: &mut Correlator) -> Vec<Completion> {
    std::iter::from_fn(|| c.poll_completion()).collect()
}

#[test]
fn responses_in_any_order_complete_their_own_requests() {
    let t = t0();
    let mut c = Correlator::new();
    let ids: Vec<Id> = (0..3)
        .map(|i| c.request(t, "m", Some(json!([i])), None).unwrap().id)
        .collect();
    assert_eq!(ids, [Id::from(1), Id::from(2), Id::from(3)]);
    assert_eq!(c.pending(), 3);
    assert_eq!(c.handle_response(Response::success(3, json!("c"))), None);
    assert_eq!(
        c.handle_response(Response::error(1, ErrorObject::new(-1, "no"))),
        None
    );
    assert_eq!(
        completions(&mut c),
        [
            Completion {
                id: Id::from(3),
                result: Ok(json!("c"))
            },
            Completion {
                id: Id::from(1),
                result: Err(RpcError::Response(ErrorObject::new(-1, "no")))
            },
        ]
    );
    assert!(c.is_pending(&Id::from(2)));
    assert!(!c.is_pending(&Id::from(1)));
}

#[test]
fn a_response_nobody_asked_for_is_handed_back() {
    let t = t0();
    let mut c = Correlator::new();
    let request = c.request(t, "m", None, None).unwrap();
    for stray in [
        Response::success(99, json!(1)),
        Response::success("1", json!(1)),
        Response::success(Id::Null, json!(1)),
    ] {
        assert_eq!(c.handle_response(stray.clone()), Some(stray));
    }
    // Answered twice: the second is unmatched.
    assert_eq!(
        c.handle_response(Response::success(request.id.clone(), json!(1))),
        None
    );
    let again = Response::success(request.id, json!(2));
    assert_eq!(c.handle_response(again.clone()), Some(again));
    assert_eq!(completions(&mut c).len(), 1);
}

#[test]
fn a_disconnect_fails_every_pending_request_at_once() {
    let t = t0();
    let mut c = Correlator::new();
    for _ in 0..5 {
        c.request(t, "m", None, Some(Duration::from_secs(1)))
            .unwrap();
    }
    c.handle_disconnect();
    let done = completions(&mut c);
    assert_eq!(done.len(), 5);
    assert!(done.iter().all(|d| d.result == Err(RpcError::Disconnected)));
    assert_eq!(c.pending(), 0);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(
        c.request(t, "late", None, None).unwrap_err(),
        RpcError::Disconnected
    );
}

#[test]
fn deadlines_expire_in_virtual_time() {
    let t = t0();
    let mut c = Correlator::new();
    let slow = c
        .request(t, "slow", None, Some(Duration::from_secs(5)))
        .unwrap()
        .id;
    let fast = c
        .request(t, "fast", None, Some(Duration::from_secs(1)))
        .unwrap()
        .id;
    let open = c.request(t, "open", None, None).unwrap().id;
    assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(1)));
    c.handle_timeout(t + Duration::from_millis(999));
    assert!(completions(&mut c).is_empty());
    c.handle_timeout(t + Duration::from_secs(1));
    assert_eq!(
        completions(&mut c),
        [Completion {
            id: fast.clone(),
            result: Err(RpcError::TimedOut)
        }]
    );
    // A late answer to the timed-out request is unmatched.
    assert!(c
        .handle_response(Response::success(fast, json!(1)))
        .is_some());
    // Time going backwards changes nothing.
    c.handle_timeout(t);
    assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(5)));
    c.handle_timeout(t + Duration::from_secs(60));
    assert_eq!(completions(&mut c)[0].id, slow);
    assert!(c.is_pending(&open));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn cancellation_completes_once() {
    let t = t0();
    let mut c = Correlator::new();
    let id = c
        .request(t, "m", None, Some(Duration::from_secs(1)))
        .unwrap()
        .id;
    assert!(c.cancel(&id));
    assert!(!c.cancel(&id));
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(
        completions(&mut c),
        [Completion {
            id: id.clone(),
            result: Err(RpcError::Cancelled)
        }]
    );
    assert!(c.handle_response(Response::success(id, json!(1))).is_some());
}

#[test]
fn caller_chosen_ids_are_tracked_and_never_reused() {
    let t = t0();
    let mut c = Correlator::new();
    c.track(t, Id::from("a"), None).unwrap();
    c.track(t, Id::from(1), None).unwrap();
    assert!(
        c.track(t, Id::from(1u64), None).is_err(),
        "1 and 1u64 are the same id"
    );
    // The allocator steps over an id the caller already uses.
    assert_eq!(c.request(t, "m", None, None).unwrap().id, Id::from(2));
    assert_eq!(c.handle_response(Response::success("a", json!(0))), None);
    assert_eq!(c.pending(), 2);
}

#[test]
fn a_refused_duplicate_leaves_the_first_request_as_it_was() {
    let t = t0();
    let mut c = Correlator::new();
    c.track(t, Id::from(7), Some(Duration::from_secs(5)))
        .unwrap();
    // The same id again, with a sooner deadline: refused, and its deadline is not kept.
    assert!(c
        .track(t, Id::from(7), Some(Duration::from_secs(1)))
        .is_err());
    assert_eq!(c.pending(), 1);
    assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(5)));
    c.handle_timeout(t + Duration::from_secs(5));
    assert_eq!(
        completions(&mut c),
        [Completion {
            id: Id::from(7),
            result: Err(RpcError::TimedOut)
        }]
    );
    assert_eq!(c.poll_timeout(), None);
}
