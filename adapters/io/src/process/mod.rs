//! The child-process layer, shared by every runtime: spawn a child in its own process group,
//! watch for its exit, carry out the signals the core's endpoint decides, and reap it.
//!
//! None of this needs an async runtime. Each child has one small thread that blocks until the
//! child exits (without reaping it), reports the exit to the endpoint (which has the group
//! killed), and only then reaps it. Once the owner drops the connection, a second small thread
//! fires the endpoint's deadlines — the rest of the shutdown ladder. So a connection dropped
//! after its runtime has gone still takes its whole process tree with it, and no zombie is
//! left behind.

pub mod contain;
#[cfg(target_os = "linux")]
mod limits;
mod stderr;
mod supervise;
mod sys;

use std::io;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use event_listener::Event;
use tether_core::{Action, ExitStatus};

#[cfg(target_os = "linux")]
pub use limits::Limits;
pub use stderr::TAIL_BYTES;
pub(crate) use supervise::{supervise, Respawn, TAIL_WAIT};
pub use supervise::{EndReport, RestartReport};
pub use sys::kill_process_group;

#[cfg(target_os = "linux")]
pub(crate) use limits::LimitGroups;
pub(crate) use stderr::Tail;

/// The limits asked for a child (Linux only, where cgroups set them).
#[cfg(not(target_os = "linux"))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The most memory (bytes) the child's tree may use.
    pub memory_max: Option<u64>,
    /// The most processes the child's tree may hold at once.
    pub pids_max: Option<u64>,
    /// The most CPU time, in percent of one CPU.
    pub cpu_max: Option<u32>,
}

#[cfg(not(target_os = "linux"))]
impl Limits {
    /// Whether no limit is asked for.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Limits need cgroups: refused everywhere but Linux.
    pub fn check(&self) -> Result<(), String> {
        match self.is_empty() {
            true => Ok(()),
            false => Err("limits need cgroups, which only Linux has".to_owned()),
        }
    }
}

/// What holds a child's limits; nothing where there are none.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(crate) struct LimitGroups;

#[cfg(not(target_os = "linux"))]
impl LimitGroups {
    pub(crate) fn create(limits: &Limits, _: &Container) -> io::Result<LimitGroups> {
        limits.check().map_err(io::Error::other)?;
        Ok(LimitGroups)
    }
    pub(crate) fn configure(&self, _: &mut Command) {}
    pub(crate) fn oom_killed(&self) -> bool {
        false
    }
}
use contain::{Availability, Container, Containment, Survivors};

/// What happens to the child's standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stderr {
    /// Read continuously and logged with `tracing`, one event per line (the default), so the
    /// child never blocks on a full pipe; its last 4 KiB are kept for the end report.
    #[default]
    Log,
    /// Shared with this process (nothing is kept).
    Inherit,
    /// Read and discarded; its last 4 KiB are kept for the end report.
    Null,
}

/// How a child is spawned. Its shutdown ladder is the core's, in [`Options`](crate::Options).
#[derive(Debug, Clone)]
pub struct ChildOptions {
    /// Where the child's standard error goes.
    pub stderr: Stderr,
    /// How the child's whole tree is reached at the end, descendants that left its process
    /// group included (see [`contain`]).
    pub contain: Containment,
    /// On Linux, have the kernel kill the direct child (`SIGKILL`) if the thread that spawned
    /// it dies. This covers the direct child only: grandchildren are reached through the
    /// process group, which needs this process alive to signal it. Note that the kernel ties
    /// this to the spawning *thread*, so spawn from a thread that lives as long as the child
    /// should. On by default.
    pub parent_death_signal: bool,
    /// Memory, process and CPU limits, through cgroups (see [`Limits`]).
    pub limits: Limits,
}

impl Default for ChildOptions {
    fn default() -> Self {
        ChildOptions {
            stderr: Stderr::Log,
            contain: Containment::Auto,
            parent_death_signal: true,
            limits: Limits::default(),
        }
    }
}

