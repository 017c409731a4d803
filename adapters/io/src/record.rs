//! Recording a session as a transcript: every frame the endpoint reads or writes, stamped
//! with the drivers' clock, one JSON line each (the format is
//! [`tether_core::transcript`]'s).

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tether_core::transcript::{End, Entry, Tap, Tapped};
use tether_core::ExitStatus;

use crate::clock;

/// Writes a connection's transcript. Hand it to a connection with
/// [`Options::record`](crate::Options::record) before the connection is made, and call
/// [`finish`](Self::finish) once the session is over (for a child, after it has been reaped)
/// to write the `end` line.
///
/// Times count from the recorder's creation. Lines are buffered and written as frames pass,
/// from inside the connection's own calls; the end flushes them.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    out: Box<dyn Write + Send>,
    start: Instant,
    /// The reason of the `Disconnected` event, once it came: nothing is recorded after it.
    ended: Option<Option<String>>,
    finished: bool,
    /// The first write that failed; [`Recorder::finish`] reports it.
    error: Option<io::Error>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder writing to `out`, starting the clock now.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Recorder {
            inner: Arc::new(Mutex::new(Inner {
                out: Box::new(out),
                start: clock::now(),
                ended: None,
                finished: false,
                error: None,
            })),
        }
    }

    /// A recorder writing to a new file at `path` (replacing any).
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Recorder::new(BufWriter::new(std::fs::File::create(path)?)))
    }

    /// The hook the core connection calls.
    pub(crate) fn tap(&self) -> Tap {
        let inner = Arc::clone(&self.inner);
        Tap::new(move |tapped| lock(&inner).see(tapped))
    }

    /// Writes the `end` line (the disconnect reason, and `exit` for a child) and flushes.
    /// Calling it again changes nothing. Fails with the first write that failed.
    pub fn finish(&self, exit: Option<ExitStatus>) -> io::Result<()> {
        let mut inner = lock(&self.inner);
        if !inner.finished {
            inner.finished = true;
            let end = Entry::End {
                t_ms: inner.t_ms(),
                end: End {
                    reason: inner.ended.clone().flatten(),
                    exit: exit.map(Into::into),
                },
            };
            inner.write(&end);
            if let Err(err) = inner.out.flush() {
                inner.error.get_or_insert(err);
            }
        }
        match inner.error.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Inner {
    fn t_ms(&self) -> u64 {
        u64::try_from(clock::now().duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    fn see(&mut self, tapped: Tapped<'_>) {
        if self.ended.is_some() || self.finished {
            return;
        }
        match tapped {
            Tapped::End(reason) => self.ended = Some(reason.map(ToString::to_string)),
            tapped => {
                if let Some(entry) = Entry::tapped(self.t_ms(), tapped) {
                    self.write(&entry);
                }
            }
        }
    }

    fn write(&mut self, entry: &Entry) {
        if self.error.is_some() {
            return;
        }
        let mut line = entry.to_line();
        line.push('\n');
        if let Err(err) = self.out.write_all(line.as_bytes()) {
            self.error = Some(err);
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Lines are written whole or not at all; a panic elsewhere leaves nothing half-done.
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}
