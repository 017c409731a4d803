//! Leaving no zombie behind: the command adopts its orphaned descendants and reaps them.
//!
//! A grandchild whose parent dies is re-parented to the nearest "subreaper", else to init —
//! and not every init reaps (container inits often do not), so killed grandchildren could
//! linger as zombies. By becoming a subreaper, `tether` takes them in itself, and after a
//! child's group has been killed it reaps every member that came to it.

/// Makes this process the reaper of its orphaned descendants (Linux; elsewhere a no-op).
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(err) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        tracing::debug!(%err, "cannot become a child subreaper");
    }
}

/// Reaps every member of the killed process group `pgid` that was re-parented to us.
pub fn reap_group(pgid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pgid) = pgid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        use rustix::io::Errno;
        use rustix::process::{waitpgid, WaitOptions};
        // Until no member of the group is left among our children.
        while let Ok(_) | Err(Errno::INTR) = waitpgid(pgid, WaitOptions::empty()) {}
    }
    #[cfg(not(unix))]
    let _ = pgid;
}
