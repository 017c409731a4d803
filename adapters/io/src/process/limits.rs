//! Resource limits for a child (memory, processes, CPU) through cgroups, and the record of an
//! out-of-memory kill.
//!
//! Each limit is set where this machine can enforce it, controller by controller, before the
//! child runs:
//!
//! 1. **cgroup v2** ([`v2`]), in the child's own cgroup, which its containment made: when this
//!    process's v2 cgroup is given the controller and can hand it to its children. v2 wins
//!    where both could: the child's cgroup there already holds its whole tree, and v2 is the
//!    interface the kernel develops.
//! 2. **cgroup v1** ([`v1`]), in a cgroup of the child's own in that controller's hierarchy:
//!    what a hybrid host offers, whose unified tree carries none of these controllers.
//! 3. Otherwise the limit cannot be enforced: [`Limits::check`] says why, for both, and the
//!    command refuses the flag.
//!
//! An out-of-memory kill is read, once the child has exited and before it is reaped, from
//! `memory.events` (v2) or `memory.oom_control` (v1).

mod v1;
mod v2;

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::contain::Container;

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

/// A cgroup controller a limit needs (the same name in v1 and v2).
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

    /// The CPU limit as a quota per period, both in microseconds.
    fn cpu_quota(&self) -> (u64, u64) {
        const PERIOD: u64 = 100_000;
        let percent = u64::from(self.cpu_max.unwrap_or(100).max(1));
        (percent * PERIOD / 100, PERIOD)
    }

    /// Whether this machine can enforce these limits for a child of this process, with the
    /// default containment: for each, a cgroup v2 for the child that can have its controller
    /// (which enables it at this process's cgroup if it may and has not been), or else a cgroup
    /// v1 hierarchy of it where a cgroup can be created. The error says, for the first limit
    /// that cannot be enforced, why in each.
    pub fn check(&self) -> Result<(), String> {
        self.check_with(super::contain::Containment::Auto)
    }

    /// [`check`](Self::check) for a child contained by `contain`: only `Auto` and `Cgroup`
    /// give the child a cgroup v2 of its own, so with `Subreaper` or `Group` a limit only v2
    /// could enforce is refused here, before anything is spawned, rather than at the spawn.
    pub fn check_with(&self, contain: super::contain::Containment) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        // Looked at afresh, not through the process's cached answer: this may run before the
        // process makes itself a subreaper, which that answer would then miss.
        let available = super::contain::Availability::detect();
        let tree = child_tree(contain, available.cgroup());
        plan(self, tree.as_ref().map_err(|why| *why), v1::probe).map(drop)
    }
}

/// The v2 tree a child contained by `contain` would have its cgroup in, given this process's
/// own v2 cgroup (or why there is none): only `Auto` and `Cgroup` give the child one.
fn child_tree<'a>(
    contain: super::contain::Containment,
    own: Result<&Path, &'a str>,
) -> Result<v2::Tree, &'a str> {
    use super::contain::Containment;
    match contain {
        Containment::Auto | Containment::Cgroup => own.map(v2::Tree::new),
        Containment::Subreaper | Containment::Group => Err(
            "the child has no cgroup of its own (subreaper or group containment; auto or cgroup \
             gives one)",
        ),
    }
}

/// Where each limit asked for is set.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Set in the child's cgroup v2.
    v2: Vec<Controller>,
    /// Set in a cgroup v1 of the child's, under this process's cgroup in that hierarchy.
    v1: Vec<(Controller, PathBuf)>,
}

/// Decides where each limit goes: v2 if `tree` can give the child's cgroup the controller,
/// else the v1 hierarchy `v1` finds for it, else an error naming both reasons.
fn plan(
    limits: &Limits,
    tree: Result<&v2::Tree, &str>,
    v1: impl Fn(Controller) -> Result<PathBuf, String>,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for controller in limits.wanted() {
        let in_v2 = match tree {
            Ok(tree) => tree.offer(controller),
            Err(why) => Err(why.to_owned()),
        };
        match in_v2 {
            Ok(()) => plan.v2.push(controller),
            Err(not_v2) => match v1(controller) {
                Ok(own) => plan.v1.push((controller, own)),
                Err(not_v1) => {
                    return Err(format!(
                        "cannot limit {}: in cgroup v2, {not_v2}; in cgroup v1, {not_v1}",
                        controller.name()
                    ))
                }
            },
        }
    }
    Ok(plan)
}

