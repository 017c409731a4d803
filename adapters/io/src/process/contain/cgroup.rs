//! cgroup v2: one cgroup per child, entered before the child runs, killed as one.
//!
//! Layout: `<own cgroup>/tether-<pid>/child-<n>`, where `<own cgroup>` is this process's
//! cgroup and `<pid>` this process. The `tether-<pid>` directory exists while any child cgroup
//! does, and is removed with the last one.
//!
//! cgroup v2's "no internal processes" rule says a cgroup that enables controllers for its
//! children (`cgroup.subtree_control`) may hold no process itself (the root excepted). It is
//! kept by construction: processes only ever enter the `child-<n>` leaves, and `tether-<pid>`
//! holds none. Grouping, freezing and killing need no controller; only a child's limits do,
//! and `process::limits` enables their controllers in `tether-<pid>` (and at this process's
//! own cgroup only where the rule allows it: the root).
//!
//! Moving a process needs write access to `cgroup.procs` of the common ancestor of where it
//! is and where it goes, here this process's own cgroup: root has it; a delegated subtree
//! (systemd `Delegate=yes`) gives it. [`Hierarchy::probe`] checks that a cgroup can be
//! created; a move that is refused fails the spawn.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::proc::{self, Held};

/// Where this process's cgroup is, in the cgroup v2 hierarchy.
#[derive(Debug)]
pub(super) struct Hierarchy {
    /// This process's cgroup directory.
    own: PathBuf,
    /// This process's cgroup as `/proc/self/cgroup` names it.
    path: String,
    kill: bool,
}

impl Hierarchy {
    /// Finds the cgroup2 mount in `/proc/self/mountinfo` and this process's cgroup from the
    /// `0::` line of `/proc/self/cgroup`.
    pub(super) fn find() -> Result<Hierarchy, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let cgroups = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let (own, path) = own_cgroup(&mountinfo, &cgroups)?;
        Ok(Hierarchy {
            own,
            path: path.to_owned(),
            kill: false,
        })
    }

    /// Checks that a cgroup can be created here (by creating and removing one), and whether
    /// it has `cgroup.kill`. The first time in this process, also removes the empty cgroups
    /// that tethers now gone left here (see [`remove_stale`]).
    pub(super) fn probe(mut self) -> Result<Hierarchy, String> {
        let probe = self
            .own
            .join(format!("tether-{}-probe", std::process::id()));
        fs::create_dir(&probe)
            .map_err(|e| format!("cannot create a cgroup in {}: {e}", self.own.display()))?;
        self.kill = probe.join("cgroup.kill").exists();
        let _ = fs::remove_dir(&probe);
        static STALE: Once = Once::new();
        STALE.call_once(|| remove_stale(&self.own));
        Ok(self)
    }

    /// This process's own cgroup directory.
    pub(super) fn own(&self) -> &Path {
        &self.own
    }

    /// Whether `cgroup.kill` exists (Linux 5.14 and later).
    pub(super) fn has_kill(&self) -> bool {
        self.kill
    }
}

/// The directory of this process's cgroup: the cgroup2 mount point joined with the `0::` path,
/// taken relative to the mount's root (a bind mount or a cgroup namespace may mount a subtree);
/// and that path.
fn own_cgroup<'a>(mountinfo: &str, cgroups: &'a str) -> Result<(PathBuf, &'a str), String> {
    // mountinfo: "id parent major:minor root mount-point options [optional...] - fstype ..."
    let (root, mount) = mountinfo
        .lines()
        .find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            (after.split(' ').next()? == "cgroup2").then_some(())?;
            let mut fields = before.split(' ').skip(3);
            Some((unescape(fields.next()?), unescape(fields.next()?)))
        })
        .ok_or("no cgroup2 hierarchy is mounted")?;
    let path = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")?;
    let relative = Path::new(path).strip_prefix(&root).map_err(|_| {
        format!("this process's cgroup {path} is outside the mounted cgroup2 root {root}")
    })?;
    Ok((Path::new(&mount).join(relative), path))
}