/// What the process layer reports to, and asks of, the endpoint that decides the child's
/// lifetime. Implemented by the drivers' shared state; each call takes the endpoint's lock,
/// hands it the input with the current time, and carries out the signals it decides.
pub(crate) trait Lifetime: Send + Sync + 'static {
    /// The child `pid` has exited and is not yet reaped.
    fn exited(&self, pid: u32, status: ExitStatus);
    /// Fires what is due; returns the next deadline.
    fn tick(&self) -> Option<Instant>;
    /// The child `pid` has been reaped: its containment and limits can go.
    fn reaped(&self, pid: u32);
}

/// A child just spawned, with the pipes that the connection takes. Nothing watches it until
/// [`Process::watch`]; dropping it unwatched kills its group at once.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// The process handle.
    pub(crate) process: Process,
    /// The child's standard input.
    pub(crate) stdin: ChildStdin,
    /// The child's standard output.
    pub(crate) stdout: ChildStdout,
    /// What reaches the child's whole tree at the end.
    pub(crate) container: Container,
    /// The cgroups that hold its limits.
    pub(crate) limits: LimitGroups,
}

/// What this machine offers for containment, looked at once, at the first spawn (so a host
/// that makes itself a subreaper must do so before).
fn availability() -> &'static Availability {
    static AVAILABLE: OnceLock<Availability> = OnceLock::new();
    AVAILABLE.get_or_init(Availability::detect)
}

/// Spawns `command` in a new process group with piped stdin and stdout, inside the
/// containment asked for (an unavailable one is an error; `Auto` takes the strongest there
/// is).
pub(crate) fn spawn(
    command: &mut Command,
    options: &ChildOptions,
    label: &str,
) -> io::Result<Spawned> {
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    command.stderr(match options.stderr {
        Stderr::Log | Stderr::Null => Stdio::piped(),
        Stderr::Inherit => Stdio::inherit(),
    });
    let mechanism = availability()
        .resolve(options.contain)
        .map_err(io::Error::other)?;
    let mut container = Container::new(mechanism, availability())?;
    let limits = LimitGroups::create(&options.limits, &container)?;
    container.configure(command);
    limits.configure(command);
    sys::configure(command, options.parent_death_signal);
    let mut child = command.spawn()?;
    let pid = child.id();
    container.started(pid);
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        unreachable!("both pipes were requested")
    };
    let tail = child.stderr.take().map(|err| {
        let tail = Tail::default();
        let log = options.stderr == Stderr::Log;
        stderr::drain(err, label.to_owned(), pid, log, tail.clone());
        tail
    });
    tracing::debug!(pid, containment = %mechanism, "spawned child in its own process group");
    Ok(Spawned {
        process: Process {
            pid,
            watcher: Some(sys::Watcher::new(child)),
            state: Arc::new(State::default()),
            survivors: container.survivors().clone(),
            tail,
        },
        stdin,
        stdout,
        container,
        limits,
    })
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(64 * 1024)
        .spawn(f)
        .map(drop)
}

/// The owner's handle on a child: its pid, and whether it has been reaped.
#[derive(Debug)]
pub(crate) struct Process {
    pid: u32,
    /// Until [`watch`](Self::watch) hands it to the watch thread.
    watcher: Option<sys::Watcher>,
    state: Arc<State>,
    /// What outlived the kill of the child's tree, recorded by its container; kept here
    /// because the container goes with the child's reap, and the owner asks afterwards.
    survivors: Survivors,
    /// The last bytes of its standard error, when captured.
    tail: Option<Tail>,
}

#[derive(Debug, Default)]
struct State {
    reaped: Mutex<Option<ExitStatus>>,
    /// Wakes the thread that runs the endpoint's timers once the owner is gone.
    changed: Condvar,
    /// Wakes async waiters once the child is reaped.
    exited: Event,
}

