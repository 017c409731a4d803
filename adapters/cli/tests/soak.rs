//! A randomized soak of many short `tether run` sessions: random children (a polite peer, one
//! that exits mid-way, one that floods and never reads, one deaf to SIGTERM and to the end of
//! its input, one whose descendants escape its group, one without output, one that aborts),
//! random settings (runtime, grace down to zero, containment, goodbye, linger) and random
//! endings (the end of input, SIGTERM, SIGINT once or twice, SIGHUP), each at a random moment.
//!
//! After every session: nothing carrying the session's tag is alive, no zombie is left to this
//! process (a child subreaper, so that an orphan would come here), exactly one `disconnected`
//! event was printed and `exit` came last, and tether ended within the linger plus its grace
//! periods plus a margin for a loaded machine.
//!
//! `TETHER_SOAK_SEED` picks the seed (fixed by default, so that CI replays the same sessions),
//! `TETHER_SOAK_SESSIONS` how many. A failure names its seed and session, which replay alone.

#![cfg(target_os = "linux")]
#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

mod support;

use support::processes;

/// What a machine shared with other builds may add to a session's end, beyond the linger and
/// the graces.
const MARGIN: Duration = Duration::from_secs(5);

/// How long a session may take before the soak calls it a hang.
const GUARD: Duration = Duration::from_secs(60);

/// splitmix64: a seed reproduces every choice.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// The children, as `sh -c` scripts; `None` is the built-in peer.
const CHILDREN: [(&str, Option<&str>); 7] = [
    ("peer", None),
    ("exits", None),
    (
        "flood",
        Some(
            r#"while :; do echo '{"jsonrpc":"2.0","method":"flood","params":["xxxxxxxxxxxxxxxxxxxxxxxx"]}'; done"#,
        ),
    ),
    (
        "deaf",
        Some("trap '' TERM; while read -r line; do :; done; exec sleep 300"),
    ),
    (
        "escape",
        Some("setsid sh -c 'exec sleep 300' & sh -c 'sleep 300 & exit 0'; exec sleep 300"),
    ),
    ("no_output", Some("exec >&-; exec sleep 300")),
    (
        "aborts",
        Some("setsid sleep 300 & sleep 0.2; kill -ABRT $$"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    EndOfInput,
    Term,
    Int,
    IntTwice,
    Hup,
}

#[test]
fn many_short_sessions_end_clean() {
    let seed = std::env::var("TETHER_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e7e_5eed_u64);
    let sessions: u64 = std::env::var("TETHER_SOAK_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(28);
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .expect("become a child subreaper");
    for n in 0..sessions {
        let mut rng = Rng(seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
        session(&format!("seed {seed} session {n}"), &mut rng);
    }
}

fn session(name: &str, rng: &mut Rng) {
    let (child, script) = rng.pick(&CHILDREN);
    let runtime = rng.pick(&["tokio", "smol"]);
    let grace: u64 = rng.pick(&[0, 50, 300]);
    let linger: u64 = rng.pick(&[0, 100]);
    // The process group alone cannot reach an escaped descendant, as documented.
    let contain = match child {
        "escape" | "aborts" => rng.pick(&["auto", "subreaper"]),
        _ => rng.pick(&["auto", "subreaper", "group"]),
    };
    let goodbye = rng.pick(&["none", "none", "lsp"]);
    let ending = rng.pick(&[
        Ending::EndOfInput,
        Ending::Term,
        Ending::Int,
        Ending::IntTwice,
        Ending::Hup,
    ]);
    let requests = rng.next() % 5;
    let delay = Duration::from_millis(rng.next() % 150);
    let tag = format!("{}-{}", std::process::id(), rng.next());
    let what = format!(
        "{name}: {child} on {runtime}, grace {grace}, linger {linger}, contain {contain}, \
         goodbye {goodbye}, {ending:?} after {delay:?}"
    );

    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command
        .env("RUST_LOG", "error")
        .env("TETHER_SOAK_TAG", &tag)
        .args(["run", "--runtime", runtime, "--grace", &grace.to_string()])
        .args(["--linger", &linger.to_string(), "--contain", contain])
        .args(["--goodbye", goodbye])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(script) = script {
        command.args(["--", "sh", "-c", script]);
    }
    let mut tether = command.spawn().unwrap();
    // tether catches signals before it spawns its child: once the child is there (or has
    // been and gone, and tether with it), a signal is tether's to handle; before that, it
    // would meet the default action.
    let start = Instant::now();
    let me = tether.id();
    let ended = || processes().any(|(pid, _, state)| pid == me && state == 'Z');
    while !tagged(&tag).iter().any(|&p| p != me) && !ended() {
        assert!(start.elapsed() < GUARD, "{what}: the child never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut stdin = tether.stdin.take().unwrap();
    let stdout = tether.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|line| !line.contains("\"flood\""))
            .collect::<Vec<String>>()
    });
    for id in 0..requests {
        let line = match (child, id) {
            ("exits", 1) => format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"exit\",\"params\":{{\"code\":3}}}}\n"),
            _ => format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"echo\",\"params\":[{id}]}}\n"),
        };
        // A child that never reads may leave this blocked; the write gives up with tether.
        if stdin.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    // A random moment: what is under way then varies from session to session.
    std::thread::sleep(delay);
    let pid = Pid::from_raw(tether.id() as i32).unwrap();
    let triggered = Instant::now();
    match ending {
        Ending::EndOfInput => drop(stdin),
        Ending::Term => {
            let _ = kill_process(pid, Signal::TERM);
        }
        Ending::Int => {
            let _ = kill_process(pid, Signal::INT);
        }
        Ending::Hup => {
            let _ = kill_process(pid, Signal::HUP);
        }
        Ending::IntTwice => {
            {
                let _ = kill_process(pid, Signal::INT);
            };
            {
                let _ = kill_process(pid, Signal::INT);
            };
        }
    }
    let status = loop {
        if let Some(status) = tether.try_wait().unwrap() {
            break status;
        }
        if triggered.elapsed() > GUARD {
            tether.kill().unwrap();
            panic!("{what}: tether did not end");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = triggered.elapsed();
    let lines = reader.join().unwrap();

    assert!(status.success(), "{what}: {status}");
    // The goodbye's wait, both steps of the ladder and the drain after the exit.
    let bound = Duration::from_millis(linger + 4 * grace) + MARGIN;
    assert!(
        took <= bound,
        "{what}: ended after {took:?}, over {bound:?}"
    );
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {l}: {e}")))
        .collect();
    let disconnected = events
        .iter()
        .filter(|e| e["event"] == "disconnected")
        .count();
    assert_eq!(disconnected, 1, "{what}: {lines:?}");
    assert_eq!(
        events.last().map(|e| &e["event"]),
        Some(&Value::from("exit")),
        "{what}: {lines:?}"
    );
    let left = tagged(&tag);
    assert!(left.is_empty(), "{what}: left alive: {left:?}");
    let zombies = zombie_children();
    assert!(
        zombies.is_empty(),
        "{what}: zombies handed to tether's parent: {zombies:?}"
    );
}

/// Live processes carrying `TETHER_SOAK_TAG=tag`.
fn tagged(tag: &str) -> Vec<u32> {
    support::tagged(&format!("TETHER_SOAK_TAG={tag}"))
}

/// Zombies whose parent is this process: orphans of a session that nobody reaped.
fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    processes()
        .filter(|&(_, ppid, state)| ppid == me && state == 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}
