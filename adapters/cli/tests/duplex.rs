//! The command is full duplex and always ends: standard input to the child, the child's output
//! to standard output and signals each move on their own, under both runtimes. Each test is a
//! reproduction that hung before.

#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};

mod support;

use support::gone;

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// How long any of these sessions may take before the test calls it a hang.
const GUARD: Duration = Duration::from_secs(60);

fn tether(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Writes `input` to the child's standard input on a thread of its own, then closes it.
fn feed(child: &mut Child, input: Vec<u8>) -> JoinHandle<()> {
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        // tether may end before taking it all (a signal); that is not this thread's failure.
        let _ = stdin.write_all(&input);
    })
}

/// Reads every line of standard output on a thread of its own.
fn collect(stdout: ChildStdout) -> JoinHandle<Vec<Value>> {
    std::thread::spawn(move || {
        BufReader::with_capacity(1 << 20, stdout)
            .lines()
            .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
            .collect()
    })
}

/// Waits for the child's exit, failing the test instead of hanging.
fn wait(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > GUARD {
            child.kill().unwrap();
            panic!("tether did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls an observation of another process until it holds, failing after the guard. The pause
/// is the polling interval of something we cannot subscribe to, not a synchronisation.
fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < GUARD, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, signal: Signal) {
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), signal).unwrap();
}

fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
    )
    .unwrap();
    line.push(b'\n');
    line
}

/// The messages `cat` echoed: the requests sent, back (tether answers each one `-32603` at
/// the end, since `cat` never answers them; those answers are not counted).
fn echoed(events: &[Value]) -> Vec<&Value> {
    of_kind(events, "message")
        .into_iter()
        .filter(|m| m["message"]["method"].is_string())
        .collect()
}

/// The event lines of one kind.
fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Runs `tether ARGS` with `input` on its standard input (closed after it), reading its
/// output as it comes; checks that it succeeded and returns its event lines.
fn session(args: &[&str], input: Vec<u8>) -> Vec<Value> {
    let mut child = tether(args);
    let writer = feed(&mut child, input);
    let reader = collect(child.stdout.take().unwrap());
    assert!(wait(&mut child).success(), "{args:?}");
    writer.join().unwrap();
    reader.join().unwrap()
}

/// A 40 MiB request to `cat`, then a second one: `cat` echoes while it reads, so tether must
/// print the echo while it is still writing the request. Both come back whole.
#[test]
fn a_40_mib_request_through_cat_then_another_both_come_back() {
    for runtime in RUNTIMES {
        let mut input = request(1, "big", json!(["x".repeat(40 << 20)]));
        input.extend(request(2, "small", json!([])));
        let args = [
            "run",
            "--runtime",
            runtime,
            "--max-frame",
            "67108864",
            "--",
            "cat",
        ];
        let events = session(&args, input);
        let messages = echoed(&events);
        assert_eq!(messages.len(), 2, "{runtime}");
        assert_eq!(messages[0]["message"]["id"], 1);
        assert_eq!(
            messages[0]["message"]["params"][0].as_str().map(str::len),
            Some(40 << 20)
        );
        assert_eq!(messages[1]["message"]["id"], 2);
        assert_eq!(events.last().unwrap()["event"], "exit", "{runtime}");
    }
}

/// A peer that writes 2.6 MB of notifications before it reads the 20 MB request queued behind
/// them: every notification is printed while the request is still being written.
#[test]
fn a_peer_that_writes_before_it_reads() {
    for runtime in RUNTIMES {
        let mut input = request(1, "notify", json!({"count": 20_000, "size": 130}));
        input.extend(request(2, "echo", json!(["y".repeat(20 << 20)])));
        input.extend(request(3, "echo", json!(["after"])));
        let events = session(
            &["run", "--runtime", runtime, "--max-frame", "67108864"],
            input,
        );
        let messages = of_kind(&events, "message");
        assert_eq!(messages.len(), 20_003, "{runtime}");
        let results: Vec<&Value> = messages
            .iter()
            .filter(|m| m["message"].get("result").is_some())
            .map(|m| &m["message"]["id"])
            .collect();
        assert_eq!(results, [&json!(1), &json!(2), &json!(3)], "{runtime}");
    }
}

