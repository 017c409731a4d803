//! Supervision across children: whether an ended child is started again, after how long, and
//! when restarting gives up (a crash loop). Also why a child ended, as one typed cause.
//!
//! [`Restarts`] is a pure machine like the rest of the core: the endpoint tells it that a child
//! started and that a child ended (with its [`EndCause`] and the current time), and it answers
//! with a [`Decision`]. It keeps no timer of its own; the endpoint arms the delay it returns.
//!
//! The rules, all in virtual time:
//! - [`RestartMode::Never`] never restarts; [`RestartMode::OnFailure`] restarts after
//!   [`EndCause::Failed`], [`EndCause::ReadyTimeout`] and [`EndCause::Oom`];
//!   [`RestartMode::Always`] also after [`EndCause::Exited`]. Nothing restarts after
//!   [`EndCause::Requested`]: tether's own shutdown is final.
//! - The first delay is [`RestartPolicy::backoff`]; each restart doubles it, up to
//!   [`MAX_BACKOFF`]. A child that stayed up for a whole window starts the doubling over.
//! - At most [`RestartPolicy::max_restarts`] restarts within any
//!   [`RestartPolicy::window`] (a sliding window over the times restarts were decided): the next
//!   end that would restart gives up instead, with [`EndCause::CrashLoop`].

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::ExitStatus;

/// The longest delay the doubling reaches.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// When an ended child is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartMode {
    /// Never (the default): the connection ends with its child.
    #[default]
    Never,
    /// After an end the child did not choose to make cleanly: a non-zero code, a signal, a
    /// missed ready deadline, an out-of-memory kill.
    OnFailure,
    /// After any end tether did not ask for, code 0 included.
    Always,
}

impl RestartMode {
    /// The name the command line uses (`never`, `on-failure`, `always`).
    pub fn name(self) -> &'static str {
        match self {
            RestartMode::Never => "never",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Always => "always",
        }
    }
}

/// The supervision settings of a child: restarts, their delays, the crash-loop guard and the
/// ready deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// The first delay before a restart; it doubles with each restart, up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// How many restarts the window allows; the next end that would restart is a crash loop.
    pub max_restarts: u32,
    /// The sliding window of the crash-loop guard, and how long a child must stay up for the
    /// delays to start over.
    pub window: Duration,
    /// A child that sends nothing within this long of its start has failed to start: the
    /// ladder runs, and the end's cause is [`EndCause::ReadyTimeout`]. `None`: no deadline.
    pub ready_timeout: Option<Duration>,
}

impl Default for RestartPolicy {
    /// No restarts; when turned on: 200 ms doubling, 5 restarts per 60 s; no ready deadline.
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Never,
            backoff: Duration::from_millis(200),
            max_restarts: 5,
            window: Duration::from_secs(60),
            ready_timeout: None,
        }
    }
}

/// Why a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// tether ended it: the owner closed or killed the connection (end of input, linger, a
    /// signal to tether, a dropped connection), while the child still ran.
    Requested,
    /// It exited with code 0, by itself.
    Exited,
    /// It exited with a non-zero code or was killed by a signal, by itself.
    Failed,
    /// It sent nothing within the ready deadline, and the ladder ended it.
    ReadyTimeout,
    /// The kernel killed it for exceeding its memory limit.
    Oom,
    /// It would have been restarted, but the window's restarts were used up.
    CrashLoop,
}

impl EndCause {
    /// The name the command prints (`requested`, `exited`, `failed`, `ready_timeout`, `oom`,
    /// `crash_loop`).
    pub fn name(self) -> &'static str {
        match self {
            EndCause::Requested => "requested",
            EndCause::Exited => "exited",
            EndCause::Failed => "failed",
            EndCause::ReadyTimeout => "ready_timeout",
            EndCause::Oom => "oom",
            EndCause::CrashLoop => "crash_loop",
        }
    }
}

impl fmt::Display for EndCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one child ended: what the endpoint reports for each child, restarted or last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// Why.
    pub cause: EndCause,
    /// The status the operating system reported.
    pub status: ExitStatus,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.cause, self.status)
    }
}

/// A restart decided: the child that ended, and when the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// Which restart this is since the delays last started over (1 for the first).
    pub attempt: u32,
    /// How long after the end the next child is started.
    pub delay: Duration,
    /// How the child that is replaced ended.
    pub end: End,
}

/// What follows a child's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start a new child after the delay.
    Restart(Restart),
    /// The end is final, with this cause ([`EndCause::CrashLoop`] when the guard gave up).
    End(EndCause),
}

/// The restart policy applied to one connection's successive children. See the [module
/// documentation](self).
#[derive(Debug, Clone)]
pub struct Restarts {
    policy: RestartPolicy,
    /// When the current child started.
    started: Option<Instant>,
    /// When each restart within the window was decided, oldest first.
    recent: VecDeque<Instant>,
    /// Restarts since the delays last started over.
    attempt: u32,
    last_now: Option<Instant>,
}

impl Restarts {
    /// A machine for `policy`; no child has started yet.
    pub fn new(policy: RestartPolicy) -> Self {
        Restarts {
            policy,
            started: None,
            recent: VecDeque::new(),
            attempt: 0,
            last_now: None,
        }
    }

    /// The policy it applies.
    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Whether any end could be followed by a restart.
    pub fn may_restart(&self) -> bool {
        self.policy.mode != RestartMode::Never
    }

    /// A child has started (the first one, or a restart).
    pub fn handle_start(&mut self, now: Instant) {
        let now = self.observe(now);
        self.started = Some(now);
    }

    /// A child ended with `cause` (one of the causes a child can end with by itself or by
    /// request; [`EndCause::CrashLoop`] is this machine's answer, never its input). Decides
    /// whether it is restarted.
    pub fn handle_end(&mut self, cause: EndCause, status: ExitStatus, now: Instant) -> Decision {
        let now = self.observe(now);
        let restart = match (self.policy.mode, cause) {
            (_, EndCause::Requested | EndCause::CrashLoop) | (RestartMode::Never, _) => false,
            (RestartMode::Always, _) => true,
            (RestartMode::OnFailure, EndCause::Exited) => false,
            (RestartMode::OnFailure, _) => true,
        };
        if !restart {
            return Decision::End(cause);
        }
        let window = self.policy.window;
        // A child that stayed up for a whole window: the delays start over.
        if self
            .started
            .is_some_and(|started| now.saturating_duration_since(started) >= window)
        {
            self.attempt = 0;
        }
        while self
            .recent
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.policy.max_restarts as usize {
            return Decision::End(EndCause::CrashLoop);
        }
        self.recent.push_back(now);
        self.attempt = self.attempt.saturating_add(1);
        Decision::Restart(Restart {
            attempt: self.attempt,
            delay: self.delay(self.attempt),
            end: End { cause, status },
        })
    }

    /// The delay before restart number `attempt` (1-based): the backoff doubled for each
    /// restart before it, at most [`MAX_BACKOFF`] (or the backoff itself, if that is longer).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.policy.backoff;
        let doublings = attempt.saturating_sub(1).min(31);
        base.checked_mul(1 << doublings)
            .unwrap_or(Duration::MAX)
            .min(MAX_BACKOFF.max(base))
    }

    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        now
    }
}
