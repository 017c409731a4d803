//! `tether run` supervising real children, under both runtimes: restarts with backoff, the
//! crash-loop guard, the ready deadline, requests a crashed child never answered, and cgroup
//! limits (a fork bomb under `--pids-max`, a memory hog under `--memory-max`, each limit
//! written where it belongs). At the `exit` line (printed once the last child is reaped): no
//! zombie of tether's. After every case: nothing of the child's tree alive, no zombie, no
//! cgroup left behind in any hierarchy (v2 and v1).

#![allow(
    clippy::disallowed_methods,
    reason = "a test of real processes bounds its waits with the real clock"
)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// A tag for one case's processes, so that what is left of them can be found.
fn tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "supervise-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The processes the tests started themselves (tethers, `mkfifo`): their zombies, while a
/// test waits for them, are no leak.
static STARTED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Spawns `command`, noting it among the processes the tests started.
fn start(command: &mut Command) -> Child {
    let child = command.spawn().unwrap();
    STARTED.lock().unwrap().push(child.id());
    child
}

/// A running `tether run`, its output read line by line on a thread (so that a test waits
/// for a line with a deadline, never forever).
struct Session {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    tag: String,
}

impl Session {
    fn start(runtime: &str, flags: &[&str], program: &[&str], tag: &str) -> Session {
        let mut child = start(
            Command::new(env!("CARGO_BIN_EXE_tether"))
                .args(["run", "--runtime", runtime])
                .args(flags)
                .arg("--")
                .args(program)
                .env("RUST_LOG", "off")
                .env("TETHER_TEST_TAG", tag)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            child,
            lines,
            seen: Vec::new(),
            tag: tag.to_owned(),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Reads lines until one satisfies `want`, within 30 s. At the exit line, checks that
    /// tether left no zombie. (Not at a `restart` line: by then the next child may have run
    /// and exited, a zombie for the moment its watcher takes to reap it.)
    fn until(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                let seen: Vec<String> = self.seen.iter().map(Value::to_string).collect();
                panic!("no such line; seen:\n{}", seen.join("\n"))
            });
            let value: Value = serde_json::from_str(&line).unwrap();
            self.seen.push(value.clone());
            if value["event"] == "exit" {
                no_zombie_of(self.child.id(), &value);
            }
            if want(&value) {
                return value;
            }
        }
    }

    /// Closes standard input and reads the rest; checks tether ended with status 0 and left
    /// nothing behind. Returns every line.
    fn finish(mut self) -> Vec<Value> {
        drop(self.child.stdin.take());
        if !self.seen.iter().any(|v| v["event"] == "exit") {
            self.until(|v| v["event"] == "exit");
        }
        // Its output ends as it exits: no line may follow the exit line.
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
            other => panic!("after the exit line: {other:?}"),
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}: {:#?}", self.seen);
        nothing_left(&self.tag, self.child.id());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A failed test leaves no tether behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Nothing of the tagged tree alive, no zombie of it handed to this process, and no cgroup
/// of that tether left in any hierarchy.
fn nothing_left(tag: &str, tether: u32) {
    let alive = support::tagged(&format!("TETHER_TEST_TAG={tag}"));
    assert!(alive.is_empty(), "left alive: {alive:?}");
    let me = std::process::id();
    let started = STARTED.lock().unwrap().clone();
    let zombies: Vec<u32> = support::processes()
        .filter(|&(pid, ppid, state)| state == 'Z' && ppid == me && !started.contains(&pid))
        .map(|(pid, _, _)| pid)
        .collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    let left = cgroups_of(tether);
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

/// No zombie whose parent is `tether`, at the exit line, which tether prints once its last
/// child is reaped (and with it whatever of its tree came to tether).
fn no_zombie_of(tether: u32, line: &Value) {
    let zombies: Vec<u32> = support::processes()
        .filter(|&(_, ppid, state)| state == 'Z' && ppid == tether)
        .map(|(pid, _, _)| pid)
        .collect();
    assert!(
        zombies.is_empty(),
        "zombies of tether at {line}: {zombies:?}"
    );
}

/// The cgroups of tether `pid` in this process's cgroup of every hierarchy: the containment's
/// `tether-<pid>` (v2), the limits' `tether-<pid>-<n>` (v1), and a probe of either.
fn cgroups_of(tether: u32) -> Vec<PathBuf> {
    let prefix = format!("tether-{tether}");
    cgroup_dirs()
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|name| name == prefix || name.starts_with(&format!("{prefix}-")))
        })
        .map(|e| e.path())
        .collect()
}

