//! End-to-end benchmarks of tether against the common tokio approach, through real pipes to
//! real children, every contender in the same run so that the ratios mean something on a
//! shared machine.
//!
//! ```text
//! tether-bench [--quick] [--rounds N]          every scenario and contender, round-robin;
//!                                              a markdown report on stdout, progress on stderr
//! tether-bench one CONTENDER SCENARIO ARGS...  one measurement, in a process of its own
//!                                              (CONTENDER may also name a floor: floor-cat,
//!                                              floor-parse, or the older build: before-tokio,
//!                                              before-smol, for the command paths)
//! tether-bench emit PATH                       a child that writes PATH one line per write
//! tether-bench relay CONTENDER -- PROGRAM ARGS  `tether run PROGRAM`, written with another
//!                                              contender (the command paths' counterpart)
//! tether-bench bridge [--quick] [--rounds N]   the bridge's MCP section alone
//! tether-bench mcp-peer                        the MCP server the bridge section runs
//! ```
//!
//! The command paths run the `tether` binary next to this one: `bench/run` builds both.
//! `TETHER_BENCH_BEFORE=PATH` adds an older `tether` binary on the command paths, in the same
//! rounds, and a "Before and after" section (`TETHER_BENCH_BEFORE_REV` names its revision
//! there); `bench/run --before REV` builds REV's binary and sets both.
//! `TETHER_BENCH_TOKIO=current_thread` runs the library scenarios' tokio contenders on tokio's
//! single-threaded runtime.
//!
//! `bench/run` builds it in release mode, runs it and writes `BENCHMARKS.md`.

mod baseline;
mod before;
mod bridge;
mod client;
mod command;
mod floor;
mod load;
mod rmcp;
mod scenario;
mod suite;

use std::io;
use std::process::ExitCode;

use scenario::{Report, Scenario};

/// Who is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    TetherTokio,
    TetherSmol,
    Baseline,
    TokioUtil,
    Rmcp,
}

impl Contender {
    const ALL: [Contender; 5] = [
        Contender::TetherTokio,
        Contender::TetherSmol,
        Contender::Baseline,
        Contender::TokioUtil,
        Contender::Rmcp,
    ];

    fn name(self) -> &'static str {
        match self {
            Contender::TetherTokio => "tether-tokio",
            Contender::TetherSmol => "tether-smol",
            Contender::Baseline => "baseline",
            Contender::TokioUtil => "tokio-util",
            Contender::Rmcp => "rmcp",
        }
    }

    fn parse(name: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Runs `scenario` in this process, on the contender's runtime: tokio's multi-threaded
    /// runtime as `#[tokio::main]` builds it, or `smol::block_on` with smol's global executor.
    /// A command path runs the contender's command as a child instead.
    fn measure(self, scenario: &Scenario) -> io::Result<Report> {
        if let Scenario::Command { path, file, count } = scenario {
            return command::run(command::Via::Command(self), *path, file.as_deref(), *count);
        }
        match self {
            Contender::TetherTokio => {
                tokio()?.block_on(scenario::run::<tether_tokio::Connection>(scenario))
            }
            Contender::TetherSmol => {
                smol::block_on(scenario::run::<tether_smol::Connection>(scenario))
            }
            Contender::Baseline => tokio()?.block_on(scenario::run::<baseline::Lines>(scenario)),
            Contender::TokioUtil => tokio()?.block_on(scenario::run::<baseline::Codec>(scenario)),
            Contender::Rmcp => tokio()?.block_on(scenario::run::<rmcp::Rmcp>(scenario)),
        }
    }

    /// Runs the command-line counterpart of `tether run PROGRAM` written with this contender.
    fn relay(self, program: &[String]) -> io::Result<()> {
        match self {
            Contender::Baseline => tokio()?.block_on(command::relay::<baseline::Lines>(program)),
            Contender::TokioUtil => tokio()?.block_on(command::relay::<baseline::Codec>(program)),
            Contender::Rmcp => tokio()?.block_on(command::relay::<rmcp::Rmcp>(program)),
            // The real command is measured for tether.
            Contender::TetherTokio | Contender::TetherSmol => Err(usage()),
        }
    }
}

/// tokio's multi-threaded runtime, as `#[tokio::main]` builds it; with
/// `TETHER_BENCH_TOKIO=current_thread`, the single-threaded one instead (to see what the
/// multi-threaded scheduler costs).
fn tokio() -> io::Result<tokio::runtime::Runtime> {
    match std::env::var("TETHER_BENCH_TOKIO").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
}

const USAGE: &str = "usage: tether-bench [--quick] [--rounds N]\n       tether-bench bridge [--quick] [--rounds N]\n       tether-bench one CONTENDER|FLOOR|BEFORE SCENARIO ARGS...\n       tether-bench relay CONTENDER -- PROGRAM ARGS...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("one") => one(&args[1..]),
        Some("emit") if args.len() == 2 => scenario::emit(&args[1]),
        Some("relay") => relay(&args[1..]),
        Some("mcp-peer") if args.len() == 1 => bridge::peer(),
        Some("bridge") => only_bridge(&args[1..]),
        _ => all(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tether-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, USAGE)
}

fn one(args: &[String]) -> io::Result<()> {
    let (name, scenario) = match args {
        [name, rest @ ..] => (name, Scenario::from_args(rest).ok_or_else(usage)?),
        [] => return Err(usage()),
    };
    let report = if let Some(floor) = floor::Floor::parse(name) {
        floor.measure(&scenario)?
    } else if let Some(before) = before::Before::parse(name) {
        before.measure(&scenario)?
    } else {
        Contender::parse(name)
            .ok_or_else(usage)?
            .measure(&scenario)?
    };
    println!("{}", report.to_line());
    Ok(())
}

fn relay(args: &[String]) -> io::Result<()> {
    match args {
        [contender, dashes, program @ ..] if dashes == "--" && !program.is_empty() => {
            Contender::parse(contender)
                .ok_or_else(usage)?
                .relay(program)
        }
        _ => Err(usage()),
    }
}

fn all(args: &[String]) -> io::Result<()> {
    let (quick, rounds) = options(args)?;
    let markdown = suite::run(quick, rounds)?;
    print!("{markdown}");
    Ok(())
}

fn only_bridge(args: &[String]) -> io::Result<()> {
    let (quick, rounds) = options(args)?;
    let load = if quick {
        bridge::Load::QUICK
    } else {
        bridge::Load::FULL
    };
    print!("{}", bridge::section(load, rounds.unwrap_or(3))?);
    Ok(())
}

/// `--quick` and `--rounds N`.
fn options(args: &[String]) -> io::Result<(bool, Option<usize>)> {
    let mut quick = false;
    let mut rounds = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--rounds" => {
                let n = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0);
                rounds = Some(n.ok_or_else(usage)?);
            }
            _ => return Err(usage()),
        }
    }
    Ok((quick, rounds))
}
