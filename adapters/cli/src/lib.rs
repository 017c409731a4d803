//! The `tether` command's subcommands, as a library so that the test suite can run the
//! built-in peer as a program of its own.
#![deny(missing_docs)]

pub mod peer;
