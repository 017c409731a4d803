//! Containment: how a child's whole tree is reached at the end, including descendants that
//! left the child's process group (`setsid`, `setpgid`, double-forked daemons).
//!
//! Three mechanisms, strongest first:
//!
//! - [`Mechanism::Cgroup`] (Linux, a writable cgroup v2 hierarchy): every child gets a cgroup
//!   of its own and is moved into it before it runs, so everything it ever starts is inside;
//!   the end is one `cgroup.kill` (or freeze, `SIGKILL` each, thaw on kernels before 5.14).
//!   The cgroups are `<own cgroup>/tether-<pid>/child-<n>`, this process's own cgroup being
//!   found in `/proc/self/mountinfo` and `/proc/self/cgroup` (hybrid hosts mount cgroup2 at
//!   `/sys/fs/cgroup/unified`); processes only enter the `child-<n>` leaves and no controller
//!   is enabled, which keeps cgroup v2's "no internal processes" rule.
//! - [`Mechanism::Subreaper`] (Linux, this process a child subreaper): after the group kill, a
//!   sweep kills and reaps every process re-parented to this one that belongs to the child.
//!   Which ones belong to it is a judgement, not a kernel fact: see the claim rule on
//!   [`Container`].
//! - [`Mechanism::Group`]: the process group only, as before; a descendant that left the group
//!   survives. The only mechanism on macOS and the other unixes; on Windows the group kill is
//!   `taskkill /T /F`, which follows the parent links of the tree (a daemon whose parent exited
//!   is not reached either).
//!
//! [`Availability::detect`] says what this machine offers; [`Availability::resolve`] turns a
//! request ([`Containment`], with `Auto`) into the [`Mechanism`] in force; a [`Container`] per
//! child carries it out:
//!
//! ```text
//! let available = Availability::detect();                // once per process
//! let mechanism = available.resolve(Containment::Auto)?;
//! let mut container = Container::new(mechanism, &available)?;
//! container.configure(&mut command);                     // before spawn
//! let child = command.spawn()?;
//! container.started(child.id());                         // right after spawn
//! // ... the child exits or the shutdown ladder reaches its kill ...
//! let outcome = container.kill(deadline);                // then reap the child itself
//! ```
//!
//! A container never reaps the child itself (its watcher does, and needs its exit status);
//! it does reap the descendants that came to this process.

use std::fmt;
use std::io;
use std::process::Command;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
mod cgroup;
#[cfg(target_os = "linux")]
mod proc;
#[cfg(target_os = "linux")]
mod sweep;

use super::kill_process_group;
use tether_core::Action;

/// Which containment is asked for: what `--contain auto|cgroup|subreaper|group` parses into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Containment {
    /// The strongest available: a cgroup if one is writable, else the subreaper sweep if this
    /// process is a child subreaper, else the process group.
    #[default]
    Auto,
    /// A cgroup v2 per child; fails if none is writable here.
    Cgroup,
    /// The process group, then a sweep of re-parented descendants; fails unless this process
    /// is a child subreaper (see [`become_subreaper`]).
    Subreaper,
    /// The process group only.
    Group,
}

impl Containment {
    /// Every value, in the order of the `--contain` help text.
    pub const ALL: [Containment; 4] = [
        Containment::Auto,
        Containment::Cgroup,
        Containment::Subreaper,
        Containment::Group,
    ];

    fn name(self) -> &'static str {
        match self {
            Containment::Auto => "auto",
            Containment::Cgroup => "cgroup",
            Containment::Subreaper => "subreaper",
            Containment::Group => "group",
        }
    }
}

