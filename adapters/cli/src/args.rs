//! The command line: subcommands, their options, and what they turn into.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tether_core::Framing;
use tether_io::async_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tether_io::{Containment, Goodbye, Limits, Options, RestartMode, RestartPolicy, Stderr};

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

impl Cli {
    /// The command line of this process, checked and settled. A usage error, whether clap's
    /// own or one of the checks that span several flags, ends the process with status 2 and a
    /// line on standard error, before anything is started.
    pub fn from_env() -> Self {
        let mut cli = Cli::parse();
        if let Err(err) = cli.command.settle() {
            err.exit();
        }
        cli
    }
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
    /// Serve PROGRAM to remote clients: websockets at ws://ADDR/ and MCP's Streamable HTTP at
    /// http://ADDR/mcp, each session with a PROGRAM of its own.
    ///
    /// The first line on standard output says where: `{"event":"listening","addr":…,"url":…,
    /// "mcp_url":…}`. Every websocket handshake and every request to /mcp must carry the token
    /// (`Authorization: Bearer TOKEN` or `?token=TOKEN`) unless `--auth none`; `GET /healthz`
    /// needs none. SIGINT or SIGTERM stops the bridge and shuts every program down.
    Bridge(Bridge),
    /// A JSON-RPC server on stdin and stdout, for demos and tests: `tether run` runs it when
    /// given no PROGRAM.
    ///
    /// Its methods make it misbehave on request: flood, fork grandchildren, ignore SIGTERM,
    /// close its stdout, write raw bytes, exit.
    #[command(after_long_help = crate::peer::methods_help())]
    Peer,
    /// Play the peer's side of a recorded session (`--record`) on stdin and stdout.
    Replay(crate::replay::Replay),
    /// Print a completion script for SHELL on standard output.
    ///
    /// For instance `tether completions bash > ~/.local/share/bash-completion/completions/tether`,
    /// `tether completions zsh > "${fpath[1]}/_tether"`, or
    /// `tether completions fish > ~/.config/fish/completions/tether.fish`.
    Completions(Completions),
    /// Print the manual page (roff) on standard output: tether(1), or a subcommand's own.
    ///
    /// For instance `tether man | man -l -`, or `tether man > /usr/local/share/man/man1/tether.1`
    /// and `tether man run > /usr/local/share/man/man1/tether-run.1`.
    Man(Man),
}

/// `tether completions`.
#[derive(Debug, Args)]
pub struct Completions {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `tether man`.
#[derive(Debug, Args)]
pub struct Man {
    /// A subcommand whose own page (tether-SUBCOMMAND) is printed instead of tether's.
    pub subcommand: Option<String>,
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
    /// The most memory each child's tree may use (a cgroup limit; K, M and G suffixes, powers
    /// of 1024). Past it the kernel kills it: the exit's cause is `oom`.
    #[arg(long, value_name = "BYTES", value_parser = bytes)]
    pub memory_max: Option<u64>,
    /// The most processes (and threads) each child's tree may hold at once (a cgroup limit).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pids_max: Option<u64>,
    /// The most CPU each child's tree may use, in percent of one CPU (a cgroup limit; 200 is
    /// two CPUs).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(1..))]
    pub cpu_max: Option<u32>,
}

/// `BYTES`, with an optional K, M or G suffix (powers of 1024).
fn bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        other => return Err(format!("unknown unit {other:?}: use K, M or G")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a number of bytes: {text:?}"))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err("the limit must be above zero".to_owned()),
        Some(n) => Ok(n),
        None => Err(format!("too large: {text:?}")),
    }
}

/// `tether run`'s supervision: restarts, their delays, the crash-loop guard, the ready
/// deadline.
#[derive(Debug, Clone, Args)]
#[allow(missing_docs, reason = "clap documents each flag")]
pub struct Supervise {
    /// When to start the child again after it ended without being asked: `on-failure` after a
    /// non-zero code, a signal or a missed ready deadline; `always` after code 0 too. Never
    /// after tether's own shutdown.
    #[arg(long, value_enum, default_value = "never")]
    pub restart: RestartArg,
    /// The first delay before a restart, in ms; it doubles with each restart, up to 30 s, and
    /// starts over once a child has stayed up for a whole window.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub backoff: u64,
    /// How many restarts the window allows; the next failure inside it gives up (`crash_loop`)
    /// and the session ends.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_restarts: u32,
    /// The crash-loop guard's sliding window, in ms.
    #[arg(long, value_name = "MS", default_value_t = 60000)]
    pub restart_window: u64,
    /// A child that sends nothing within MS of its start has failed to start: the ladder ends
    /// it (`ready_timeout`), and a restart follows if the policy allows.
    #[arg(long, value_name = "MS")]
    pub ready_timeout: Option<u64>,
}

