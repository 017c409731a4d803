//! Draining a child's standard error on a thread of its own, so it never fills a pipe and
//! wedges the child: logged with `tracing` (or discarded), and its last bytes kept, so that the
//! end of a child can say what it last complained about.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::ChildStderr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// The longest line logged as one event; a longer line is logged in pieces of this size.
pub(crate) const MAX_LINE: usize = 4096;

/// How many of the last bytes of standard error are kept.
pub const TAIL_BYTES: usize = 4096;

/// The last [`TAIL_BYTES`] bytes a child wrote to its standard error, and whether it has
/// closed it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail(Arc<(Mutex<TailState>, Condvar)>);

#[derive(Debug, Default)]
struct TailState {
    bytes: VecDeque<u8>,
    closed: bool,
}

impl Tail {
    fn push(&self, bytes: &[u8]) {
        let mut state = self.0 .0.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = bytes.len().saturating_sub(TAIL_BYTES);
        state.bytes.extend(&bytes[skip..]);
        let over = state.bytes.len().saturating_sub(TAIL_BYTES);
        state.bytes.drain(..over);
    }

    fn close(&self) {
        self.0
             .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.0 .1.notify_all();
    }

    /// The tail as text (invalid UTF-8 replaced, a character cut by the 4 KiB edge dropped),
    /// once standard error is closed or `within` has passed: the last words of a child that
    /// has just died may still be in the pipe.
    pub(crate) fn text(&self, within: Duration) -> String {
        let deadline = crate::clock::now() + within;
        let mut state = self.0 .0.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.closed {
            let left = deadline.saturating_duration_since(crate::clock::now());
            if left.is_zero() {
                break;
            }
            state = self
                .0
                 .1
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let bytes: Vec<u8> = state.bytes.iter().copied().collect();
        drop(state);
        // A cut at the front may split a character: start at the first whole one.
        let start = bytes
            .iter()
            .position(|&b| (b as i8) >= -0x40)
            .unwrap_or(bytes.len())
            .min(3);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// Reads `stderr` on a thread of its own until the child closes it, keeping its tail in
/// `tail` and logging each line when `log` is set.
pub(super) fn drain(stderr: ChildStderr, label: String, pid: u32, log: bool, tail: Tail) {
    let closer = tail.clone();
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
                tail.push(&line);
                if log {
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    tracing::info!(target: "tether::stderr", %label, pid, "{}", String::from_utf8_lossy(text));
                }
            }
            tail.close();
        });
    if let Err(err) = spawned {
        tracing::warn!(pid, %err, "cannot drain the child's stderr");
        closer.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_4_kib_and_starts_on_a_whole_character() {
        let tail = Tail::default();
        tail.push(&vec![b'a'; 5000]);
        tail.push("é".repeat(10).as_bytes());
        tail.close();
        let text = tail.text(Duration::ZERO);
        assert!(text.len() <= TAIL_BYTES);
        assert!(text.ends_with(&"é".repeat(10)));
        let tail = Tail::default();
        // 4095 bytes of 'b' after a two-byte character: the cut falls inside it.
        tail.push("é".as_bytes());
        tail.push(&vec![b'b'; TAIL_BYTES - 1]);
        tail.close();
        assert_eq!(tail.text(Duration::ZERO), "b".repeat(TAIL_BYTES - 1));
    }
}