/// Removes, from `own` (this process's cgroup), the empty cgroups that tethers now gone left
/// behind: a tether ended by `SIGKILL` removes nothing, and each would leave a
/// `tether-<pid>` (with its `child-<n>`), or a `tether-<pid>-probe`, for good.
///
/// Only directories named exactly so are touched, and only for a `<pid>` that is not alive
/// (no `/proc/<pid>`; a pid since reused leaves its cgroups in place, which errs on the safe
/// side). Each is removed with `rmdir`, which the kernel refuses for a cgroup that holds a
/// process or a cgroup of its own: a cgroup still in use, or anything not made by tether (a
/// foreign directory inside `tether-<pid>` keeps that one too), stays. A tether of another pid
/// namespace sharing this cgroup directory looks gone from here; the only cgroups of it that
/// can be removed are empty ones, such as a child's in the moment before the child enters it,
/// whose spawn then fails: such a sharing is not supported.
fn remove_stale(own: &Path) {
    let me = std::process::id();
    let gone = |pid: u32| pid != me && !Path::new("/proc").join(pid.to_string()).exists();
    let Ok(entries) = fs::read_dir(own) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("tether-") else {
            continue;
        };
        let (pid, probe) = match rest.strip_suffix("-probe") {
            Some(pid) => (pid, true),
            None => (rest, false),
        };
        let Some(pid) = number(pid).and_then(|p| u32::try_from(p).ok()) else {
            continue;
        };
        if pid == 0 || !gone(pid) {
            continue;
        }
        let dir = entry.path();
        if !probe {
            for child in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let leaf = child
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("child-"))
                    .and_then(number)
                    .is_some();
                if leaf && child.file_type().is_ok_and(|t| t.is_dir()) {
                    removed(&child.path(), fs::remove_dir(child.path()));
                }
            }
        }
        removed(&dir, fs::remove_dir(&dir));
    }
}

/// Logs what [`remove_stale`] did with one directory.
fn removed(dir: &Path, result: io::Result<()>) {
    match result {
        Ok(()) => tracing::debug!(dir = %dir.display(), "removed a stale cgroup"),
        Err(err) => tracing::debug!(dir = %dir.display(), %err, "a stale cgroup stays"),
    }
}

/// A number as tether writes it in a cgroup's name: decimal digits, no sign, no leading zero.
fn number(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `<own cgroup>/tether-<pid>`, shared by every child cgroup alive, removed with the last.
#[derive(Debug)]
struct Parent {
    dir: PathBuf,
    next: AtomicU64,
}

static PARENT: Mutex<Weak<Parent>> = Mutex::new(Weak::new());

impl Parent {
    fn get(hierarchy: &Hierarchy) -> io::Result<Arc<Parent>> {
        let mut slot = PARENT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(parent) = slot.upgrade() {
            return Ok(parent);
        }
        let dir = hierarchy.own.join(format!("tether-{}", std::process::id()));
        match fs::create_dir(&dir) {
            // Left by an earlier parent whose removal raced with this creation: reuse it.
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let parent = Arc::new(Parent {
            dir,
            next: AtomicU64::new(0),
        });
        *slot = Arc::downgrade(&parent);
        Ok(parent)
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        // Under the lock, and only if no new parent took this one's place in the meantime
        // (reusing its directory).
        let slot = PARENT.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.upgrade().is_some() {
            return;
        }
        if let Err(err) = fs::remove_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %err, "cannot remove the cgroup");
        }
    }
}

/// One child's cgroup.
#[derive(Debug)]
pub(super) struct ChildCgroup {
    dir: PathBuf,
    /// `cgroup.procs`, opened for writing before the fork, so that the child has only to
    /// `write` to enter.
    procs: Arc<File>,
    /// `cgroup.events`, open for reading and waiting on.
    events: File,
    /// This cgroup as `/proc/PID/cgroup` names it.
    path: String,
    /// Whether `cgroup.kill` exists.
    kill_file: bool,
    /// The child, once spawned: never reaped here.
    leader: Option<u32>,
    /// Held, never read: the parent directory lives as long as any child cgroup. Declared
    /// last, so dropped after this one's directory is removed.
    _parent: Arc<Parent>,
}

/// What [`ChildCgroup::kill`] did.
#[derive(Debug)]
pub(super) struct Killed {
    pub(super) reached: usize,
    pub(super) left: Vec<u32>,
}

