//! A child process's lifetime as a state machine: when to close its stdin, when to signal its
//! process group, and when to kill it.
//!
//! The supervisor never touches a process. The driver tells it what happened (a shutdown was
//! requested, the child exited, time passed) and carries out the [`Action`]s it hands back.
//!
//! ```text
//! running ──request_shutdown──▶ CloseStdin ─grace─▶ TerminateGroup ─grace─▶ KillGroup ─▶ done
//!    │                              └───────── child exits: KillGroup at once ──────┘
//!    └── child exits on its own: KillGroup at once (its descendants may still run)
//! ```
//!
//! The group kill comes exactly once on every path, because a child that exits leaves its
//! descendants behind in its group. Drivers should detect the exit *without reaping* the child
//! (for example `waitid` with `WNOWAIT`), carry out the kill, and only then reap: while the
//! exited child is unreaped its pid, and so its group id, cannot be reused by another process.

use std::time::{Duration, Instant};

/// What the driver must do to the child now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Close the child's standard input, the polite request to finish.
    CloseStdin,
    /// Ask the child's whole process group to terminate (`SIGTERM`).
    TerminateGroup,
    /// Kill the child's whole process group (`SIGKILL`). The last action of the ladder.
    KillGroup,
    /// The child has exited and its group has been killed: kill whatever of its tree is
    /// left outside the group (descendants that called `setsid` or `setpgid`, daemons),
    /// by the containment in force — its cgroup, or a sweep of the processes re-parented to
    /// this one — and wait at most `within` for them to be gone. Never from a
    /// [`Supervisor`]: the [`Endpoint`](crate::Endpoint) asks for it once, after the exit.
    KillDescendants {
        /// How long the kill may wait for the tree to be gone.
        within: Duration,
    },
}

/// How a child ended, as the operating system reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    /// The exit code, if the child exited normally.
    pub code: Option<i32>,
    /// The signal that ended the child, if one did.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Whether the child exited normally with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

/// The shutdown ladder: which polite steps come before the kill, and how long each waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Close stdin first, then wait this long for the child to exit. `None` skips the step.
    pub close_stdin: Option<Duration>,
    /// Then signal the group to terminate and wait this long. `None` skips the step.
    pub terminate: Option<Duration>,
}

/// The default wait after each polite step.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

impl Default for Policy {
    /// Close stdin, wait 2 s, terminate the group, wait 2 s, kill the group.
    fn default() -> Self {
        Policy::graceful(DEFAULT_GRACE)
    }
}

impl Policy {
    /// Close stdin, wait `grace`, terminate the group, wait `grace`, kill the group.
    pub fn graceful(grace: Duration) -> Self {
        Policy {
            close_stdin: Some(grace),
            terminate: Some(grace),
        }
    }

    /// Terminate the group, wait `grace`, kill the group: for children that do not treat the
    /// end of their input as a request to exit.
    pub fn terminate_first(grace: Duration) -> Self {
        Policy {
            close_stdin: None,
            terminate: Some(grace),
        }
    }

    /// Kill the group at once.
    pub fn immediate() -> Self {
        Policy {
            close_stdin: None,
            terminate: None,
        }
    }
}

/// Where the ladder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No shutdown requested, the child not known to have exited.
    Running,
    /// Stdin closed; waiting for the grace period.
    StdinClosed,
    /// The group was asked to terminate; waiting for the grace period.
    Terminating,
    /// The group kill has been queued; nothing is left to decide.
    Killed,
}

/// The lifetime of one child process. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Supervisor {
    policy: Policy,
    stage: Stage,
    shutdown_requested: bool,
    deadline: Option<Instant>,
    /// At most one of each action is ever queued.
    actions: [Option<Action>; 3],
    exit: Option<ExitStatus>,
    last_now: Option<Instant>,
}

impl Supervisor {
    /// A supervisor for a child that has just been spawned.
    pub fn new(policy: Policy) -> Self {
        Supervisor {
            policy,
            stage: Stage::Running,
            shutdown_requested: false,
            deadline: None,
            actions: [None; 3],
            exit: None,
            last_now: None,
        }
    }

