//! Carrying out the endpoint's restarts: starting the next child under the same connection,
//! and the reports of each child's end. When and whether to restart is the endpoint's
//! decision (`tether_core::restart`); this module only does it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tether_core::{EndCause, ExitStatus, Restart};
use tracing::Instrument;

use super::{spawn, ChildOptions, Lifetime};
use crate::shared::{Generation, Shared};
use crate::{clock, stream, Runtime};

/// How long the end of a child waits for the last of its standard error (the pipe may still
/// hold its last words when the exit is seen).
pub(crate) const TAIL_WAIT: Duration = Duration::from_millis(200);

/// How one child ended, as the connection reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndReport {
    /// Why it ended.
    pub cause: EndCause,
    /// The status the operating system reported.
    pub status: ExitStatus,
    /// The last 4 KiB of its standard error, as text, when it is captured
    /// ([`Stderr::Log`](super::Stderr::Log) or [`Stderr::Null`](super::Stderr::Null)).
    pub stderr_tail: Option<String>,
}

/// A restart the connection carries out: the end of the child it replaces, and the delay
/// before the next one starts. Reported when decided, before the delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartReport {
    /// Which restart this is since the delays last started over (1 for the first).
    pub attempt: u32,
    /// How long after the end the next child is started.
    pub delay: Duration,
    /// How the replaced child ended.
    pub end: EndReport,
}

impl RestartReport {
    pub(crate) fn new(restart: Restart, stderr_tail: Option<String>) -> Self {
        RestartReport {
            attempt: restart.attempt,
            delay: restart.delay,
            end: EndReport {
                cause: restart.end.cause,
                status: restart.end.status,
                stderr_tail,
            },
        }
    }
}

/// What starting the next child needs: the command, rebuilt from the first one's program,
/// arguments, environment changes and directory, and how it is spawned.
pub(crate) struct Respawn {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<PathBuf>,
    options: ChildOptions,
    label: String,
}

impl std::fmt::Debug for Respawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Respawn")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl Respawn {
    /// Remembers `command` (before it is spawned) to start it again.
    pub(crate) fn new(command: &Command, options: ChildOptions, label: String) -> Self {
        Respawn {
            program: command.get_program().to_owned(),
            args: command.get_args().map(ToOwned::to_owned).collect(),
            envs: command
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
            dir: command.get_current_dir().map(ToOwned::to_owned),
            options,
            label,
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.envs {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }
}

/// Starts the next child each time the endpoint says a restart's delay has passed
/// ([`poll_respawn`](tether_core::Endpoint::poll_respawn), after the timer fired it), until
/// the connection is over. A task of the connection's, layered on the driver: its timer
/// wakes the watchers of restarts with every deadline it fires.
pub(crate) async fn supervise<M, R>(shared: Arc<Shared<M>>)
where
    M: Serialize + DeserializeOwned + Send + 'static,
    R: Runtime,
{
    loop {
        let mut due = false;
        shared
            .wait_for(&shared.restarted, |s| {
                due = s.ep.poll_respawn();
                due || s.abandoned || s.ep.is_finished()
            })
            .await;
        if !due {
            return;
        }
        // The child before is released first (reaped, its cgroups removed): the next one
        // starts on a clean slate.
        shared
            .wait_for(&shared.restarted, |s| {
                s.abandoned || s.child.as_ref().is_none_or(|c| c.is_released())
            })
            .await;
        respawn::<M, R>(&shared);
    }
}

/// The endpoint asked for the next child: spawn it, give the connection its pipes, and tell
/// the endpoint (which then writes what the owner queued meanwhile). A spawn that fails ends
/// the connection, as the endpoint decides.
fn respawn<M, R>(shared: &Arc<Shared<M>>)
where
    M: Serialize + DeserializeOwned + Send + 'static,
    R: Runtime,
{
    let Some(how) = shared.respawn.get() else {
        return;
    };
    let (Some(reader), Some(writer)) = (shared.reader(), shared.writer()) else {
        return;
    };
    let mut command = how.command();
    let spawned = spawn(&mut command, &how.options, &how.label).and_then(|spawned| {
        let stdout = R::pipe_reader(spawned.stdout)?;
        let stdin = R::pipe_writer(spawned.stdin)?;
        Ok((
            spawned.process,
            spawned.container,
            spawned.limits,
            stdout,
            stdin,
        ))
    });
    let (mut process, container, limits, stdout, stdin) = match spawned {
        Ok(parts) => parts,
        Err(err) => {
            tracing::warn!(%err, "cannot restart the child");
            shared.handle(|ep, now| ep.handle_respawn_failed(err, now));
            return;
        }
    };
    let pid = process.pid();
    // The order every reader and writer takes: the read half, the write half, the state.
    let mut read_half = reader.half.lock().unwrap_or_else(PoisonError::into_inner);
    let mut write_half = writer.half.lock().unwrap_or_else(PoisonError::into_inner);
    let mut state = shared.lock();
    if state.abandoned || !state.ep.is_restarting() {
        // Closed meanwhile: the new child goes at once (dropping it unwatched kills its
        // group; its cgroups go with the container and limits).
        return;
    }
    let Some(child) = state.child.as_mut() else {
        return;
    };
    child.push(Generation {
        pgid: pid,
        tail: process.tail(),
        container: Some(container),
        limits: Some(limits),
    });
    let lifetime: Arc<dyn Lifetime> = shared.clone();
    if let Err(err) = process.watch(lifetime) {
        // Nobody could watch it: its group was killed; the connection ends.
        drop((read_half, write_half));
        let gone = state.child.as_mut().and_then(|c| c.remove(pid));
        state.ep.handle_respawn_failed(err, clock::now());
        shared.settle(state);
        // No reap will be reported: its cgroups go now, not under the lock.
        drop(gone);
        return;
    }
    state.ep.handle_respawned(clock::now());
    *shared.process() = Some(process);
    read_half.stream = Some(Box::new(stdout));
    write_half.stream = Some(Box::new(stdin));
    write_half.out.clear();
    write_half.written = 0;
    // The writer task of the old stream stops; a new one serves the new stream.
    writer.generation.fetch_add(1, Ordering::AcqRel);
    drop((read_half, write_half));
    tracing::debug!(pid, "restarted the child");
    shared.settle(state);
    R::spawn(stream::write(Arc::clone(shared)).in_current_span());
}
