//! The operating-system half of the process layer: process groups, signals, waiting, reaping.

#[cfg(unix)]
pub use unix::kill_process_group;
#[cfg(unix)]
pub(super) use unix::{configure, Watcher};
#[cfg(windows)]
pub use windows::kill_process_group;
#[cfg(windows)]
pub(super) use windows::{configure, Watcher};

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    use rustix::io::Errno;
    use rustix::process::{waitid, waitpid, Pid, Signal, WaitId, WaitIdOptions, WaitOptions};
    use tether_core::{Action, ExitStatus};

    /// Puts the child in a new process group (its pid becomes the group id), and on Linux asks
    /// for `SIGKILL` if the spawning thread dies.
    pub(crate) fn configure(command: &mut Command, parent_death_signal: bool) {
        command.process_group(0);
        #[cfg(target_os = "linux")]
        if parent_death_signal {
            let parent = rustix::process::getpid();
            // SAFETY: the closure runs between fork and exec and makes only two system calls,
            // both async-signal-safe; it allocates nothing and takes no lock.
            unsafe {
                command.pre_exec(move || {
                    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                    // The parent may have gone before the request took effect.
                    if rustix::process::getppid() != Some(parent) {
                        return Err(io::Error::other("the parent exited during spawn"));
                    }
                    Ok(())
                });
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = parent_death_signal;
    }

    /// Signals a whole process group: `TerminateGroup` sends `SIGTERM`, `KillGroup` (and the
    /// group's share of `KillDescendants`) `SIGKILL` (`CloseStdin` is not a signal and does
    /// nothing here). A group that no longer exists is already gone, not an error.
    pub fn kill_process_group(pgid: u32, action: Action) -> io::Result<()> {
        let signal = match action {
            Action::CloseStdin => return Ok(()),
            Action::TerminateGroup => Signal::TERM,
            Action::KillGroup | Action::KillDescendants { .. } => Signal::KILL,
        };
        let pid = i32::try_from(pgid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process id"))?;
        match rustix::process::kill_process_group(pid, signal) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Waits for one child's exit without reaping it, then reaps it when told to.
    #[derive(Debug)]
    pub(crate) struct Watcher {
        pid: Pid,
    }

    impl Watcher {
        pub(crate) fn new(child: Child) -> Self {
            let pid = Pid::from_child(&child);
            // Dropping a std `Child` neither waits for nor kills it: from here the pid is ours.
            drop(child);
            Watcher { pid }
        }

        /// Blocks until the child has exited, leaving it a zombie so that its pid stays
        /// reserved until [`reap`](Self::reap).
        pub(crate) fn wait_exited(&self) -> ExitStatus {
            loop {
                match waitid(
                    WaitId::Pid(self.pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                ) {
                    Ok(Some(status)) => {
                        return ExitStatus {
                            code: status.exit_status(),
                            signal: status.terminating_signal(),
                        }
                    }
                    Ok(None) | Err(Errno::INTR) => continue,
                    // Someone else reaped it (another library waiting on every child): it is
                    // gone, and how it ended is lost.
                    Err(_) => {
                        return ExitStatus {
                            code: None,
                            signal: None,
                        }
                    }
                }
            }
        }

        pub(crate) fn reap(&self) {
            while let Err(Errno::INTR) = waitpid(Some(self.pid), WaitOptions::empty()) {}
        }
    }
}

/// Windows: unverified (no Windows target on the machines this is built on), kept minimal.
#[cfg(windows)]
mod windows {
    use std::io;
    use std::os::windows::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::Mutex;

    use tether_core::{Action, ExitStatus};

    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

    pub(crate) fn configure(command: &mut Command, _parent_death_signal: bool) {
        command.creation_flags(CREATE_NEW_PROCESS_GROUP);
    }

    /// Ends the process tree with `taskkill /T /F`; Windows has no polite equivalent of
    /// `SIGTERM` for console programs, so terminating and killing are the same.
    pub fn kill_process_group(pid: u32, action: Action) -> io::Result<()> {
        if action == Action::CloseStdin {
            return Ok(());
        }
        Command::new("taskkill")
            .args(["/PID", &pid.to_string(), "/T", "/F"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(drop)
    }

    /// The process handle keeps the pid reserved until it is dropped, so waiting reaps.
    #[derive(Debug)]
    pub(crate) struct Watcher {
        child: Mutex<Child>,
    }

    impl Watcher {
        pub(crate) fn new(child: Child) -> Self {
            Watcher {
                child: Mutex::new(child),
            }
        }

        pub(crate) fn wait_exited(&self) -> ExitStatus {
            let status = self.child.lock().map(|mut c| c.wait());
            ExitStatus {
                code: status.ok().and_then(|s| s.ok()).and_then(|s| s.code()),
                signal: None,
            }
        }

        pub(crate) fn reap(&self) {}
    }
}
