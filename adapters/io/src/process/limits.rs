//! Resource limits for a child (memory, processes, CPU) through cgroups, and the record of an
//! out-of-memory kill.
//!
//! Where the limits can be set: a cgroup v1 hierarchy of each controller asked for (`memory`,
//! `pids`, `cpu`). This is what a hybrid host offers, whose unified (v2) tree carries none of
//! these controllers. The child gets a cgroup of its own in each hierarchy it needs,
//! `<this process's cgroup>/tether-<pid>-<n>`, entered between fork and exec (so it runs no
//! instruction outside), with the limits written before. The cgroups are removed once the
//! child is reaped, after anything left in them is killed.
//!
//! Setting the controllers of the unified (v2) tree needs this process's own cgroup to hand
//! them down (`cgroup.subtree_control`), which cgroup v2 forbids for a cgroup that holds a
//! process, as this process's does. So a controller that only the v2 tree offers is reported
//! as not enforceable (see [`Limits::check`]), and the command refuses the flag.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The limits asked for a child; `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The most memory (bytes) the child's tree may use; past it the kernel kills it (`oom`).
    pub memory_max: Option<u64>,
    /// The most processes (and threads) the child's tree may hold at once; forks past it fail.
    pub pids_max: Option<u64>,
    /// The most CPU time the child's tree may use, in percent of one CPU (200 = two CPUs).
    pub cpu_max: Option<u32>,
}

/// A controller of a cgroup v1 hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

impl Limits {
    /// Whether no limit is asked for.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    fn wanted(&self) -> Vec<Controller> {
        let mut wanted = Vec::new();
        if self.memory_max.is_some() {
            wanted.push(Controller::Memory);
        }
        if self.pids_max.is_some() {
            wanted.push(Controller::Pids);
        }
        if self.cpu_max.is_some() {
            wanted.push(Controller::Cpu);
        }
        wanted
    }

    /// Whether this machine can enforce these limits for a child of this process: a cgroup v1
    /// hierarchy of each controller where this process may create a cgroup. The error says,
    /// for the first limit that cannot be enforced, why.
    pub fn check(&self) -> Result<(), String> {
        for controller in self.wanted() {
            let dir = own_v1_dir(controller)?;
            let probe = dir.join(format!("tether-{}-probe", std::process::id()));
            fs::create_dir(&probe).map_err(|e| {
                format!(
                    "cannot limit {}: cannot create a cgroup in {}: {e}",
                    controller.name(),
                    dir.display()
                )
            })?;
            let _ = fs::remove_dir(&probe);
        }
        Ok(())
    }
}

/// This process's cgroup directory in the v1 hierarchy of `controller`.
fn own_v1_dir(controller: Controller) -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let cgroups = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    v1_dir(&mountinfo, &cgroups, controller.name())
}

fn v1_dir(mountinfo: &str, cgroups: &str, controller: &str) -> Result<PathBuf, String> {
    let unavailable = |why: &str| {
        let v2 = match unified_has(controller) {
            true => {
                " (the cgroup v2 tree has it, but cannot hand it to a child of this process: \
                 its own cgroup holds processes)"
            }
            false => "",
        };
        format!("cannot limit {controller}: {why}{v2}")
    };
    // mountinfo: "id parent major:minor root mount-point options [optional...] - fstype source super-options"
    let (root, mount) = mountinfo
        .lines()
        .find_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut after = after.split(' ');
            (after.next()? == "cgroup").then_some(())?;
            let options = after.nth(1)?;
            options.split(',').any(|o| o == controller).then_some(())?;
            let mut fields = before.split(' ').skip(3);
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .ok_or_else(|| unavailable("no cgroup v1 hierarchy has this controller"))?;
    let path = cgroups
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })
        .ok_or_else(|| unavailable("this process is in no cgroup of that hierarchy"))?;
    let relative = Path::new(path)
        .strip_prefix(&root)
        .map_err(|_| unavailable("this process's cgroup is outside the mounted hierarchy"))?;
    Ok(Path::new(&mount).join(relative))
}