/// `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(missing_docs, reason = "clap documents each value")]
pub enum RestartArg {
    Never,
    OnFailure,
    Always,
}

impl Supervise {
    /// These flags applied to connection options.
    pub fn apply(&self, options: Options) -> Options {
        options.restart(self.policy())
    }

    /// The restart policy these flags describe.
    pub fn policy(&self) -> RestartPolicy {
        RestartPolicy {
            mode: match self.restart {
                RestartArg::Never => RestartMode::Never,
                RestartArg::OnFailure => RestartMode::OnFailure,
                RestartArg::Always => RestartMode::Always,
            },
            backoff: Duration::from_millis(self.backoff),
            max_restarts: self.max_restarts,
            window: Duration::from_millis(self.restart_window),
            ready_timeout: self.ready_timeout.map(Duration::from_millis),
        }
    }
}

impl Spawning {
    /// The containment asked for.
    fn containment(&self) -> Containment {
        match self.contain {
            ContainArg::Auto => Containment::Auto,
            ContainArg::Cgroup => Containment::Cgroup,
            ContainArg::Subreaper => Containment::Subreaper,
            ContainArg::Group => Containment::Group,
        }
    }

    /// Fills in `--framing` when it was not given: the goodbye's protocol brings its framing
    /// (a language server reads `Content-Length` headers, and would answer every line with a
    /// header of its own that reads as `malformed`).
    pub fn settle(&self, common: &mut Common) {
        common.framing.get_or_insert(match self.goodbye {
            GoodbyeArg::None => FramingArg::Lines,
            GoodbyeArg::Lsp => FramingArg::ContentLength,
        });
    }

    /// The limits asked for.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_max: self.memory_max,
            pids_max: self.pids_max,
            cpu_max: self.cpu_max,
        }
    }

    /// Limits this machine cannot enforce are a usage error that says why.
    pub fn check(&self) -> Result<(), clap::Error> {
        self.limits().check_with(self.containment()).map_err(|why| {
            clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--memory-max, --pids-max and --cpu-max cannot be enforced here: {why}\n"),
            )
        })
    }

    /// These flags applied to connection options.
    pub fn apply(&self, options: Options) -> Options {
        options
            .limits(self.limits())
            .stderr(self.stderr.stderr())
            .contain(self.containment())
            .goodbye(match self.goodbye {
                GoodbyeArg::None => None,
                GoodbyeArg::Lsp => Some(Goodbye::Lsp),
            })
    }
}

impl Command {
    /// The checks clap cannot make flag by flag, and the defaults that depend on other flags:
    /// `--goodbye lsp` brings the Language Server Protocol's framing (content-length) unless
    /// `--framing` says otherwise.
    pub fn settle(&mut self) -> Result<(), clap::Error> {
        match self {
            Command::Run(run) => {
                run.spawning.check()?;
                run.spawning.settle(&mut run.common)
            }
            Command::Bridge(bridge) => {
                bridge.spawning.check()?;
                bridge.spawning.settle(&mut bridge.common)
            }
            Command::Connect(connect) => connect.check()?,
            Command::Man(Man {
                subcommand: Some(name),
            }) if !crate::manual::has_page(name) => {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::InvalidSubcommand,
                    format!("tether has no subcommand {name:?}: `tether man` lists them\n"),
                ));
            }
            Command::Peer | Command::Replay(_) | Command::Completions(_) | Command::Man(_) => {}
        }
        Ok(())
    }
}

