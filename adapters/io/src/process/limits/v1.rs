//! Limits in cgroup v1, as a hybrid host offers them: a hierarchy per controller (`memory`,
//! `pids`, `cpu`), in each of which the child gets a cgroup of its own,
//! `<this process's cgroup>/tether-<pid>-<n>`, with the limit written before the child enters
//! it. The cgroups are removed once the child is reaped, after anything left in them is
//! killed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Controller, Limits};

/// This process's cgroup directory in the v1 hierarchy of `controller`, or why there is none.
pub(super) fn own_dir(controller: Controller) -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let cgroups = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    dir(&mountinfo, &cgroups, controller.name())
}

/// [`own_dir`], and a cgroup can be created there (one is, and removed at once).
pub(super) fn probe(controller: Controller) -> Result<PathBuf, String> {
    let dir = own_dir(controller)?;
    let probe = dir.join(format!("tether-{}-probe", std::process::id()));
    fs::create_dir(&probe)
        .map_err(|e| format!("cannot create a cgroup in {}: {e}", dir.display()))?;
    let _ = fs::remove_dir(&probe);
    Ok(dir)
}

fn dir(mountinfo: &str, cgroups: &str, controller: &str) -> Result<PathBuf, String> {
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
        .ok_or("no hierarchy has this controller")?;
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
        .ok_or("this process is in no cgroup of that hierarchy")?;
    let relative = Path::new(path)
        .strip_prefix(&root)
        .map_err(|_| "this process's cgroup is outside the mounted hierarchy")?;
    Ok(Path::new(&mount).join(relative))
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
    remove_stale_now(own);
}

/// [`remove_stale`], every time.
fn remove_stale_now(own: &Path) {
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

/// The child's cgroup in the v1 hierarchy of one controller; removed when dropped.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) controller: Controller,
    dir: PathBuf,
    /// `cgroup.procs`, opened before the fork, for the child to enter with one `write`.
    pub(super) procs: Arc<File>,
}

