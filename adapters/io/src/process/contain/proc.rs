//! What containment reads from `/proc`, and the pid-safe way to signal and await a process.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    pub(super) pid: u32,
    pub(super) ppid: u32,
    pub(super) zombie: bool,
    /// Clock ticks after boot; with the pid, names one process for good (pids are reused).
    pub(super) start: u64,
}

/// Reads one process's stat line, or `None` if it is gone.
pub(super) fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything, spaces and ')' included: the
    // fields that matter follow the last ')'.
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_ascii_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    // state, ppid, then pgrp ... itrealvalue: the start time is the 20th field after ')'.
    let start = fields.nth(17)?.parse().ok()?;
    Some(Stat {
        pid,
        ppid,
        zombie: state == "Z",
        start,
    })
}

/// Every process visible in `/proc` right now (one that exits meanwhile is left out).
pub(super) fn all() -> io::Result<Vec<Stat>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let name = entry?.file_name();
        if let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) {
            out.extend(stat(pid));
        }
    }
    Ok(out)
}

/// A process held by a pidfd, so that signals reach it and not a later process given the same
/// pid.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) stat: Stat,
    fd: OwnedFd,
}

impl Held {
    /// Holds the process `stat` describes, if it is still that one: the start time is checked
    /// after the pidfd is open, when the pid can no longer change hands.
    pub(super) fn open(stat: Stat) -> Option<Held> {
        let pid = Pid::from_raw(i32::try_from(stat.pid).ok()?)?;
        let fd = pidfd_open(pid, PidfdFlags::empty()).ok()?;
        (self::stat(stat.pid)?.start == stat.start).then_some(Held { stat, fd })
    }

    /// Sends `SIGKILL`. A process already exiting is not an error.
    pub(super) fn kill(&self) {
        match pidfd_send_signal(&self.fd, Signal::KILL) {
            Ok(()) | Err(Errno::SRCH) => {}
            Err(err) => tracing::warn!(pid = self.stat.pid, %err, "cannot kill"),
        }
    }

    /// Waits until the process has exited (it may be an unreaped zombie then), or until
    /// `deadline`; says whether it exited. A deadline already past looks without waiting. A
    /// pidfd becomes readable on exit: this is an event, not polling.
    pub(super) fn wait_exit(&self, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(crate::clock::now());
            let Ok(timeout) = Timespec::try_from(left) else {
                return false;
            };
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return false,
                Ok(_) => return true,
                Err(Errno::INTR) => continue,
                Err(err) => {
                    tracing::warn!(pid = self.stat.pid, %err, "cannot wait for an exit");
                    return false;
                }
            }
        }
    }
}

/// Reaps `pid` if it is an exited child of this process; says whether it did.
pub(super) fn reap(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
            Ok(Some(_)) => return true,
            Ok(None) => return false,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}