impl State {
    fn reaped(&self) -> MutexGuard<'_, Option<ExitStatus>> {
        self.reaped.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Process {
    /// The child's process id, which is also its process group id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts the thread that waits for the child's exit, reports it to `lifetime` (which
    /// kills the group) while the child is still unreaped, then reaps it. If no thread can be
    /// had, the group is killed at once: nobody could watch the child.
    pub(crate) fn watch(&mut self, lifetime: Arc<dyn Lifetime>) -> io::Result<()> {
        let Some(watcher) = self.watcher.take() else {
            return Ok(());
        };
        let state = Arc::clone(&self.state);
        let pid = self.pid;
        spawn_thread("tether-wait", move || {
            let status = watcher.wait_exited();
            // The kill goes out while the exited child is still unreaped, so its pid (the
            // group id) cannot have been reused.
            lifetime.exited(pid, status);
            watcher.reap();
            lifetime.reaped(pid);
            *state.reaped() = Some(status);
            tracing::debug!(pid, %status, "child exited and was reaped");
            state.changed.notify_all();
            state.exited.notify(usize::MAX);
        })
        .inspect_err(|_| {
            let _ = kill_process_group(pid, Action::KillGroup);
        })
    }

    /// The owner is gone: a thread of its own fires the endpoint's deadlines (the rest of the
    /// shutdown ladder) until the child has been reaped, with no runtime needed.
    pub(crate) fn take_over(&self, lifetime: Arc<dyn Lifetime>) {
        let state = Arc::clone(&self.state);
        let pid = self.pid;
        let ran = spawn_thread("tether-ladder", move || {
            let mut reaped = state.reaped();
            while reaped.is_none() {
                drop(reaped);
                let next = lifetime.tick();
                reaped = state.reaped();
                if reaped.is_some() {
                    break;
                }
                reaped = match next {
                    Some(deadline) => {
                        let wait = deadline.saturating_duration_since(crate::clock::now());
                        state
                            .changed
                            .wait_timeout(reaped, wait)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => state
                        .changed
                        .wait(reaped)
                        .unwrap_or_else(PoisonError::into_inner),
                };
            }
        });
        if let Err(err) = ran {
            // Without a thread there is no one to wait out the grace periods: go straight to
            // the kill rather than leave the tree behind.
            tracing::error!(pid, %err, "cannot start the shutdown thread; killing the group");
            let _ = kill_process_group(pid, Action::KillGroup);
        }
    }

    /// The processes of the child's tree that outlived its kill (see [`Survivors`]): empty
    /// while the kill has not run, and empty after it if the whole tree was gone in time.
    /// Complete once [`wait`](Self::wait) has returned: the kill runs before the reap.
    pub(crate) fn survivors(&self) -> Vec<u32> {
        self.survivors.get()
    }

    /// The last bytes of the child's standard error as text, once it is closed (or after
    /// `within`); `None` if it is not captured.
    pub(crate) fn stderr_tail(&self, within: std::time::Duration) -> Option<String> {
        self.tail.as_ref().map(|tail| tail.text(within))
    }

    /// A handle on the tail, for whoever reports the child's end.
    pub(crate) fn tail(&self) -> Option<Tail> {
        self.tail.clone()
    }

    /// How the child exited, once it has been reaped.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *self.state.reaped()
    }

    /// A handle that waits for this child's reap, apart from the process handle.
    pub(crate) fn reaped(&self) -> Reaped {
        Reaped(Arc::clone(&self.state))
    }

    /// Waits until the child has exited, its group has been killed and it has been reaped.
    #[allow(
        dead_code,
        reason = "the connection waits through `reaped`, which a restart can outlive"
    )]
    pub(crate) async fn wait(&self) -> ExitStatus {
        loop {
            let listener = self.state.exited.listen();
            if let Some(status) = self.exit_status() {
                return status;
            }
            listener.await;
        }
    }
}

/// Waits for one child's reap (see [`Process::reaped`]).
#[derive(Debug)]
pub(crate) struct Reaped(Arc<State>);

impl Reaped {
    /// Waits until the child has exited, its group has been killed and it has been reaped.
    pub(crate) async fn wait(&self) -> ExitStatus {
        loop {
            let listener = self.0.exited.listen();
            if let Some(status) = *self.0.reaped() {
                return status;
            }
            listener.await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.watcher.is_some() {
            // Never watched: nobody else will take this tree down.
            let _ = kill_process_group(self.pid, Action::KillGroup);
        }
    }
}