/// The cgroups that hold one child's limits. Its v1 cgroups are removed when this is dropped
/// (after the child's reap); its v2 cgroup is its container's, which removes it.
#[derive(Debug)]
pub(crate) struct LimitGroups {
    /// The child's v2 cgroup, when its memory limit is set there.
    v2_memory: Option<PathBuf>,
    v1: Vec<v1::Group>,
}

impl LimitGroups {
    /// Sets `limits` for the child `container` is ready to hold: in its v2 cgroup for the
    /// controllers that tree can give it, in v1 cgroups made here for the others. Nothing for
    /// no limits; an error, before anything runs, for a limit that cannot be enforced.
    pub(crate) fn create(limits: &Limits, container: &Container) -> io::Result<LimitGroups> {
        let mut made = LimitGroups {
            v2_memory: None,
            v1: Vec::new(),
        };
        if limits.is_empty() {
            return Ok(made);
        }
        // The child's v2 cgroup is its container's; the tree is the one it was made in.
        let tree = match container.cgroup_dir() {
            Some(child) => super::availability()
                .cgroup()
                .map(|own| (v2::Tree::new(own), child))
                .map_err(str::to_owned),
            None => Err(format!(
                "the child has no cgroup of its own ({} containment; auto or cgroup gives one)",
                container.mechanism()
            )),
        };
        let plan = plan(
            limits,
            tree.as_ref().map(|(tree, _)| tree).map_err(String::as_str),
            v1::own_dir,
        )
        .map_err(io::Error::other)?;
        if let Ok((tree, child)) = &tree {
            tree.apply(child, &plan.v2, limits)?;
            if plan.v2.contains(&Controller::Memory) {
                made.v2_memory = Some(child.to_path_buf());
            }
        }
        for (controller, own) in plan.v1 {
            made.v1.push(v1::Group::create(controller, &own, limits)?);
        }
        Ok(made)
    }

    /// Has the child write `0` (itself) into each v1 cgroup's `cgroup.procs` between fork and
    /// exec, so it runs nothing of its own outside its limits. (It enters its v2 cgroup through
    /// its container.)
    pub(crate) fn configure(&self, command: &mut Command) {
        for group in &self.v1 {
            let procs = std::sync::Arc::clone(&group.procs);
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
    /// limit.
    pub(crate) fn oom_killed(&self) -> bool {
        self.v2_memory.as_deref().is_some_and(v2::oom_killed)
            || self.v1.iter().any(v1::Group::oom_killed)
    }
}

/// Writes `value` to the cgroup file `file` of `dir`; the error names both.
fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write {file} in {}: {e}", dir.display()),
        )
    })
}