/// A child that never reads its input and floods its output: tether's write to it is blocked
/// for good. A program printing its pid first, then lines without end.
const FLOODER: &str = r#"echo "{\"jsonrpc\":\"2.0\",\"method\":\"pid\",\"params\":[$$]}"; while :; do echo '{"jsonrpc":"2.0","method":"flood","params":["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]}'; done"#;

/// Starts tether over [`FLOODER`] with 1 MB of requests on its standard input (far more than
/// the pipe to the child takes), and returns it with the child's pid and its standard output.
fn flooded(runtime: &str) -> (Child, u32, BufReader<ChildStdout>) {
    let mut child = tether(&[
        "run",
        "--runtime",
        runtime,
        "--grace",
        "200",
        "--",
        "sh",
        "-c",
        FLOODER,
    ]);
    let input: Vec<u8> = (0..10_000)
        .flat_map(|i| request(i, "never_read", json!(["z".repeat(80)])))
        .collect();
    // Kept open: the end of input is not what ends these sessions.
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        std::thread::park();
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    let pid = first["message"]["params"][0]
        .as_u64()
        .and_then(|pid| u32::try_from(pid).ok())
        .expect("the child's pid");
    (child, pid, stdout)
}

/// SIGTERM, then SIGINT, while tether's write to the child is blocked for good and the child
/// floods its output (read here as fast as it comes): tether shuts the child down within its
/// graces, prints its end, and exits.
#[test]
fn a_signal_gets_through_while_a_write_is_blocked_for_good() {
    for runtime in RUNTIMES {
        for sig in [Signal::TERM, Signal::INT] {
            let (mut child, pid, mut stdout) = flooded(runtime);
            let reader = std::thread::spawn(move || {
                let mut tail = Vec::new();
                for line in (&mut stdout).lines() {
                    let line = line.unwrap();
                    if !line.contains("\"flood\"") {
                        tail.push(line);
                    }
                }
                tail
            });
            signal(&child, sig);
            assert!(wait(&mut child).success(), "{runtime} {sig:?}");
            assert!(gone(pid), "{runtime} {sig:?}: the child survived");
            let tail = reader.join().unwrap();
            let last: Vec<Value> = tail
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(
                of_kind(&last, "disconnected").len(),
                1,
                "{runtime} {sig:?}: {tail:?}"
            );
            assert_eq!(
                last.last().unwrap()["event"],
                "exit",
                "{runtime} {sig:?}: {tail:?}"
            );
        }
    }
}