/// Options every subcommand that speaks to a peer takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The async runtime.
    #[arg(long, value_enum, default_value = "tokio")]
    pub runtime: Runtime,
    /// The framing on the byte stream [default: lines; content-length with `--goodbye lsp`].
    // `None` until `Command::settle` fills it in (clap cannot tell a default from a choice).
    #[arg(long, value_enum)]
    pub framing: Option<FramingArg>,
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
            .framing(match self.framing.unwrap_or(FramingArg::Lines) {
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
    #[command(flatten)]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub supervise: Supervise,
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
    #[arg(value_parser = connect_url)]
    pub url: String,
}

impl Connect {
    /// Handshake options for a URL without a handshake are usage errors (the URL itself is
    /// checked as it is parsed).
    pub fn check(&self) -> Result<(), clap::Error> {
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
    /// The address to serve on, HOST:PORT: websockets at ws://ADDR/, MCP's Streamable HTTP at
    /// http://ADDR/mcp and the health check at /healthz (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0", value_parser = listen_addr)]
    pub listen: String,
    #[command(flatten)]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub spawning: Spawning,
    /// Whether a websocket handshake or an HTTP request to /mcp must carry the token
    /// (`Authorization: Bearer TOKEN` or `?token=TOKEN`); without it the answer is 401.
    #[arg(long, value_enum, default_value = "token")]
    pub auth: Auth,
    /// The token is this file's first line (else `$TETHER_BRIDGE_TOKEN`, else a random one,
    /// printed in the `listening` line's `url`).
    #[arg(long, value_name = "PATH", value_parser = token_file)]
    pub token_file: Option<Token>,
    /// A browser origin (`scheme://host[:port]`) whose requests are served; a request with any
    /// other `Origin` header, except the bridge's own address, is refused with 403
    /// (repeatable). On loopback, a `Host` naming neither loopback nor the listen address is
    /// refused too (DNS rebinding).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Close a session after this long idle, in ms, and shut its program down. A websocket
    /// session is idle with no message either way; default: never (its close is seen). An MCP
    /// HTTP session is idle with no stream open and no request pending; default: 30 minutes
    /// (an HTTP client may go away without a word).
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
    /// How many long-lived programs serve the clients of MCP's stateless revision
    /// (2026-07-28), shared by all of them; each starts when a request first needs it.
    /// Legacy sessions (an `initialize`) still get a program each.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub pool: u32,
    // The pool programs' supervision: `--restart`, `--backoff`, `--max-restarts`,
    // `--restart-window` as for `tether run`; `--ready-timeout` bounds a pool program's answer
    // to the bridge's `server/discover` probe (default: the handshake timeout).
    #[command(
        flatten,
        next_help_heading = "The pool programs' supervision (modern clients)"
    )]
    #[allow(missing_docs, reason = "flattened: clap documents each flag")]
    pub supervise: Supervise,
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

/// A URL `tether connect` speaks to: `ws://HOST[:PORT]/PATH`, `http://HOST[:PORT]/PATH`,
/// `tcp://HOST:PORT` or `unix:PATH`. Anything else is a usage error (status 2) at once, not a
/// failure to connect (status 1): `https://` and `wss://` too, as tether has no TLS.
fn connect_url(url: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected ws://HOST:PORT/PATH, http://HOST:PORT/PATH, tcp://HOST:PORT or unix:PATH";
    if url.starts_with("https://") || url.starts_with("wss://") {
        return Err(
            "https:// and wss:// are not supported: tether has no TLS; use http:// or \
                    ws://, through a local TLS-terminating proxy for a TLS server"
                .to_owned(),
        );
    }
    if url.starts_with("ws://") {
        let uri: tether_io::async_tungstenite::tungstenite::http::Uri =
            url.parse().map_err(|e| format!("invalid URL: {e}"))?;
        match uri.host() {
            Some(host) if !host.is_empty() => {}
            _ => return Err("invalid URL: no host".to_owned()),
        }
    } else if url.starts_with("http://") {
        crate::mcp_client::check_url(url)?;
    } else if let Some(addr) = url.strip_prefix("tcp://") {
        host_port(addr)?;
    } else if let Some(path) = url.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("no socket path: {EXPECTED}"));
        }
    } else {
        return Err(format!("unsupported URL: {EXPECTED}"));
    }
    Ok(url.to_owned())
}

/// An address `--listen` can bind: `HOST:PORT`.
fn listen_addr(addr: &str) -> Result<String, String> {
    host_port(addr)?;
    Ok(addr.to_owned())
}

/// `HOST:PORT`: an IP address (IPv6 in brackets) or a host name, and a port number. Whether the
/// name resolves is learnt when it is used.
fn host_port(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let expected = "expected HOST:PORT, such as 127.0.0.1:8808 or localhost:8808";
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("no port: {expected}"))?;
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number: {expected}"))?;
    let name = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !name {
        return Err(format!(
            "{host:?} is neither an IP address nor a host name: {expected}"
        ));
    }
    Ok(())
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
