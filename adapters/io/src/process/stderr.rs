//! Draining a child's standard error into `tracing`, so it never fills a pipe and wedges the
//! child.

use std::io::{BufRead, BufReader, Read};
use std::process::ChildStderr;

/// The longest line logged as one event; a longer line is logged in pieces of this size.
pub(crate) const MAX_LINE: usize = 4096;

/// Logs each line of `stderr` on a thread of its own until the child closes it.
pub(super) fn drain(stderr: ChildStderr, label: String, pid: u32) {
    let spawned = std::thread::Builder::new()
        .name("tether-stderr".to_owned())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut reader = BufReader::with_capacity(8 * 1024, stderr);
            let mut line = Vec::with_capacity(256);
            loop {
                line.clear();
                match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                tracing::info!(target: "tether::stderr", %label, pid, "{}", String::from_utf8_lossy(text));
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(pid, %err, "cannot drain the child's stderr");
    }
}
