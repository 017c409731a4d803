//! Limits in cgroup v2, in the child's own cgroup: the one its containment made
//! (`<own cgroup>/tether-<pid>/child-<n>`, see [`contain`](crate::process::contain)), so that
//! one cgroup both contains the child's tree and limits it.
//!
//! A cgroup has the interface files of a controller (`memory.max`, ...) only when its parent
//! enables the controller for its children (`+memory` in the parent's
//! `cgroup.subtree_control`), which the parent may only if it has the controller itself (its
//! `cgroup.controllers`). So a controller is enabled along tether's own subtree: at this
//! process's own cgroup, then at `tether-<pid>`. The "no internal processes" rule lets a
//! cgroup enable controllers for its children only while it holds no process, the root
//! excepted: `tether-<pid>` never holds one, but this process's own cgroup holds this process,
//! so there the controller must be enabled already (delegated) or the cgroup be the root.
//!
//! A controller tether enabled at its own cgroup stays enabled: other cgroups there may have
//! come to rely on it meanwhile. `tether-<pid>` goes with its last child, and its
//! `cgroup.subtree_control` with it.
//!
//! Every path is given, never looked up, so that all of this runs against a directory that
//! stands in for a cgroup tree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Controller, Limits};

/// This process's cgroup in the v2 hierarchy, under which its children's cgroups are.
#[derive(Debug, Clone)]
pub(super) struct Tree {
    own: PathBuf,
}

impl Tree {
    /// The tree whose cgroup for this process is `own`.
    pub(super) fn new(own: impl Into<PathBuf>) -> Tree {
        Tree { own: own.into() }
    }

    /// Readies `controller` for the cgroups below this process's own: it must be offered
    /// there (`cgroup.controllers`), and is enabled for the children (`cgroup.subtree_control`)
    /// unless it is already. The error says why the child's cgroup cannot have it.
    pub(super) fn offer(&self, controller: Controller) -> Result<(), String> {
        let name = controller.name();
        let offered = read_list(&self.own.join("cgroup.controllers"))
            .map_err(|e| format!("cannot read cgroup.controllers: {e}"))?;
        if !offered.iter().any(|c| c == name) {
            return Err(format!(
                "this process's cgroup {} is not given it (its controllers: {})",
                self.own.display(),
                match offered.is_empty() {
                    true => "none".to_owned(),
                    false => offered.join(" "),
                }
            ));
        }
        let enabled = read_list(&self.own.join("cgroup.subtree_control")).unwrap_or_default();
        if enabled.iter().any(|c| c == name) {
            return Ok(());
        }
        enable(&self.own, &[controller]).map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::BUSY.raw_os_error() => format!(
                "this process's cgroup {} holds processes, and cgroup v2 lets only a cgroup \
                 without any (or the root) hand a controller to its children",
                self.own.display()
            ),
            _ => e.to_string(),
        })
    }

    /// Sets `limits` for `controllers` (each readied by [`offer`](Self::offer)) in `child`, a
    /// cgroup below this process's own that no process has entered yet: enables them in
    /// every cgroup between the two, then writes the limits.
    pub(super) fn apply(
        &self,
        child: &Path,
        controllers: &[Controller],
        limits: &Limits,
    ) -> io::Result<()> {
        if controllers.is_empty() {
            return Ok(());
        }
        let between = child
            .strip_prefix(&self.own)
            .ok()
            .and_then(Path::parent)
            .ok_or_else(|| {
                io::Error::other(format!(
                    "{} is not below this process's cgroup {}",
                    child.display(),
                    self.own.display()
                ))
            })?;
        let mut dir = self.own.clone();
        for part in between.components() {
            dir.push(part);
            enable(&dir, controllers)?;
        }
        for &controller in controllers {
            match controller {
                Controller::Memory => {
                    let bytes = limits
                        .memory_max
                        .map_or("max".to_owned(), |b| b.to_string());
                    super::write(child, "memory.max", &bytes)?;
                    // No swap where it is accounted: the limit is on memory, not on RAM.
                    if child.join("memory.swap.max").exists() {
                        let _ = super::write(child, "memory.swap.max", "0");
                    }
                }
                Controller::Pids => {
                    let max = limits.pids_max.map_or("max".to_owned(), |n| n.to_string());
                    super::write(child, "pids.max", &max)?;
                }
                Controller::Cpu => {
                    let (quota, period) = limits.cpu_quota();
                    super::write(child, "cpu.max", &format!("{quota} {period}"))?;
                }
            }
        }
        Ok(())
    }
}

/// Whether the kernel killed a process of the cgroup `child` (or below it) for going over its
/// memory limit: `oom_kill` in `memory.events`.
pub(super) fn oom_killed(child: &Path) -> bool {
    super::count(&child.join("memory.events"), "oom_kill") > 0
}

/// Enables `controllers` for the children of the cgroup `dir`, in one write.
fn enable(dir: &Path, controllers: &[Controller]) -> io::Result<()> {
    let line: Vec<String> = controllers
        .iter()
        .map(|c| format!("+{}", c.name()))
        .collect();
    super::write(dir, "cgroup.subtree_control", &line.join(" "))
}

