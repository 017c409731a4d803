//! The `streamable_ops` target: a Streamable HTTP session under arbitrary requests, program
//! messages, reads, disconnections and timeouts.

use std::time::Instant;

use serde_json::json;

use super::{arbitrary_duration, arbitrary_message, arbitrary_time, Reader};
use crate::streamable::{Post, Reply, Session, Settings, Sink, Take, ToChild};
use crate::{Id, Message, Notification, Request, Response};

/// Drives one session the way an adapter does (reading the program only while the session
/// wants its output) and checks after every step:
///
/// - the events kept grow past the buffer only by what one message of the program adds while
///   the session still wanted it (reading then stops until readers catch up), or by the
///   answers to unanswered requests when the session ends; no other step makes them grow;
/// - a reader that ended never gets data again, and the event ids one reader takes increase;
/// - after `handle_timeout(now)` no deadline is at or before `now`;
/// - once the session is over, every request is answered 404; the program is told to close at
///   most once, and is sent nothing after that or after its end;
/// - every status is one the transport documents.
///
/// Layout: a buffer size (2 bytes), an idle timeout (a duration), a stream limit (1 byte);
/// then operations, each an opcode byte (modulo 10) and its operands: 0 a POST (a count of
/// messages, modulo 4, each a small request, notification or response; then a byte whose bits
/// choose events and a batch), 1 a GET (a byte: a plain GET, the id of the last event taken,
/// or some text), 2 a DELETE, 3 the owner closes it, 4 a message from the program (a response
/// to a request posted, a progress notification, or an arbitrary message), 5 the program ends,
/// 6 a take from a reader (a byte choosing it), 7 a reader detaches, 8 a timeout at a time, 9
/// time passes to the deadline.
pub fn streamable_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let buffer = usize::from(r.u16());
    let idle = arbitrary_duration(&mut r);
    let max_streams = usize::from(r.u8() % 8);
    let settings = Settings::default()
        .buffer(buffer)
        .idle_timeout(Some(idle))
        .max_streams(max_streams);
    let mut session = Session::new(settings, base);
    let mut now = base;
    let mut readers: Vec<(Sink, bool, u64)> = Vec::new();
    let mut posted: Vec<Id> = Vec::new();
    let mut last_event: Option<String> = None;
    let mut closed_once = false;
    let mut child_ended = false;
    while !r.is_empty() {
        let op = r.u8() % 10;
        let was_open = session.is_open();
        let kept_before = session.kept();
        // What this step may add past the buffer.
        let mut allowance = 0;
        let reply = match op {
            0 => {
                let n = r.u8() % 4;
                let messages: Vec<Message> = (0..n)
                    .map(|_| {
                        let id = Id::from(u64::from(r.u8() % 8));
                        match r.u8() % 3 {
                            0 => {
                                let token = json!({"_meta": {"progressToken": r.u8() % 4}});
                                Request::new(id, "call", Some(token)).into()
                            }
                            1 => Notification::new("note", None).into(),
                            _ => Response::success(id, json!(null)).into(),
                        }
                    })
                    .collect();
                let flags = r.u8();
                for message in &messages {
                    if let Message::Request(request) = message {
                        posted.push(request.id.clone());
                    }
                }
                let post = Post {
                    messages,
                    batch: flags & 1 == 1,
                    sse: flags & 2 == 2,
                };
                Some(session.handle_post(post, now))
            }
            1 => {
                let id = match r.u8() % 3 {
                    0 => None,
                    1 => last_event.clone(),
                    _ => Some(r.text()),
                };
                Some(session.handle_get(id.as_deref(), now))
            }
            2 => Some(session.handle_delete(now)),
            3 => {
                session.close(now);
                None
            }
            4 => {
                if session.wants_child_output() {
                    let message = match r.u8() % 3 {
                        0 => {
                            let index = usize::from(r.u8());
                            let id = posted
                                .get(index % posted.len().max(1))
                                .cloned()
                                .unwrap_or(Id::Null);
                            Response::success(id, json!("answer")).into()
                        }
                        1 => Notification::new(
                            "notifications/progress",
                            Some(json!({"progressToken": r.u8() % 4})),
                        )
                        .into(),
                        _ => arbitrary_message(&mut r),
                    };
                    allowance = event_bytes(&message);
                    session.handle_child(message, now);
                }
                None
            }
            5 => {
                session.handle_child_end(now);
                child_ended = true;
                None
            }
            6 => {
                let index = usize::from(r.u8());
                if !readers.is_empty() {
                    let count = readers.len();
                    let (sink, ended, last_seq) = &mut readers[index % count];
                    match session.take(*sink) {
                        Take::Data(bytes) => {
                            assert!(!*ended, "data after the end");
                            let text = String::from_utf8_lossy(&bytes);
                            if let Some(id) = text.strip_prefix("id: ") {
                                let id = id.split('\n').next().unwrap_or_default().to_owned();
                                let seq: u64 = id
                                    .split_once('-')
                                    .and_then(|(_, seq)| seq.parse().ok())
                                    .expect("an event id is STREAM-SEQ");
                                assert!(seq > *last_seq, "event ids go back: {id}");
                                *last_seq = seq;
                                last_event = Some(id);
                            }
                        }
                        Take::End => *ended = true,
                        Take::Wait => assert!(!*ended, "waiting after the end"),
                    }
                }
                None
            }
            7 => {
                let index = usize::from(r.u8());
                if !readers.is_empty() {
                    let (sink, _, _) = readers.remove(index % readers.len());
                    session.detach(sink, now);
                }
                None
            }
            8 => {
                now = now.max(arbitrary_time(base, &mut r));
                session.handle_timeout(now);
                assert!(
                    session.poll_timeout().is_none_or(|at| at > now),
                    "a deadline at or before now after handle_timeout"
                );
                None
            }
            _ => {
                if let Some(at) = session.poll_timeout() {
                    now = now.max(at);
                    session.handle_timeout(now);
                    assert!(!session.is_open(), "still open at its idle deadline");
                }
                None
            }
        };
        match reply {
            Some(Reply::Stream { sink, .. }) => {
                assert!(was_open, "a stream from a session that was over");
                readers.push((sink, false, 0));
            }
            Some(Reply::Status(status)) => {
                if !was_open {
                    assert_eq!(status.code, 404, "a session that was over");
                }
                assert!(
                    [200, 202, 400, 404, 429].contains(&status.code),
                    "status {}",
                    status.code
                );
            }
            None => {}
        }
        while let Some(work) = session.poll_child() {
            assert!(!child_ended, "work for a program that has ended");
            match work {
                ToChild::Close => {
                    assert!(!closed_once, "closed twice");
                    closed_once = true;
                }
                ToChild::Message(_) => assert!(!closed_once, "a message after the close"),
            }
        }
        // Ending answers what is pending, once: allowed to grow, as the documentation says.
        if !matches!(op, 2 | 3 | 5 | 8 | 9) {
            assert!(
                session.kept() <= kept_before.max(buffer) + allowance,
                "kept {} from {kept_before} over the buffer {buffer} (op {op})",
                session.kept()
            );
        }
    }
}

/// At most what the session's events for `message` take: each message a batch holds (nested
/// ones included, which the session flattens) as JSON, plus room for the event's id and lines.
fn event_bytes(message: &Message) -> usize {
    match message {
        Message::Batch(items) => items.iter().map(event_bytes).sum(),
        single => serde_json::to_vec(single).map_or(0, |json| json.len()) + 96,
    }
}
