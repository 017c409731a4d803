//! `tether bridge`'s MCP endpoint at the HTTP level, with hyper as the client and the built-in
//! peer as the program: every refusal and its status, JSON answers and batches, events with
//! ids, the client's address, `DELETE`, and the bridge's stop ending every HTTP session's
//! program. The official SDKs' clients are in `streamable.rs`.
#![allow(
    clippy::disallowed_methods,
    reason = "the tests bound their waits with the real clock; the command itself reads none"
)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::Request;
use serde_json::{json, Value};
use tether_cli::hyper_io::HyperIo;
use tether_io::Runtime;
use tether_tokio::Tokio;

const RUNTIMES: [&str; 2] = ["tokio", "smol"];
const TOKEN: &str = "correct-horse";
const JSON: &str = "application/json";
const BOTH: &str = "application/json, text/event-stream";

/// A running bridge, killed if a test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bridge in front of the built-in peer, with a known token and the extra flags; its address.
fn bridge(runtime: &str, extra: &[&str]) -> (Running, String, tempfile_path::Path) {
    let token = tempfile_path::Path::new("token", TOKEN);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["bridge", "--runtime", runtime, "--grace", "300"])
        .args(["--token-file", token.as_str()])
        .args(extra)
        .args(["--", env!("CARGO_BIN_EXE_tether"), "peer"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let listening = support::listening(&mut child);
    let addr = listening["addr"].as_str().unwrap().to_owned();
    assert_eq!(listening["mcp_url"], format!("http://{addr}/mcp"));
    (Running(child), addr, token)
}

/// A file that holds a text and is removed when dropped.
mod tempfile_path {
    pub(crate) struct Path(std::path::PathBuf);

    impl Path {
        pub(crate) fn new(name: &str, text: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "tether-mcp-http-{}-{name}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::write(&path, format!("{text}\n")).unwrap();
            Path(path)
        }

        pub(crate) fn as_str(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn session(&self) -> String {
        self.headers["mcp-session-id"].to_str().unwrap().to_owned()
    }

    /// The events of an event-stream body: (id, message).
    fn events(&self) -> Vec<(String, Value)> {
        self.body
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|event| {
                let field = |name: &str| {
                    event
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or_else(|| panic!("no {name} in {event:?}"))
                };
                let data = serde_json::from_str(field("data: ")).unwrap();
                (field("id: ").to_owned(), data)
            })
            .collect()
    }
}

/// One request on a connection of its own; the whole body is read.
fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = Tokio::connect_tcp(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(HyperIo(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder().method(method).uri(path);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request = request.header("host", addr);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
}

/// A POST to `/mcp` with the token, the session (if any) and what the client accepts.
fn post(addr: &str, session: Option<&str>, accept: &str, body: &Value) -> Reply {
    let bearer = format!("Bearer {TOKEN}");
    let mut headers = vec![
        ("authorization", bearer.as_str()),
        ("content-type", JSON),
        ("accept", accept),
    ];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    send(addr, "POST", "/mcp", &headers, &body.to_string())
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}})
}

fn health(addr: &str) -> u64 {
    send(addr, "GET", "/healthz", &[], "").json()["connections"]
        .as_u64()
        .unwrap()
}

/// Waits (bounded) until `condition` holds.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gone(pid: u64) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn stop(mut bridge: Running) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(bridge.0.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    eventually("the bridge stops", || {
        bridge.0.try_wait().unwrap().is_some()
    });
    assert!(bridge.0.wait().unwrap().success());
}

