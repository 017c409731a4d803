//! The `tether` command, as a library: its subcommands, and the built-in peer that the test
//! suite also runs as a program of its own.
#![deny(missing_docs)]

pub mod args;
pub mod bridge;
pub mod gate;
pub mod http;
pub mod hyper_io;
pub mod input;
pub mod manual;
pub mod mcp;
pub mod mcp_client;
pub mod output;
pub mod peer;
pub mod program;
pub mod reap;
pub mod record;
pub mod replay;
pub mod run;
pub mod session;

/// Why tether itself failed (as opposed to the peer): one line for standard error.
#[derive(Debug)]
pub struct Failure(pub String);

impl Failure {
    /// An I/O failure of tether's own.
    pub fn io(err: std::io::Error) -> Self {
        Failure(err.to_string())
    }
}

impl From<tether_io::Error> for Failure {
    fn from(err: tether_io::Error) -> Self {
        Failure(err.to_string())
    }
}
