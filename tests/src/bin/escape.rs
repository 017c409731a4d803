//! `tether-escape SCENARIO`: a process tree whose descendants leave the process group the way
//! real programs do, for the containment tests. Every descendant that escapes writes
//! `pid N` on its standard output (shared by the whole tree) once it has escaped, then waits
//! to be killed.
//!
//! Scenarios (run as the leader):
//! - `setsid_grandchild`: one grandchild in a session of its own.
//! - `double_forked_daemon`: a middle process calls `setsid`, starts the grandchild and exits,
//!   so the grandchild is orphaned in the middle's session.
//! - `setpgid_descendant`: one grandchild in a process group of its own.
//! - `leader_exits`: all three of the above, then the leader exits at once.
//! - `forker`: a grandchild in its own session that starts a child in a group of its own,
//!   again and again (at most [`FORKS`] times), until killed.
//! - `abort_after_setsid`: one grandchild in a session of its own; once it has reported, the
//!   leader aborts (`SIGABRT`, with no core dump). The grandchild reports through the leader,
//!   so it does not hold the tree's standard output open: the output ends with the leader.

#![allow(
    clippy::zombie_processes,
    reason = "the point of this program is a tree left for someone else to end and reap"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use rustix::process::{getpid, setpgid, setrlimit, setsid, Resource, Rlimit};

/// How many children the `forker` starts at most.
const FORKS: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    match arg(0) {
        "setsid_grandchild" => {
            start(&["hold", "setsid"]);
            wait_forever()
        }
        "double_forked_daemon" => {
            reap(start(&["daemon"]));
            wait_forever()
        }
        "setpgid_descendant" => {
            start(&["hold", "setpgid"]);
            wait_forever()
        }
        "leader_exits" => {
            start(&["hold", "setsid"]);
            reap(start(&["daemon"]));
            start(&["hold", "setpgid"]);
        }
        "forker" => {
            start(&["fork_loop"]);
            wait_forever()
        }
        "abort_after_setsid" => {
            let mut child = Command::new(std::env::current_exe().expect("current_exe"))
                .args(["hold", "setsid"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("piped"))
                .read_line(&mut line)
                .expect("the grandchild's report");
            print!("{line}");
            std::io::stdout().flush().expect("flush");
            setrlimit(
                Resource::Core,
                Rlimit {
                    current: Some(0),
                    maximum: Some(0),
                },
            )
            .expect("no core dump");
            std::process::abort()
        }
        // The roles the scenarios start.
        "hold" => {
            escape(arg(1));
            report();
            wait_forever()
        }
        "daemon" => {
            escape("setsid");
            start(&["hold", "stay"]);
        }
        "fork_loop" => {
            escape("setsid");
            report();
            for _ in 0..FORKS {
                start(&["hold", "setpgid"]);
            }
            wait_forever()
        }
        other => panic!("unknown scenario {other:?}"),
    }
}

/// Starts this program again with `args`, sharing standard output.
fn start(args: &[&str]) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args(args)
        .spawn()
        .expect("spawn")
}

fn reap(mut child: Child) {
    child.wait().expect("wait");
}

fn escape(how: &str) {
    match how {
        "setsid" => drop(setsid().expect("setsid")),
        "setpgid" => setpgid(None, None).expect("setpgid"),
        "stay" => {}
        other => panic!("unknown escape {other:?}"),
    }
}

fn report() {
    // stdout is line-buffered: the line is written at once.
    println!("pid {}", getpid().as_raw_nonzero());
}

fn wait_forever() -> ! {
    loop {
        std::thread::park();
    }
}
