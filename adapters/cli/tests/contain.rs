//! `tether run` and `tether bridge` with each containment forced, under both runtimes: a
//! child whose descendant escapes into a session of its own (`setsid`) leaves nothing behind
//! with `--contain cgroup` or `subreaper`; with `--contain group` the escapee survives, as
//! documented. Every process of a test's tree carries a tag in its environment, which is how
//! the test finds what is left.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;

use support::state;

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// A leader whose child escapes into a session of its own and says so (`pid N`, which tether
/// reports as a malformed line), then both wait to be killed.
const TREE: &str = "setsid sh -c 'echo pid $$; exec sleep 300' & exec sleep 300";

fn tether(tag: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command.env("TETHER_TEST_TAG", tag);
    command
}

/// The processes carrying `tag` in their environment that are alive (not zombies).
fn alive(tag: &str) -> Vec<u32> {
    support::tagged(&format!("TETHER_TEST_TAG={tag}"))
}

/// Reads tether's event lines until the escapee has reported itself.
fn escaped(child: &mut std::process::Child) -> String {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("pid ") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "tether ended first"
        );
    }
    line
}

/// Kills each of `pids`, and reaps those that are this process's children (one test makes
/// this process a subreaper, so what tether leaves may come here).
fn kill(pids: &[u32]) {
    for &pid in pids {
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
    }
}

/// Whether this machine has a writable cgroup v2 (else the cgroup case says it is skipped).
fn cgroup_usable() -> bool {
    let probe = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--contain", "cgroup", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !probe.status.success() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED --contain cgroup: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
    }
    probe.status.success()
}

