//! The command line: subcommands, their options, and what they turn into.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tether_core::Framing;
use tether_io::{Options, Stderr};

use crate::output::Mode;

/// Speak JSON-RPC to a child process, a socket or a websocket, with every event visible and no
/// process left behind.
#[derive(Debug, Parser)]
#[command(name = "tether", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Spawn PROGRAM in its own process group and speak JSON-RPC over its stdin and stdout
    /// (without PROGRAM, the built-in peer).
    Run(Run),
    /// Speak JSON-RPC to ws://HOST:PORT/PATH, tcp://HOST:PORT or unix:PATH.
    Connect(Connect),
    /// Serve a websocket on ADDR; each connection gets its own PROGRAM.
    Bridge(Bridge),
    /// A JSON-RPC server on stdin and stdout, for demos and tests.
    Peer,
    /// Play the peer's side of a recorded session (`--record`) on stdin and stdout.
    Replay(crate::replay::Replay),
}

/// The async runtime that drives the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// tokio (multi-threaded).
    Tokio,
    /// smol.
    Smol,
}

/// How messages are delimited on a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FramingArg {
    /// One JSON text per line.
    Lines,
    /// `Content-Length` headers (LSP).
    ContentLength,
}

/// Where a child's standard error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StderrArg {
    /// Shared with tether's own.
    Inherit,
    /// Logged line by line on tether's standard error.
    Log,
    /// Discarded.
    Null,
}

/// Options every subcommand that speaks to a peer takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The async runtime.
    #[arg(long, value_enum, default_value = "tokio")]
    pub runtime: Runtime,
    /// The framing on the byte stream.
    #[arg(long, value_enum, default_value = "lines")]
    pub framing: FramingArg,
    /// The largest message accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = tether_core::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Each grace period of the shutdown ladder, and the wait for a peer's close, in ms.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub grace: u64,
}

impl Common {
    /// The connection options these flags ask for.
    pub fn options(&self) -> Options {
        Options::new()
            .framing(match self.framing {
                FramingArg::Lines => Framing::Lines,
                FramingArg::ContentLength => Framing::ContentLength,
            })
            .max_frame(self.max_frame)
            .grace(Duration::from_millis(self.grace))
    }
}

/// `tether run`.
#[derive(Debug, Args)]
pub struct Run {
    #[command(flatten)]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub common: Common,
    /// After stdin ends, how long to wait for responses to the requests sent, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub linger: u64,
    /// Where the child's standard error goes.
    #[arg(long, value_enum, default_value = "log")]
    pub stderr: StderrArg,
    /// What standard output carries.
    #[arg(long, value_enum, default_value = "events")]
    pub output: Mode,
    /// Record every frame in and out, and the end, to FILE (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(last = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

/// `tether connect`.
#[derive(Debug, Args)]
pub struct Connect {
    #[command(flatten)]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub common: Common,
    /// After stdin ends, how long to wait for responses to the requests sent, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub linger: u64,
    /// What standard output carries.
    #[arg(long, value_enum, default_value = "events")]
    pub output: Mode,
    /// Record every frame in and out, and the end, to FILE (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// ws://HOST:PORT/PATH, tcp://HOST:PORT or unix:PATH.
    pub url: String,
}

/// `tether bridge`.
#[derive(Debug, Clone, Args)]
pub struct Bridge {
    #[command(flatten)]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub common: Common,
    /// The address to serve websockets on (`127.0.0.1:0` picks a port).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Beyond this many open connections, new handshakes are refused.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Where each child's standard error goes.
    #[arg(long, value_enum, default_value = "log")]
    pub stderr: StderrArg,
    /// Record each session's frames between the bridge and its program into the folder DIR,
    /// one file per session (`session-<n>.jsonl`).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// The program each connection gets, and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

impl StderrArg {
    /// The child option.
    pub fn stderr(self) -> Stderr {
        match self {
            StderrArg::Inherit => Stderr::Inherit,
            StderrArg::Log => Stderr::Log,
            StderrArg::Null => Stderr::Null,
        }
    }
}

/// The command for PROGRAM, or the built-in peer (this executable, `peer`).
pub fn program(program: &[String]) -> std::io::Result<std::process::Command> {
    Ok(match program.split_first() {
        Some((first, rest)) => {
            let mut command = std::process::Command::new(first);
            command.args(rest);
            command
        }
        None => {
            let exe: PathBuf = std::env::current_exe()?;
            let mut command = std::process::Command::new(exe);
            command.arg("peer");
            command
        }
    })
}