    /// Starts the shutdown ladder. A second request changes nothing.
    pub fn request_shutdown(&mut self, now: Instant) {
        let now = self.observe(now);
        if self.shutdown_requested {
            return;
        }
        self.shutdown_requested = true;
        if self.stage == Stage::Running {
            self.advance(now);
            self.fire_due(now);
        }
    }

    /// Skips whatever grace is left: the group is killed now (a user who will not wait, say
    /// with a second interrupt). Counts as a shutdown request; after the kill it changes
    /// nothing.
    pub fn request_kill(&mut self, now: Instant) {
        self.observe(now);
        self.shutdown_requested = true;
        if self.stage != Stage::Killed {
            self.stage = Stage::Killed;
            self.deadline = None;
            self.push(Action::KillGroup);
        }
    }

    /// The child has exited (detected, ideally not yet reaped). The remaining waits are
    /// skipped and the group is killed at once, unless it already was. Only the first exit
    /// reported counts.
    pub fn handle_exit(&mut self, now: Instant, status: ExitStatus) {
        self.observe(now);
        if self.exit.is_some() {
            return;
        }
        self.exit = Some(status);
        self.deadline = None;
        if self.stage != Stage::Killed {
            self.stage = Stage::Killed;
            self.push(Action::KillGroup);
        }
    }

    /// Time has passed: fires the grace period if it is due, and nothing else. Time that goes
    /// backwards is treated as no time at all.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
    }

    /// Takes in the time of an input: ignores it if it goes backwards, and fires a grace
    /// period that is already due, so that a deadline is never left behind the latest `now`.
    fn observe(&mut self, now: Instant) -> Instant {
        let now = match self.last_now {
            Some(last) if now < last => last,
            _ => now,
        };
        self.last_now = Some(now);
        self.fire_due(now);
        now
    }

    /// Advances past every grace period due at `now` (several, when a grace is zero).
    fn fire_due(&mut self, now: Instant) {
        while self.deadline.is_some_and(|d| d <= now) {
            self.deadline = None;
            self.advance(now);
        }
    }

    /// Takes the next step down the ladder from the current stage.
    fn advance(&mut self, now: Instant) {
        let (action, grace) = match self.stage {
            Stage::Running => match (self.policy.close_stdin, self.policy.terminate) {
                (Some(grace), _) => (Action::CloseStdin, Some(grace)),
                (None, Some(grace)) => (Action::TerminateGroup, Some(grace)),
                (None, None) => (Action::KillGroup, None),
            },
            Stage::StdinClosed => match self.policy.terminate {
                Some(grace) => (Action::TerminateGroup, Some(grace)),
                None => (Action::KillGroup, None),
            },
            Stage::Terminating => (Action::KillGroup, None),
            Stage::Killed => return,
        };
        self.stage = match action {
            Action::CloseStdin => Stage::StdinClosed,
            Action::TerminateGroup => Stage::Terminating,
            Action::KillGroup | Action::KillDescendants { .. } => Stage::Killed,
        };
        // A grace too long to represent is a wait with no end.
        self.deadline = grace.and_then(|g| now.checked_add(g));
        self.push(action);
    }

    fn push(&mut self, action: Action) {
        if let Some(slot) = self.actions.iter_mut().find(|a| a.is_none()) {
            *slot = Some(action);
        }
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        let first = self.actions[0].take()?;
        self.actions.rotate_left(1);
        Some(first)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The ladder this supervisor follows.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether a shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown_requested
    }

    /// Whether the group kill has been queued (it may not have been polled yet).
    pub fn is_killed(&self) -> bool {
        self.stage == Stage::Killed
    }

    /// Whether the supervisor is finished: the child has exited, its group has been killed
    /// and every action has been polled. Nothing follows.
    pub fn is_done(&self) -> bool {
        self.exit.is_some() && self.stage == Stage::Killed && self.actions[0].is_none()
    }

    /// How the child exited, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }
}