/// `tether run --contain MODE -- sh -c TREE`, whose standard input ends only once the
/// escapee is known to run (then the ladder starts); returns the escapee's report line.
fn run_tree(runtime: &str, mode: &str, tag: &str) -> String {
    let mut child = tether(tag)
        .args([
            "run",
            "--runtime",
            runtime,
            "--contain",
            mode,
            "--grace",
            "200",
        ])
        .args(["--", "sh", "-c", TREE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let report = escaped(&mut child);
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{runtime} {mode}: {status}");
    report
}

#[test]
fn run_contains_a_setsid_escapee() {
    let mut modes = vec!["subreaper", "auto"];
    if cgroup_usable() {
        modes.push("cgroup");
    }
    for runtime in RUNTIMES {
        for mode in &modes {
            let tag = format!("run-{runtime}-{mode}-{}", std::process::id());
            let report = run_tree(runtime, mode, &tag);
            // By the time tether has exited, the escapee is gone: the kill came before the
            // child was reaped and the session could end.
            assert_eq!(alive(&tag), Vec::<u32>::new(), "{runtime} {mode}: {report}");
        }
    }
}

/// One escapee in a session of its own and one double-forked daemon (its parent calls
/// `setsid`, starts it, and exits), each saying `pid N` (`$HOLD`, set by the test); the leader
/// waits to be killed.
const TWO_ESCAPES: &str =
    "setsid sh -c \"$HOLD\" & setsid sh -c 'sh -c \"$HOLD\" & exit 0'; exec sleep 300";

/// What each escapee of [`TWO_ESCAPES`] runs.
const HOLD: &str = "echo pid $$; exec sleep 300";

/// The pid in a line that reports `pid N`.
fn pid_in(line: &str) -> u32 {
    let digits = &line[line.find("pid ").expect("a pid report") + 4..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().expect("a pid")
}

/// `--grace 0` asks for the kill of what left the group with no time to wait for it: every
/// escapee must be killed all the same (the subreaper sweep used to look at its deadline
/// before its first kill, and killed nothing).
#[test]
fn run_with_no_grace_contains_a_setsid_grandchild_and_a_daemon() {
    let mut modes = vec!["subreaper", "auto"];
    if cgroup_usable() {
        modes.push("cgroup");
    }
    for runtime in RUNTIMES {
        for mode in &modes {
            let tag = format!("nograce-{runtime}-{mode}-{}", std::process::id());
            let mut child = tether(&tag)
                .args(["run", "--runtime", runtime, "--contain", mode])
                .args(["--grace", "0", "--", "sh", "-c", TWO_ESCAPES])
                .env("HOLD", HOLD)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut pids = Vec::new();
            let mut line = String::new();
            while pids.len() < 2 {
                line.clear();
                assert!(
                    stdout.read_line(&mut line).unwrap() > 0,
                    "tether ended first"
                );
                if line.contains("pid ") {
                    pids.push(pid_in(&line));
                }
            }
            // Both escaped: the input ends, and the ladder runs with no grace at all.
            drop(child.stdin.take());
            let status = child.wait().unwrap();
            let left = alive(&tag);
            kill(&left);
            assert!(status.success(), "{runtime} {mode}: {status}");
            assert_eq!(
                left,
                Vec::<u32>::new(),
                "{runtime} {mode}: {pids:?} escaped"
            );
        }
    }
}

/// A child that aborts with a grandchild in a session of its own, under `--grace 0`: the
/// grandchild is killed and comes to tether (a subreaper) as it dies, and tether must reap it
/// before it exits. Otherwise its zombie is handed on to tether's parent — this test, made a
/// subreaper for the purpose, where it would stay. A cgroup's kill used to return at once and
/// leave it; a race, so each mode runs twenty times.
#[test]
fn run_with_no_grace_hands_no_zombie_to_its_parent() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
    // The grandchild writes its pid to $PIDFILE, then kills the leader (no core dump): the
    // leader dies on its own. A file, not a line through tether: with no grace, the session
    // may end before tether has read what the tree wrote.
    const ABORTING: &str = "ulimit -c 0; \
        setsid sh -c 'echo $$ > \"$PIDFILE\"; kill -ABRT $PPID; exec sleep 300' & exec sleep 300";
    let mut modes = vec!["subreaper"];
    if cgroup_usable() {
        modes.push("cgroup");
    }
    for runtime in RUNTIMES {
        for mode in &modes {
            for run in 0..20 {
                let tag = format!("abort-{runtime}-{mode}-{run}-{}", std::process::id());
                let pidfile = std::env::temp_dir().join(&tag);
                // Standard input stays open: the session ends with the child.
                let mut child = tether(&tag)
                    .args(["run", "--runtime", runtime, "--contain", mode])
                    .args(["--grace", "0", "--", "sh", "-c", ABORTING])
                    .env("PIDFILE", &pidfile)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                // (`wait` would close it first.)
                let stdin = child.stdin.take();
                let status = child.wait().unwrap();
                drop(stdin);
                let written = std::fs::read_to_string(&pidfile);
                let _ = std::fs::remove_file(&pidfile);
                let grandchild: u32 = written.unwrap().trim().parse().unwrap();
                let state = state(grandchild);
                if state.is_some() {
                    kill(&[grandchild]);
                }
                assert!(status.success(), "{runtime} {mode}: {status}");
                assert_eq!(
                    state, None,
                    "{runtime} {mode} run {run}: the grandchild {grandchild} outlived tether"
                );
            }
        }
    }
}

/// This process's cgroup directory, found as tether finds its own (the cgroup2 mount in
/// `/proc/self/mountinfo`, joined with the `0::` line of `/proc/self/cgroup`): a tether
/// started from here starts in the same cgroup. Mount points with escapes are not handled.
fn own_cgroup() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (root, mount) = mountinfo
        .lines()
        .find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            (after.split(' ').next()? == "cgroup2").then_some(())?;
            let mut fields = before.split(' ').skip(3);
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .expect("a cgroup2 mount");
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .expect("a 0:: line");
    Path::new(&mount).join(Path::new(path).strip_prefix(&root).unwrap())
}

/// A tether ended by `SIGKILL` removes none of its cgroups. The next tether to start removes
/// the empty ones of tethers that are gone (`tether-<pid>` with its `child-<n>`, and
/// `tether-<pid>-probe`), and nothing else.
#[test]
fn a_new_tether_removes_the_stale_cgroups_of_gone_ones() {
    if !cgroup_usable() {
        return;
    }
    let own = own_cgroup();
    for runtime in RUNTIMES {
        // What a killed tether leaves: a pid that was alive and is gone.
        let mut gone = Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        let stale = [
            own.join(format!("tether-{pid}/child-0")),
            own.join(format!("tether-{pid}")),
            own.join(format!("tether-{pid}-probe")),
        ];
        // This process is alive; `tethered-` is not tether's name.
        let kept = [
            own.join(format!("tether-{}/child-0", std::process::id())),
            own.join(format!("tether-{}", std::process::id())),
            own.join(format!("tethered-{pid}")),
        ];
        for dir in stale.iter().chain(&kept) {
            std::fs::create_dir_all(dir).unwrap();
        }
        let status = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args([
                "run",
                "--runtime",
                runtime,
                "--contain",
                "cgroup",
                "--",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        let left: Vec<&PathBuf> = stale.iter().filter(|d| d.exists()).collect();
        let removed: Vec<&PathBuf> = kept.iter().filter(|d| !d.exists()).collect();
        for dir in kept.iter().chain(&stale) {
            let _ = std::fs::remove_dir(dir);
        }
        assert!(status.success(), "{runtime}: {status}");
        assert_eq!(
            left,
            Vec::<&PathBuf>::new(),
            "{runtime}: stale cgroups left"
        );
        assert_eq!(
            removed,
            Vec::<&PathBuf>::new(),
            "{runtime}: not stale, removed"
        );
    }
}

#[test]
fn run_with_the_group_alone_leaves_the_escapee() {
    let tag = format!("run-group-{}", std::process::id());
    run_tree("tokio", "group", &tag);
    let left = alive(&tag);
    kill(&left);
    assert_eq!(
        left.len(),
        1,
        "the setsid escapee outlives a process group kill"
    );
}

#[test]
fn bridge_contains_each_sessions_escapee() {
    let mut modes = vec!["subreaper"];
    if cgroup_usable() {
        modes.push("cgroup");
    }
    for runtime in RUNTIMES {
        for mode in &modes {
            let tag = format!("bridge-{runtime}-{mode}-{}", std::process::id());
            let mut bridge = tether(&tag)
                .args([
                    "bridge",
                    "--runtime",
                    runtime,
                    "--contain",
                    mode,
                    "--grace",
                    "200",
                ])
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--auth",
                    "none",
                    "--",
                    "sh",
                    "-c",
                    TREE,
                ])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let listening = support::listening(&mut bridge);
            let url = format!("ws://{}/", listening["addr"].as_str().unwrap());
            // One session; once its escapee runs (the bridge logs its `pid N` line), the
            // client's input ends, so the session ends and its child's tree goes.
            let mut client = tether(&tag)
                .args(["connect", "--runtime", runtime, "--linger", "0", &url])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let mut log = BufReader::new(bridge.stderr.as_mut().unwrap());
            let mut line = String::new();
            while !line.contains("pid ") {
                line.clear();
                assert!(
                    log.read_line(&mut line).unwrap() > 0,
                    "the bridge ended first"
                );
            }
            drop(client.stdin.take());
            assert!(client.wait().unwrap().success(), "{runtime} {mode}");
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(bridge.id() as i32).unwrap(),
                rustix::process::Signal::INT,
            )
            .unwrap();
            assert!(bridge.wait().unwrap().success());
            assert_eq!(alive(&tag), Vec::<u32>::new(), "{runtime} {mode}");
        }
    }
}
