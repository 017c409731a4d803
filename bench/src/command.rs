//! The command-line paths, measured from outside as a user runs them: `tether run` under
//! either runtime, against the same command written with each other contender (`relay`).
//!
//! The measured command is a child of the measuring process; its CPU time and context
//! switches come from `wait4`, so they include its own child (`cat`), which the command reaps:
//! a command that writes in small pieces pays for the reads it causes there too.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use futures_lite::future;

use crate::before::{self, Before};
use crate::client::{Client, Incoming};
use crate::scenario::{Report, MAX_FRAME};
use crate::suite::STRACE_ENV;
use crate::Contender;

/// Which path through the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CliPath {
    /// Standard input, piped from `cat FILE`, to a child that discards it.
    Write,
    /// A child (`cat FILE`) to standard output, one event line per message.
    Read,
    /// One request at a time to `cat`, each awaited on standard output before the next.
    RoundTrip,
}

/// What stands between standard input and output and the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// A contender's command; tether's is the `tether` binary next to this one.
    Command(Contender),
    /// `tether run` from the older build [`before::BINARY_ENV`] names.
    Before(Before),
    /// The floor: `cat | PROGRAM | cat`, no parsing at all.
    Cat,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Command(contender) => contender.name(),
            Via::Before(before) => before.name(),
            Via::Cat => "cat",
        }
    }
}

/// The command line of `via`'s command running `program`; under `strace -f -c` if
/// [`STRACE_ENV`] names a file for the counts.
fn command(via: Via, path: CliPath, program: &[&str]) -> io::Result<Command> {
    let exe = std::env::current_exe()?;
    let mut args: Vec<OsString> = match via {
        Via::Cat => {
            // On the read path standard input stays open until the command ends, and the
            // command does not read it: nor does the floor.
            let script = match path {
                CliPath::Read => "\"$@\" | cat",
                CliPath::Write | CliPath::RoundTrip => "cat | \"$@\" | cat",
            };
            let mut command = Command::new("sh");
            command.args(["-c", script, "sh"]).args(program);
            return Ok(command);
        }
        Via::Before(before) => {
            let tether = before::binary()?.ok_or_else(|| {
                io::Error::other(format!("{} names no older tether", before::BINARY_ENV))
            })?;
            tether_run(tether, before.after(), path)
        }
        Via::Command(contender @ (Contender::TetherTokio | Contender::TetherSmol)) => {
            let tether = exe.with_file_name("tether");
            if !tether.exists() {
                return Err(io::Error::other(format!(
                    "{} is missing: build tether-cli in the same profile",
                    tether.display()
                )));
            }
            tether_run(tether, contender, path)
        }
        Via::Command(
            contender @ (Contender::Baseline | Contender::TokioUtil | Contender::Rmcp),
        ) => {
            vec![exe.into(), "relay".into(), contender.name().into()]
        }
    };
    args.push("--".into());
    args.extend(program.iter().map(OsString::from));
    Ok(match std::env::var_os(STRACE_ENV) {
        Some(out) => {
            let mut command = Command::new("strace");
            command
                .args(["-f", "-c", "-o"])
                .arg(out)
                .arg("--")
                .args(args);
            command
        }
        None => {
            let mut command = Command::new(&args[0]);
            command.args(&args[1..]);
            command
        }
    })
}

/// `tether run` with the binary `tether`, on the runtime of the tether contender `contender`,
/// with the options `path` needs.
fn tether_run(tether: PathBuf, contender: Contender, path: CliPath) -> Vec<OsString> {
    let runtime = match contender {
        Contender::TetherSmol => "smol",
        _ => "tokio",
    };
    let mut args = vec![
        tether.into(),
        "run".into(),
        "--runtime".into(),
        runtime.into(),
    ];
    match path {
        CliPath::Write => args.extend(["--output".into(), "summary".into()]),
        // `cat` echoes the requests back: nothing will answer them once stdin ends.
        CliPath::RoundTrip => args.extend(["--linger".into(), "0".into()]),
        CliPath::Read => {}
    }
    args
}

/// Runs one path through `via`: `file` is what the child or standard input carries (the
/// round trip has none), `count` the messages (or round trips) expected.
pub(crate) fn run(via: Via, path: CliPath, file: Option<&Path>, count: u64) -> io::Result<Report> {
    let file = file.unwrap_or(Path::new("/dev/null"));
    let file_arg = file.display().to_string();
    let started = Instant::now();
    let (mut child, producer) = match path {
        CliPath::Write => {
            let mut producer = Command::new("cat")
                .arg(file)
                .stdout(Stdio::piped())
                .spawn()?;
            let stdin = producer
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("no stdout"))?;
            let child = command(via, path, &["sh", "-c", "cat > /dev/null"])?
                .stdin(stdin)
                .stdout(Stdio::null())
                .spawn()?;
            (child, Some(producer))
        }
        CliPath::Read => {
            let child = command(via, path, &["cat", &file_arg])?
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            (child, None)
        }
        CliPath::RoundTrip => {
            let child = command(via, path, &["cat"])?
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            (child, None)
        }
    };
    let mut report = Report::default();
    match path {
        CliPath::Write => {}
        CliPath::Read => {
            // Standard input stays open until the command has exited: it ends with the child.
            let lines = count_lines(child.stdout.take())?;
            if lines < count {
                return Err(mismatch(count, lines));
            }
        }
        CliPath::RoundTrip => report = round_trips(&mut child, count)?,
    }
    let usage = wait(&child)?;
    drop(child);
    if let Some(mut producer) = producer {
        producer.wait()?;
    }
    if !usage.success {
        return Err(io::Error::other(format!("{} failed", via.name())));
    }
    Ok(Report {
        secs: started.elapsed().as_secs_f64(),
        cpu_secs: usage.cpu_secs,
        switches: usage.switches,
        messages: count,
        bytes: std::fs::metadata(file)?.len(),
        ..report
    })
}

