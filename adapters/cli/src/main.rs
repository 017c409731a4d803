//! `tether`: speak JSON-RPC to a child process, a socket or a websocket from the command line.
//!
//! Exit status: 0 when the session ran and ended (whatever the peer's status), 1 when tether
//! itself failed (with one line on standard error), 2 for a usage error.

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

use tether_cli::args::{Cli, Command, Runtime};
use tether_cli::{bridge, manual, run, Failure};
use tether_smol::Smol;
use tether_tokio::Tokio;

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let result = match &cli.command {
        Command::Peer => return ExitCode::from(tether_cli::peer::run() as u8),
        Command::Replay(args) => return ExitCode::from(tether_cli::replay::run(args) as u8),
        Command::Completions(args) => {
            manual::print(&manual::completions(args.shell)).map_err(Failure::io)
        }
        Command::Man(args) => match manual::man(args.subcommand.as_deref()) {
            Some(page) => manual::print(&page).map_err(Failure::io),
            None => Err(Failure("the manual page could not be made".to_owned())),
        },
        Command::Run(args) => {
            logging();
            on(
                args.common.runtime,
                Threads::One,
                run::run::<Tokio>(args),
                run::run::<Smol>(args),
            )
        }
        Command::Connect(args) => {
            logging();
            on(
                args.common.runtime,
                Threads::One,
                run::connect::<Tokio>(args),
                run::connect::<Smol>(args),
            )
        }
        Command::Bridge(args) => {
            logging();
            on(
                args.common.runtime,
                Threads::Many,
                bridge::bridge::<Tokio>(args),
                bridge::bridge::<Smol>(args),
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("tether: {message}");
            ExitCode::from(1)
        }
    }
}

/// How many threads tokio runs tasks on.
#[derive(Debug, Clone, Copy)]
enum Threads {
    /// One session: its tasks only move bytes for each other, and handing them between
    /// threads costs a wake-up per message for nothing (the command's round trips measure
    /// it). Blocking work (standard input, standard output, the children) has threads of its
    /// own anyway.
    One,
    /// The bridge: sessions side by side, spread over the cores.
    Many,
}

/// Runs the future for the chosen runtime.
fn on(
    runtime: Runtime,
    threads: Threads,
    tokio: impl Future<Output = Result<(), Failure>>,
    smol: impl Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    match runtime {
        Runtime::Tokio => match threads {
            Threads::One => tokio::runtime::Builder::new_current_thread(),
            Threads::Many => tokio::runtime::Builder::new_multi_thread(),
        }
        .enable_all()
        .build()
        .map_err(Failure::io)?
        .block_on(tokio),
        Runtime::Smol => smol::block_on(smol),
    }
}

/// Logs go to standard error; `RUST_LOG` chooses what (by default warnings, and the child's
/// standard error lines).
fn logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tether::stderr=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .with_target(false)
        .init();
}

/// Whether the logs are coloured: only for a person at a terminal. Escape codes in a file or
/// a pipe are noise for whoever reads it later (and for `grep`), and `NO_COLOR`, set and not
/// empty, turns them off everywhere (<https://no-color.org>).
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
