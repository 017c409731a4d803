//! The floors under the command paths, measured in the same run as the contenders: what the
//! same bytes cost with no JSON-RPC at all, so that tether's figures can be read against what
//! no relay can beat, not only against other relays.
//!
//! - **cat**: `cat | PROGRAM | cat` in the command's place (`PROGRAM | cat` on the read path,
//!   where standard input carries nothing). A process moves the bytes each way, as tether's
//!   threads do, without parsing or framing anything.
//! - **parse only**: every line of the input checked with `serde_json` (into `IgnoredAny`, so
//!   nothing is built), in this process, from memory: no I/O and no threads. A relay that
//!   validates what it forwards does at least this much work per message.

use std::io;
use std::path::Path;
use std::time::Instant;

use serde::de::IgnoredAny;

use crate::command::{self, CliPath, Via};
use crate::scenario::{Report, Scenario};

/// One floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Floor {
    /// `cat | PROGRAM | cat`: the bytes through two more processes, with no parsing.
    Cat,
    /// `serde_json` validation of each line, with no I/O.
    Parse,
}

impl Floor {
    pub(crate) const ALL: [Floor; 2] = [Floor::Cat, Floor::Parse];

    /// The floor's name on a `one` command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Floor::Cat => "floor-cat",
            Floor::Parse => "floor-parse",
        }
    }

    /// The floor's name in the report.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Floor::Cat => "cat, no parsing",
            Floor::Parse => "parse only",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Floor> {
        Floor::ALL.into_iter().find(|floor| floor.name() == name)
    }

    /// Whether this floor means anything for `path`: a round trip has no input to parse ahead
    /// of time.
    pub(crate) fn applies(self, path: CliPath) -> bool {
        self == Floor::Cat || path != CliPath::RoundTrip
    }

    /// Measures this floor for a command scenario.
    pub(crate) fn measure(self, scenario: &Scenario) -> io::Result<Report> {
        let Scenario::Command { path, file, count } = scenario else {
            return Err(io::Error::other("the floors are for the command paths"));
        };
        match (self, file) {
            (Floor::Cat, _) => command::run(Via::Cat, *path, file.as_deref(), *count),
            (Floor::Parse, Some(file)) if self.applies(*path) => parse(file, *count),
            (Floor::Parse, _) => Err(io::Error::other("nothing to parse on this path")),
        }
    }
}

/// Checks every line of `file` with `serde_json`, from memory.
fn parse(file: &Path, expected: u64) -> io::Result<Report> {
    let input = std::fs::read(file)?;
    let started = Instant::now();
    let mut messages = 0;
    for line in input.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        serde_json::from_slice::<IgnoredAny>(line).map_err(io::Error::other)?;
        messages += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    if messages != expected {
        return Err(io::Error::other(format!(
            "expected {expected} lines, parsed {messages}"
        )));
    }
    Ok(Report {
        secs,
        // One thread, doing nothing else while the clock ran.
        cpu_secs: secs,
        messages,
        bytes: input.len() as u64,
        ..Report::default()
    })
}
