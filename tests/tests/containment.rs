//! Containment with real processes: trees whose descendants leave the process group
//! (`setsid`, a double-forked daemon, `setpgid`, a leader that exits at once, a descendant that
//! keeps forking), each run under each mechanism through the building blocks of
//! `tether_io::process::contain`. After each: every process of the tree gone (not even a
//! zombie), this process without children, and back to the file descriptors it had before.
//!
//! A mechanism that cannot work on this machine says so by name instead of passing: the cgroup
//! test writes a `SKIPPED` line straight to standard error (past the test harness's capture)
//! when no cgroup v2 is writable here, and fails instead when `TETHER_REQUIRE_CGROUP=1` is set.
//! Run with `--nocapture` to see how long each kill took.
//!
//! File descriptor counts and the subreaper's orphans are process-wide, so the tests take
//! turns through one lock.

#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader, Lines, Write};
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use support::{become_subreaper, children, fd_count, state, tagged, ESCAPES};
use tether_io::process::contain::{Availability, Container, Containment, Mechanism};

/// How long a kill may take before what is left counts as a failure.
const KILL_BUDGET: Duration = Duration::from_secs(10);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn cgroup_contains_every_escape() {
    let _turn = serial();
    become_subreaper();
    let available = Availability::detect();
    let mechanism = match available.resolve(Containment::Cgroup) {
        Ok(mechanism) => mechanism,
        Err(err) if std::env::var_os("TETHER_REQUIRE_CGROUP").is_some_and(|v| v == "1") => {
            panic!("cgroup v2 not writable here: {err}")
        }
        Err(err) => {
            // Straight to the standard error, past the harness's capture: a skip is visible.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED cgroup_contains_every_escape: cgroup v2 not writable here: {err} \
                 (TETHER_REQUIRE_CGROUP=1 makes this a failure)"
            );
            return;
        }
    };
    assert_eq!(mechanism, Mechanism::Cgroup);
    eprintln!(
        "cgroup under {}, cgroup.kill: {}",
        available.cgroup().unwrap().display(),
        available.cgroup_kill()
    );
    for (scenario, reports) in ESCAPES {
        contain(scenario, reports, mechanism, &available, KILL_BUDGET);
    }
    let parent = available
        .cgroup()
        .unwrap()
        .join(format!("tether-{}", std::process::id()));
    assert!(!parent.exists(), "{} was removed", parent.display());
}

#[test]
fn subreaper_sweeps_every_escape() {
    let _turn = serial();
    become_subreaper();
    let available = Availability::detect();
    assert!(available.subreaper());
    let mechanism = available.resolve(Containment::Subreaper).unwrap();
    assert_eq!(mechanism, Mechanism::Subreaper);
    for (scenario, reports) in ESCAPES {
        contain(scenario, reports, mechanism, &available, KILL_BUDGET);
    }
}

/// A kill whose deadline has passed (`--grace 0` comes to that) still kills everything once
/// and waits a moment for the deaths, so that everything is reaped here: the sweep used to
/// look at the deadline before its first kill, and killed nothing.
#[test]
fn a_past_deadline_still_contains_every_escape() {
    let _turn = serial();
    become_subreaper();
    let available = Availability::detect();
    let mut mechanisms = vec![Mechanism::Subreaper];
    match available.resolve(Containment::Cgroup) {
        Ok(mechanism) => mechanisms.push(mechanism),
        Err(err) if std::env::var_os("TETHER_REQUIRE_CGROUP").is_some_and(|v| v == "1") => {
            panic!("cgroup v2 not writable here: {err}")
        }
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED a_past_deadline_still_contains_every_escape under cgroup: cgroup v2 \
                 not writable here: {err}"
            );
        }
    }
    for mechanism in mechanisms {
        for (scenario, reports) in ESCAPES {
            contain(scenario, reports, mechanism, &available, Duration::ZERO);
        }
    }
}