/// The number on the line `key N` of a cgroup file of such lines; 0 if there is none.
fn count(file: &Path, key: &str) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let (k, n) = line.split_once(' ')?;
                (k == key).then(|| n.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// A temporary directory for the tests that stand one in for a cgroup tree.
#[cfg(test)]
mod scratch {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Removed, with all it holds, when dropped.
    pub(super) struct Scratch(PathBuf);

    impl Scratch {
        pub(super) fn new() -> Scratch {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tether-fake-cgroup-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        pub(super) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scratch::Scratch;
    use super::*;

    const ALL: Limits = Limits {
        memory_max: Some(1 << 30),
        pids_max: Some(64),
        cpu_max: Some(50),
    };

    /// A stand-in v2 tree whose own cgroup is given `offered` and has all of them enabled.
    fn tree(offered: &str) -> (Scratch, v2::Tree) {
        let root = Scratch::new();
        fs::write(root.path().join("cgroup.controllers"), offered).unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), offered).unwrap();
        let tree = v2::Tree::new(root.path());
        (root, tree)
    }

    /// v1 hierarchies for `has`, each at `/v1/<name>`.
    fn v1_of(has: &'static [&'static str]) -> impl Fn(Controller) -> Result<PathBuf, String> {
        move |c| match has.contains(&c.name()) {
            true => Ok(Path::new("/v1").join(c.name())),
            false => Err("no hierarchy has this controller".to_owned()),
        }
    }

    #[test]
    fn v2_wins_where_both_could_and_v1_takes_each_controller_v2_cannot() {
        let (_root, both) = tree("cpu memory pids");
        let chosen = plan(&ALL, Ok(&both), v1_of(&["memory", "pids", "cpu"])).unwrap();
        assert_eq!(
            chosen,
            Plan {
                v2: vec![Controller::Memory, Controller::Pids, Controller::Cpu],
                v1: vec![],
            }
        );
        // This host: the unified tree is given hugetlb only.
        let (_root, hugetlb) = tree("hugetlb");
        let chosen = plan(&ALL, Ok(&hugetlb), v1_of(&["memory", "pids", "cpu"])).unwrap();
        assert_eq!(chosen.v2, vec![]);
        assert_eq!(
            chosen.v1,
            [
                (Controller::Memory, PathBuf::from("/v1/memory")),
                (Controller::Pids, PathBuf::from("/v1/pids")),
                (Controller::Cpu, PathBuf::from("/v1/cpu")),
            ]
        );
        // Controller by controller.
        let (_root, memory) = tree("memory");
        let chosen = plan(&ALL, Ok(&memory), v1_of(&["pids", "cpu"])).unwrap();
        assert_eq!(chosen.v2, [Controller::Memory]);
        assert_eq!(
            chosen.v1.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [Controller::Pids, Controller::Cpu]
        );
    }

    #[test]
    fn a_limit_neither_can_enforce_is_refused_saying_why_for_both() {
        let (_root, hugetlb) = tree("hugetlb");
        let err = plan(&ALL, Ok(&hugetlb), v1_of(&["memory", "cpu"])).unwrap_err();
        assert!(
            err.starts_with("cannot limit pids: in cgroup v2, "),
            "{err}"
        );
        assert!(err.contains("(its controllers: hugetlb)"), "{err}");
        assert!(
            err.ends_with("; in cgroup v1, no hierarchy has this controller"),
            "{err}"
        );
        // No v2 cgroup for the child at all.
        let err = plan(&ALL, Err("no cgroup2 hierarchy is mounted"), v1_of(&[])).unwrap_err();
        assert_eq!(
            err,
            "cannot limit memory: in cgroup v2, no cgroup2 hierarchy is mounted; \
             in cgroup v1, no hierarchy has this controller"
        );
        // Nothing asked: nothing needed.
        assert_eq!(
            plan(&Limits::default(), Err(""), v1_of(&[])),
            Ok(Plan::default())
        );
    }

    #[test]
    fn only_auto_and_cgroup_containment_give_the_child_a_v2_cgroup() {
        use crate::process::contain::Containment;
        let (root, _) = tree("memory pids cpu");
        for contain in [Containment::Auto, Containment::Cgroup] {
            let tree = child_tree(contain, Ok(root.path())).unwrap();
            assert_eq!(
                plan(&ALL, Ok(&tree), v1_of(&[])).unwrap().v2,
                [Controller::Memory, Controller::Pids, Controller::Cpu]
            );
        }
        for contain in [Containment::Subreaper, Containment::Group] {
            let why = child_tree(contain, Ok(root.path())).unwrap_err();
            // v1 still serves what it has; what only v2 could give is refused, saying why.
            let chosen = plan(&ALL, Err(why), v1_of(&["memory", "pids", "cpu"])).unwrap();
            assert!(chosen.v2.is_empty());
            let err = plan(&ALL, Err(why), v1_of(&[])).unwrap_err();
            assert!(
                err.contains("the child has no cgroup of its own (subreaper or group"),
                "{err}"
            );
        }
        assert_eq!(
            child_tree(Containment::Auto, Err("no cgroup2 hierarchy is mounted")).unwrap_err(),
            "no cgroup2 hierarchy is mounted"
        );
    }

    #[test]
    fn the_cpu_limit_is_a_quota_per_period() {
        let cpu = |percent| {
            Limits {
                cpu_max: Some(percent),
                ..Limits::default()
            }
            .cpu_quota()
        };
        assert_eq!(cpu(50), (50_000, 100_000));
        assert_eq!(cpu(250), (250_000, 100_000));
        assert_eq!(cpu(0), (1_000, 100_000), "at least 1%");
    }

    #[test]
    fn counts_in_cgroup_files() {
        let root = Scratch::new();
        let file = root.path().join("memory.oom_control");
        assert_eq!(count(&file, "oom_kill"), 0, "no file");
        fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(count(&file, "oom_kill"), 3);
        assert_eq!(count(&file, "under_oom"), 0);
        assert_eq!(count(&file, "absent"), 0);
    }
}
