//! One measurement: one scenario, one contender, in a process of its own, so that each peak
//! RSS is that contender's alone and no runtime or allocator state carries over.

use std::hint::black_box;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client::{Client, Incoming};
use crate::command::{self, CliPath};

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
    /// Read every line of `path` from a child, expecting `expected` messages.
    Read {
        path: PathBuf,
        expected: u64,
        pace: Pace,
    },
    /// Read one line of `bytes` bytes without a newline.
    HugeLine { bytes: u64 },
    /// Send `count` messages (the first lines of `path`, cycled) to a child that discards
    /// them, until it has read them all and exited.
    Write { path: PathBuf, count: u64 },
    /// `count` request/response round trips with a child that echoes every line.
    PingPong { count: u64 },
    /// A path through the command (`tether run`, or the contender's equivalent): `file` is
    /// what the child or standard input carries, `count` the messages or round trips.
    Command {
        path: CliPath,
        file: Option<PathBuf>,
        count: u64,
    },
}

/// Who sets the pace of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// `cat` writes as fast as it can, in big chunks; the consumer takes every message at once.
    Fast,
    /// As `Fast`, but the consumer pauses now and then.
    SlowConsumer,
    /// The child writes each line with a write of its own, as a server that flushes every
    /// message does (this binary's `emit`).
    LineByLine,
}

impl Pace {
    /// The scenario's name on a `one` command line.
    fn name(self) -> &'static str {
        match self {
            Pace::Fast => "read",
            Pace::SlowConsumer => "flood",
            Pace::LineByLine => "paced",
        }
    }

    fn parse(name: &str) -> Option<Pace> {
        [Pace::Fast, Pace::SlowConsumer, Pace::LineByLine]
            .into_iter()
            .find(|pace| pace.name() == name)
    }
}

/// What one measurement found; printed as one line of `key=value` pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Report {
    pub(crate) secs: f64,
    /// CPU time this process spent (user and system, every thread) while `secs` ran.
    pub(crate) cpu_secs: f64,
    /// Context switches of this process's threads while `secs` ran: each is a thread that
    /// went to sleep waiting for another, or was pushed off its core.
    pub(crate) switches: u64,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) p50_ns: u64,
    pub(crate) p99_ns: u64,
    pub(crate) rss_kib: u64,
}

impl Report {
    pub(crate) fn to_line(self) -> String {
        format!(
            "secs={} cpu_secs={} switches={} messages={} bytes={} p50_ns={} p99_ns={} rss_kib={}",
            self.secs,
            self.cpu_secs,
            self.switches,
            self.messages,
            self.bytes,
            self.p50_ns,
            self.p99_ns,
            self.rss_kib
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Report> {
        let mut report = Report::default();
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=')?;
            match key {
                "secs" => report.secs = value.parse().ok()?,
                "cpu_secs" => report.cpu_secs = value.parse().ok()?,
                "switches" => report.switches = value.parse().ok()?,
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
            pace,
        } => {
            let mut command = match pace {
                Pace::LineByLine => {
                    let mut command = Command::new(std::env::current_exe()?);
                    command.arg("emit");
                    command
                }
                Pace::Fast | Pace::SlowConsumer => Command::new("cat"),
            };
            command.arg(path);
            let slow = *pace == Pace::SlowConsumer;
            let (report, malformed) = read::<C>(command, slow, true).await?;
            if (report.messages, malformed) != (*expected, 0) {
                return Err(mismatch(
                    "messages and no malformed",
                    *expected,
                    report.messages,
                ));
            }
            Report {
                bytes: std::fs::metadata(path)?.len(),
                ..report
            }
        }
        Scenario::HugeLine { bytes } => {
            let command = shell(&format!("head -c {bytes} /dev/zero | tr '\\0' x"));
            // A contender that gives up on the line closes the pipe early: the child's
            // status does not matter here.
            let (report, malformed) = read::<C>(command, false, false).await?;
            // A contender that never reports a malformed line (rmcp) must still drop it.
            if report.messages != 0 || malformed > 1 {
                return Err(mismatch("malformed frame", 1, malformed));
            }
            Report {
                bytes: *bytes,
                ..report
            }
        }
        Scenario::Write { path, count } => write::<C>(path, *count).await?,
        Scenario::PingPong { count } => ping_pong::<C>(*count).await?,
        // Measured from outside, by `command::run`.
        Scenario::Command { .. } => return Err(io::Error::other("not a library scenario")),
    };
    report.rss_kib = peak_rss_kib()?;
    Ok(report)
}

/// Reads until the child's output ends: the time and messages taken, and the malformed frames.
/// With `check`, the child must have exited with status 0.
async fn read<C: Client>(command: Command, slow: bool, check: bool) -> io::Result<(Report, u64)> {
    let clock = Clock::start();
    let mut client = C::spawn(command, MAX_FRAME)?;
    let (mut messages, mut malformed) = (0u64, 0);
    while let Some(incoming) = client.recv().await {
        match incoming {
            Incoming::Message(message) => {
                black_box(message);
                messages += 1;
                if slow && messages.is_multiple_of(PAUSE_EVERY) {
                    C::sleep(PAUSE).await;
                }
            }
            Incoming::Malformed => malformed += 1,
        }
    }
    let report = Report {
        messages,
        ..clock.stop()
    };
    if !client.finish().await? && check {
        return Err(io::Error::other("the child failed"));
    }
    Ok((report, malformed))
}

async fn write<C: Client>(path: &Path, count: u64) -> io::Result<Report> {
    let mut pool = Vec::with_capacity(POOL);
    let mut pool_bytes = Vec::with_capacity(POOL);
    for line in BufReader::new(std::fs::File::open(path)?)
        .lines()
        .take(POOL)
    {
        let message: C::Out = serde_json::from_str(&line?)?;
        pool_bytes.push(serde_json::to_vec(&message)?.len() as u64 + 1);
        pool.push(message);
    }
    let bytes = (0..count).map(|i| pool_bytes[i as usize % POOL]).sum();
    let clock = Clock::start();
    let mut client = C::spawn(shell("cat > /dev/null"), MAX_FRAME)?;
    for i in 0..count {
        client.send(&pool[i as usize % POOL]).await?;
    }
    if !client.finish().await? {
        return Err(io::Error::other("the child failed"));
    }
    Ok(Report {
        messages: count,
        bytes,
        ..clock.stop()
    })
}

async fn ping_pong<C: Client>(count: u64) -> io::Result<Report> {
    let mut client = C::spawn(Command::new("cat"), MAX_FRAME)?;
    let mut latencies = Vec::with_capacity(count as usize);
    let mut bytes = 0;
    let clock = Clock::start();
    for id in 0..count {
        let text =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"echo","params":{{"text":"ping"}}}}"#);
        bytes += text.len() as u64 + 1;
        let request: C::Out = serde_json::from_str(&text)?;
        let sent = Instant::now();
        client.send(&request).await?;
        match client.recv().await {
            Some(Incoming::Message(reply)) if C::request_id(&reply) == Some(id) => {}
            _ => return Err(io::Error::other(format!("no echo of request {id}"))),
        }
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    let report = clock.stop();
    if !client.finish().await? {
        return Err(io::Error::other("the child failed"));
    }
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    Ok(Report {
        messages: count,
        bytes,
        p50_ns: percentile(50),
        p99_ns: percentile(99),
        ..report
    })
}

/// Wall-clock time, CPU time and context switches from `start` to `stop`.
struct Clock {
    wall: Instant,
    usage: Usage,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            usage: Usage::now(),
        }
    }

    /// A report holding just the times.
    fn stop(self) -> Report {
        let usage = Usage::now();
        Report {
            secs: self.wall.elapsed().as_secs_f64(),
            cpu_secs: usage.cpu_secs - self.usage.cpu_secs,
            switches: usage.switches - self.usage.switches,
            ..Report::default()
        }
    }
}