#[test]
fn every_refusal_has_its_status_and_starts_no_program() {
    for runtime in RUNTIMES {
        let (server, addr, _token) = bridge(
            runtime,
            &["--max-frame", "1000", "--allow-origin", "http://ok.example"],
        );
        let bearer = format!("Bearer {TOKEN}");
        let auth = ("authorization", bearer.as_str());
        let init = initialize().to_string();
        let json_post = [auth, ("content-type", JSON), ("accept", BOTH)];

        // A refused token: 401 with a challenge that names the scheme and no authorization
        // server to discover (no `resource_metadata`), and a JSON-RPC error that says what is
        // wrong and how to put it right.
        let unauthorized = send(&addr, "POST", "/mcp", &json_post[1..], &init);
        assert_eq!(unauthorized.status, 401, "{runtime}");
        assert_eq!(
            unauthorized.headers["www-authenticate"], "Bearer realm=\"tether\"",
            "{runtime}: no error for a request that offered no token (RFC 6750, 3.1)"
        );
        assert_eq!(unauthorized.headers["content-type"], JSON, "{runtime}");
        let error = unauthorized.json();
        assert_eq!(error["id"], Value::Null, "{runtime}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("missing bearer token: "), "{message}");
        assert!(
            message.contains("--header 'Authorization: Bearer TOKEN'"),
            "{message}"
        );
        for wrong in [
            "Bearer nope",
            "Bearer correct-horsf",
            "Basic Y29ycmVjdC1ob3JzZQ==",
        ] {
            let headers = [("authorization", wrong), json_post[1], json_post[2]];
            let refused = send(&addr, "POST", "/mcp", &headers, &init);
            assert_eq!(refused.status, 401, "{runtime} {wrong}");
            let message = refused.json()["error"]["message"]
                .as_str()
                .unwrap()
                .to_owned();
            let challenge = refused.headers["www-authenticate"].to_str().unwrap();
            if wrong.starts_with("Bearer") {
                assert!(message.starts_with("wrong bearer token: "), "{message}");
                assert!(
                    challenge.starts_with(
                        "Bearer realm=\"tether\", error=\"invalid_token\", error_description=\""
                    ),
                    "{runtime}: {challenge}"
                );
            } else {
                // Another scheme offers no bearer token.
                assert!(message.starts_with("missing bearer token: "), "{message}");
            }
            assert!(!challenge.contains("resource_metadata"), "{challenge}");
        }
        let query = send(&addr, "POST", "/mcp?token=nope", &json_post[1..], &init);
        assert!(query.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("wrong bearer token: "));
        let foreign = [auth, ("origin", "http://evil.example"), json_post[1]];
        let refused = send(&addr, "POST", "/mcp", &foreign, &init);
        assert_eq!(refused.status, 403);
        assert!(refused.headers.get("www-authenticate").is_none());
        assert!(refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("origin not allowed"));
        // What a client that goes looking for OAuth anyway is told.
        for path in [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-authorization-server",
            "/register",
        ] {
            let missing = send(&addr, "GET", path, &[], "");
            assert_eq!(missing.status, 404, "{runtime} {path}");
            assert!(missing.body.contains("bearer token"), "{}", missing.body);
            assert!(missing.body.contains("not OAuth"), "{}", missing.body);
        }

        let put = send(&addr, "PUT", "/mcp", &[auth], "");
        assert_eq!(put.status, 405);
        assert_eq!(put.headers["allow"], "GET, POST, DELETE");
        let text = [auth, ("content-type", "text/plain"), ("accept", BOTH)];
        assert_eq!(send(&addr, "POST", "/mcp", &text, &init).status, 415);
        let html = [auth, ("content-type", JSON), ("accept", "text/html")];
        assert_eq!(send(&addr, "POST", "/mcp", &html, &init).status, 406);
        let garbage = send(&addr, "POST", "/mcp", &json_post, "{not json");
        assert_eq!(garbage.status, 400);
        assert_eq!(garbage.json()["error"]["code"], -32700);
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert_eq!(post(&addr, None, BOTH, &list).status, 400);
        let unknown = post(&addr, Some("no-such-session"), BOTH, &list);
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.json()["error"]["message"], "session not found");
        let get = [auth, ("mcp-session-id", "no-such-session")];
        assert_eq!(send(&addr, "GET", "/mcp", &get, "").status, 404);
        assert_eq!(send(&addr, "DELETE", "/mcp", &get, "").status, 404);
        let big = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"pad": "x".repeat(2000)}});
        assert_eq!(post(&addr, None, BOTH, &big).status, 413);
        assert_eq!(send(&addr, "GET", "/elsewhere", &[auth], "").status, 404);

        // A browser page from an allowed origin: its preflight (no token) and its answers.
        let preflight = send(
            &addr,
            "OPTIONS",
            "/mcp",
            &[("origin", "http://ok.example")],
            "",
        );
        assert_eq!(preflight.status, 204);
        assert_eq!(
            preflight.headers["access-control-allow-origin"],
            "http://ok.example"
        );
        let evil = [("origin", "http://evil.example")];
        assert_eq!(send(&addr, "OPTIONS", "/mcp", &evil, "").status, 403);

        assert_eq!(health(&addr), 0, "{runtime}: a refusal started a program");
        stop(server);
    }
}

