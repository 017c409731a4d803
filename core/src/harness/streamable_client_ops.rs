//! The `streamable_client_ops` target: a Streamable HTTP client under arbitrary messages,
//! responses, events, bodies, failures, closes and timeouts.

use std::time::Instant;

use super::{arbitrary_time, Reader};
use crate::streamable::{modern, Client, Event, Exchange, Method, Read, ResponseHead};

/// Drives one client the way an adapter does (handing it a message only while it wants one) and
/// checks after every step:
///
/// - the session ends at most once, and after its end nothing more is asked or said;
/// - a `DELETE` always names the session it ends;
/// - after `handle_timeout(now)` no deadline is at or before `now`;
/// - a POST mirrors its body in headers exactly when the body names a modern version in its
///   `_meta`, and then carries no session and no negotiated version;
/// - a client that was only ever sent modern messages never ends the session before it is
///   closed, whatever the server answers.
///
/// Layout: operations, each an opcode byte (modulo 9) and its operands: 0 a message (an id
/// byte, then a kind byte: modulo 6, initialize, request, notification, answer, batch, or for
/// 5 by the byte divided by 6, modulo 4: garbage from a chunk, a modern request, a modern
/// notification, or a `notifications/cancelled` naming the id), 1 a response to an exchange asked for (a byte choosing it, a status byte, a session
/// byte, a content-type byte), 2 an event on an exchange (a flags byte choosing id, data and
/// retry, then their bytes), 3 a body (JSON with the initialize answer, or garbage), 4 a
/// stream's end, 5 a failure, 6 the connection closes its write side, 7 a timeout at a time,
/// 8 time passes to the deadline.
pub fn streamable_client_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let mut client = Client::new();
    let mut now = base;
    let mut exchanges: Vec<Exchange> = Vec::new();
    let mut ended = false;
    // Whether anything but a modern request or notification was ever handed in, and whether
    // the connection closed: until then, a modern-only client never ends.
    let mut legacy = false;
    let mut closed = false;
    while !r.is_empty() {
        let pick = |r: &mut Reader<'_>, exchanges: &[Exchange]| {
            let index = usize::from(r.u8());
            exchanges.get(index % exchanges.len().max(1)).copied()
        };
        match r.u8() % 9 {
            0 => {
                let id = r.u8();
                let kind = r.u8();
                let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#;
                let line = match (kind % 6, kind / 6 % 4) {
                    (0, _) => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize"}}"#),
                    (1, _) => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call"}}"#),
                    (2, _) => {
                        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned()
                    }
                    (3, _) => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
                    (4, _) => format!(r#"[{{"jsonrpc":"2.0","id":{id},"method":"a"}}]"#),
                    (_, 1) => format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"é{id}",{meta}}}}}"#
                    ),
                    (_, 2) => {
                        format!(
                            r#"{{"jsonrpc":"2.0","method":"notifications/x","params":{{{meta}}}}}"#
                        )
                    }
                    (_, 3) => format!(
                        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id}}}}}"#
                    ),
                    _ => String::from_utf8_lossy(r.chunk()).into_owned(),
                };
                if client.wants_message() {
                    legacy |= !(kind % 6 == 5 && matches!(kind / 6 % 4, 1 | 2));
                    client.handle_message(line.as_bytes(), now);
                }
            }
            1 => {
                if let Some(exchange) = pick(&mut r, &exchanges) {
                    let status = [200, 202, 400, 401, 404, 405, 500][usize::from(r.u8() % 7)];
                    let session_id =
                        [None, Some(&b"s1"[..]), Some(&b"s2"[..])][usize::from(r.u8() % 3)];
                    let content_type = [None, Some("application/json"), Some("text/event-stream")]
                        [usize::from(r.u8() % 3)];
                    let head = ResponseHead {
                        status,
                        reason: None,
                        session: session_id,
                        content_type,
                    };
                    let read = client.handle_response(exchange, head, now);
                    if matches!(read, Read::Nothing) {
                        exchanges.retain(|e| *e != exchange);
                    }
                }
            }
            2 => {
                if let Some(exchange) = pick(&mut r, &exchanges) {
                    let flags = r.u8();
                    let id = format!("0-{}", r.u8());
                    let data = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, r.u8());
                    let event = Event {
                        id: (flags & 1 == 1).then_some(id.as_str()),
                        data: (flags & 2 == 2).then_some(data.as_str()),
                        retry: (flags & 4 == 4).then_some(u64::from(r.u16())),
                    };
                    client.handle_event(exchange, event, now);
                }
            }
            3 => {
                if let Some(exchange) = pick(&mut r, &exchanges) {
                    let body = if r.u8() % 2 == 0 {
                        format!(
                            r#"{{"jsonrpc":"2.0","id":{},"result":{{"protocolVersion":"2025-06-18"}}}}"#,
                            r.u8()
                        )
                        .into_bytes()
                    } else {
                        r.chunk().to_vec()
                    };
                    client.handle_body(exchange, &body, now);
                }
            }
            4 => {
                if let Some(exchange) = pick(&mut r, &exchanges) {
                    client.handle_end(exchange, now);
                }
            }
            5 => {
                if let Some(exchange) = pick(&mut r, &exchanges) {
                    client.handle_failure(exchange, "failed", now);
                }
            }
            6 => {
                closed = true;
                client.handle_close(now);
            }
            7 => {
                now = now.max(arbitrary_time(base, &mut r));
                client.handle_timeout(now);
                assert!(
                    client.poll_timeout().is_none_or(|at| at > now),
                    "a deadline at or before now after handle_timeout"
                );
            }
            _ => {
                if let Some(at) = client.poll_timeout() {
                    now = now.max(at);
                    client.handle_timeout(now);
                }
            }
        }
        while let Some(request) = client.poll_request() {
            assert!(!ended, "a request after the end: {request:?}");
            // A server may keep no sessions at all (it names none), so a `GET` that resumes a
            // stream may go without one; a `DELETE` only ever ends one.
            if request.method == Method::Delete {
                assert!(request.session.is_some(), "no session: {request:?}");
            }
            let body = serde_json::from_slice::<serde_json::Value>(&request.body).ok();
            let version = body
                .as_ref()
                .and_then(|b| modern::meta_version(b.get("params")));
            let is_modern = request.method == Method::Post
                && body.as_ref().is_some_and(|b| b.get("method").is_some())
                && version.is_some_and(|v| modern::VERSIONS.contains(&v));
            assert_eq!(is_modern, !request.mirrored.is_empty(), "{request:?}");
            if is_modern {
                assert_eq!(request.session, None, "{request:?}");
                assert_eq!(request.protocol_version, None, "{request:?}");
            }
            exchanges.push(request.exchange);
        }
        while client.poll_message().is_some() {
            assert!(!ended, "a message after the end");
        }
        while client.poll_warning().is_some() {}
        if client.poll_end().is_some() {
            assert!(!ended, "the session ended twice");
            assert!(legacy || closed, "a modern-only client ended unclosed");
            ended = true;
        }
        if ended {
            assert!(client.is_ended());
            exchanges.retain(|e| client.wants(*e));
            assert!(
                exchanges.is_empty(),
                "an exchange still wanted after the end"
            );
        }
        exchanges.retain(|e| client.wants(*e));
    }
}
