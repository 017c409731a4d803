//! One measurement: one scenario, one contender, in a process of its own, so that each peak
//! RSS is that contender's alone and no runtime or allocator state carries over.

use std::hint::black_box;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client::{Client, Incoming};

/// The frame limit every contender that has one is given.
pub(crate) const MAX_FRAME: usize = 16 << 20;

/// How many distinct messages the write path cycles through.
const POOL: usize = 1000;

/// The slow consumer pauses this long...
const PAUSE: Duration = Duration::from_millis(1);
/// ...after every this many messages.
const PAUSE_EVERY: u64 = 10_000;

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) enum Scenario {
    /// Read every line of `path` from `cat`, expecting `expected` messages; with `slow`, the
    /// consumer pauses now and then.
    Read {
        path: PathBuf,
        expected: u64,
        slow: bool,
    },
    /// Read one line of `bytes` bytes without a newline.
    HugeLine { bytes: u64 },
    /// Send `count` messages (the first lines of `path`, cycled) to a child that discards
    /// them, until it has read them all and exited.
    Write { path: PathBuf, count: u64 },
    /// `count` request/response round trips with a child that echoes every line.
    PingPong { count: u64 },
}

/// What one measurement found; printed as one line of `key=value` pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Report {
    pub(crate) secs: f64,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) rss_kib: u64,
}

