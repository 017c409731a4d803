//! `--record`: a transcript of every frame between tether and its peer (see
//! [`tether_core::transcript`] for the line format). `run` and `connect` write one file; the
//! bridge writes one file per session into a folder, `session-<n>.jsonl`, numbered from 1 in
//! the order the sessions start.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use tether_core::ExitStatus;
use tether_io::{Options, Recorder};

use crate::Failure;

/// A recorder writing to `path`, if one was asked for.
pub fn open(path: Option<&Path>) -> Result<Option<Recorder>, Failure> {
    path.map(|path| {
        Recorder::create(path)
            .map_err(|e| Failure(format!("cannot record to {}: {e}", path.display())))
    })
    .transpose()
}

/// `options`, recording with `recorder` if there is one.
pub fn options(options: Options, recorder: Option<&Recorder>) -> Options {
    match recorder {
        Some(recorder) => options.record(recorder),
        None => options,
    }
}

/// Writes the end of the transcript, if one is being recorded.
pub fn finish(recorder: Option<&Recorder>, exit: Option<ExitStatus>) -> Result<(), Failure> {
    match recorder {
        Some(recorder) => recorder
            .finish(exit)
            .map_err(|e| Failure(format!("cannot record the session: {e}"))),
        None => Ok(()),
    }
}

/// The bridge's folder of transcripts, created before the first session.
pub fn prepare_folder(folder: Option<&Path>) -> Result<(), Failure> {
    match folder {
        Some(folder) => std::fs::create_dir_all(folder)
            .map_err(|e| Failure(format!("cannot record to {}: {e}", folder.display()))),
        None => Ok(()),
    }
}

/// Sessions of this bridge so far.
static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// A recorder for the bridge's next session in `folder`, if recording; a file that cannot be
/// made is logged and the session goes on unrecorded.
pub fn session(folder: Option<&Path>) -> Option<Recorder> {
    let n = SESSIONS.fetch_add(1, Ordering::Relaxed) + 1;
    let path = folder?.join(format!("session-{n}.jsonl"));
    Recorder::create(&path)
        .map_err(|err| tracing::warn!(%err, path = %path.display(), "cannot record the session"))
        .ok()
}

/// Ends a bridge session's transcript; a failure is logged.
pub fn finish_session(recorder: Option<&Recorder>, exit: Option<ExitStatus>) {
    if let Err(Failure(err)) = finish(recorder, exit) {
        tracing::warn!(%err, "cannot record the session");
    }
}
