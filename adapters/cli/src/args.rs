//! The command line: subcommands, their options, and what they turn into.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tether_core::Framing;
use tether_io::async_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tether_io::{Containment, Goodbye, Options, Stderr};

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
    /// Speak JSON-RPC to ws://HOST:PORT/PATH, http://HOST:PORT/PATH (MCP's Streamable HTTP),
    /// tcp://HOST:PORT or unix:PATH.
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

/// How a child's whole tree is reached at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ContainArg {
    /// A cgroup if one is writable, else the subreaper sweep.
    Auto,
    /// A cgroup v2 per child (Linux, a writable hierarchy).
    Cgroup,
    /// The process group, then a sweep of every descendant re-parented to tether.
    Subreaper,
    /// The process group alone.
    Group,
}

/// What a child is told before the shutdown ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GoodbyeArg {
    /// Nothing: the ladder starts by closing its stdin.
    None,
    /// The Language Server Protocol's `shutdown` request, its answer, then `exit`.
    Lsp,
}

/// What every subcommand that spawns children takes.
#[derive(Debug, Clone, Args)]
pub struct Spawning {
    /// How each child's whole tree is reached at the end, descendants that left its process
    /// group included.
    #[arg(long, value_enum, default_value = "auto")]
    pub contain: ContainArg,
    /// What each child is told before the shutdown ladder.
    #[arg(long, value_enum, default_value = "none")]
    pub goodbye: GoodbyeArg,
    /// Where each child's standard error goes.
    #[arg(long, value_enum, default_value = "log")]
    pub stderr: StderrArg,
}

impl Spawning {
    /// These flags applied to connection options.
    pub fn apply(&self, options: Options) -> Options {
        options
            .stderr(self.stderr.stderr())
            .contain(match self.contain {
                ContainArg::Auto => Containment::Auto,
                ContainArg::Cgroup => Containment::Cgroup,
                ContainArg::Subreaper => Containment::Subreaper,
                ContainArg::Group => Containment::Group,
            })
            .goodbye(match self.goodbye {
                GoodbyeArg::None => None,
                GoodbyeArg::Lsp => Some(Goodbye::Lsp),
            })
    }
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
    #[command(flatten)]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub spawning: Spawning,
    /// After stdin ends, how long to wait for responses to the requests sent, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub linger: u64,
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
    /// A header for the websocket handshake, or for every HTTP request, `NAME: VALUE`
    /// (repeatable; ws:// and http:// only).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Sends `Authorization: Bearer TOKEN` with the websocket handshake, or with every HTTP
    /// request, TOKEN being the file's first line (ws:// and http:// only).
    #[arg(long, value_name = "PATH", value_parser = token_file)]
    pub token_file: Option<Token>,
    /// Record every frame in and out, and the end, to FILE (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// ws://HOST:PORT/PATH, http://HOST:PORT/PATH (an MCP Streamable HTTP endpoint),
    /// tcp://HOST:PORT or unix:PATH.
    pub url: String,
}

impl Connect {
    /// Handshake options for a URL without a handshake, and https:// (tether has no TLS stack),
    /// are usage errors.
    pub fn check(&self) -> Result<(), clap::Error> {
        if self.url.starts_with("https://") {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                "https:// is not supported: tether has no TLS; use http://, through a local \
                 TLS-terminating proxy for a TLS server\n",
            ));
        }
        let handshake = !self.headers.is_empty() || self.token_file.is_some();
        if handshake && !self.is_http() && !self.url.starts_with("ws://") {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                "--header and --token-file need a ws:// or http:// URL\n",
            ));
        }
        Ok(())
    }

    /// Whether the URL is an MCP Streamable HTTP endpoint.
    pub fn is_http(&self) -> bool {
        self.url.starts_with("http://")
    }
}

/// `tether bridge`.
#[derive(Debug, Clone, Args)]
pub struct Bridge {
    #[command(flatten)]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub common: Common,
    /// The address to serve websockets on (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: String,
    #[command(flatten)]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub spawning: Spawning,
    /// Whether a handshake must carry the token (`Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`).
    #[arg(long, value_enum, default_value = "token")]
    pub auth: Auth,
    /// The token is this file's first line (else `$TETHER_BRIDGE_TOKEN`, else a random one,
    /// printed in the `listening` line's `url`).
    #[arg(long, value_name = "PATH", value_parser = token_file)]
    pub token_file: Option<Token>,
    /// A browser origin (`scheme://host[:port]`) whose requests are served; a request with any
    /// other `Origin` header is refused with 403 (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Close a session after this long with no message either way, in ms (default: never).
    #[arg(long, value_name = "MS")]
    pub idle_timeout: Option<u64>,
    /// How long a client has to complete its handshake, in ms. Hidden: 10 s is the contract;
    /// the tests shorten it.
    #[arg(long, value_name = "MS", default_value_t = 10_000, hide = true)]
    pub handshake_timeout: u64,
    /// Beyond this many open connections, new handshakes are refused.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,
    /// Record each session's frames between the bridge and its program into the folder DIR,
    /// one file per session (`session-<n>.jsonl`).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// The program each connection gets, and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

/// Who may open a bridge session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Auth {
    /// Holders of the token.
    Token,
    /// Anyone who reaches the port.
    None,
}

/// A secret, kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The first line of the file at `path`, which must exist and not be empty.
fn token_file(path: &str) -> Result<Token, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    match text.lines().next().map(str::trim) {
        Some(line) if !line.is_empty() => Ok(Token(line.to_owned())),
        _ => Err(format!("{path} holds no token on its first line")),
    }
}

/// `NAME: VALUE`, each part valid in an HTTP header.
fn header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not NAME: VALUE"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("header name {name:?}: {e}"))?;
    let value =
        HeaderValue::from_str(value.trim()).map_err(|e| format!("header value {value:?}: {e}"))?;
    Ok((name, value))
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
