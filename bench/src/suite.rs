//! The whole run: generate the inputs, measure every scenario with every contender round by
//! round, and report.
//!
//! Each round runs every contender once per scenario (and on the command paths the older
//! build of [`before`], if there is one), in an order rotated from round to round, each
//! measurement in a fresh process (this binary again, `one ...`). On a shared machine
//! absolute figures drift; contenders measured side by side drift together, so the ratios
//! hold.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::before::{self, Before};
use crate::command::CliPath;
use crate::floor::Floor;
use crate::load::{self, Snapshot};
use crate::scenario::{Pace, Report, Scenario, MAX_FRAME};
use crate::Contender;

/// Every line of the large-message file is this long, newline included.
const LARGE_LINE: usize = 64 << 10;

const MIB: f64 = (1 << 20) as f64;

/// How much each scenario moves, and how many rounds.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Small messages read, written and flooded.
    small: u64,
    /// 64 KiB responses read.
    large: u64,
    /// Small messages read from a child that writes them one by one.
    paced: u64,
    /// Round trips.
    pingpong: u64,
    /// Round trips through the command, each through two more pipes and processes.
    command_pingpong: u64,
    /// Bytes in the line without a newline.
    huge: u64,
    rounds: usize,
}

impl Sizes {
    const FULL: Sizes = Sizes {
        small: 1_000_000,
        large: 5_000,
        paced: 200_000,
        pingpong: 100_000,
        command_pingpong: 20_000,
        huge: 1 << 30,
        rounds: 5,
    };

    const QUICK: Sizes = Sizes {
        small: 50_000,
        large: 500,
        paced: 20_000,
        pingpong: 5_000,
        command_pingpong: 2_000,
        huge: 64 << 20,
        rounds: 2,
    };
}

/// How a case's figures are summarised and judged.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Messages per second from the best (fastest) round; tether must reach `goal` times the
    /// baseline's, if there is a goal.
    Throughput { goal: Option<f64> },
    /// The lowest p50 and p99 over the rounds; tether's p50 must be at most `goal` times the
    /// baseline's.
    Latency { goal: f64 },
    /// The highest peak RSS over the rounds; tether's must stay within `goal` bytes.
    Memory { goal: f64 },
}

#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) title: String,
    pub(crate) kind: Kind,
    scenario: Scenario,
    /// `reports[contender][round]`, contenders in [`Contender::ALL`] order.
    pub(crate) reports: Vec<Vec<Report>>,
    /// `floors[floor][round]`, floors in [`Floor::ALL`] order; empty where a floor does not
    /// apply (every scenario but the command paths).
    floors: Vec<Vec<Report>>,
    /// `befores[before][round]`, the older build in [`Before::ALL`] order; empty unless
    /// [`before::BINARY_ENV`] names one, and for every scenario but the command paths.
    pub(crate) befores: Vec<Vec<Report>>,
}

impl Case {
    pub(crate) fn new(title: String, kind: Kind, scenario: Scenario) -> Case {
        Case {
            title,
            kind,
            scenario,
            reports: vec![Vec::new(); Contender::ALL.len()],
            floors: vec![Vec::new(); Floor::ALL.len()],
            befores: vec![Vec::new(); Before::ALL.len()],
        }
    }

    /// The rounds of `contender`.
    pub(crate) fn rounds(&self, contender: Contender) -> &[Report] {
        &self.reports[index(contender)]
    }