/// This process's cgroup directory in every hierarchy mounted at the usual place.
fn cgroup_dirs() -> Vec<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cgroups
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _ = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?.trim_start_matches('/');
            let mount = match controllers {
                "" => Path::new("/sys/fs/cgroup/unified").to_path_buf(),
                c => Path::new("/sys/fs/cgroup").join(c.trim_start_matches("name=")),
            };
            Some(mount.join(path))
        })
        .filter(|dir| dir.is_dir())
        .collect()
}

/// The directories in `dir` (a v2 `tether-<pid>` holds the children's cgroups).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn restarts(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|v| v["event"] == "restart").collect()
}

fn exit_line(lines: &[Value]) -> &Value {
    lines.last().filter(|v| v["event"] == "exit").unwrap()
}

/// Whether this machine can enforce `flag VALUE`: tether says so by refusing it (status 2,
/// and why) or not. Either way, it leaves no cgroup behind.
fn enforceable(flag: &str, value: &str) -> bool {
    let child = start(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["run", flag, value, "--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let pid = child.id();
    let output = support::wait_output(child, Duration::from_secs(30));
    let left = cgroups_of(pid);
    assert!(left.is_empty(), "{flag}: cgroups left: {left:?}");
    match output.status.code() {
        Some(0) => true,
        Some(2) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("cannot be enforced here") && stderr.contains("cannot limit"),
                "{stderr}"
            );
            false
        }
        other => panic!("{flag}: status {other:?}: {output:?}"),
    }
}