impl Report {
    pub(crate) fn to_line(self) -> String {
        format!(
            "secs={} messages={} bytes={} p50_ns={} p99_ns={} rss_kib={}",
            self.secs, self.messages, self.bytes, self.p50_ns, self.p99_ns, self.rss_kib
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Report> {
        let mut report = Report::default();
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            match key {
                "secs" => report.secs = value.parse().ok()?,
                "messages" => report.messages = value.parse().ok()?,
                "bytes" => report.bytes = value.parse().ok()?,
                "p50_ns" => report.p50_ns = value.parse().ok()?,
                "p99_ns" => report.p99_ns = value.parse().ok()?,
                "rss_kib" => report.rss_kib = value.parse().ok()?,
                _ => return None,
            }
        }
        Some(report)
    }
}

fn shell(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    command
}

fn mismatch(what: &str, expected: u64, got: u64) -> io::Error {
    io::Error::other(format!("expected {expected} {what}, got {got}"))
}

/// Runs `scenario` with the contender `C`; the caller provides the runtime.
pub(crate) async fn run<C: Client>(scenario: &Scenario) -> io::Result<Report> {
    let mut report = match scenario {
        Scenario::Read {
            path,
            expected,
            slow,
        } => {
            let mut command = Command::new("cat");
            command.arg(path);
            let (secs, messages, malformed) = read::<C>(command, *slow, true).await?;
            if (messages, malformed) != (*expected, 0) {
                return Err(mismatch("messages and no malformed", *expected, messages));
            }
            Report {
                secs,
                messages,
                bytes: std::fs::metadata(path)?.len(),
                ..Report::default()
            }
        }
        Scenario::HugeLine { bytes } => {
            let command = shell(&format!("head -c {bytes} /dev/zero | tr '\\0' x"));
            // A contender that gives up on the line closes the pipe early: the child's
            // status does not matter here.
            let (secs, messages, malformed) = read::<C>(command, false, false).await?;
            if (messages, malformed) != (0, 1) {
                return Err(mismatch("malformed frame", 1, malformed));
            }
            Report {
                secs,
                bytes: *bytes,
                ..Report::default()
            }
        }
        Scenario::Write { path, count } => write::<C>(path, *count).await?,
        Scenario::PingPong { count } => ping_pong::<C>(*count).await?,
    };
    report.rss_kib = peak_rss_kib()?;
    Ok(report)
}

/// Reads until the child's output ends: seconds, messages, malformed frames. With `check`, the
/// child must have exited with status 0.
async fn read<C: Client>(command: Command, slow: bool, check: bool) -> io::Result<(f64, u64, u64)> {
    let start = Instant::now();
    let mut client = C::spawn(command, MAX_FRAME)?;
    let (mut messages, mut malformed) = (0, 0);
    while let Some(incoming) = client.recv().await {
        match incoming {
            Incoming::Message(message) => {
                black_box(message);
                messages += 1;
                if slow && messages % PAUSE_EVERY == 0 {
                    C::sleep(PAUSE).await;
                }
            }
            Incoming::Malformed => malformed += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if !client.finish().await? && check {
        return Err(io::Error::other("the child failed"));
    }
    Ok((secs, messages, malformed))
}

async fn write<C: Client>(path: &PathBuf, count: u64) -> io::Result<Report> {
    let mut pool = Vec::with_capacity(POOL);
    let mut pool_bytes = Vec::with_capacity(POOL);
    for line in BufReader::new(std::fs::File::open(path)?)
        .lines()
        .take(POOL)
    {
        let message: C::Message = serde_json::from_str(&line?)?;
        pool_bytes.push(serde_json::to_vec(&message)?.len() as u64 + 1);
        pool.push(message);
    }
    let bytes = (0..count).map(|i| pool_bytes[i as usize % POOL]).sum();
    let start = Instant::now();
    let mut client = C::spawn(shell("cat > /dev/null"), MAX_FRAME)?;
    for i in 0..count {
        client.send(&pool[i as usize % POOL]).await?;
    }
    if !client.finish().await? {
        return Err(io::Error::other("the child failed"));
    }
    Ok(Report {
        secs: start.elapsed().as_secs_f64(),
        messages: count,
        bytes,
        ..Report::default()
    })
}

async fn ping_pong<C: Client>(count: u64) -> io::Result<Report> {
    let mut client = C::spawn(Command::new("cat"), MAX_FRAME)?;
    let mut latencies = Vec::with_capacity(count as usize);
    let mut bytes = 0;
    let start = Instant::now();
    for id in 0..count {
        let text =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"echo","params":{{"text":"ping"}}}}"#);
        bytes += text.len() as u64 + 1;
        let request: C::Message = serde_json::from_str(&text)?;
        let sent = Instant::now();
        client.send(&request).await?;
        match client.recv().await {
            Some(Incoming::Message(reply)) if C::request_id(&reply) == Some(id) => {}
            _ => return Err(io::Error::other(format!("no echo of request {id}"))),
        }
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    if !client.finish().await? {
        return Err(io::Error::other("the child failed"));
    }
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    Ok(Report {
        secs,
        messages: count,
        bytes,
        p50_ns: percentile(50),
        p99_ns: percentile(99),
        rss_kib: 0,
    })
}

/// This process's peak resident set size (`VmHWM`), in KiB.
fn peak_rss_kib() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmHWM in /proc/self/status"))
}

impl Scenario {
    /// The arguments that name this scenario on a `one` command line.
    pub(crate) fn to_args(&self) -> Vec<String> {
        match self {
            Scenario::Read {
                path,
                expected,
                slow,
            } => vec![
                if *slow { "flood" } else { "read" }.to_owned(),
                path.display().to_string(),
                expected.to_string(),
            ],
            Scenario::HugeLine { bytes } => vec!["huge".to_owned(), bytes.to_string()],
            Scenario::Write { path, count } => vec![
                "write".to_owned(),
                path.display().to_string(),
                count.to_string(),
            ],
            Scenario::PingPong { count } => vec!["pingpong".to_owned(), count.to_string()],
        }
    }

    /// The scenario that [`to_args`](Self::to_args) named.
    pub(crate) fn from_args(args: &[String]) -> Option<Scenario> {
        let number = |s: &String| s.parse::<u64>().ok();
        Some(match args {
            [kind, path, expected] if kind == "read" || kind == "flood" => Scenario::Read {
                path: PathBuf::from(path),
                expected: number(expected)?,
                slow: kind == "flood",
            },
            [kind, bytes] if kind == "huge" => Scenario::HugeLine {
                bytes: number(bytes)?,
            },
            [kind, path, count] if kind == "write" => Scenario::Write {
                path: PathBuf::from(path),
                count: number(count)?,
            },
            [kind, count] if kind == "pingpong" => Scenario::PingPong {
                count: number(count)?,
            },
            _ => return None,
        })
    }
}
