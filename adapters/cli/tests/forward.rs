//! Standard input reaches the child as it was written: each line is checked, not decoded and
//! encoded again. Only what tether would read differently is rewritten.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// Runs `tether run` with `input` against a child that copies its standard input to a file,
/// and returns the file and tether's event lines.
fn through(runtime: &str, input: &[u8]) -> (Vec<u8>, Vec<Value>) {
    // A directory of its own for each call: the tests run side by side.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "tether-forward-{runtime}-{}-{call}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stdin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "run",
            "--runtime",
            runtime,
            "--linger",
            "0",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!("cat > '{}'", file.display()))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let events = output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    let written = std::fs::read(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (written, events)
}

#[test]
fn lines_reach_the_child_as_written() {
    for runtime in ["tokio", "smol"] {
        let input = b"{ \"jsonrpc\" : \"2.0\", \"method\":\"n\", \"params\":{\"b\":2.50,\"a\":[1, 2]}, \"x-trace\":\"t\" }\r\n\
            \n\
            [{\"jsonrpc\":\"2.0\",\"method\":\"a\"},{\"jsonrpc\":\"2.0\",\"method\":\"b\",\"params\":[]}]\n\
            {\"id\":1,\"method\":\"lite\"}\n\
            {\"jsonrpc\":\"2.0\",\"method\":\"null-params\",\"params\":null}\n\
            not json\n\
            {\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":[1e400]}\n";
        let (written, events) = through(runtime, input);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            // Spaces, member order, unknown members and numbers as written; `\r\n` cut as a
            // line end; the blank line skipped; a message without "jsonrpc" given one, and a
            // null `params` left out, as tether reads them.
            "{ \"jsonrpc\" : \"2.0\", \"method\":\"n\", \"params\":{\"b\":2.50,\"a\":[1, 2]}, \"x-trace\":\"t\" }\n\
             [{\"jsonrpc\":\"2.0\",\"method\":\"a\"},{\"jsonrpc\":\"2.0\",\"method\":\"b\",\"params\":[]}]\n\
             {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"lite\"}\n\
             {\"jsonrpc\":\"2.0\",\"method\":\"null-params\"}\n",
            "{runtime}"
        );
        let invalid: Vec<&str> = events
            .iter()
            .filter(|e| e["event"] == "invalid_input")
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(invalid.len(), 2, "{runtime}: {events:?}");
        assert!(invalid[0].starts_with("invalid JSON"), "{invalid:?}");
        assert!(invalid[1].contains("number out of range"), "{invalid:?}");
    }
}

/// Megabytes of input, far more than one read takes, with lines that are not messages among
/// them: however the reads fall and whichever thread checks a chunk, the child gets every
/// message in order and as written, and each other line is reported once.
#[test]
fn a_flood_of_lines_arrives_whole_and_in_order() {
    for runtime in ["tokio", "smol"] {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        let mut bad = 0;
        for i in 0..40_000 {
            let line = match i % 1000 {
                999 => {
                    bad += 1;
                    format!("not a message {i}\n")
                }
                _ => format!(
                    "{{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{{\"i\":{i},\"pad\":\"{}\"}}}}\n",
                    "x".repeat(i % 200)
                ),
            };
            if i % 1000 != 999 {
                expected.extend_from_slice(line.as_bytes());
            }
            input.extend(line.into_bytes());
        }
        assert!(input.len() > 4 << 20);
        let (written, events) = through(runtime, &input);
        assert!(written == expected, "{runtime}: the child got other bytes");
        let invalid = events
            .iter()
            .filter(|e| e["event"] == "invalid_input")
            .count();
        assert_eq!(invalid, bad, "{runtime}");
    }
}