    /// The command path this case takes, if it is one.
    fn command_path(&self) -> Option<CliPath> {
        match self.scenario {
            Scenario::Command { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Who takes a turn in a round: a contender, or the older build on a command path.
#[derive(Debug, Clone, Copy)]
enum Entrant {
    Contender(Contender),
    Before(Before),
}

impl Entrant {
    fn name(self) -> &'static str {
        match self {
            Entrant::Contender(contender) => contender.name(),
            Entrant::Before(before) => before.name(),
        }
    }
}

/// Who takes a turn on `case` in every round: every contender, and on a command path the older
/// build on both runtimes if it is `compared`.
fn entrants(case: &Case, compared: bool) -> Vec<Entrant> {
    let mut entrants: Vec<Entrant> = Contender::ALL.map(Entrant::Contender).to_vec();
    if compared && case.command_path().is_some() {
        entrants.extend(Before::ALL.map(Entrant::Before));
    }
    entrants
}

/// Removes the generated inputs however the run ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs everything and returns the report, in markdown.
pub(crate) fn run(quick: bool, rounds: Option<usize>) -> io::Result<String> {
    let mut sizes = if quick { Sizes::QUICK } else { Sizes::FULL };
    if let Some(rounds) = rounds {
        sizes.rounds = rounds;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("tether-bench-{}", std::process::id())));
    fs::create_dir_all(&dir.0)?;
    eprintln!("generating inputs in {}", dir.0.display());
    let small = dir.0.join("small.jsonl");
    let large = dir.0.join("large.jsonl");
    let paced = dir.0.join("paced.jsonl");
    generate(&small, sizes.small, small_line)?;
    generate(&large, sizes.large, large_line)?;
    generate(&paced, sizes.paced, small_line)?;

    let mut cases = cases(&sizes, &small, &large, &paced);
    // The older build joins the rotation of the command cases.
    let compare = before::binary()?.is_some();
    let start = Snapshot::take();
    for round in 0..sizes.rounds {
        for case in &mut cases {
            let entrants = entrants(case, compare);
            for k in 0..entrants.len() {
                let entrant = entrants[(k + round) % entrants.len()];
                let report = measure(entrant.name(), &case.scenario)?;
                eprintln!(
                    "round {}/{}  {:<28} {:<13} {:>8.3} s  p50 {:>7.1} µs  peak RSS {:>7.1} MiB",
                    round + 1,
                    sizes.rounds,
                    case.title,
                    entrant.name(),
                    report.secs,
                    report.p50_ns as f64 / 1e3,
                    report.rss_kib as f64 / 1024.0,
                );
                match entrant {
                    Entrant::Contender(contender) => case.reports[index(contender)].push(report),
                    Entrant::Before(before) => case.befores[before as usize].push(report),
                }
            }
            let Some(path) = case.command_path() else {
                continue;
            };
            for (index, floor) in Floor::ALL.into_iter().enumerate() {
                if floor.applies(path) {
                    let report = measure(floor.name(), &case.scenario)?;
                    eprintln!(
                        "round {}/{}  {:<28} {:<13} {:>8.3} s  p50 {:>7.1} µs",
                        round + 1,
                        sizes.rounds,
                        case.title,
                        floor.name(),
                        report.secs,
                        report.p50_ns as f64 / 1e3,
                    );
                    case.floors[index].push(report);
                }
            }
        }
    }
    let busy = load::report(&start, &Snapshot::take());
    eprintln!("{}", busy.trim_end());
    let syscalls = trace(&dir.0, &cases)?;
    let mut md = busy;
    md.push_str(&markdown(&sizes, &cases));
    md.push_str(&floors(&cases));
    if compare {
        md.push_str(&before::section(&before::revision(), &cases));
    }
    md.push_str(&syscalls);
    let bridge = if quick {
        crate::bridge::Load::QUICK
    } else {
        crate::bridge::Load::FULL
    };
    md.push_str(&crate::bridge::section(bridge, sizes.rounds.min(3))?);
    Ok(md)
}

/// tether's command paths against their floors.
fn floors(cases: &[Case]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n### Against the floor\n");
    let _ = writeln!(
        md,
        "The command paths against what moving the same bytes costs with no JSON-RPC: `cat | \
         PROGRAM | cat` in the command's place (two processes, no parsing), and `serde_json` \
         validation of each input line alone (into `IgnoredAny`, from memory, one thread, no \
         I/O), measured in the same rounds. Ratios are tether ÷ floor of the figures shown.\n"
    );
    let titles: Vec<&str> = Floor::ALL.iter().map(|f| f.title()).collect();
    let _ = writeln!(
        md,
        "| scenario | measure | tether-tokio | tether-smol | {} | tokio ÷ cat | smol ÷ cat | tokio ÷ parse only | smol ÷ parse only | goal | met (tokio / smol) |\n|---|---|---:|---:|{}---:|---:|---:|---:|---|---|",
        titles.join(" | "),
        "---:|".repeat(titles.len())
    );
    let mut missed = Vec::new();
    for case in cases.iter().filter(|case| case.command_path().is_some()) {
        let Some(row) = rows(case).into_iter().next() else {
            continue;
        };
        let floor_values: Vec<Option<f64>> = case
            .floors
            .iter()
            .map(|reports| (!reports.is_empty()).then(|| figure(case.kind, reports)))
            .collect();
        let cell = |value: Option<f64>| value.map_or("–".to_owned(), |v| number(v, row.decimals));
        let values = &row.values;
        let ratios: Vec<Option<f64>> = floor_values
            .iter()
            .flat_map(|floor| {
                TETHER
                    .iter()
                    .map(move |&c| floor.map(|f| values[index(c)] / f))
            })
            .collect();
        // The stdin → child path must stay within 2× of validating its input alone.
        let parse_goal = case.command_path() == Some(CliPath::Write);
        let (goal, met) = match parse_goal {
            true => {
                let met: Vec<&str> = TETHER
                    .iter()
                    .enumerate()
                    .map(|(k, &c)| {
                        let ok = ratios[TETHER.len() + k].is_some_and(|r| r >= 0.5);
                        if !ok {
                            missed.push(format!("{} ({})", case.title, c.name()));
                        }
                        if ok {
                            "yes"
                        } else {
                            "**no**"
                        }
                    })
                    .collect();
                ("tether ÷ parse only ≥ 0.50×".to_owned(), met.join(" / "))
            }
            false => (String::new(), String::new()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {goal} | {met} |",
            case.title,
            row.measure,
            TETHER
                .iter()
                .map(|&c| number(row.values[index(c)], row.decimals))
                .collect::<Vec<_>>()
                .join(" | "),
            floor_values
                .iter()
                .map(|&v| cell(v))
                .collect::<Vec<_>>()
                .join(" | "),
            ratios
                .iter()
                .map(|r| r.map_or("–".to_owned(), |r| format!("{r:.2}×")))
                .collect::<Vec<_>>()
                .join(" | "),
        );
    }
    let _ = writeln!(md);
    if missed.is_empty() {
        let _ = writeln!(md, "Within 2× of the parse-only floor.");
    } else {
        let _ = writeln!(
            md,
            "Not within 2× of the parse-only floor: {}.",
            missed.join("; ")
        );
    }
    md
}

/// The first figure [`rows`] shows for a case, from one contender's (or floor's) rounds.
pub(crate) fn figure(kind: Kind, reports: &[Report]) -> f64 {
    match kind {
        Kind::Throughput { .. } => reports[0].messages as f64 / min(reports.iter().map(|r| r.secs)),
        Kind::Latency { .. } => min(reports.iter().map(|r| r.p50_ns as f64)) / 1e3,
        Kind::Memory { .. } => max(reports.iter().map(|r| r.rss_kib as f64)) / 1024.0,
    }
}

/// Messages in the traced runs: enough for the per-message counts to settle, few enough that
/// a run under `strace` takes seconds.
const TRACED: u64 = 20_000;

/// The scenario of `case`, shrunk for a run under `strace`; `None` for the memory cases.
fn traced(scenario: &Scenario, trace: &Path) -> Option<Scenario> {
    Some(match scenario {
        Scenario::Read { expected, pace, .. } => match pace {
            Pace::SlowConsumer => return None,
            // The large messages are few already.
            Pace::Fast if *expected < TRACED => scenario.clone(),
            _ => Scenario::Read {
                path: trace.to_owned(),
                expected: TRACED,
                pace: *pace,
            },
        },
        Scenario::HugeLine { .. } => return None,
        Scenario::Write { .. } => Scenario::Write {
            path: trace.to_owned(),
            count: TRACED,
        },
        Scenario::PingPong { .. } => Scenario::PingPong { count: TRACED / 4 },
        Scenario::Command { path, file, .. } => Scenario::Command {
            path: *path,
            file: file.as_ref().map(|_| trace.to_owned()),
            count: match path {
                CliPath::RoundTrip => TRACED / 10,
                CliPath::Write | CliPath::Read => TRACED,
            },
        },
    })
}

/// One run of every contender on every case under `strace -f -c` (if it is installed), with
/// [`TRACED`] messages: the system calls per message, as a markdown section. A library
/// scenario is traced whole (this binary's `one` and its child); a command path traces the
/// command and its child only.
fn trace(dir: &Path, cases: &[Case]) -> io::Result<String> {
    let installed = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        return Ok("\nNo system call counts: `strace` is not installed.\n".to_owned());
    }
    let trace_input = dir.join("trace.jsonl");
    generate(&trace_input, TRACED, small_line)?;
    let names: Vec<&str> = Contender::ALL.iter().map(|c| c.name()).collect();
    let mut md = String::new();
    let _ = writeln!(md, "\n### System calls\n");
    let _ = writeln!(
        md,
        "Per message or round trip, from one run of {} messages ({} round trips in the library, \
         {} through the command) under `strace -f -c`: all system calls, then `write`/`writev`, \
         `read` and `futex`. Every thread and child process of the traced program counts, the \
         child (`cat`) included.\n",
        count(TRACED),
        count(TRACED / 4),
        count(TRACED / 10),
    );
    let _ = writeln!(
        md,
        "| scenario | {} |\n|---|{}",
        names.join(" | "),
        "---:|".repeat(names.len())
    );
    for case in cases {
        let Some(scenario) = traced(&case.scenario, &trace_input) else {
            continue;
        };
        let mut cells = Vec::new();
        for contender in Contender::ALL {
            let out = dir.join(format!("strace-{}.txt", contender.name()));
            let mut command = match scenario {
                Scenario::Command { .. } => {
                    let mut command = Command::new(std::env::current_exe()?);
                    command.env(STRACE_ENV, &out);
                    command
                }
                _ => {
                    let mut command = Command::new("strace");
                    command
                        .args(["-f", "-c", "-o"])
                        .arg(&out)
                        .arg("--")
                        .arg(std::env::current_exe()?);
                    command
                }
            };
            let status = command
                .arg("one")
                .arg(contender.name())
                .args(scenario.to_args())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()?;
            let counts = fs::read_to_string(&out).ok().filter(|_| status.success());
            let messages = match scenario {
                Scenario::Read { expected, .. } => expected,
                Scenario::Write { count, .. }
                | Scenario::PingPong { count }
                | Scenario::Command { count, .. } => count,
                Scenario::HugeLine { .. } => 1,
            };
            cells.push(match counts.as_deref().map(syscalls) {
                Some(calls) => {
                    let per = |n: u64| n as f64 / messages as f64;
                    format!(
                        "{:.2} ({:.2} / {:.2} / {:.2})",
                        per(calls.total),
                        per(calls.write),
                        per(calls.read),
                        per(calls.futex)
                    )
                }
                None => "failed".to_owned(),
            });
            eprintln!("traced {:<40} {}", case.title, contender.name());
        }
        let _ = writeln!(md, "| {} | {} |", case.title, cells.join(" | "));
    }
    Ok(md)
}

/// The environment variable that makes a command path run its command under `strace -f -c`,
/// writing the counts to the file it names.
pub(crate) const STRACE_ENV: &str = "TETHER_BENCH_STRACE";

/// Counts from an `strace -c` summary.
struct Syscalls {
    total: u64,
    write: u64,
    read: u64,
    futex: u64,
}

fn syscalls(summary: &str) -> Syscalls {
    let mut calls = Syscalls {
        total: 0,
        write: 0,
        read: 0,
        futex: 0,
    };
    // Rows: % time, seconds, usecs/call, calls, [errors,] syscall; the total row has no
    // usecs/call and is left out.
    for line in summary.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(&name), Some(n)) = (
            fields.last(),
            fields.get(3).and_then(|n| n.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if name == "total" {
            continue;
        }
        calls.total += n;
        match name {
            "write" | "writev" => calls.write += n,
            "read" | "readv" => calls.read += n,
            "futex" => calls.futex += n,
            _ => {}
        }
    }
    calls
}

fn cases(sizes: &Sizes, small: &Path, large: &Path, paced: &Path) -> Vec<Case> {
    let case = Case::new;
    vec![
        case(
            format!("read {} × ~113 B", count(sizes.small)),
            Kind::Throughput { goal: Some(5.0) },
            Scenario::Read {
                path: small.to_owned(),
                expected: sizes.small,
                pace: Pace::Fast,
            },
        ),
        case(
            format!("read {} × 64 KiB", count(sizes.large)),
            Kind::Throughput { goal: Some(1.2) },
            Scenario::Read {
                path: large.to_owned(),
                expected: sizes.large,
                pace: Pace::Fast,
            },
        ),
        case(
            format!("read {} × ~113 B, one write each", count(sizes.paced)),
            Kind::Throughput { goal: None },
            Scenario::Read {
                path: paced.to_owned(),
                expected: sizes.paced,
                pace: Pace::LineByLine,
            },
        ),
        case(
            format!("write {} × ~113 B", count(sizes.small)),
            Kind::Throughput { goal: Some(3.0) },
            Scenario::Write {
                path: small.to_owned(),
                count: sizes.small,
            },
        ),
        case(
            format!("ping-pong {} round trips", count(sizes.pingpong)),
            Kind::Latency { goal: 0.8 },
            Scenario::PingPong {
                count: sizes.pingpong,
            },
        ),
        case(
            format!("command: stdin → child, {} × ~113 B", count(sizes.small)),
            Kind::Throughput { goal: Some(3.0) },
            Scenario::Command {
                path: CliPath::Write,
                file: Some(small.to_owned()),
                count: sizes.small,
            },
        ),
        case(
            format!("command: child → stdout, {} × ~113 B", count(sizes.small)),
            Kind::Throughput { goal: Some(3.0) },
            Scenario::Command {
                path: CliPath::Read,
                file: Some(small.to_owned()),
                count: sizes.small,
            },
        ),
        case(
            format!(
                "command: {} round trips through `cat`",
                count(sizes.command_pingpong)
            ),
            Kind::Latency { goal: 0.8 },
            Scenario::Command {
                path: CliPath::RoundTrip,
                file: None,
                count: sizes.command_pingpong,
            },
        ),
        case(
            format!("flood {}, slow consumer", count(sizes.small)),
            Kind::Memory { goal: 64.0 * MIB },
            Scenario::Read {
                path: small.to_owned(),
                expected: sizes.small,
                pace: Pace::SlowConsumer,
            },
        ),
        case(
            format!("{} MiB line, no newline", sizes.huge >> 20),
            Kind::Memory {
                goal: MAX_FRAME as f64 + 32.0 * MIB,
            },
            Scenario::HugeLine { bytes: sizes.huge },
        ),
    ]
}

/// A notification of about 113 bytes with its newline, like a progress or log message.
fn small_line(i: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"token":"t-{i:07}","progress":{},"total":1000000}}}}"#,
        i % 100
    )
}

