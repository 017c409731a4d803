//! The `gateway_ops` target: a bridge's gateway under arbitrary connections, requests,
//! bodies, websocket messages, program starts, messages and ends, stops and timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{arbitrary_message, arbitrary_time, Reader};
use crate::gateway::{
    Body, BodyError, BodyId, Config, ConnId, Gateway, Order, ProgramId, Request, RequestId,
};
use crate::streamable::{Settings, Take};
use crate::ExitStatus;

/// A modern request (MCP 2026-07-28), served by the pool.
const MODERN: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

/// Drives one gateway the way an adapter does (reading clients and programs only while the
/// gateway wants them) and checks after every step:
///
/// - a request's response is handed out at most once;
/// - after `handle_timeout(now)` no deadline is at or before `now`;
/// - queues stay within the relay bound, sessions within the limit, and a stopped gateway
///   that is finished holds no program;
/// - once stopping, a new connection is dropped and no program is asked for;
/// - every status is a real HTTP status.
///
/// Layout: a session limit (1 byte, modulo 8), a relay bound (1 byte, modulo 8), a token flag
/// (1 byte: odd for a token); then operations, each an opcode byte (modulo 16) and its
/// operands: 0 accept, 1 a request (a connection byte, a kind byte choosing the method, path
/// and headers, a byte adding a session id or the modern mirrored headers), 2 a body (a
/// request byte, a kind byte: whole, too large, failed, a modern request; then a chunk), 3 a take of a response (a request byte), 4 a take from a body (a body byte), 5 a
/// body dropped, 6 a websocket opened (a connection byte), 7 a client message (a connection
/// byte, a message), 8 a connection closed, 9 a start carried out (a byte: odd fails), 10 a
/// program message (a program byte, a message), 11 a program ends, 12 a program's outputs
/// taken, 13 a client's outputs taken, 14 stop, 15 a timeout at a time.
pub fn gateway_ops(data: &[u8], base: Instant) {
    let mut r = Reader::new(data);
    let max = usize::from(r.u8() % 8);
    let relay = usize::from(r.u8() % 8).max(1);
    let token = (r.u8() % 2 == 1).then(|| "t".to_owned());
    let config = Config::default()
        .token(token)
        .listen(SocketAddr::from(([127, 0, 0, 1], 80)))
        .max_connections(max)
        .relay_queue(relay)
        .max_body(256)
        .handshake_timeout(Duration::from_secs(5))
        .session(
            Settings::default()
                .buffer(512)
                .idle_timeout(Some(Duration::from_secs(30))),
        );
    let mut gw = Gateway::new(config);
    let mut now = base;
    let peer = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut conns: Vec<ConnId> = Vec::new();
    let mut requests: Vec<RequestId> = Vec::new();
    let mut taken: Vec<RequestId> = Vec::new();
    let mut bodies: Vec<BodyId> = Vec::new();
    let mut programs: Vec<ProgramId> = Vec::new();
    let mut pending_starts = Vec::new();
    let pick = |r: &mut Reader<'_>, n: usize| usize::from(r.u8()) % n.max(1);
    while !r.is_empty() {
        let op = r.u8() % 16;
        match op {
            0 => conns.push(gw.handle_accept(peer, now)),
            1 if !conns.is_empty() => {
                let conn = conns[pick(&mut r, conns.len())];
                let kind = r.u8();
                let method = ["GET", "POST", "DELETE", "OPTIONS", "PUT"][usize::from(kind % 5)];
                let path = ["/mcp", "/healthz", "/", "/mcp?token=t"][usize::from(kind / 5 % 4)];
                let mut headers = vec![
                    ("host".to_owned(), "127.0.0.1:80".to_owned()),
                    ("content-type".to_owned(), "application/json".to_owned()),
                    (
                        "accept".to_owned(),
                        "application/json, text/event-stream".to_owned(),
                    ),
                ];
                if kind & 0x40 != 0 {
                    headers.push(("authorization".into(), "Bearer t".into()));
                }
                if kind & 0x80 != 0 {
                    headers.push(("upgrade".into(), "websocket".into()));
                }
                let extra = r.u8();
                if extra % 4 == 0 {
                    headers.push(("mcp-session-id".into(), "s".into()));
                }
                if extra & 0x10 != 0 {
                    headers.push(("mcp-protocol-version".into(), "2026-07-28".into()));
                    headers.push(("mcp-method".into(), "tools/list".into()));
                }
                requests.push(gw.handle_request(conn, Request::new(method, path, headers), now));
            }
            2 if !requests.is_empty() => {
                let request = requests[pick(&mut r, requests.len())];
                let body = match r.u8() % 4 {
                    0 => Ok(r.chunk().to_vec()),
                    1 => Err(BodyError::TooLarge),
                    2 => Err(BodyError::Failed),
                    _ => Ok(MODERN.to_vec()),
                };
                let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#;
                let body = body.map(|b| if b.is_empty() { init.to_vec() } else { b });
                gw.handle_body(request, body, now, || Some("s".to_owned()));
            }
            3 if !requests.is_empty() => {
                let request = requests[pick(&mut r, requests.len())];
                if let Some(response) = gw.take_response(request) {
                    assert!(!taken.contains(&request), "a response handed out twice");
                    taken.push(request);
                    assert!((100..600).contains(&response.status), "{response:?}");
                    if let Body::Stream(body) = response.body {
                        bodies.push(body);
                    }
                }
            }
            4 if !bodies.is_empty() => {
                let body = bodies[pick(&mut r, bodies.len())];
                let _: Take = gw.take_body(body);
            }
            5 if !bodies.is_empty() => {
                let at = pick(&mut r, bodies.len());
                gw.handle_body_dropped(bodies.remove(at), now);
            }
            6 if !conns.is_empty() => gw.handle_ws_open(conns[pick(&mut r, conns.len())], now),
            7 if !conns.is_empty() => {
                let conn = conns[pick(&mut r, conns.len())];
                let message = arbitrary_message(&mut r);
                if gw.wants_client_input(conn) {
                    gw.handle_client_message(conn, message, now);
                }
            }
            8 if !conns.is_empty() => {
                let at = pick(&mut r, conns.len());
                gw.handle_closed(conns.remove(at), now);
            }
            9 => {
                while let Some(start) = gw.poll_start() {
                    pending_starts.push(start.program);
                }
                if !pending_starts.is_empty() {
                    let program = pending_starts.remove(0);
                    let ok = r.u8() % 2 == 0;
                    gw.handle_started(program, if ok { Ok(()) } else { Err("no".into()) }, now);
                    if ok {
                        programs.push(program);
                    }
                }
            }
            10 if !programs.is_empty() => {
                let program = programs[pick(&mut r, programs.len())];
                let message = arbitrary_message(&mut r);
                if gw.wants_program_output(program) {
                    gw.handle_program_message(program, message, now);
                }
            }
            11 if !programs.is_empty() => {
                let at = pick(&mut r, programs.len());
                let status = ExitStatus {
                    code: Some(i32::from(r.u8())),
                    signal: None,
                };
                gw.handle_program_end(programs.remove(at), Some(status), now);
            }
            12 if !programs.is_empty() => {
                let program = programs[pick(&mut r, programs.len())];
                while gw.poll_program(program).is_some() {}
            }
            13 if !conns.is_empty() => {
                let conn = conns[pick(&mut r, conns.len())];
                while gw.poll_client(conn).is_some() {}
            }
            14 => {
                gw.handle_stop(now);
                let late = gw.handle_accept(peer, now);
                assert_eq!(gw.connection(late), Order::Drop);
                gw.handle_closed(late, now);
            }
            15 => {
                now = arbitrary_time(base, &mut r).max(now);
                gw.handle_timeout(now);
                if let Some(at) = gw.poll_timeout() {
                    assert!(at > now, "a deadline left at or before now");
                }
            }
            _ => {}
        }
        let footprint = gw.footprint();
        assert!(footprint.longest_queue <= relay + 1, "{footprint:?}");
        assert!(gw.active() <= max, "{} sessions over {max}", gw.active());
        // The sessions' programs, and the one pool program of modern requests.
        assert!(footprint.programs <= max + 1, "{footprint:?}");
        if gw.is_finished() {
            assert_eq!(footprint.programs, 0);
        }
    }
}
