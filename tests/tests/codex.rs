//! The codex exec-server as a real peer (`@openai/codex` 0.169.0, pinned in `tests/peers` and
//! installed into `.peers/` by `scripts/install-peers`), through `tether_tokio::Connection`:
//! `initialize`, the `initialized` notification, an unknown method, `process/start` of a
//! command that starts a `setsid` grandchild, its `process/output`, then the end of the
//! session.
//!
//! The exec-server starts every command in a session of its own, so the command is outside
//! the exec-server's process group from the start, and the `setsid` grandchild further still:
//! the process group kill cannot reach it. The connection's containment (a cgroup here, else
//! the subreaper sweep: this test process is a subreaper) does.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;
use tether_tokio::{Connection, Event, Message, Notification, Options, Tokio};

/// The exec-server binary inside the pinned package.
const CODEX: &str =
    "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_exec_server_process_start_then_shutdown() {
    guard::<Tokio, _>(scenario()).await;
}

async fn scenario() {
    // The orphaned grandchild comes to this process, which can then see it die and reap it.
    become_subreaper();
    let codex = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.peers")
        .join(CODEX);
    assert!(
        codex.exists(),
        "{} is missing: run scripts/install-peers (scripts/test does)",
        codex.display()
    );
    let home = std::env::temp_dir().join(format!("tether-codex-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut command = Command::new(&codex);
    command
        .args(["exec-server", "--listen", "stdio"])
        .env("CODEX_HOME", &home);
    let options = Options::new().grace(Duration::from_secs(5));
    let mut conn: Connection = Connection::spawn(command, options).unwrap();
    let codex_pid = conn.pid().unwrap();

    let init = call(
        &mut conn,
        1,
        "initialize",
        json!({"clientName": "tether-tests"}),
    )
    .await;
    assert_eq!(
        init["environmentInfo"]["executorVersion"], "0.169.0",
        "{init}"
    );
    assert!(init["sessionId"].is_string(), "{init}");
    conn.send(&Notification::new("initialized", None).into())
        .await
        .unwrap();
    let unknown = call(&mut conn, 2, "no/such/method", json!({})).await;
    assert_eq!(unknown, json!({"error": -32601}));

    let start = json!({
        "processId": "p1",
        "argv": ["sh", "-c", "setsid sleep 314 & echo $! $$; exec sleep 315"],
        "cwd": format!("file://{}", home.display()),
        "env": {"PATH": std::env::var("PATH").unwrap()},
        "tty": false,
    });
    conn.send(&request(3, "process/start", start))
        .await
        .unwrap();
    let (started, seen) = response(&mut conn).await;
    let mut seen = seen.into_iter();
    assert_eq!(started, json!({"processId": "p1", "sandboxType": "none"}));
    let mut output = Vec::new();
    while !output.ends_with(b"\n") {
        let note = match seen.next() {
            Some(note) => note,
            None => match conn.recv().await {
                Some(Event::Message(m)) => m,
                other => panic!("expected process/output, got {other:?}"),
            },
        };
        if let Message::Notification(n) = note {
            if n.method == "process/output" {
                let params = n.params.unwrap();
                assert_eq!(params["processId"], "p1", "{params}");
                assert_eq!(params["stream"], "stdout", "{params}");
                output.extend(base64(params["chunk"].as_str().unwrap()));
            }
        }
    }
    let text = String::from_utf8(output).unwrap();
    let pids: Vec<u32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let [grandchild, command_pid] = pids[..] else {
        panic!("{text:?}")
    };
    // Alive: any state but a zombie's or a dead one's (it may be mid-exec, in 'D', when the
    // pid is reported).
    assert!(
        state(grandchild).is_some_and(|s| !matches!(s, 'Z' | 'X')),
        "the setsid grandchild is not alive: {:?}",
        state(grandchild)
    );

    let status = conn.shutdown().await.unwrap();
    assert_eq!(
        status.code,
        Some(0),
        "closing stdin ends the exec-server: {status}"
    );
    assert_gone(codex_pid);
    // The exec-server ends its command's group itself on the way out.
    assert_dead(command_pid);
    // Nothing of the command is left: the setsid grandchild neither.
    assert_dead(grandchild);
    std::fs::remove_dir_all(&home).unwrap();
}

/// Decodes standard base64 (the exec-server's `chunk`).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {text:?}"),
        }
    };
    let mut out = Vec::new();
    for quad in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = quad.iter().copied().filter(|&c| c != b'=').collect();
        let bits = digits
            .iter()
            .enumerate()
            .fold(0, |acc, (i, &c)| acc | value(c) << (18 - 6 * i));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..digits.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64("c3RhcnRlZAo="), b"started\n");
    assert_eq!(base64("aGkK"), b"hi\n");
    assert_eq!(base64("YQ=="), b"a");
}