impl ChildCgroup {
    /// Creates `tether-<pid>/child-<n>` under this process's cgroup.
    pub(super) fn create(hierarchy: &Hierarchy) -> io::Result<ChildCgroup> {
        let parent = Parent::get(hierarchy)?;
        let n = parent.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("tether-{}/child-{n}", std::process::id());
        let dir = parent.dir.join(format!("child-{n}"));
        let path = match hierarchy.path.as_str() {
            "/" => format!("/{name}"),
            own => format!("{own}/{name}"),
        };
        fs::create_dir(&dir)?;
        let opened = OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .and_then(|procs| Ok((procs, File::open(dir.join("cgroup.events"))?)));
        match opened {
            Ok((procs, events)) => Ok(ChildCgroup {
                dir,
                procs: Arc::new(procs),
                events,
                path,
                kill_file: hierarchy.kill,
                leader: None,
                _parent: parent,
            }),
            Err(err) => {
                let _ = fs::remove_dir(&dir);
                Err(err)
            }
        }
    }

    /// Has the child write `0` (itself) into `cgroup.procs` between fork and exec, so that it
    /// and everything it starts are inside before it runs a single instruction of its own.
    pub(super) fn configure(&self, command: &mut Command) {
        // The closure keeps the file open for as long as the command lives.
        let procs = Arc::clone(&self.procs);
        // SAFETY: between fork and exec the closure makes one `write` system call, which is
        // async-signal-safe; it allocates nothing and takes no lock (the file was opened
        // before the fork, and its descriptor is close-on-exec).
        unsafe {
            command.pre_exec(move || {
                // SAFETY: `procs` is alive in this closure, so its descriptor is open.
                let fd = rustix::fd::BorrowedFd::borrow_raw(procs.as_raw_fd());
                rustix::io::write(fd, b"0")?;
                Ok(())
            });
        }
    }

    /// The cgroup's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the child, once spawned: its watcher reaps it, so nothing here ever does.
    pub(super) fn started(&mut self, pid: u32) {
        self.leader = Some(pid);
    }

    /// Kills everything in the cgroup, and reaps every process of it that comes to this
    /// process (all but the child, which its watcher reaps), waiting until `deadline` at most
    /// for them to die. The kill goes out before the clock is looked at, so a deadline already
    /// past still kills once and reaps what has died.
    ///
    /// The wait is for each process, not only for the cgroup to empty: a process leaves the
    /// cgroup's count (`populated 0`) early in its exit, before it is a zombie and before its
    /// children are handed on, so the emptiness alone can come a moment before there is
    /// anything to reap. What comes here is found by its cgroup: a zombie, or a process that
    /// is still exiting, stays in its cgroup (`/proc/PID/cgroup` still names it), which is how
    /// this process's children from this cgroup are told from its others.
    pub(super) fn kill(&self, deadline: Instant) -> Killed {
        let reached = self.pids().len();
        let me = std::process::id();
        let mut first = true;
        loop {
            // Once whatever the deadline; again if something is still there (a process forked
            // as the freeze fallback listed the others, say).
            if first || self.populated() {
                self.end(deadline);
                first = false;
            }
            let mut exiting = Vec::new();
            for stat in proc::all().unwrap_or_default() {
                let leader = Some(stat.pid) == self.leader;
                if !(stat.ppid == me || leader) || !self.holds(stat.pid) {
                    continue;
                }
                if !stat.zombie {
                    // The child too, while it dies: its children come here only once it has.
                    exiting.push(stat);
                } else if !leader {
                    proc::reap(stat.pid);
                }
            }
            let populated = self.populated();
            if !populated && exiting.is_empty() {
                return Killed {
                    reached,
                    left: Vec::new(),
                };
            }
            if crate::clock::now() >= deadline {
                let mut left = self.pids();
                for stat in exiting {
                    if !left.contains(&stat.pid) && Some(stat.pid) != self.leader {
                        left.push(stat.pid);
                    }
                }
                return Killed { reached, left };
            }
            if exiting.is_empty() {
                // What is left is not this process's yet: its parents are still in the
                // cgroup.
                self.wait_events("populated 0", deadline);
            }
            for held in exiting.into_iter().filter_map(Held::open) {
                held.wait_exit(deadline);
            }
        }
    }