/// Whether the unified (v2) tree offers `controller` at this process's cgroup.
fn unified_has(controller: &str) -> bool {
    let Ok(hierarchy) = super::availability().cgroup() else {
        return false;
    };
    fs::read_to_string(hierarchy.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
}

/// Removes, once per directory and process, the empty `tether-<pid>-<n>` cgroups that tethers
/// now gone left in `own` (a tether killed by `SIGKILL` removes nothing). Only names of that
/// form whose `<pid>` is not alive are touched, each with `rmdir`, which the kernel refuses for
/// a cgroup still holding a process.
fn remove_stale(own: &Path) {
    static DONE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if done.iter().any(|d| d == own) {
        return;
    }
    done.push(own.to_path_buf());
    let me = std::process::id();
    for entry in fs::read_dir(own).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("tether-")) else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<u32>(), n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// The cgroups one child runs in for its limits; removed when dropped (after the child's
/// reap), once whatever is left in them has been killed.
#[derive(Debug)]
pub(crate) struct LimitGroups {
    groups: Vec<Group>,
}

#[derive(Debug)]
struct Group {
    controller: Controller,
    dir: PathBuf,
    procs: Arc<File>,
}

impl LimitGroups {
    /// Creates the cgroups for `limits` and writes the limits; nothing for no limits.
    pub(crate) fn create(limits: &Limits) -> io::Result<LimitGroups> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut made = LimitGroups { groups: Vec::new() };
        for controller in limits.wanted() {
            let own = own_v1_dir(controller).map_err(io::Error::other)?;
            remove_stale(&own);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = own.join(format!("tether-{}-{n}", std::process::id()));
            fs::create_dir(&dir)?;
            let procs = OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"));
            let procs = match procs {
                Ok(procs) => procs,
                Err(err) => {
                    let _ = fs::remove_dir(&dir);
                    return Err(err);
                }
            };
            // Pushed first, so that a failure below removes it.
            made.groups.push(Group {
                controller,
                dir: dir.clone(),
                procs: Arc::new(procs),
            });
            let write = |file: &str, value: String| {
                fs::write(dir.join(file), value).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot write {file} in {}: {e}", dir.display()),
                    )
                })
            };
            match controller {
                Controller::Memory => {
                    let bytes = limits.memory_max.unwrap_or(u64::MAX);
                    write("memory.limit_in_bytes", bytes.to_string())?;
                    // Swap too, where it is accounted: the limit is on memory, not on RAM.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        let _ = fs::write(memsw, bytes.to_string());
                    }
                }
                Controller::Pids => {
                    write("pids.max", limits.pids_max.unwrap_or(u64::MAX).to_string())?;
                }
                Controller::Cpu => {
                    let percent = u64::from(limits.cpu_max.unwrap_or(100).max(1));
                    write("cpu.cfs_period_us", "100000".to_owned())?;
                    write("cpu.cfs_quota_us", (percent * 1000).to_string())?;
                }
            }
        }
        Ok(made)
    }

    /// Has the child write `0` (itself) into each cgroup's `cgroup.procs` between fork and
    /// exec, so it runs nothing of its own outside its limits.
    pub(crate) fn configure(&self, command: &mut Command) {
        for group in &self.groups {
            let procs = Arc::clone(&group.procs);
            // SAFETY: between fork and exec the closure makes one `write` system call, which
            // is async-signal-safe; it allocates nothing and takes no lock (the file was
            // opened before the fork, and its descriptor is close-on-exec).
            unsafe {
                command.pre_exec(move || {
                    // SAFETY: `procs` is alive in this closure, so its descriptor is open.
                    let fd = rustix::fd::BorrowedFd::borrow_raw(procs.as_raw_fd());
                    rustix::io::write(fd, b"0")?;
                    Ok(())
                });
            }
        }
    }

    /// Whether the kernel killed a process of the child's memory cgroup for going over the
    /// limit (`oom_kill` in `memory.oom_control`, Linux 4.13 and later).
    pub(crate) fn oom_killed(&self) -> bool {
        self.groups
            .iter()
            .filter(|g| g.controller == Controller::Memory)
            .any(|g| {
                fs::read_to_string(g.dir.join("memory.oom_control")).is_ok_and(|text| {
                    text.lines().any(|line| {
                        line.strip_prefix("oom_kill ")
                            .and_then(|n| n.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > 0)
                    })
                })
            })
    }
}

impl Drop for LimitGroups {
    fn drop(&mut self) {
        for group in &self.groups {
            // The child's tree was killed before its reap; whatever is still listed (a process
            // still exiting) is killed again, and the cgroup removed once it is empty.
            let mut removed = false;
            for _ in 0..100 {
                if fs::remove_dir(&group.dir).is_ok() {
                    removed = true;
                    break;
                }
                if let Ok(pids) = fs::read_to_string(group.dir.join("cgroup.procs")) {
                    for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                            let _ =
                                rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if !removed {
                tracing::warn!(dir = %group.dir.display(), "cannot remove the child's limit cgroup");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
31 24 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 24 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";
    const CGROUPS: &str = "\
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn finds_each_controllers_hierarchy_and_the_own_cgroup_in_it() {
        assert_eq!(
            v1_dir(MOUNTINFO, CGROUPS, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            v1_dir(MOUNTINFO, CGROUPS, "cpu").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/")
        );
        let err = v1_dir(MOUNTINFO, CGROUPS, "pids").unwrap_err();
        assert!(
            err.starts_with("cannot limit pids: no cgroup v1 hierarchy"),
            "{err}"
        );
    }
}