#[test]
fn a_child_that_crashes_three_times_is_restarted_with_doubling_delays_then_serves() {
    for runtime in RUNTIMES {
        let tag = tag();
        let dir = scratch(&tag);
        let script = format!(
            "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; \
             echo \"start $n\" >&2; \
             if [ $n -le 3 ]; then echo \"dying $n\" >&2; exit 3; fi; \
             while read line; do echo '{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"up\"}}'; done",
            count = dir.join("count").display()
        );
        let mut session = Session::start(
            runtime,
            &["--restart", "on-failure", "--backoff", "20"],
            &["sh", "-c", &script],
            &tag,
        );
        for attempt in 1..=3 {
            let line = session.until(|v| v["event"] == "restart");
            assert_eq!(line["attempt"], attempt, "{runtime}");
            assert_eq!(line["delay_ms"], 20 << (attempt - 1), "{runtime}");
            assert_eq!(
                line["exit"],
                json!({"code": 3, "signal": null, "cause": "failed",
                       "stderr_tail": format!("start {attempt}\ndying {attempt}\n")}),
                "{runtime}"
            );
        }
        session.send(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        let answer = session.until(|v| v["event"] == "message");
        assert_eq!(answer["message"]["result"], "up", "{runtime}");
        let lines = session.finish();
        assert_eq!(restarts(&lines).len(), 3, "{runtime}");
        let exit = exit_line(&lines);
        assert_eq!(exit["cause"], "requested", "{runtime}: {exit}");
        assert_eq!(exit["stderr_tail"], "start 4\n", "{runtime}: {exit}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_crash_loop_gives_up_and_ends_the_session() {
    for runtime in RUNTIMES {
        let tag = tag();
        let started = Instant::now();
        let mut session = Session::start(
            runtime,
            &[
                "--restart",
                "always",
                "--backoff",
                "10",
                "--max-restarts",
                "2",
            ],
            &["sh", "-c", "echo bye >&2; exit 0"],
            &tag,
        );
        // Standard input stays open: the session ends by itself.
        session.until(|v| v["event"] == "exit");
        let lines = session.finish();
        let restarts = restarts(&lines);
        assert_eq!(restarts.len(), 2, "{runtime}: {lines:#?}");
        assert_eq!(restarts[0]["delay_ms"], 10);
        assert_eq!(restarts[1]["delay_ms"], 20);
        assert_eq!(restarts[1]["exit"]["cause"], "exited");
        let exit = exit_line(&lines);
        assert_eq!(
            *exit,
            json!({"event": "exit", "code": 0, "signal": null, "cause": "crash_loop", "stderr_tail": "bye\n"}),
            "{runtime}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{runtime}");
    }
}

#[test]
fn a_mute_child_misses_its_ready_deadline_and_the_ladder_ends_it() {
    for runtime in RUNTIMES {
        let tag = tag();
        let mut session = Session::start(
            runtime,
            &["--ready-timeout", "200", "--grace", "100"],
            &["sh", "-c", "exec sleep 600"],
            &tag,
        );
        session.until(|v| v["event"] == "exit");
        let lines = session.finish();
        assert!(restarts(&lines).is_empty());
        let exit = exit_line(&lines);
        assert_eq!(exit["cause"], "ready_timeout", "{runtime}: {exit}");
        assert_eq!(exit["signal"], 15, "{runtime}: {exit}");
    }
}

#[test]
fn a_mute_child_is_restarted_when_the_policy_allows() {
    for runtime in RUNTIMES {
        let tag = tag();
        let mut session = Session::start(
            runtime,
            &[
                "--ready-timeout",
                "100",
                "--grace",
                "50",
                "--restart",
                "on-failure",
                "--backoff",
                "10",
                "--max-restarts",
                "1",
            ],
            &["sh", "-c", "exec sleep 600"],
            &tag,
        );
        session.until(|v| v["event"] == "exit");
        let lines = session.finish();
        let restarts = restarts(&lines);
        assert_eq!(restarts.len(), 1, "{runtime}: {lines:#?}");
        assert_eq!(restarts[0]["exit"]["cause"], "ready_timeout");
        assert_eq!(exit_line(&lines)["cause"], "crash_loop", "{runtime}");
    }
}

#[test]
fn requests_pending_at_a_crash_get_an_internal_error_and_new_ones_go_to_the_next_child() {
    for runtime in RUNTIMES {
        let tag = tag();
        let dir = scratch(&tag);
        // The first child reads two requests and dies without answering; the next answers.
        let script = format!(
            "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; \
             if [ $n -le 1 ]; then read a; read b; kill -9 $$; fi; \
             while read line; do \
               id=$(echo \"$line\" | sed 's/.*\"id\":\\([0-9]*\\).*/\\1/'); \
               echo \"{{\\\"jsonrpc\\\":\\\"2.0\\\",\\\"id\\\":$id,\\\"result\\\":$n}}\"; \
             done",
            count = dir.join("count").display()
        );
        let mut session = Session::start(
            runtime,
            &["--restart", "on-failure", "--backoff", "300"],
            &["sh", "-c", &script],
            &tag,
        );
        session.send(r#"{"jsonrpc":"2.0","id":1,"method":"work"}"#);
        session.send(r#"{"jsonrpc":"2.0","id":2,"method":"work"}"#);
        let restart = session.until(|v| v["event"] == "restart");
        assert_eq!(restart["exit"]["signal"], 9, "{runtime}");
        // Sent during the delay: it waits for the next child.
        session.send(r#"{"jsonrpc":"2.0","id":3,"method":"work"}"#);
        let answer = session.until(|v| v["message"]["id"] == 3);
        assert_eq!(answer["message"]["result"], 2, "{runtime}");
        let lines = session.finish();
        for id in [1, 2] {
            let failed = lines
                .iter()
                .find(|v| v["message"]["id"] == id)
                .unwrap_or_else(|| panic!("{runtime}: no answer to {id}: {lines:#?}"));
            assert_eq!(failed["message"]["error"]["code"], -32603, "{runtime}");
            let text = failed["message"]["error"]["message"].as_str().unwrap();
            assert!(text.contains("killed by signal 9"), "{runtime}: {text}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A FIFO at `path`, opened for reading and writing: opening never blocks, and what is
/// written to it stays until read, whoever opens it when.
fn fifo(path: &Path) -> std::fs::File {
    let made = start(Command::new("mkfifo").arg(path)).wait().unwrap();
    assert!(made.success());
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

#[test]
fn a_request_the_crashed_child_never_read_goes_to_the_next_child_and_is_answered_once() {
    for runtime in RUNTIMES {
        let tag = tag();
        let dir = scratch(&tag);
        let (ready, go) = (dir.join("ready"), dir.join("go"));
        let (ready_fifo, mut go_fifo) = (fifo(&ready), fifo(&go));
        // The first child reads request 1 and closes its output; tether, seeing the output
        // end while a restart may follow, closes the child's input. The child says so through
        // `ready` and dies when told through `go`. The next child answers every request.
        let script = format!(
            "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; \
             if [ $n -le 1 ]; then read a; exec >&-; cat >/dev/null; echo closed > {ready}; \
               read word < {go}; exit 3; fi; \
             while read line; do \
               id=$(echo \"$line\" | sed 's/.*\"id\":\\([0-9]*\\).*/\\1/'); \
               echo \"{{\\\"jsonrpc\\\":\\\"2.0\\\",\\\"id\\\":$id,\\\"result\\\":$n}}\"; \
             done",
            count = dir.join("count").display(),
            ready = ready.display(),
            go = go.display(),
        );
        let mut session = Session::start(
            runtime,
            &[
                "--restart",
                "on-failure",
                "--backoff",
                "10",
                "--grace",
                "30000",
            ],
            &["sh", "-c", &script],
            &tag,
        );
        session.send(r#"{"jsonrpc":"2.0","id":1,"method":"work"}"#);
        let (tx, said) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(ready_fifo).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = said
            .recv_timeout(Duration::from_secs(30))
            .expect("the child's word");
        assert_eq!(line, "closed\n", "{runtime}");
        // tether writes nothing more to this child: request 2 waits in its queue, which the
        // invalid line behind it proves (standard input is taken in order).
        session.send(r#"{"jsonrpc":"2.0","id":2,"method":"work"}"#);
        session.send("not json");
        session.until(|v| v["event"] == "invalid_input");
        go_fifo.write_all(b"go\n").unwrap();
        // The restart line comes once the child is reaped: before or after the next child's
        // answer.
        let answer = session.until(|v| v["message"]["id"] == 2);
        assert_eq!(answer["message"]["result"], 2, "{runtime}: {answer}");
        if !session.seen.iter().any(|v| v["event"] == "restart") {
            session.until(|v| v["event"] == "restart");
        }
        let lines = session.finish();
        let restart = restarts(&lines);
        assert_eq!(restart.len(), 1, "{runtime}: {lines:#?}");
        assert_eq!(restart[0]["exit"]["code"], 3, "{runtime}");
        let answers = |id: u64| -> Vec<&Value> {
            lines
                .iter()
                .filter(|v| v["event"] == "message" && v["message"]["id"] == id)
                .collect()
        };
        // 1 was read by the child that died: its one answer is the error naming the end.
        let one = answers(1);
        assert_eq!(one.len(), 1, "{runtime}: {lines:#?}");
        assert_eq!(one[0]["message"]["error"]["code"], -32603, "{runtime}");
        // 2 was never written to it: the next child's answer is its only one.
        assert_eq!(answers(2), [answer].iter().collect::<Vec<_>>(), "{runtime}");
        drop(go_fifo);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_fork_bomb_under_pids_max_is_held_to_it() {
    if !enforceable("--pids-max", "16") {
        return;
    }
    for runtime in RUNTIMES {
        let tag = tag();
        // Bounded, so that a limit not in force could not hurt the machine: 200 forks at
        // most, each child sleeping; the forks the limit refuses are counted.
        let bomb = "import os, time\n\
                    kids = refused = 0\n\
                    for _ in range(200):\n\
                    \x20   try:\n\
                    \x20       pid = os.fork()\n\
                    \x20   except OSError:\n\
                    \x20       refused += 1\n\
                    \x20       continue\n\
                    \x20   if pid == 0:\n\
                    \x20       time.sleep(600)\n\
                    \x20       os._exit(0)\n\
                    \x20   kids += 1\n\
                    print('{\"jsonrpc\":\"2.0\",\"method\":\"armed\",\"params\":{\"kids\":%d,\"refused\":%d}}' % (kids, refused), flush=True)\n\
                    time.sleep(600)\n";
        let mut session = Session::start(
            runtime,
            &["--pids-max", "16"],
            &["python3", "-c", bomb],
            &tag,
        );
        let armed = session.until(|v| v["message"]["method"] == "armed");
        let params = &armed["message"]["params"];
        // The child is one of the 16.
        assert_eq!(params["kids"], 15, "{runtime}: {armed}");
        assert_eq!(params["refused"], 185, "{runtime}: {armed}");
        let tree = support::tagged(&format!("TETHER_TEST_TAG={tag}"));
        // tether itself carries the tag too.
        assert_eq!(tree.len(), 17, "{runtime}: {tree:?}");
        // The limit lives in a cgroup of the child's, which the check after the end finds gone.
        let limit = limit_of(session.child.id(), "pids.max");
        assert_eq!(limit.as_deref(), Some("16"), "{runtime}");
        let lines = session.finish();
        assert_eq!(exit_line(&lines)["cause"], "requested", "{runtime}");
    }
}

/// The value of `file` in the cgroup of tether `pid`'s child that has it (v1: a
/// `tether-<pid>-<n>`; v2: a `child-<n>` in `tether-<pid>`), if exactly one has.
fn limit_of(tether: u32, file: &str) -> Option<String> {
    let found: Vec<String> = cgroups_of(tether)
        .into_iter()
        .flat_map(|dir| [dir.clone()].into_iter().chain(subdirs(&dir)))
        .filter_map(|dir| std::fs::read_to_string(dir.join(file)).ok())
        .map(|text| text.trim().to_owned())
        .collect();
    match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

#[test]
fn each_limit_is_written_before_the_child_runs_and_goes_with_it() {
    let flags = [
        ("--memory-max", "48M"),
        ("--pids-max", "32"),
        ("--cpu-max", "20"),
    ];
    if !flags.iter().all(|(flag, value)| enforceable(flag, value)) {
        return;
    }
    for runtime in RUNTIMES {
        let tag = tag();
        let mut session = Session::start(
            runtime,
            &["--memory-max", "48M", "--pids-max", "32", "--cpu-max", "20"],
            &[
                "sh",
                "-c",
                "echo '{\"jsonrpc\":\"2.0\",\"method\":\"up\"}'; exec sleep 600",
            ],
            &tag,
        );
        session.until(|v| v["message"]["method"] == "up");
        let tether = session.child.id();
        // In v2 where the tree gives the controller, else in v1 (this host).
        let memory =
            limit_of(tether, "memory.max").or_else(|| limit_of(tether, "memory.limit_in_bytes"));
        assert_eq!(memory.as_deref(), Some("50331648"), "{runtime}");
        assert_eq!(
            limit_of(tether, "pids.max").as_deref(),
            Some("32"),
            "{runtime}"
        );
        let cpu = limit_of(tether, "cpu.max").or_else(|| {
            let quota = limit_of(tether, "cpu.cfs_quota_us")?;
            Some(format!(
                "{quota} {}",
                limit_of(tether, "cpu.cfs_period_us")?
            ))
        });
        assert_eq!(cpu.as_deref(), Some("20000 100000"), "{runtime}");
        let lines = session.finish();
        assert_eq!(exit_line(&lines)["cause"], "requested", "{runtime}");
    }
}

#[test]
fn a_memory_hog_under_memory_max_is_killed_and_the_cause_is_oom() {
    if !enforceable("--memory-max", "32M") {
        return;
    }
    for runtime in RUNTIMES {
        let tag = tag();
        // `tail` holds a line with no end in memory: 256 MiB at most, were no limit in force.
        let mut session = Session::start(
            runtime,
            &["--memory-max", "32M", "--stderr", "null"],
            &[
                "sh",
                "-c",
                "head -c 268435456 /dev/zero | tail; echo survived >&2",
            ],
            &tag,
        );
        session.until(|v| v["event"] == "exit");
        let lines = session.finish();
        let exit = exit_line(&lines);
        assert_eq!(exit["cause"], "oom", "{runtime}: {exit}");
        // Read and kept, though not logged.
        assert!(exit["stderr_tail"].is_string(), "{runtime}: {exit}");
    }
}

#[test]
fn limits_that_cannot_be_enforced_are_a_usage_error_and_those_that_can_are_accepted() {
    // Whichever path this machine takes, tether says so before running anything.
    for (flag, value) in [
        ("--memory-max", "64M"),
        ("--pids-max", "64"),
        ("--cpu-max", "50"),
    ] {
        let _ = enforceable(flag, value);
    }
    let refused = start(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "--memory-max", "12X", "--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let output = support::wait_output(refused, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown unit"));
}

#[test]
fn no_restart_follows_the_end_tether_asked_for() {
    for runtime in RUNTIMES {
        let tag = tag();
        // A child that dies badly when asked to stop: still tether's own shutdown.
        let mut session = Session::start(
            runtime,
            &["--restart", "always", "--grace", "100"],
            &[
                "sh",
                "-c",
                "trap 'exit 7' TERM; echo '{\"jsonrpc\":\"2.0\",\"method\":\"up\"}'; \
                 while true; do sleep 0.05; done",
            ],
            &tag,
        );
        session.until(|v| v["message"]["method"] == "up");
        let lines = session.finish();
        assert!(restarts(&lines).is_empty(), "{runtime}: {lines:#?}");
        assert_eq!(exit_line(&lines)["cause"], "requested", "{runtime}");
    }
}