/// What this process has used so far, every thread included: on a shared machine CPU time
/// says more about a contender's cost than the wall clock does, and context switches count
/// the hand-overs between threads.
struct Usage {
    cpu_secs: f64,
    switches: u64,
}

impl Usage {
    fn now() -> Usage {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `getrusage` fills the `rusage` it is pointed at, and a zeroed `rusage` is
        // already a valid value should it fail.
        let usage = unsafe {
            libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
            usage.assume_init()
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Usage {
            cpu_secs: secs(usage.ru_utime) + secs(usage.ru_stime),
            switches: (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
        }
    }
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
                pace,
            } => vec![
                pace.name().to_owned(),
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
            Scenario::Command { path, file, count } => {
                let mut args = vec![command::path_name(*path).to_owned()];
                args.extend(file.iter().map(|file| file.display().to_string()));
                args.push(count.to_string());
                args
            }
        }
    }

    /// The scenario that [`to_args`](Self::to_args) named.
    pub(crate) fn from_args(args: &[String]) -> Option<Scenario> {
        let number = |s: &String| s.parse::<u64>().ok();
        if let Some(path) = args.first().and_then(|kind| command::parse_path(kind)) {
            let (file, count) = match &args[1..] {
                [file, count] => (Some(PathBuf::from(file)), count),
                [count] => (None, count),
                _ => return None,
            };
            return Some(Scenario::Command {
                path,
                file,
                count: number(count)?,
            });
        }
        Some(match args {
            [kind, path, count] if kind == "write" => Scenario::Write {
                path: PathBuf::from(path),
                count: number(count)?,
            },
            [kind, path, expected] => Scenario::Read {
                path: PathBuf::from(path),
                expected: number(expected)?,
                pace: Pace::parse(kind)?,
            },
            [kind, bytes] if kind == "huge" => Scenario::HugeLine {
                bytes: number(bytes)?,
            },
            [kind, count] if kind == "pingpong" => Scenario::PingPong {
                count: number(count)?,
            },
            _ => return None,
        })
    }
}

/// The child of [`Pace::LineByLine`]: writes every line of `path` to stdout with a write of its
/// own.
pub(crate) fn emit(path: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut line = Vec::new();
    let mut input = BufReader::new(std::fs::File::open(path)?);
    // Standard output is line-buffered: each complete line goes out in one write.
    while input.read_until(b'\n', &mut line)? > 0 {
        out.write_all(&line)?;
        line.clear();
    }
    Ok(())
}