fn mismatch(expected: u64, got: u64) -> io::Error {
    io::Error::other(format!("expected {expected} lines, got {got}"))
}

fn count_lines(stdout: Option<impl Read>) -> io::Result<u64> {
    let mut stdout = stdout.ok_or_else(|| io::Error::other("no stdout"))?;
    let mut buf = vec![0; 64 << 10];
    let mut lines = 0;
    loop {
        match stdout.read(&mut buf)? {
            0 => return Ok(lines),
            n => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
        }
    }
}

/// `count` requests, each written once the answer to the one before has been read; the
/// latencies go into the report. Standard input is closed at the end.
fn round_trips(child: &mut Child, count: u64) -> io::Result<Report> {
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin"))?;
    let mut stdout = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?,
    );
    let mut latencies = Vec::with_capacity(count as usize);
    let mut line = String::new();
    for id in 0..count {
        let request =
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"echo\",\"params\":{{\"text\":\"ping\"}}}}\n");
        let sent = Instant::now();
        stdin.write_all(request.as_bytes())?;
        line.clear();
        if stdout.read_line(&mut line)? == 0 || !line.contains(&format!("\"id\":{id}")) {
            return Err(io::Error::other(format!("no echo of request {id}: {line}")));
        }
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    drop(stdin);
    // The rest (the end of the session) is drained so the command never blocks on it.
    io::copy(&mut stdout, &mut io::sink())?;
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    Ok(Report {
        p50_ns: percentile(50),
        p99_ns: percentile(99),
        ..Report::default()
    })
}

/// What the command (with the children it reaped) used, and whether it exited with 0.
struct Usage {
    cpu_secs: f64,
    switches: u64,
    success: bool,
}

/// Reaps `child` with `wait4`, which also says what it used.
fn wait(child: &Child) -> io::Result<Usage> {
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `wait4` fills the `rusage` it is pointed at, and a zeroed `rusage` is already a
    // valid value; the pid is our own unreaped child (`Child::wait` is never called on it).
    let (pid, usage) = unsafe {
        let pid = libc::wait4(
            child.id() as libc::pid_t,
            &mut status,
            0,
            usage.as_mut_ptr(),
        );
        (pid, usage.assume_init())
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Usage {
        cpu_secs: secs(usage.ru_utime) + secs(usage.ru_stime),
        switches: (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    })
}

/// What the relay waits for next.
enum Next<M> {
    Line(Option<String>),
    Incoming(Option<Incoming<M>>),
}

/// `tether run`, written with the contender `C` the way its users commonly write such a
/// command: standard input read line by line on a thread and handed over through a channel
/// of 128, each line parsed and sent; each message from the child printed as tether prints it,
/// one `println!`-style write per line. Returns once the child's output has ended (or, after
/// standard input has, once the child has exited).
pub(crate) async fn relay<C: Client>(program: &[String]) -> io::Result<()> {
    let (name, args) = program
        .split_first()
        .ok_or_else(|| io::Error::other("no program"))?;
    let mut command = Command::new(name);
    command.args(args);
    let mut client = C::spawn(command, MAX_FRAME)?;
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(128);
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut out = io::stdout().lock();
    loop {
        let next = future::or(async { Next::Incoming(client.recv().await) }, async {
            Next::Line(lines.recv().await)
        })
        .await;
        match next {
            Next::Line(Some(line)) if line.trim().is_empty() => {}
            Next::Line(Some(line)) => match serde_json::from_str::<C::Out>(&line) {
                Ok(message) => client.send(&message).await?,
                Err(err) => writeln!(
                    out,
                    "{}",
                    serde_json::json!({"event": "invalid_input", "reason": err.to_string()})
                )?,
            },
            Next::Line(None) => {
                client.finish().await?;
                return Ok(());
            }
            Next::Incoming(Some(Incoming::Message(message))) => {
                let message = serde_json::to_string(&message)?;
                writeln!(out, "{{\"event\":\"message\",\"message\":{message}}}")?;
            }
            Next::Incoming(Some(Incoming::Malformed)) => {
                writeln!(out, "{{\"event\":\"malformed\"}}")?;
            }
            Next::Incoming(None) => {
                writeln!(out, "{{\"event\":\"disconnected\",\"reason\":null}}")?;
                client.finish().await?;
                return Ok(());
            }
        }
    }
}

/// The path a scenario argument names.
pub(crate) fn parse_path(name: &str) -> Option<CliPath> {
    Some(match name {
        "cli-write" => CliPath::Write,
        "cli-read" => CliPath::Read,
        "cli-pingpong" => CliPath::RoundTrip,
        _ => return None,
    })
}

/// The scenario argument that names `path`.
pub(crate) fn path_name(path: CliPath) -> &'static str {
    match path {
        CliPath::Write => "cli-write",
        CliPath::Read => "cli-read",
        CliPath::RoundTrip => "cli-pingpong",
    }
}