/// A descendant that outlives the kill is reported, not only logged: in the outcome's `left`
/// and in the container's [`Survivors`](tether_io::process::contain::Survivors), which a clone
/// taken before the kill still reads after the container is gone. A process frozen by the
/// cgroup v1 freezer does not die of `SIGKILL` until it is thawed, which makes a survivor on
/// demand (on a host with a writable v1 freezer hierarchy; skipped with a reason elsewhere).
#[test]
fn a_descendant_that_outlives_the_kill_is_recorded() {
    let _turn = serial();
    become_subreaper();
    let Some(freezer) = V1Freezer::new() else {
        return;
    };
    let available = Availability::detect();
    let mut mechanisms = vec![Mechanism::Subreaper];
    if available.resolve(Containment::Cgroup).is_ok() {
        mechanisms.push(Mechanism::Cgroup);
    }
    for mechanism in mechanisms {
        let fds = fd_count();
        let mut tree = Tree::spawn("setsid_grandchild", 1, mechanism, &available);
        let escaped = tree.pids[0];
        let survivors = tree.container.survivors().clone();
        assert_eq!(survivors.get(), Vec::<u32>::new(), "{mechanism}: none yet");
        freezer.freeze(escaped);
        let outcome = tree.container.kill(Instant::now());
        assert_eq!(outcome.left, vec![escaped], "{mechanism}: {outcome:?}");
        assert_eq!(survivors.get(), vec![escaped], "{mechanism}: recorded");
        // Thawed, it dies of the kill it was sent, a zombie of this process; the container
        // reaps it when dropped.
        freezer.thaw();
        let start = Instant::now();
        while state(escaped) != Some('Z') {
            assert!(start.elapsed() < KILL_BUDGET, "{mechanism}: {escaped} died");
            std::thread::sleep(Duration::from_millis(5));
        }
        tree.child.wait().unwrap();
        drop(tree);
        assert_eq!(state(escaped), None, "{mechanism}: reaped by the drop");
        assert_eq!(
            survivors.get(),
            vec![escaped],
            "{mechanism}: a record stays"
        );
        assert_eq!(children(), Vec::<u32>::new(), "{mechanism}: no child left");
        assert_eq!(fd_count(), fds, "{mechanism}: descriptors back to baseline");
    }
}

/// A cgroup of the v1 freezer hierarchy (`/sys/fs/cgroup/freezer` on a hybrid host), removed
/// when dropped, thawed first.
struct V1Freezer {
    dir: PathBuf,
}

impl V1Freezer {
    /// Creates one under the hierarchy's root, or says (on standard error, past the harness's
    /// capture) why the test is skipped.
    fn new() -> Option<V1Freezer> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = mountinfo.lines().find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut fs = after.split(' ');
            let v1 = fs.next()? == "cgroup" && fs.nth(1)?.split(',').any(|o| o == "freezer");
            v1.then(|| before.split(' ').nth(4).map(PathBuf::from))?
        });
        let Some(mount) = mount else {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED a_descendant_that_outlives_the_kill_is_recorded: no cgroup v1 \
                 freezer is mounted here (it makes a process that SIGKILL does not end)"
            );
            return None;
        };
        let dir = mount.join(format!("tether-test-{}", std::process::id()));
        if let Err(err) = std::fs::create_dir(&dir) {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED a_descendant_that_outlives_the_kill_is_recorded: cannot create {}: \
                 {err}",
                dir.display()
            );
            return None;
        }
        Some(V1Freezer { dir })
    }

    /// Moves `pid` in and freezes it; returns once the freezer says it is frozen.
    fn freeze(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
        std::fs::write(self.dir.join("freezer.state"), "FROZEN").unwrap();
        let start = Instant::now();
        while std::fs::read_to_string(self.dir.join("freezer.state")).unwrap() != "FROZEN\n" {
            assert!(start.elapsed() < KILL_BUDGET, "{pid} did not freeze");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn thaw(&self) {
        std::fs::write(self.dir.join("freezer.state"), "THAWED").unwrap();
    }
}

impl Drop for V1Freezer {
    fn drop(&mut self) {
        self.thaw();
        // Empty once every process in it has died: a test that failed may still hold one.
        for pid in std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse::<i32>().ok())
        {
            let pid = rustix::process::Pid::from_raw(pid).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
        if let Err(err) = std::fs::remove_dir(&self.dir) {
            let _ = writeln!(std::io::stderr(), "{}: {err}", self.dir.display());
        }
    }
}

/// The process group alone reaches what stays in the group, and nothing that leaves it: this
/// is what the two stronger mechanisms are for.
#[test]
fn group_leaves_a_setsid_grandchild_behind() {
    let _turn = serial();
    become_subreaper();
    let fds = fd_count();
    let available = Availability::detect();
    assert_eq!(
        available.resolve(Containment::Group).unwrap(),
        Mechanism::Group
    );
    let mut tree = Tree::spawn("setsid_grandchild", 1, Mechanism::Group, &available);
    let outcome = tree.container.kill(Instant::now() + KILL_BUDGET);
    assert_eq!((outcome.reached, outcome.left), (None, Vec::new()));
    tree.child.wait().unwrap();
    let escaped = tree.pids[0];
    assert!(
        matches!(state(escaped), Some('S' | 'R')),
        "the setsid grandchild {escaped} survived the group kill"
    );
    // It came to this process (the subreaper) when the leader died: end it by hand.
    let pid = rustix::process::Pid::from_raw(escaped as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()).unwrap();
    drop(tree);
    assert_eq!(children(), Vec::<u32>::new());
    assert_eq!(fd_count(), fds);
}

#[test]
fn containment_names_parse_and_print() {
    for (text, value) in [
        ("auto", Containment::Auto),
        ("cgroup", Containment::Cgroup),
        ("subreaper", Containment::Subreaper),
        ("group", Containment::Group),
    ] {
        assert_eq!(text.parse::<Containment>(), Ok(value));
        assert_eq!(value.to_string(), text);
    }
    let err = "Cgroup".parse::<Containment>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown containment \"Cgroup\": expected auto, cgroup, subreaper or group"
    );
    assert_eq!(Containment::default(), Containment::Auto);
    assert_eq!(Mechanism::Subreaper.to_string(), "subreaper");
}

