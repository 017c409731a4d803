//! The built-in peer (`tether peer`) as a program of its own, for the test suite.

fn main() {
    std::process::exit(tether_cli::peer::run());
}
