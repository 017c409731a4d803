//! `tether completions` and `tether man`: the shell completion scripts and the manual pages,
//! made from the same clap definitions as the command line itself, so that they cannot fall
//! behind it.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::args::Cli;

/// The completion script for `shell` (to load from the shell's start-up file, or to put where
/// the shell looks for completions).
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tether", &mut script);
    script
}

/// The manual page (roff) of `tether`, which lists every subcommand, or with `subcommand` that
/// subcommand's own page, `tether-SUBCOMMAND(1)`, with all its options. `None` if there is no
/// such subcommand.
pub fn man(subcommand: Option<&str>) -> Option<Vec<u8>> {
    let mut command = Cli::command();
    // Built, the subcommands know their full names (`tether-run`) for their own pages.
    command.build();
    let page = match subcommand {
        None => clap_mangen::Man::new(command),
        Some(name) => {
            let version = command.get_version().unwrap_or_default().to_owned();
            let sub = command.find_subcommand(name)?.clone();
            clap_mangen::Man::new(sub).source(format!("tether {version}"))
        }
    };
    let mut roff = Vec::new();
    page.render(&mut roff).ok()?;
    Some(title_first(roff))
}

/// The page with its `.TH` line first, as a man page begins (the renderer puts the definitions
/// of its apostrophe string before it; they mean the same after it).
fn title_first(roff: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&roff);
    let Some(title) = text.lines().find(|line| line.starts_with(".TH ")) else {
        return roff;
    };
    let mut page = format!("{title}\n");
    let mut moved = false;
    for line in text.lines() {
        if line == title && !moved {
            moved = true;
            continue;
        }
        page.push_str(line);
        page.push('\n');
    }
    page.into_bytes()
}

/// Whether `name` is a subcommand with a page of its own.
pub fn has_page(name: &str) -> bool {
    Cli::command().find_subcommand(name).is_some()
}

/// Writes `bytes` on standard output. A reader that has gone (`tether man | head`) is not
/// a failure: it has what it wanted.
pub fn print(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}
