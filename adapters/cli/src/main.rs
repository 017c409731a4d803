//! `tether`: speak JSON-RPC to a child process, a socket or a websocket from the command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("peer") => ExitCode::from(tether_cli::peer::run() as u8),
        _ => {
            eprintln!("usage: tether peer");
            ExitCode::from(2)
        }
    }
}