/// One `tether-escape` tree under a container.
struct Tree {
    container: Container,
    child: std::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every pid the tree has reported so far.
    pids: Vec<u32>,
    /// Set in the environment of the whole tree, to find any of it in `/proc`.
    tag: String,
}

impl Tree {
    /// Spawns `scenario` and waits until `reports` of its processes have escaped.
    fn spawn(
        scenario: &str,
        reports: usize,
        mechanism: Mechanism,
        available: &Availability,
    ) -> Tree {
        let mut container = Container::new(mechanism, available).expect("container");
        assert_eq!(container.mechanism(), mechanism);
        let tag = format!("{scenario}-{mechanism}-{}", std::process::id());
        let mut command = Command::new(env!("CARGO_BIN_EXE_tether-escape"));
        command
            .arg(scenario)
            .env("TETHER_TEST_TAG", &tag)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        container.configure(&mut command);
        let mut child = command.spawn().expect("spawn tether-escape");
        container.started(child.id());
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut tree = Tree {
            container,
            child,
            lines,
            pids: Vec::new(),
            tag,
        };
        while tree.pids.len() < reports {
            let line = tree.lines.next().expect("a pid line").unwrap();
            tree.pids.push(pid_of(&line));
        }
        for &p in &tree.pids {
            assert!(
                state(p).is_some_and(|s| s != 'Z'),
                "{scenario}: {p} is alive"
            );
        }
        tree
    }

    /// The tree's processes that are alive (not zombies), found by the tag in their
    /// environment.
    fn alive(&self) -> Vec<u32> {
        tagged(&self.tag)
    }
}

impl Drop for Tree {
    /// After a failure, ends what is left of the tree (found by its tag, so only processes
    /// this test started), so that one failing scenario does not leave processes behind.
    fn drop(&mut self) {
        for pid in self.alive() {
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

fn pid_of(line: &str) -> u32 {
    line.strip_prefix("pid ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a pid line: {line:?}"))
}

/// Runs one scenario under `mechanism`, kills it with `budget` to wait, and checks that nothing
/// is left.
fn contain(
    scenario: &str,
    reports: usize,
    mechanism: Mechanism,
    available: &Availability,
    budget: Duration,
) {
    let fds = fd_count();
    let mut tree = Tree::spawn(scenario, reports, mechanism, available);
    let outcome = tree.container.kill(Instant::now() + budget);
    eprintln!(
        "{mechanism}: {scenario}: {} processes reached in {:?}",
        outcome.reached.unwrap_or_default(),
        outcome.elapsed,
    );
    assert_eq!(outcome.mechanism, mechanism);
    assert_eq!(outcome.left, Vec::<u32>::new(), "{scenario}: left behind");
    assert!(
        outcome.reached.unwrap() >= reports,
        "{scenario}: {outcome:?}"
    );
    // The watcher's part: the container never reaps the leader. It signals it, but does not
    // wait for that death: until the leader is reaped it may still show as alive for a moment,
    // so the tree is looked at only once it is.
    tree.child.wait().unwrap();
    assert_eq!(tree.alive(), Vec::<u32>::new(), "{scenario}: alive");
    // Nothing holds the tree's stdout any more, so this reads to the end at once; the pids
    // reported meanwhile (the forker's) are checked too.
    for line in tree.lines.by_ref() {
        tree.pids.push(pid_of(&line.unwrap()));
    }
    for &p in &tree.pids {
        assert_eq!(state(p), None, "{scenario}: {p} is gone, not even a zombie");
    }
    assert_eq!(children(), Vec::<u32>::new(), "{scenario}: no child left");
    drop(tree);
    assert_eq!(fd_count(), fds, "{scenario}: descriptors back to baseline");
}