    /// Kills everything in the cgroup. With `cgroup.kill` (Linux 5.14 and later) the kernel
    /// kills every process at once, forks racing with it included. Without it: freeze
    /// (nothing forks in a frozen cgroup), `SIGKILL` every process listed (a frozen process
    /// dies of it all the same), thaw; the wait for the freeze is bounded by `deadline`.
    fn end(&self, deadline: Instant) {
        let killed = if self.kill_file {
            self.write("cgroup.kill", b"1")
        } else {
            self.freeze_and_kill(deadline)
        };
        if let Err(err) = killed {
            tracing::warn!(dir = %self.dir.display(), %err, "cannot kill the cgroup");
        }
    }

    fn freeze_and_kill(&self, deadline: Instant) -> io::Result<()> {
        self.write("cgroup.freeze", b"1")?;
        if !self.wait_events("frozen 1", deadline) {
            tracing::warn!(dir = %self.dir.display(), "the cgroup did not freeze in time");
        }
        for held in self.listed() {
            held.kill();
        }
        self.write("cgroup.freeze", b"0")
    }

    /// Whether a process is in the cgroup (one that has begun to exit no longer counts).
    fn populated(&self) -> bool {
        match self.read_events() {
            Ok(text) => !text.lines().any(|l| l == "populated 0"),
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), %err, "cannot read cgroup.events");
                false
            }
        }
    }

    /// Whether process `pid` is (or, a zombie, was) in this cgroup.
    fn holds(&self, pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
            text.lines()
                .filter_map(|l| l.strip_prefix("0::"))
                .any(|path| path == self.path)
        })
    }

    /// The processes in the cgroup now, each held by a pidfd.
    fn listed(&self) -> Vec<Held> {
        self.pids()
            .into_iter()
            .filter_map(proc::stat)
            .filter_map(Held::open)
            .collect()
    }

    fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.parse().ok()).collect())
            .unwrap_or_default()
    }

    fn write(&self, file: &str, value: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .open(self.dir.join(file))?
            .write_all(value)
    }

    fn read_events(&self) -> io::Result<String> {
        let mut text = String::new();
        (&self.events).seek(SeekFrom::Start(0))?;
        (&self.events).read_to_string(&mut text)?;
        Ok(text)
    }

    /// Waits until `cgroup.events` has the line `line`, or until `deadline`; says whether it
    /// came. The kernel signals every change of that file as `POLLPRI` to a reader that has
    /// read it since the last change, so this waits on an event, without polling.
    fn wait_events(&self, line: &str, deadline: Instant) -> bool {
        loop {
            match self.read_events() {
                Ok(text) if text.lines().any(|l| l == line) => return true,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(dir = %self.dir.display(), %err, "cannot read cgroup.events");
                    return false;
                }
            }
            let left = deadline.saturating_duration_since(crate::clock::now());
            let Ok(timeout) = Timespec::try_from(left) else {
                return false;
            };
            let mut fds = [PollFd::new(&self.events, PollFlags::PRI)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return false,
                Ok(_) | Err(Errno::INTR) => {}
                Err(err) => {
                    tracing::warn!(dir = %self.dir.display(), %err, "cannot wait on cgroup.events");
                    return false;
                }
            }
        }
    }
}