impl Group {
    /// Creates the child's cgroup under `own` (this process's cgroup of the hierarchy) and
    /// writes the limit of `controller`.
    pub(super) fn create(controller: Controller, own: &Path, limits: &Limits) -> io::Result<Group> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        remove_stale(own);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = own.join(format!("tether-{}-{n}", std::process::id()));
        fs::create_dir(&dir)?;
        let procs = match OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
        {
            Ok(procs) => procs,
            Err(err) => {
                let _ = fs::remove_dir(&dir);
                return Err(err);
            }
        };
        // Made first, so that a failure below removes it.
        let group = Group {
            controller,
            dir,
            procs: Arc::new(procs),
        };
        match controller {
            Controller::Memory => {
                let bytes = limits.memory_max.unwrap_or(u64::MAX).to_string();
                group.write("memory.limit_in_bytes", &bytes)?;
                // Swap too, where it is accounted: the limit is on memory, not on RAM.
                let memsw = group.dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    let _ = fs::write(memsw, bytes);
                }
            }
            Controller::Pids => {
                group.write("pids.max", &limits.pids_max.unwrap_or(u64::MAX).to_string())?;
            }
            Controller::Cpu => {
                let (quota, period) = limits.cpu_quota();
                group.write("cpu.cfs_period_us", &period.to_string())?;
                group.write("cpu.cfs_quota_us", &quota.to_string())?;
            }
        }
        Ok(group)
    }

    fn write(&self, file: &str, value: &str) -> io::Result<()> {
        super::write(&self.dir, file, value)
    }

    /// Whether the kernel killed a process of this memory cgroup for going over the limit
    /// (`oom_kill` in `memory.oom_control`, Linux 4.13 and later).
    pub(super) fn oom_killed(&self) -> bool {
        self.controller == Controller::Memory
            && super::count(&self.dir.join("memory.oom_control"), "oom_kill") > 0
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The child's tree was killed before its reap; whatever is still listed (a process
        // still exiting) is killed again, and the cgroup removed once it is empty.
        for _ in 0..100 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            if let Ok(pids) = fs::read_to_string(self.dir.join("cgroup.procs")) {
                for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(dir = %self.dir.display(), "cannot remove the child's limit cgroup");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

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
            dir(MOUNTINFO, CGROUPS, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(
            dir(MOUNTINFO, CGROUPS, "cpu").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/")
        );
        assert_eq!(
            dir(MOUNTINFO, CGROUPS, "pids").unwrap_err(),
            "no hierarchy has this controller"
        );
    }

    /// This process's cgroup in a writable v1 `pids` hierarchy, or `None` (said straight to
    /// the standard error, past the harness's capture: the test is skipped).
    fn writable_pids() -> Option<PathBuf> {
        probe(Controller::Pids)
            .map_err(|why| {
                let _ = writeln!(
                    io::stderr(),
                    "SKIPPED: no writable v1 pids hierarchy: {why}"
                );
            })
            .ok()
    }

    /// On a host with a writable v1 `pids` hierarchy (this one, as root): the child's cgroup
    /// holds the limit, and dropping it kills what is still inside and removes it.
    #[test]
    fn a_v1_cgroup_holds_the_limit_and_is_removed_with_what_it_held() {
        let Some(own) = writable_pids() else {
            return;
        };
        let limits = Limits {
            pids_max: Some(7),
            ..Limits::default()
        };
        let group = Group::create(Controller::Pids, &own, &limits).unwrap();
        let dir = group.dir.clone();
        assert!(dir.starts_with(&own));
        assert_eq!(
            fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
            "7"
        );
        assert!(!group.oom_killed(), "not a memory cgroup");
        // A process inside, as a child's tree still exiting would be.
        let mut inside = Command::new("sleep").arg("300").spawn().unwrap();
        fs::write(dir.join("cgroup.procs"), inside.id().to_string()).unwrap();
        drop(group);
        assert!(!dir.exists(), "{} removed", dir.display());
        assert_eq!(inside.wait().unwrap().signal(), Some(9), "killed first");
    }

    /// What a tether killed by `SIGKILL` left in a real v1 hierarchy is removed; a live
    /// tether's cgroups, other names, and a cgroup that holds a process stay.
    #[test]
    fn stale_v1_cgroups_of_gone_tethers_are_removed_and_nothing_else() {
        let Some(own) = writable_pids() else {
            return;
        };
        // A pid that was alive a moment ago and is gone now, as a killed tether's would be.
        let mut gone = Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let mut live = Command::new("sleep").arg("300").spawn().unwrap();
        let stale = [
            format!("tether-{gone_pid}-0"),
            format!("tether-{gone_pid}-12"),
        ];
        let kept = [
            format!("tether-{}-0", live.id()),
            format!("tether-{gone_pid}-x"),
            format!("tethered-{gone_pid}-0"),
            format!("tether-{gone_pid}-7"),
        ];
        for dir in stale.iter().chain(&kept) {
            fs::create_dir(own.join(dir)).unwrap();
        }
        // The last one holds a process: the kernel refuses to remove it.
        fs::write(
            own.join(&kept[3]).join("cgroup.procs"),
            live.id().to_string(),
        )
        .unwrap();
        remove_stale_now(&own);
        let left: Vec<&String> = stale.iter().filter(|d| own.join(d).exists()).collect();
        let removed: Vec<&String> = kept.iter().filter(|d| !own.join(d).exists()).collect();
        live.kill().unwrap();
        live.wait().unwrap();
        for dir in stale.iter().chain(&kept) {
            let _ = fs::remove_dir(own.join(dir));
        }
        assert_eq!(left, Vec::<&String>::new(), "stale cgroups left");
        assert_eq!(removed, Vec::<&String>::new(), "removed, and not stale");
    }
}