/// The status line's code of a websocket handshake sent by hand with `host` and `origin`.
fn handshake_status(addr: &str, host: &str, origin: Option<&str>) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!(
        "GET /?token={TOKEN} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = [0; 12];
    stream.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

/// What the official conformance suite's `dns-rebinding-protection` scenario checks, and what
/// the SDKs do: a page from the bridge's own loopback address passes, a foreign origin is
/// refused without any CORS header, and on a loopback listener a `Host` that names neither
/// loopback nor the listen address is refused (a rebound name), over HTTP and for a websocket.
#[test]
fn the_own_origin_passes_and_foreign_origins_and_hosts_are_refused() {
    for runtime in RUNTIMES {
        let (server, addr, _token) = bridge(runtime, &[]);
        let port = addr.rsplit_once(':').unwrap().1;
        let bearer = format!("Bearer {TOKEN}");
        let ask = |extra: &[(&str, &str)]| {
            let mut headers = vec![
                ("authorization", bearer.as_str()),
                ("content-type", JSON),
                ("accept", BOTH),
            ];
            headers.extend_from_slice(extra);
            send(&addr, "POST", "/mcp", &headers, &initialize().to_string())
        };
        for own in [
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
        ] {
            let answer = ask(&[("origin", &own)]);
            assert_eq!(answer.status, 200, "{runtime} {own}: {answer:?}");
            assert_eq!(answer.headers["access-control-allow-origin"], own.as_str());
            let session = answer.session();
            let ours = [
                ("authorization", bearer.as_str()),
                ("mcp-session-id", &session),
            ];
            assert_eq!(send(&addr, "DELETE", "/mcp", &ours, "").status, 200);
        }
        for foreign in [
            "http://evil.example",
            &format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1),
            "null",
        ] {
            let refused = ask(&[("origin", foreign)]);
            assert_eq!(refused.status, 403, "{runtime} {foreign}");
            assert!(
                refused.headers.get("access-control-allow-origin").is_none(),
                "{runtime} {foreign}: a refused origin is allowed to read the refusal"
            );
        }
        let rebound = ask(&[("host", &format!("rebound.example:{port}"))]);
        assert_eq!(rebound.status, 403, "{runtime}");
        assert!(rebound.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("host not allowed"));
        let local = ask(&[("host", &format!("localhost:{port}"))]);
        assert_eq!(local.status, 200, "{runtime}");
        let session = local.session();
        let ours = [
            ("authorization", bearer.as_str()),
            ("mcp-session-id", &session),
        ];
        assert_eq!(send(&addr, "DELETE", "/mcp", &ours, "").status, 200);
        assert_eq!(
            handshake_status(&addr, &format!("rebound.example:{port}"), None),
            403
        );
        assert_eq!(
            handshake_status(&addr, &addr, Some("http://evil.example")),
            403
        );
        assert_eq!(
            handshake_status(&addr, &addr, Some(&format!("http://localhost:{port}"))),
            101
        );
        eventually("every program is gone", || health(&addr) == 0);
        stop(server);
    }
}

#[test]
fn a_session_answers_in_json_or_events_and_ends_with_delete() {
    for runtime in RUNTIMES {
        let (server, addr, _token) = bridge(runtime, &[]);
        // The built-in peer knows no initialize: its error is the answer, as JSON.
        let first = post(&addr, None, JSON, &initialize());
        assert_eq!(first.status, 200, "{runtime}: {first:?}");
        assert_eq!(first.headers["content-type"], JSON);
        assert_eq!(first.json()["id"], 0);
        let session = first.session();
        assert_eq!(session.len(), 64, "256 random bits in hex: {session}");
        assert_eq!(health(&addr), 1);

        // A batch answered in JSON is an array; the program saw the client's address.
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "env", "params": {"name": "TETHER_CLIENT_ADDR"}},
            {"jsonrpc": "2.0", "method": "ignored"},
            {"jsonrpc": "2.0", "id": 2, "method": "echo", "params": ["two"]},
        ]);
        let answers = post(&addr, Some(&session), JSON, &batch).json();
        let answers = answers.as_array().unwrap();
        assert_eq!(answers.len(), 2, "{answers:?}");
        let by_id = |id: u64| answers.iter().find(|a| a["id"] == id).unwrap().clone();
        assert!(by_id(1)["result"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
        assert_eq!(by_id(2)["result"], json!(["two"]));

        // Notifications alone: 202.
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let accepted = post(&addr, Some(&session), BOTH, &note);
        assert_eq!(accepted.status, 202);
        assert_eq!(accepted.body, "");

        // As events: what the program says meanwhile comes first, then the answer, each with
        // an id, increasing.
        let notify = json!({"jsonrpc": "2.0", "id": 3, "method": "notify", "params": {"count": 3}});
        let streamed = post(&addr, Some(&session), BOTH, &notify);
        assert_eq!(streamed.headers["content-type"], "text/event-stream");
        let events = streamed.events();
        assert_eq!(events.len(), 4, "{events:?}");
        for (n, (_, message)) in events[..3].iter().enumerate() {
            assert_eq!(message["method"], "tick");
            assert_eq!(message["params"]["n"], n);
        }
        assert_eq!(events[3].1["result"]["sent"], 3);
        let seqs: Vec<u64> = events
            .iter()
            .map(|(id, _)| id.split_once('-').unwrap().1.parse().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

        let bearer = format!("Bearer {TOKEN}");
        let ours = [
            ("authorization", bearer.as_str()),
            ("mcp-session-id", &session),
        ];
        assert_eq!(send(&addr, "DELETE", "/mcp", &ours, "").status, 200);
        assert_eq!(send(&addr, "DELETE", "/mcp", &ours, "").status, 404);
        assert_eq!(post(&addr, Some(&session), BOTH, &notify).status, 404);
        eventually("the program is gone", || health(&addr) == 0);
        stop(server);
    }
}

#[test]
fn stopping_the_bridge_ends_every_http_session_and_its_descendants() {
    for runtime in RUNTIMES {
        let (server, addr, _token) = bridge(runtime, &[]);
        let session = post(&addr, None, JSON, &initialize()).session();
        let spawn = json!({"jsonrpc": "2.0", "id": 1, "method": "spawn", "params": {"count": 2}});
        let answer = post(&addr, Some(&session), JSON, &spawn).json();
        let pids: Vec<u64> = answer["result"]["pids"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect();
        assert_eq!(pids.len(), 2);
        assert!(pids.iter().all(|&p| !gone(p)));
        stop(server);
        eventually("the descendants are gone", || pids.iter().all(|&p| gone(p)));
    }
}