/// A slow reader of tether's output (about 6 MB/s) does not hold back the signal: the child is
/// shut down and tether ends, without printing the rest of what it had read ahead.
#[test]
fn a_slow_reader_of_the_output_does_not_hold_back_a_signal() {
    for runtime in RUNTIMES {
        let (mut child, pid, mut stdout) = flooded(runtime);
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            let mut last = Vec::new();
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return last,
                    Ok(n) => {
                        last.extend_from_slice(&buf[..n]);
                        let keep = last.len().saturating_sub(4096);
                        last.drain(..keep);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        signal(&child, Signal::TERM);
        wait_until(|| gone(pid), "the child to be shut down");
        assert!(wait(&mut child).success(), "{runtime}");
        let last = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
        assert!(
            last.ends_with(
                "{\"event\":\"exit\",\"code\":null,\"signal\":15,\"cause\":\"requested\",\"stderr_tail\":\"\"}\n"
            ),
            "{runtime}: {last}"
        );
    }
}

/// Nobody reads tether's output at all: the first SIGTERM still shuts the child down, and a
/// second ends tether although its last lines cannot be written.
#[test]
fn a_stalled_reader_of_the_output_does_not_hold_back_a_signal() {
    for runtime in RUNTIMES {
        let (mut child, pid, stdout) = flooded(runtime);
        signal(&child, Signal::TERM);
        wait_until(|| gone(pid), "the child to be shut down");
        signal(&child, Signal::TERM);
        wait(&mut child);
        drop(stdout);
    }
}

/// A standard input line of 1 GiB is one `invalid_input` event, never sent, and tether's
/// memory stays near the frame limit; the line after it goes through.
#[test]
fn a_gigabyte_stdin_line_is_refused_in_bounded_memory() {
    for runtime in RUNTIMES {
        let mut child = tether(&["run", "--runtime", runtime, "--", "cat"]);
        let pid = child.id();
        let mut stdin = child.stdin.take().unwrap();
        let reader = collect(child.stdout.take().unwrap());
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..1024 {
            stdin.write_all(&chunk).unwrap();
        }
        stdin.write_all(b"\n").unwrap();
        stdin.write_all(&request(7, "after", json!([]))).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let peak_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .expect("VmHWM");
        drop(stdin);
        assert!(wait(&mut child).success(), "{runtime}");
        let events = reader.join().unwrap();
        // The frame limit is 16 MiB; everything else tether holds is far smaller.
        assert!(peak_kib < 128 * 1024, "{runtime}: peak {peak_kib} KiB");
        let invalid = of_kind(&events, "invalid_input");
        assert_eq!(invalid.len(), 1, "{runtime}: {events:?}");
        let messages = echoed(&events);
        assert_eq!(
            messages.len(),
            1,
            "{runtime}: only the line after it reaches cat"
        );
        assert_eq!(messages[0]["message"]["method"], "after");
    }
}

/// `--goodbye lsp` to a child that closed its output: nothing can answer the `shutdown`
/// request, and the ladder still ends the child (it hung for good, deaf to SIGTERM).
#[test]
fn a_goodbye_to_a_child_without_output_ends() {
    for runtime in RUNTIMES {
        let args = [
            "run",
            "--runtime",
            runtime,
            "--goodbye",
            "lsp",
            "--grace",
            "200",
        ];
        let child = ["--", "sh", "-c", "exec >&-; exec sleep 30"];
        let events = session(&[&args[..], &child[..]].concat(), Vec::new());
        assert_eq!(
            events.last().unwrap()["event"],
            "exit",
            "{runtime}: {events:?}"
        );
        assert_eq!(
            events.last().unwrap()["signal"],
            15,
            "{runtime}: {events:?}"
        );
    }
}

/// Lines that arrive once a signal has closed the connection are each reported as refused,
/// never sent, while the child takes its time to go: the session asks whether the connection
/// is closing for each batch of lines it sends.
#[test]
fn lines_after_a_signal_are_refused_while_the_child_goes() {
    // The child says it has started; told that its input ended, it says so and then hangs,
    // deaf to SIGTERM, until the ladder kills it.
    let script = r#"trap '' TERM; echo '{"jsonrpc":"2.0","method":"started"}'; cat >/dev/null; echo '{"jsonrpc":"2.0","method":"stdin-closed"}'; exec sleep 30"#;
    for runtime in RUNTIMES {
        let args = [
            "run",
            "--runtime",
            runtime,
            "--grace",
            "1000",
            "--",
            "sh",
            "-c",
            script,
        ];
        let mut child = tether(&args);
        let mut stdin = child.stdin.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        // Once the child's first word is printed, tether is catching signals.
        let started = rx
            .recv_timeout(GUARD)
            .expect("the child's first notification");
        assert_eq!(
            started["message"]["method"], "started",
            "{runtime}: {started}"
        );
        signal(&child, Signal::TERM);
        // The child's word that its input ended: tether is closing.
        let first = rx.recv_timeout(GUARD).expect("the child's notification");
        assert_eq!(
            first["message"]["method"], "stdin-closed",
            "{runtime}: {first}"
        );
        let mut input = request(1, "late", json!([]));
        input.extend_from_slice(b"not json\n");
        input.extend(request(2, "later", json!([])));
        stdin.write_all(&input).unwrap();
        drop(stdin);
        wait(&mut child);
        reader.join().unwrap();
        let events: Vec<Value> = rx.try_iter().collect();
        let refused: Vec<&str> = of_kind(&events, "invalid_input")
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(refused.len(), 3, "{runtime}: {events:?}");
        assert_eq!(refused[0], "the connection is closing", "{runtime}");
        assert!(
            refused[1].contains("invalid JSON"),
            "{runtime}: {}",
            refused[1]
        );
        assert_eq!(refused[2], "the connection is closing", "{runtime}");
        assert!(
            of_kind(&events, "message").is_empty(),
            "{runtime}: {events:?}"
        );
    }
}