impl fmt::Display for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--contain` value that is none of `auto`, `cgroup`, `subreaper`, `group`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown containment {0:?}: expected auto, cgroup, subreaper or group")]
pub struct ParseContainmentError(String);

impl FromStr for Containment {
    type Err = ParseContainmentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Containment::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| ParseContainmentError(s.to_owned()))
    }
}

/// The containment in force for one child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// A cgroup v2 of its own.
    Cgroup,
    /// The process group, then the subreaper sweep.
    Subreaper,
    /// The process group only.
    Group,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mechanism::Cgroup => "cgroup",
            Mechanism::Subreaper => "subreaper",
            Mechanism::Group => "group",
        })
    }
}

/// A mechanism that was asked for by name and cannot work here, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{wanted} containment is not available here: {reason}")]
pub struct Unavailable {
    /// What was asked for.
    pub wanted: Mechanism,
    /// Why it cannot work.
    pub reason: String,
}

/// What this machine and process offer, found once by [`detect`](Self::detect).
#[derive(Debug)]
pub struct Availability {
    #[cfg(target_os = "linux")]
    cgroup: Result<cgroup::Hierarchy, String>,
    subreaper: bool,
}

impl Availability {
    /// Looks at this machine: on Linux, finds the cgroup v2 hierarchy (`/proc/self/mountinfo`)
    /// and this process's cgroup in it (`/proc/self/cgroup`), and checks that a cgroup can be
    /// created there; and whether this process is a child subreaper. Elsewhere both are
    /// unavailable. Takes a few system calls; do it once and keep the answer (becoming a
    /// subreaper afterwards needs a new one).
    pub fn detect() -> Availability {
        Availability {
            #[cfg(target_os = "linux")]
            cgroup: cgroup::Hierarchy::find().and_then(cgroup::Hierarchy::probe),
            subreaper: is_subreaper(),
        }
    }

    /// The directory under which child cgroups are created (this process's own cgroup), or
    /// why there is none.
    pub fn cgroup(&self) -> Result<&std::path::Path, &str> {
        #[cfg(target_os = "linux")]
        return self
            .cgroup
            .as_ref()
            .map(|h| h.own())
            .map_err(String::as_str);
        #[cfg(not(target_os = "linux"))]
        Err("cgroups are Linux-only")
    }

    /// Whether a cgroup can be killed at once with `cgroup.kill` (Linux 5.14 and later);
    /// `false` means freeze, `SIGKILL` each, thaw (or no cgroup at all).
    pub fn cgroup_kill(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.cgroup.as_ref().is_ok_and(|h| h.has_kill());
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Whether this process was a child subreaper when detected.
    pub fn subreaper(&self) -> bool {
        self.subreaper
    }

    /// The mechanism `wanted` comes to here: `Auto` picks the strongest available; a named
    /// one is that one or an error saying why it cannot work.
    pub fn resolve(&self, wanted: Containment) -> Result<Mechanism, Unavailable> {
        match wanted {
            Containment::Auto => Ok(if self.cgroup().is_ok() {
                Mechanism::Cgroup
            } else if self.subreaper {
                Mechanism::Subreaper
            } else {
                Mechanism::Group
            }),
            Containment::Cgroup => {
                self.cgroup()
                    .map(|_| Mechanism::Cgroup)
                    .map_err(|reason| Unavailable {
                        wanted: Mechanism::Cgroup,
                        reason: reason.to_owned(),
                    })
            }
            Containment::Subreaper if self.subreaper => Ok(Mechanism::Subreaper),
            Containment::Subreaper => Err(Unavailable {
                wanted: Mechanism::Subreaper,
                reason: if cfg!(target_os = "linux") {
                    "this process is not a child subreaper (see become_subreaper)".into()
                } else {
                    "child subreapers are Linux-only".into()
                },
            }),
            Containment::Group => Ok(Mechanism::Group),
        }
    }
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): orphaned descendants are
/// re-parented to it instead of to init, which the subreaper sweep needs. Every process that
/// comes to it must then be reaped by someone; the sweep reaps those it claims. Linux only;
/// elsewhere an [`io::ErrorKind::Unsupported`] error.
pub fn become_subreaper() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    return Ok(rustix::process::set_child_subreaper(Some(
        rustix::process::getpid(),
    ))?);
    #[cfg(not(target_os = "linux"))]
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "child subreapers are Linux-only",
    ))
}

fn is_subreaper() -> bool {
    #[cfg(target_os = "linux")]
    return rustix::process::child_subreaper().is_ok_and(|p| p.is_some());
    #[cfg(not(target_os = "linux"))]
    false
}

/// How long a [`Container::kill`] may wait for the tree to die even when its deadline leaves
/// less (the endpoint asks for `--grace`, which may be zero).
///
/// `SIGKILL` cannot be refused, but it is not death at once: the kernel delivers it when each
/// process is next scheduled, and only a dead process can be reaped. Without any wait, a
/// descendant killed a moment before the kill returns dies afterwards, as a zombie nobody
/// reaps: this process's, handed on to its parent when it exits. The wait ends as soon as the
/// tree is gone, which takes a few milliseconds, so the floor costs nothing in the usual case;
/// it only bounds how long a process that does not die (one stuck in the kernel) holds up the
/// end, and such a process is then reported in [`Outcome::left`].
pub const KILL_FLOOR: Duration = Duration::from_millis(100);

/// What a [`Container::kill`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The mechanism that acted.
    pub mechanism: Mechanism,
    /// How many processes it reached one by one: for a cgroup, the processes it held when
    /// frozen for the kill; for the sweep, the processes it killed or reaped after the group
    /// kill; `None` for the process group alone (the kernel does not count).
    pub reached: Option<usize>,
    /// Processes still alive (or unreaped) when the deadline came; empty when the tree is
    /// gone. Always empty for the process group alone, which cannot tell. Also recorded in
    /// the container's [`Survivors`].
    pub left: Vec<u32>,
    /// How long the kill took, waiting included.
    pub elapsed: Duration,
}

/// The processes of one child's tree that outlived its kill: what the containment could not
/// end in the time it had, for the owner to report (a log line alone is easily missed, and
/// such a process may hold resources or keep running unattended).
///
/// Shared: a clone reads and records the same list, so the connection can keep one after the
/// [`Container`] that fills it is dropped with the child's reap. [`Container::kill`] records
/// its [`Outcome::left`] here itself. A pid once recorded stays, even if a later kill, or the
/// removal of the child's cgroup, ends that process: it says that the kill asked for did not
/// contain it in time. Empty under [`Mechanism::Group`], which cannot tell.
#[derive(Debug, Clone, Default)]
pub struct Survivors(Arc<Mutex<Vec<u32>>>);

impl Survivors {
    /// A list with nobody in it.
    pub fn new() -> Survivors {
        Survivors::default()
    }

    /// Adds `pids` (a kill's [`Outcome::left`]), each once, in the order first recorded.
    pub fn record(&self, pids: &[u32]) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for &pid in pids {
            if !list.contains(&pid) {
                list.push(pid);
            }
        }
    }

    /// Every pid recorded so far; empty if every kill ended its whole tree in time.
    pub fn get(&self) -> Vec<u32> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The containment of one child, from before its spawn to after its tree is gone.
///
/// The subreaper sweep's claim rule — which processes re-parented to this one belong to the
/// child — is, in order:
///
/// 1. never the child itself (its watcher reaps it) nor another child started through a
///    container that is still alive;
/// 2. anything descending, at the time of a scan, from the child or from a claimed process;
/// 3. a process whose environment carries this container's marker (`TETHER_CONTAIN`, set on
///    the child's command and inherited unless a descendant clears its environment); never one
///    that carries another container's marker;
/// 4. an unmarked process (its environment cleared or unreadable, zombies included) that is
///    this process's child and started no earlier than the contained child.
///
/// Rule 4 is what catches a descendant whose parent cleared the environment (codex's
/// exec-server does, for every command it starts) and then died. Its limits: a child of this
/// process started without a container after the contained child (a library user's own
/// `Command`) is claimed too, and so is an unmarked escapee of another contained child that
/// is still running. So the sweep is exact for a host that starts children only through
/// containers, one at a time (the `tether run` command), and approximate otherwise; a cgroup
/// has none of these limits.
#[derive(Debug)]
pub struct Container {
    mechanism: Mechanism,
    leader: Option<u32>,
    survivors: Survivors,
    #[cfg(target_os = "linux")]
    cgroup: Option<cgroup::ChildCgroup>,
    #[cfg(target_os = "linux")]
    lineage: sweep::Lineage,
}

impl Container {
    /// Prepares the containment of one child: for a cgroup, creates it (under
    /// `<own cgroup>/tether-<pid>/`); for the sweep, a fresh marker.
    pub fn new(mechanism: Mechanism, available: &Availability) -> io::Result<Container> {
        #[cfg(not(target_os = "linux"))]
        let _ = available;
        Ok(Container {
            mechanism,
            leader: None,
            survivors: Survivors::new(),
            #[cfg(target_os = "linux")]
            cgroup: match mechanism {
                Mechanism::Cgroup => Some(cgroup::ChildCgroup::create(
                    available
                        .cgroup
                        .as_ref()
                        .map_err(|reason| io::Error::other(reason.clone()))?,
                )?),
                _ => None,
            },
            #[cfg(target_os = "linux")]
            lineage: sweep::Lineage::new(),
        })
    }

    /// The mechanism in force.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The child's own cgroup v2 directory, under [`Mechanism::Cgroup`]: its limits are set
    /// there too, where the tree can give it the controllers (see `process::limits`).
    #[cfg(target_os = "linux")]
    pub(crate) fn cgroup_dir(&self) -> Option<&std::path::Path> {
        self.cgroup.as_ref().map(cgroup::ChildCgroup::dir)
    }

    /// Where [`kill`](Self::kill) records what outlived it; clone it to read the list after
    /// this container is gone.
    pub fn survivors(&self) -> &Survivors {
        &self.survivors
    }

    /// Readies `command`: a process group of its own (every mechanism starts with the group);
    /// on Linux the marker in its environment (`TETHER_CONTAIN`, whatever the mechanism, so
    /// that no sweep claims this child's descendants for another); and, for a cgroup, a hook
    /// that moves the child into its cgroup between fork and exec (the spawn fails rather than
    /// run the child outside it).
    pub fn configure(&self, command: &mut Command) {
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(command, 0);
        #[cfg(target_os = "linux")]
        if let Some(cgroup) = &self.cgroup {
            cgroup.configure(command);
        }
        #[cfg(target_os = "linux")]
        self.lineage.configure(command);
    }

    /// Records the child's pid, right after the spawn and before anything could reap it.
    pub fn started(&mut self, pid: u32) {
        self.leader = Some(pid);
        #[cfg(target_os = "linux")]
        if let Some(cgroup) = &mut self.cgroup {
            cgroup.started(pid);
        }
        #[cfg(target_os = "linux")]
        self.lineage.started(pid);
    }

    /// Kills the child's whole tree and waits (until `deadline`, but at least [`KILL_FLOOR`]
    /// if need be) for it to be gone, reaping the descendants that came to this process; the
    /// child itself is left for its watcher to reap. Everything is killed at least once
    /// whatever the deadline, one already past included. Safe to call more than once (a later
    /// call finds less or nothing).
    pub fn kill(&mut self, deadline: Instant) -> Outcome {
        let start = crate::clock::now();
        let deadline = deadline.max(start + KILL_FLOOR);
        let mut outcome = Outcome {
            mechanism: self.mechanism,
            reached: None,
            left: Vec::new(),
            elapsed: Duration::ZERO,
        };
        if self.mechanism != Mechanism::Cgroup {
            if let Some(leader) = self.leader {
                if let Err(err) = kill_process_group(leader, Action::KillGroup) {
                    tracing::warn!(pid = leader, %err, "cannot kill the process group");
                }
            }
        }
        #[cfg(target_os = "linux")]
        if let Some(cgroup) = &self.cgroup {
            let killed = cgroup.kill(deadline);
            outcome.reached = Some(killed.reached);
            outcome.left = killed.left;
        }
        #[cfg(target_os = "linux")]
        if self.mechanism == Mechanism::Subreaper {
            let swept = self.lineage.sweep(deadline);
            outcome.reached = Some(swept.reached);
            outcome.left = swept.left;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = deadline;
        outcome.elapsed = start.elapsed();
        self.survivors.record(&outcome.left);
        tracing::debug!(
            pid = self.leader,
            mechanism = %self.mechanism,
            reached = outcome.reached,
            left = outcome.left.len(),
            elapsed = ?outcome.elapsed,
            "contained tree killed"
        );
        outcome
    }
}