impl Drop for ChildCgroup {
    /// Removes the cgroup. One still holding processes cannot be removed: they are killed
    /// first, with a short bound on the wait. Either way, the zombies of the cgroup that came
    /// here are reaped first: once the cgroup is gone they no longer name it, and could not be
    /// told from this process's other children.
    fn drop(&mut self) {
        let killed = self.kill(crate::clock::now() + std::time::Duration::from_secs(1));
        if let Err(err) = fs::remove_dir(&self.dir) {
            tracing::warn!(
                dir = %self.dir.display(), %err, left = ?killed.left,
                "cannot remove the cgroup"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use std::time::Duration;

    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_hybrid_mount_and_the_own_cgroup() {
        let (own, path) = own_cgroup(HYBRID, "4:memory:/x\n0::/a/b\n").unwrap();
        assert_eq!(
            (own.as_path(), path),
            (Path::new("/sys/fs/cgroup/unified/a/b"), "/a/b")
        );
        let (own, path) = own_cgroup(HYBRID, "0::/\n").unwrap();
        assert_eq!(
            (own.as_path(), path),
            (Path::new("/sys/fs/cgroup/unified"), "/")
        );
    }

    #[test]
    fn a_mounted_subtree_and_escapes() {
        let info = "50 1 0:40 /user.slice /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        let (own, _) = own_cgroup(info, "0::/user.slice/app\n").unwrap();
        assert_eq!(own, Path::new("/mnt/my cg/app"));
        let err = own_cgroup(info, "0::/system.slice\n").unwrap_err();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn no_cgroup2() {
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            own_cgroup(v1, "0::/\n").unwrap_err(),
            "no cgroup2 hierarchy is mounted"
        );
        let err = own_cgroup(HYBRID, "1:cpu:/\n").unwrap_err();
        assert!(err.contains("no 0:: line"), "{err}");
    }

    #[test]
    fn numbers_as_tether_writes_them() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("4711"), Some(4711));
        for text in ["", "07", "+7", "-7", "7x", " 7", "\u{0667}"] {
            assert_eq!(number(text), None, "{text:?}");
        }
    }

    /// Stale cgroups are removed: a gone tether's `tether-<pid>` with its `child-<n>` leaves,
    /// and its `tether-<pid>-probe`. Everything else stays: a live pid's, a name that is not
    /// exactly tether's, a foreign directory inside a gone tether's (and so that one too), and
    /// a `child-<n>` that holds a process.
    #[test]
    fn stale_cgroups_of_gone_tethers_are_removed_and_nothing_else() {
        let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(hierarchy) =
            writable("stale_cgroups_of_gone_tethers_are_removed_and_nothing_else")
        else {
            return;
        };
        // Pids that were alive a moment ago and are gone now, as a killed tether's would be.
        let gone = || {
            let mut child = Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        let (a, b, c, d) = (gone(), gone(), gone(), gone());
        // Alive for the whole test: its pid stands for a tether still running.
        let mut holder = Command::new("sleep").arg("300").spawn().unwrap();
        let live = holder.id();
        let own = &hierarchy.own;
        let stale = [
            format!("tether-{a}/child-0"),
            format!("tether-{a}/child-17"),
            format!("tether-{a}"),
            format!("tether-{b}-probe"),
        ];
        let kept = [
            format!("tether-{live}/child-0"),
            format!("tether-{live}"),
            format!("tether-{live}-probe"),
            format!("tether-{c}/mine"),
            format!("tether-{c}"),
            format!("tether-0{c}"),
            format!("tether-{c}-probe-x"),
            format!("tethered-{c}"),
            format!("tether-{d}/child-1"),
            format!("tether-{d}"),
        ];
        // Emptied and removed, but its parent stays for `mine`.
        let emptied = format!("tether-{c}/child-0");
        for dir in stale.iter().chain(&kept).chain([&emptied]) {
            fs::create_dir_all(own.join(dir)).unwrap();
        }
        // The holder in tether-{d}/child-1: a cgroup in use is never removed.
        OpenOptions::new()
            .write(true)
            .open(own.join(format!("tether-{d}/child-1/cgroup.procs")))
            .and_then(|mut procs| procs.write_all(live.to_string().as_bytes()))
            .unwrap();
        remove_stale(own);
        let left: Vec<&String> = stale.iter().filter(|d| own.join(d).exists()).collect();
        let removed: Vec<&String> = kept.iter().filter(|d| !own.join(d).exists()).collect();
        let emptied_left = own.join(&emptied).exists();
        // Clean up before asserting: the holder's cgroup empties once it has died.
        holder.kill().unwrap();
        holder.wait().unwrap();
        for dir in [&emptied].into_iter().chain(&kept).chain(&stale) {
            let _ = fs::remove_dir(own.join(dir));
        }
        assert_eq!(left, Vec::<&String>::new(), "stale cgroups left");
        assert_eq!(removed, Vec::<&String>::new(), "removed, and not stale");
        assert!(!emptied_left, "{emptied} left");
        assert!(
            kept.iter().all(|d| !own.join(d).exists()),
            "the test's own cgroups cleaned up"
        );
    }

    /// The tests that create cgroups take turns: each checks that `tether-<pid>` is gone at
    /// its end.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// The hierarchy, or `None` (with a `SKIPPED` line) if no cgroup v2 is writable here.
    fn writable(test: &str) -> Option<Hierarchy> {
        match Hierarchy::find().and_then(Hierarchy::probe) {
            Ok(hierarchy) => Some(hierarchy),
            Err(reason) if std::env::var_os("TETHER_REQUIRE_CGROUP").is_some_and(|v| v == "1") => {
                panic!("cgroup v2 not writable here: {reason}")
            }
            Err(reason) => {
                // Straight to the standard error, past the harness's capture.
                let _ = writeln!(
                    io::stderr(),
                    "SKIPPED {test}: cgroup v2 not writable here: {reason} \
                     (TETHER_REQUIRE_CGROUP=1 makes this a failure)"
                );
                None
            }
        }
    }

    /// A leader and a grandchild in a session of its own, in `cgroup`; with the grandchild's
    /// pid.
    fn tree(cgroup: &mut ChildCgroup) -> (std::process::Child, u32) {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
        let mut command = Command::new("sh");
        command
            .args(["-c", "setsid sleep 300 & echo $!; exec sleep 300"])
            .stdout(Stdio::piped());
        cgroup.configure(&mut command);
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let escaped: u32 = line.trim().parse().unwrap();
        cgroup.started(child.id());
        assert!(cgroup.holds(child.id()) && cgroup.holds(escaped));
        (child, escaped)
    }

    /// The path for kernels before 5.14, forced on: freeze, `SIGKILL` each, thaw; then the
    /// escaped grandchild, re-parented to this process, is reaped and the leader is not.
    #[test]
    fn freeze_and_kill_without_cgroup_kill() {
        let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(hierarchy) = writable("freeze_and_kill_without_cgroup_kill") else {
            return;
        };
        let hierarchy = Hierarchy {
            kill: false,
            ..hierarchy
        };
        let mut cgroup = ChildCgroup::create(&hierarchy).unwrap();
        let (mut child, escaped) = tree(&mut cgroup);
        let killed = cgroup.kill(crate::clock::now() + Duration::from_secs(10));
        assert_eq!((killed.reached, killed.left), (2, Vec::new()));
        assert_eq!(proc::stat(escaped), None, "killed and reaped");
        assert!(
            proc::stat(child.id()).is_some_and(|s| s.zombie),
            "left to its watcher"
        );
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        drop(cgroup);
        let parent = hierarchy.own.join(format!("tether-{}", std::process::id()));
        assert!(!parent.exists(), "{} removed", parent.display());
    }

    /// A deadline already past still kills, with `cgroup.kill` and with the freeze: the kill
    /// comes before any look at the clock. What dies after the kill has returned is reaped
    /// when the cgroup is dropped, before it is removed (after that, the zombie would no
    /// longer name the cgroup and could not be told from this process's other children).
    #[test]
    fn a_past_deadline_still_kills_and_the_drop_reaps() {
        let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(hierarchy) = writable("a_past_deadline_still_kills_and_the_drop_reaps") else {
            return;
        };
        for kill in [hierarchy.kill, false] {
            let hierarchy = Hierarchy {
                kill,
                own: hierarchy.own.clone(),
                path: hierarchy.path.clone(),
            };
            let mut cgroup = ChildCgroup::create(&hierarchy).unwrap();
            let (mut child, escaped) = tree(&mut cgroup);
            let killed = cgroup.kill(crate::clock::now());
            assert_eq!(killed.reached, 2, "cgroup.kill: {kill}");
            // No wait was allowed: the deaths are looked for here, in /proc.
            let start = crate::clock::now();
            while ![child.id(), escaped]
                .into_iter()
                .all(|p| proc::stat(p).is_none_or(|s| s.zombie))
            {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "cgroup.kill: {kill}: not killed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(cgroup);
            assert_eq!(proc::stat(escaped), None, "cgroup.kill: {kill}: reaped");
            assert_eq!(child.wait().unwrap().signal(), Some(9));
        }
        let parent = hierarchy.own.join(format!("tether-{}", std::process::id()));
        assert!(!parent.exists(), "{} removed", parent.display());
    }
}
