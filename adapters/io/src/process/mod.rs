//! The child-process layer, shared by every runtime: spawn a child in its own process group,
//! watch for its exit, run the core's [`Supervisor`] ladder, and reap it.
//!
//! None of this needs an async runtime. Each child has one small thread that blocks until the
//! child exits (without reaping it), kills the child's group, and only then reaps it; a second
//! small thread runs the grace periods of a shutdown once one is requested. So a connection
//! dropped after its runtime has gone still takes its whole process tree with it, and no
//! zombie is left behind.

pub mod contain;
mod stderr;
mod sys;

use std::io;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use event_listener::Event;
use tether_core::{Action, ExitStatus, Policy, Supervisor};

pub use sys::kill_process_group;

/// What happens to the child's standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stderr {
    /// Read continuously and logged with `tracing`, one event per line (the default), so the
    /// child never blocks on a full pipe.
    #[default]
    Log,
    /// Shared with this process.
    Inherit,
    /// Discarded.
    Null,
}

/// How a child is spawned and shut down.
#[derive(Debug, Clone)]
pub struct ChildOptions {
    /// The shutdown ladder.
    pub policy: Policy,
    /// Where the child's standard error goes.
    pub stderr: Stderr,
    /// On Linux, have the kernel kill the direct child (`SIGKILL`) if the thread that spawned
    /// it dies. This covers the direct child only: grandchildren are reached through the
    /// process group, which needs this process alive to signal it. Note that the kernel ties
    /// this to the spawning *thread*, so spawn from a thread that lives as long as the child
    /// should. On by default.
    pub parent_death_signal: bool,
}

impl Default for ChildOptions {
    fn default() -> Self {
        ChildOptions {
            policy: Policy::default(),
            stderr: Stderr::Log,
            parent_death_signal: true,
        }
    }
}

/// A child just spawned, with the pipes that the connection takes.
#[derive(Debug)]
pub struct Spawned {
    /// The process handle; dropping it starts the shutdown ladder.
    pub process: Process,
    /// The child's standard input.
    pub stdin: ChildStdin,
    /// The child's standard output.
    pub stdout: ChildStdout,
}

/// Spawns `command` in a new process group with piped stdin and stdout, and starts watching
/// it.
pub fn spawn(command: &mut Command, options: &ChildOptions, label: &str) -> io::Result<Spawned> {
    command.stdin(Stdio::piped()).stdout(Stdio::piped());
    command.stderr(match options.stderr {
        Stderr::Log => Stdio::piped(),
        Stderr::Inherit => Stdio::inherit(),
        Stderr::Null => Stdio::null(),
    });
    sys::configure(command, options.parent_death_signal);
    let mut child = command.spawn()?;
    let pid = child.id();
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        unreachable!("both pipes were requested")
    };
    if let Some(err) = child.stderr.take() {
        stderr::drain(err, label.to_owned(), pid);
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            supervisor: Supervisor::new(options.policy),
            reaped: false,
            ladder_started: false,
            close_stdin: None,
        }),
        changed: Condvar::new(),
        exited: Event::new(),
    });
    let watcher = sys::Watcher::new(child);
    let thread_shared = Arc::clone(&shared);
    if let Err(err) = spawn_thread("tether-wait", move || watch(pid, watcher, &thread_shared)) {
        // Nobody could watch this child: take the tree down now rather than leave it.
        let _ = kill_process_group(pid, Action::KillGroup);
        return Err(err);
    }
    tracing::debug!(pid, "spawned child in its own process group");
    Ok(Spawned {
        process: Process { pid, shared },
        stdin,
        stdout,
    })
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(64 * 1024)
        .spawn(f)
        .map(drop)
}

/// The owner's handle on a child. Dropping it starts the shutdown ladder, which then runs to
/// the end on its own threads.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the ladder thread: the child exited, or a shutdown was requested.
    changed: Condvar,
    /// Wakes async waiters once the child is reaped.
    exited: Event,
}

struct State {
    supervisor: Supervisor,
    reaped: bool,
    ladder_started: bool,
    /// Carries out [`Action::CloseStdin`]: set by the connection that owns the stdin pipe.
    close_stdin: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("supervisor", &self.supervisor)
            .field("reaped", &self.reaped)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than leaking the child would, so carry on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Process {
    /// The child's process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sets how [`Action::CloseStdin`] is carried out (the connection closes its write half
    /// once everything queued is written).
    pub fn on_close_stdin(&self, f: impl FnOnce() + Send + 'static) {
        self.shared.lock().close_stdin = Some(Box::new(f));
    }

    /// Starts the shutdown ladder. Calling it again changes nothing. Needs no runtime.
    pub fn request_shutdown(&self) {
        let mut state = self.shared.lock();
        state.supervisor.request_shutdown(Instant::now());
        run_actions(self.pid, &mut state);
        if state.supervisor.is_done() || state.ladder_started {
            return;
        }
        state.ladder_started = true;
        drop(state);
        let (pid, shared) = (self.pid, Arc::clone(&self.shared));
        if let Err(err) = spawn_thread("tether-ladder", move || ladder(pid, &shared)) {
            // Without a thread there is no one to wait out the grace periods: go straight to
            // the kill rather than leave the tree behind.
            tracing::error!(pid, %err, "cannot start the shutdown thread; killing the group");
            let _ = kill_process_group(self.pid, Action::KillGroup);
        }
    }

    /// How the child exited, once it has been reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let state = self.shared.lock();
        state
            .reaped
            .then(|| state.supervisor.exit_status())
            .flatten()
    }

    /// Waits until the child has exited, its group has been killed and it has been reaped.
    pub async fn wait(&self) -> ExitStatus {
        loop {
            let listener = self.shared.exited.listen();
            if let Some(status) = self.exit_status() {
                return status;
            }
            listener.await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.request_shutdown();
    }
}

/// Carries out every action the supervisor has queued.
fn run_actions(pid: u32, state: &mut State) {
    while let Some(action) = state.supervisor.poll_action() {
        tracing::debug!(pid, ?action, "supervisor action");
        match action {
            Action::CloseStdin => {
                if let Some(close) = state.close_stdin.take() {
                    close();
                }
            }
            Action::TerminateGroup | Action::KillGroup => {
                if let Err(err) = kill_process_group(pid, action) {
                    tracing::warn!(pid, %err, ?action, "cannot signal the process group");
                }
            }
        }
    }
}

/// The watch thread: waits for the exit, has the group killed, then reaps.
fn watch(pid: u32, watcher: sys::Watcher, shared: &Shared) {
    let status = watcher.wait_exited();
    let mut state = shared.lock();
    state.supervisor.handle_exit(Instant::now(), status);
    // The kill goes out while the exited child is still unreaped, so its pid (the group id)
    // cannot have been reused.
    run_actions(pid, &mut state);
    watcher.reap();
    state.reaped = true;
    drop(state);
    tracing::debug!(pid, %status, "child exited and was reaped");
    shared.changed.notify_all();
    shared.exited.notify(usize::MAX);
}

/// The ladder thread: fires the supervisor's grace periods until the child is gone.
fn ladder(pid: u32, shared: &Shared) {
    let mut state = shared.lock();
    loop {
        state.supervisor.handle_timeout(Instant::now());
        run_actions(pid, &mut state);
        if state.reaped {
            return;
        }
        state = match state.supervisor.poll_timeout() {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                shared
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}