/// A cgroup file that lists names separated by spaces.
fn read_list(file: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(file)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::limits::scratch::Scratch;

    /// A directory that stands in for a cgroup v2 tree: this process's cgroup offering
    /// `offered`, with `enabled` already enabled for its children, and the containment's
    /// `tether-1/child-0` below it.
    fn fake(offered: &str, enabled: &str) -> (Scratch, Tree, PathBuf) {
        let root = Scratch::new();
        let own = root.path().join("own");
        let child = own.join("tether-1").join("child-0");
        fs::create_dir_all(&child).unwrap();
        fs::write(own.join("cgroup.controllers"), offered).unwrap();
        fs::write(own.join("cgroup.subtree_control"), enabled).unwrap();
        (root, Tree::new(own), child)
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_controller_enabled_already_is_taken_as_it_is() {
        let (_root, tree, _) = fake("cpu memory pids\n", "memory pids\n");
        tree.offer(Controller::Memory).unwrap();
        tree.offer(Controller::Pids).unwrap();
        assert_eq!(
            read(&tree.own.join("cgroup.subtree_control")),
            "memory pids\n",
            "nothing written"
        );
    }

    #[test]
    fn a_controller_offered_and_not_enabled_is_enabled_for_the_children() {
        let (_root, tree, _) = fake("cpu io memory pids\n", "io\n");
        tree.offer(Controller::Cpu).unwrap();
        assert_eq!(read(&tree.own.join("cgroup.subtree_control")), "+cpu");
    }

    #[test]
    fn a_controller_not_offered_says_what_is() {
        // This host's unified tree.
        let (_root, tree, _) = fake("hugetlb\n", "");
        let err = tree.offer(Controller::Memory).unwrap_err();
        assert!(
            err.contains("is not given it (its controllers: hugetlb)"),
            "{err}"
        );
        let (_root, tree, _) = fake("", "");
        let err = tree.offer(Controller::Pids).unwrap_err();
        assert!(err.ends_with("(its controllers: none)"), "{err}");
        // No cgroup.controllers at all: not a cgroup v2 directory.
        let root = Scratch::new();
        let err = Tree::new(root.path()).offer(Controller::Cpu).unwrap_err();
        assert!(err.starts_with("cannot read cgroup.controllers"), "{err}");
    }

    #[test]
    fn a_controller_that_cannot_be_enabled_says_why() {
        let (_root, tree, _) = fake("memory\n", "");
        // A write the kernel would refuse (here: the file is a directory).
        let control = tree.own.join("cgroup.subtree_control");
        fs::remove_file(&control).unwrap();
        fs::create_dir(&control).unwrap();
        let err = tree.offer(Controller::Memory).unwrap_err();
        assert!(err.contains("cannot write cgroup.subtree_control"), "{err}");
    }

    #[test]
    fn the_limits_are_written_in_the_childs_cgroup_after_enabling_them_above_it() {
        let (_root, tree, child) = fake("cpu memory pids\n", "cpu memory pids\n");
        // Swap is accounted here: the kernel would have made the file.
        fs::write(child.join("memory.swap.max"), "max\n").unwrap();
        let limits = Limits {
            memory_max: Some(32 << 20),
            pids_max: Some(16),
            cpu_max: Some(150),
        };
        let all = [Controller::Memory, Controller::Pids, Controller::Cpu];
        tree.apply(&child, &all, &limits).unwrap();
        assert_eq!(
            read(&tree.own.join("tether-1").join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        assert_eq!(read(&child.join("memory.max")), "33554432");
        assert_eq!(read(&child.join("memory.swap.max")), "0");
        assert_eq!(read(&child.join("pids.max")), "16");
        assert_eq!(read(&child.join("cpu.max")), "150000 100000");
        // No cgroup of the limits' own: the child's is its container's, removed with it.
        let dirs: Vec<PathBuf> = fs::read_dir(tree.own.join("tether-1"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        assert_eq!(dirs, std::slice::from_ref(&child));
        // Only the controllers asked for; no swap file where swap is not accounted.
        let (_root, tree, child) = fake("cpu memory pids\n", "cpu memory pids\n");
        tree.apply(&child, &[Controller::Memory], &limits).unwrap();
        assert_eq!(
            read(&tree.own.join("tether-1").join("cgroup.subtree_control")),
            "+memory"
        );
        assert!(!child.join("pids.max").exists() && !child.join("memory.swap.max").exists());
    }

    #[test]
    fn a_limit_that_cannot_be_written_fails_naming_the_file() {
        let (_root, tree, child) = fake("pids\n", "pids\n");
        fs::create_dir(child.join("pids.max")).unwrap();
        let limits = Limits {
            pids_max: Some(4),
            ..Limits::default()
        };
        let err = tree
            .apply(&child, &[Controller::Pids], &limits)
            .unwrap_err();
        assert!(
            err.to_string().contains("cannot write pids.max in"),
            "{err}"
        );
        // A cgroup that is not below this process's own.
        let elsewhere = Scratch::new();
        let err = tree
            .apply(elsewhere.path(), &[Controller::Pids], &limits)
            .unwrap_err();
        assert!(err.to_string().contains("is not below"), "{err}");
    }

    #[test]
    fn an_oom_kill_is_read_from_memory_events() {
        let (_root, _, child) = fake("memory\n", "memory\n");
        assert!(!oom_killed(&child), "no memory.events");
        fs::write(
            child.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n",
        )
        .unwrap();
        assert!(!oom_killed(&child), "an OOM, but nothing killed");
        fs::write(
            child.join("memory.events"),
            "low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert!(oom_killed(&child));
    }
}