/// A success response whose line is exactly [`LARGE_LINE`] bytes with its newline.
fn large_line(i: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let head = format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{"data":""#);
    let tail = r#""}}"#;
    let fill = LARGE_LINE - 1 - head.len() - tail.len();
    let mut line = head;
    line.extend((0..fill).map(|k| ALPHABET[(k + i as usize) % ALPHABET.len()] as char));
    line.push_str(tail);
    line
}

fn generate(path: &Path, lines: u64, line: fn(u64) -> String) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    for i in 0..lines {
        out.write_all(line(i).as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// One measurement of the contender or floor `name`, in a fresh process.
fn measure(name: &str, scenario: &Scenario) -> io::Result<Report> {
    let output = Command::new(std::env::current_exe()?)
        .arg("one")
        .arg(name)
        .args(scenario.to_args())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last().and_then(Report::parse) {
        Some(report) if output.status.success() => Ok(report),
        _ => Err(io::Error::other(format!(
            "{name} on {:?} failed ({}): {stdout}",
            scenario.to_args(),
            output.status
        ))),
    }
}

// ----- the report ---------------------------------------------------------------------------

fn min(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::INFINITY, f64::min)
}

fn max(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max)
}

/// What a tether contender's figure must reach.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// tether ÷ baseline at least this.
    RatioAtLeast(f64),
    /// tether ÷ baseline at most this.
    RatioAtMost(f64),
    /// The figure itself at most this.
    AtMost(f64, &'static str),
}

impl Goal {
    fn met(self, value: f64, ratio: f64) -> bool {
        match self {
            Goal::RatioAtLeast(goal) => ratio >= goal,
            Goal::RatioAtMost(goal) => ratio <= goal,
            Goal::AtMost(goal, _) => value <= goal,
        }
    }

    fn describe(self) -> String {
        match self {
            Goal::RatioAtLeast(goal) => format!("≥ {goal:.1}×"),
            Goal::RatioAtMost(goal) => format!("≤ {goal:.2}×"),
            Goal::AtMost(goal, unit) => format!("≤ {goal:.0} {unit}"),
        }
    }
}

/// One summary figure per contender, in [`Contender::ALL`] order.
struct Row {
    measure: &'static str,
    values: Vec<f64>,
    /// Digits after the point (none: thousands separators).
    decimals: Option<usize>,
    /// Whether this row shows the tether ÷ baseline ratios.
    ratios: bool,
    /// Whether a higher figure is the better one.
    higher: bool,
    goal: Option<Goal>,
}

fn rows(case: &Case) -> Vec<Row> {
    let each = |f: &dyn Fn(&[Report]) -> f64| case.reports.iter().map(|r| f(r)).collect();
    let (measure, higher, decimals) = shown(case.kind);
    let row = |measure, values, decimals, ratios, goal| Row {
        measure,
        values,
        decimals,
        ratios,
        higher,
        goal,
    };
    let goal = match case.kind {
        Kind::Throughput { goal } => goal.map(Goal::RatioAtLeast),
        Kind::Latency { goal } => Some(Goal::RatioAtMost(goal)),
        Kind::Memory { goal } => Some(Goal::AtMost(goal / MIB, "MiB")),
    };
    let first = row(
        measure,
        each(&|r| figure(case.kind, r)),
        decimals,
        true,
        goal,
    );
    match case.kind {
        Kind::Throughput { .. } => {
            let best = |r: &[Report]| min(r.iter().map(|r| r.secs));
            vec![
                first,
                row(
                    "MB/s",
                    each(&|r| r[0].bytes as f64 / best(r) / 1e6),
                    Some(1),
                    false,
                    None,
                ),
            ]
        }
        Kind::Latency { .. } => vec![
            first,
            row(
                "p99 µs (lower is better)",
                each(&|r| min(r.iter().map(|r| r.p99_ns as f64)) / 1e3),
                Some(1),
                true,
                None,
            ),
        ],
        Kind::Memory { .. } => vec![first],
    }
}

/// How the first figure of a case ([`figure`]) is shown: its measure, whether a higher figure
/// is the better one, and its digits after the point (none: thousands separators).
pub(crate) fn shown(kind: Kind) -> (&'static str, bool, Option<usize>) {
    match kind {
        Kind::Throughput { .. } => ("msg/s (higher is better)", true, None),
        Kind::Latency { .. } => ("p50 µs (lower is better)", false, Some(1)),
        Kind::Memory { .. } => ("peak RSS MiB (lower is better)", false, Some(1)),
    }
}

pub(crate) fn number(value: f64, decimals: Option<usize>) -> String {
    match decimals {
        Some(decimals) => format!("{value:.decimals$}"),
        None => count(value.round() as u64),
    }
}

/// `1234567` as `1,234,567`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

const TETHER: [Contender; 2] = [Contender::TetherTokio, Contender::TetherSmol];

fn index(contender: Contender) -> usize {
    Contender::ALL
        .iter()
        .position(|&c| c == contender)
        .unwrap_or_default()
}

fn markdown(sizes: &Sizes, cases: &[Case]) -> String {
    let mut md = String::new();
    let names: Vec<&str> = Contender::ALL.iter().map(|c| c.name()).collect();
    let _ = writeln!(
        md,
        "| scenario | measure | {} | tokio ÷ baseline | smol ÷ baseline | goal | met (tokio / smol) |",
        names.join(" | ")
    );
    let _ = writeln!(
        md,
        "|---|---|{}---:|---:|---|---|",
        "---:|".repeat(names.len())
    );
    let mut versus = String::new();
    let mut behind = Vec::new();
    let mut verdicts = Vec::new();
    for case in cases {
        for (i, row) in rows(case).into_iter().enumerate() {
            let title = if i == 0 { case.title.as_str() } else { "" };
            let values: Vec<String> = row
                .values
                .iter()
                .map(|&v| number(v, row.decimals))
                .collect();
            let ratio = |contender: Contender, against: Contender| {
                row.values[index(contender)] / row.values[index(against)]
            };
            let ratios: Vec<String> = TETHER
                .iter()
                .map(|&c| match row.ratios {
                    true => format!("{:.2}×", ratio(c, Contender::Baseline)),
                    false => String::new(),
                })
                .collect();
            let (goal, met) = match row.goal {
                Some(goal) => {
                    let met: Vec<&str> = TETHER
                        .iter()
                        .map(|&c| {
                            let ok = goal.met(row.values[index(c)], ratio(c, Contender::Baseline));
                            verdicts.push((case.title.clone(), c, ok));
                            if ok {
                                "yes"
                            } else {
                                "**no**"
                            }
                        })
                        .collect();
                    (goal.describe(), met.join(" / "))
                }
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                md,
                "| {title} | {} | {} | {} | {goal} | {met} |",
                row.measure,
                values.join(" | "),
                ratios.join(" | ")
            );
            if row.ratios {
                let against = [Contender::TokioUtil, Contender::Rmcp];
                let mut cells = Vec::new();
                for other in against {
                    for c in TETHER {
                        cells.push(format!("{:.2}×", ratio(c, other)));
                    }
                }
                // Ahead: better than both, on the figures a goal is set on (memory is judged
                // against its own bound instead).
                let ahead = match (row.goal, case.kind) {
                    (Some(_), Kind::Throughput { .. } | Kind::Latency { .. }) => TETHER
                        .iter()
                        .map(|&c| {
                            let ok = against.iter().all(|&other| match row.higher {
                                true => ratio(c, other) > 1.0,
                                false => ratio(c, other) < 1.0,
                            });
                            if !ok {
                                behind.push(format!("{} ({})", case.title, c.name()));
                            }
                            if ok {
                                "yes"
                            } else {
                                "**no**"
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" / "),
                    _ => String::new(),
                };
                let _ = writeln!(
                    versus,
                    "| {title} | {} | {} | {ahead} |",
                    row.measure,
                    cells.join(" | "),
                );
            }
        }
    }
    let missed: Vec<String> = verdicts
        .iter()
        .filter(|(_, _, ok)| !ok)
        .map(|(title, c, _)| format!("{title} ({})", c.name()))
        .collect();
    let _ = writeln!(md);
    if missed.is_empty() {
        let _ = writeln!(md, "Every goal met.");
    } else {
        let _ = writeln!(md, "Goals missed: {}.", missed.join("; "));
    }

    let _ = writeln!(md, "\n### Where the time goes\n");
    let _ = writeln!(
        md,
        "CPU time of the measuring process (every thread, user and system; the child's not \
         included) and its context switches, per message or round trip, from each \
         contender's cheapest round: a figure that the machine's other load disturbs far \
         less than the wall clock. For the command paths, the command's own, from `wait4`: \
         it includes the child the command reaps (`cat`), whose reads a command that writes \
         in small pieces multiplies.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | {} |\n|---|{}",
        names.join(" | "),
        "---:|".repeat(names.len())
    );
    for case in cases {
        let cells: Vec<String> = case.reports.iter().map(|r| cost(r)).collect();
        let _ = writeln!(md, "| {} | {} |", case.title, cells.join(" | "));
    }

    let _ = writeln!(md, "\n### Against tokio-util and rmcp\n");
    let _ = writeln!(
        md,
        "| scenario | measure | tokio ÷ tokio-util | smol ÷ tokio-util | tokio ÷ rmcp | smol ÷ rmcp | ahead of both (tokio / smol) |\n|---|---|---:|---:|---:|---:|---|"
    );
    md.push_str(&versus);
    let _ = writeln!(md);
    if behind.is_empty() {
        let _ = writeln!(md, "Ahead of tokio-util and rmcp in every scenario.");
    } else {
        let _ = writeln!(md, "Not ahead of both: {}.", behind.join("; "));
    }

    let _ = writeln!(md, "\n### Every round\n");
    let _ = writeln!(
        md,
        "Seconds per run (ping-pong: p50 µs; memory: peak RSS MiB), in the order the rounds ran.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | {} |\n|---|{}",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for case in cases {
        let cells: Vec<String> = case
            .reports
            .iter()
            .map(|reports| {
                let figures: Vec<String> = reports
                    .iter()
                    .map(|r| match case.kind {
                        Kind::Throughput { .. } => format!("{:.3}", r.secs),
                        Kind::Latency { .. } => format!("{:.1}", r.p50_ns as f64 / 1e3),
                        Kind::Memory { .. } => format!("{:.1}", r.rss_kib as f64 / 1024.0),
                    })
                    .collect();
                figures.join(", ")
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", case.title, cells.join(" | "));
    }

    let _ = writeln!(
        md,
        "\n{} round{}; each round runs every contender once per scenario, in an order rotated \
         from round to round, each run in a fresh process. Throughput is from each contender's \
         best (fastest) round; latency percentiles are the lowest over the rounds; peak RSS is \
         the highest over the rounds (VmHWM of the measuring process). Ratios are tether ÷ \
         baseline of the figures shown: for throughput higher is better, for latency and RSS \
         lower is better. tokio contenders run on tokio's multi-threaded runtime (as \
         `#[tokio::main]` builds it), tether-smol under `smol::block_on`; `tether run` itself \
         runs its one session on tokio's current-thread runtime. The baseline reads \
         with `BufReader::lines()`, parses each line with `serde_json::from_str` into an \
         untagged enum, passes events through an `mpsc` channel of 128, and writes each message \
         with `write_all`, `write_all(b\"\\n\")`, `flush`; tokio-util is the same with \
         `FramedRead`/`FramedWrite` and `LinesCodec::new_with_max_length({} MiB)`. rmcp is \
         rmcp 3.11's `TokioChildProcess` transport in the client role, its `send` and \
         `receive` called directly (it types each direction apart, takes each message by \
         value, and skips lines it cannot parse without reporting them). tether uses its \
         default options with a {} MiB frame limit. The command paths run `tether run \
         --runtime tokio|smol` (`--output summary` for stdin → child) against `tether-bench \
         relay`, the same command written with each other contender as such commands \
         usually are: standard input read line by line on a thread into a channel of 128, \
         each line parsed and sent, each message printed with one write per line. Standard \
         input is piped from `cat`; round trips write one request, then read its echo.",
        sizes.rounds,
        if sizes.rounds == 1 { "" } else { "s" },
        MAX_FRAME >> 20,
        MAX_FRAME >> 20,
    );
    md
}

/// CPU time and context switches per message (or in all, without messages), from the round
/// that took the least CPU.
pub(crate) fn cost(reports: &[Report]) -> String {
    let Some(best) = reports
        .iter()
        .min_by(|a, b| a.cpu_secs.total_cmp(&b.cpu_secs))
    else {
        return String::new();
    };
    match best.messages {
        0 => format!(
            "{:.1} ms CPU, {} switches",
            best.cpu_secs * 1e3,
            best.switches
        ),
        n => format!(
            "{:.2} µs CPU, {:.3} switches",
            best.cpu_secs * 1e6 / n as f64,
            best.switches as f64 / n as f64
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(case: &Case, compared: bool) -> Vec<&'static str> {
        entrants(case, compared)
            .into_iter()
            .map(Entrant::name)
            .collect()
    }

    #[test]
    fn the_older_build_joins_the_command_paths_only_when_compared() {
        let command = Case::new(
            "command".to_owned(),
            Kind::Latency { goal: 0.8 },
            Scenario::Command {
                path: CliPath::RoundTrip,
                file: None,
                count: 1,
            },
        );
        let library = Case::new(
            "library".to_owned(),
            Kind::Latency { goal: 0.8 },
            Scenario::PingPong { count: 1 },
        );
        let contenders: Vec<&str> = Contender::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names(&command, false), contenders);
        assert_eq!(names(&library, true), contenders);
        let mut both = contenders.clone();
        both.extend(["before-tokio", "before-smol"]);
        assert_eq!(names(&command, true), both);
    }
}
