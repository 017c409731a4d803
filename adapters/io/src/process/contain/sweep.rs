//! The subreaper sweep: after the group kill, every process that belongs to the child and came
//! to this process (a child subreaper) is killed and reaped, scan after scan, until none is
//! left. The claim rule is documented on [`Container`](super::Container).

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::proc::{self, Held, Stat};

/// The environment variable that marks a child's descendants.
const MARKER: &str = "TETHER_CONTAIN";

/// The children started through a [`Lineage`] still alive: never claimed by another's sweep.
static LEADERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

static NEXT: AtomicU64 = AtomicU64::new(0);

/// One child's marker and identity. Every container has one, whatever its mechanism, so
/// that a sweep never claims another container's child, nor (by marker) its descendants.
#[derive(Debug)]
pub(super) struct Lineage {
    token: String,
    leader: Option<u32>,
    /// The child's start time; `u64::MAX` if unknown (no unmarked process is then claimed).
    start: u64,
    /// What the last sweep left, by pid and start time: reaped on drop if it has died and
    /// come here since.
    left: Mutex<Vec<(u32, u64)>>,
}

/// What [`Lineage::sweep`] did.
#[derive(Debug)]
pub(super) struct Swept {
    pub(super) reached: usize,
    pub(super) left: Vec<u32>,
}

/// Whose marker a process carries.
enum Mark {
    Ours,
    Another,
    None,
}

impl Lineage {
    pub(super) fn new() -> Lineage {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Lineage {
            token: format!("{}.{n}", std::process::id()),
            leader: None,
            start: u64::MAX,
            left: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn configure(&self, command: &mut Command) {
        command.env(MARKER, &self.token);
    }

    /// Records the child. It cannot have been reaped yet (its watcher reaps it later), so its
    /// `/proc` entry is there, zombie or not.
    pub(super) fn started(&mut self, pid: u32) {
        self.leader = Some(pid);
        match proc::stat(pid) {
            Some(stat) => self.start = stat.start,
            None => tracing::warn!(pid, "the child is not in /proc: the sweep claims by marker"),
        }
        LEADERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pid);
    }

    fn mark(&self, pid: u32) -> Mark {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            return Mark::None;
        };
        let prefix = format!("{MARKER}=");
        let value = environ
            .split(|&b| b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_bytes()));
        match value {
            Some(v) if v == self.token.as_bytes() => Mark::Ours,
            Some(_) => Mark::Another,
            None => Mark::None,
        }
    }

    /// Kills and reaps every process the claim rule gives to this child, the child itself
    /// excepted. Each scan kills everything it claims and reaps the zombies of this process
    /// before it looks at the clock: `deadline` bounds the waiting for deaths and the scans
    /// that follow them, never the first kill, so a deadline already past still kills (and
    /// reaps what has died) once.
    pub(super) fn sweep(&self, deadline: Instant) -> Swept {
        let me = std::process::id();
        let leader = self.leader;
        // Every process claimed so far, by pid and start time: a killed process's environment
        // can no longer be read, and it may come to this process only later.
        let mut claimed: HashMap<u32, u64> = HashMap::new();
        let mut reached = HashSet::new();
        loop {
            let all = match proc::all() {
                Ok(all) => all,
                Err(err) => {
                    tracing::warn!(%err, "cannot list /proc: sweep abandoned");
                    return self.left(reached.len(), claimed.into_iter().collect());
                }
            };
            let leaders = LEADERS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let spared = |pid: u32| Some(pid) == leader || leaders.contains(&pid);
            let mut now: Vec<Stat> = all
                .iter()
                .filter(|s| !spared(s.pid))
                .filter(|s| {
                    claimed.get(&s.pid) == Some(&s.start)
                        || Some(s.ppid) == leader
                        || match self.mark(s.pid) {
                            Mark::Ours => true,
                            Mark::Another => false,
                            Mark::None => s.ppid == me && s.start >= self.start,
                        }
                })
                .copied()
                .collect();
            // Whatever descends from a claimed process is claimed too.
            let mut children: HashMap<u32, Vec<Stat>> = HashMap::new();
            for s in &all {
                children.entry(s.ppid).or_default().push(*s);
            }
            let mut seen: HashSet<u32> = now.iter().map(|s| s.pid).collect();
            let mut i = 0;
            while i < now.len() {
                for child in children.get(&now[i].pid).into_iter().flatten() {
                    if !spared(child.pid) && seen.insert(child.pid) {
                        now.push(*child);
                    }
                }
                i += 1;
            }
            // A zombie whose parent is someone else is that parent's to reap, unless that
            // parent is the child or a process claimed here: it is dying, and the zombie
            // comes to this process to be reaped once it has died.
            now.retain(|s| {
                !s.zombie || s.ppid == me || Some(s.ppid) == leader || claimed.contains_key(&s.ppid)
            });
            if now.is_empty() {
                return self.left(reached.len(), Vec::new());
            }
            claimed.extend(now.iter().map(|s| (s.pid, s.start)));
            let held: Vec<Held> = now.into_iter().filter_map(Held::open).collect();
            for h in &held {
                if !h.stat.zombie {
                    h.kill();
                }
                reached.insert(h.stat.pid);
            }
            // Each is waited for while there is time (with none, what has already died is
            // still reaped), then scanned for again: a process whose parent dies is handed to
            // this one before that parent's exit is reported, so the next scan finds it here.
            // A deadline that passes during the waits leaves one more scan, which kills what
            // came meanwhile.
            let waiting = crate::clock::now() < deadline;
            let mut left = Vec::new();
            for h in &held {
                if !(h.wait_exit(deadline) && h.stat.ppid == me && proc::reap(h.stat.pid)) {
                    left.push((h.stat.pid, h.stat.start));
                }
            }
            if !waiting {
                return self.left(reached.len(), left);
            }
        }
    }
}

impl Lineage {
    /// Keeps what a sweep left, for the drop, and says what the sweep did.
    fn left(&self, reached: usize, left: Vec<(u32, u64)>) -> Swept {
        let pids = left.iter().map(|&(pid, _)| pid).collect();
        *self.left.lock().unwrap_or_else(PoisonError::into_inner) = left;
        Swept {
            reached,
            left: pids,
        }
    }
}

impl Drop for Lineage {
    /// Lets other sweeps claim the child's pid again, and reaps what the last sweep left and
    /// has since died here (a process that took longer to die than the sweep could wait):
    /// without waiting, and only the very processes left (pid and start time), since the
    /// child, reaped by now, no longer holds its pid.
    fn drop(&mut self) {
        let me = std::process::id();
        for &(pid, start) in self
            .left
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if proc::stat(pid).is_some_and(|s| s.start == start && s.zombie && s.ppid == me) {
                proc::reap(pid);
            }
        }
        if let Some(leader) = self.leader {
            let mut leaders = LEADERS.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(i) = leaders.iter().position(|&p| p == leader) {
                leaders.swap_remove(i);
            }
        }
    }
}
