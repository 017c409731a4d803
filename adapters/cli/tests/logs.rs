//! tether's own logs on standard error: coloured for a person at a terminal, plain in a file
//! or a pipe, and plain wherever `NO_COLOR` is set (and not empty).

#![allow(
    clippy::disallowed_methods,
    reason = "a test bounds its own waits; the rule is for the command's code"
)]

mod support;

/// How long a tether run may take before the test kills it and fails.
const GUARD: Duration = Duration::from_secs(60);

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::pty::{grantpt, ioctl_tiocgptpeer, openpt, unlockpt, OpenptFlags};

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// The escape that starts every ANSI colour code.
const ESC: &str = "\x1b[";

/// The built-in peer writes a line on its standard error, which tether logs (at `INFO`, seen by
/// the default filter); then the session ends with standard input.
const STDERR_LINE: &str =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stderr\",\"params\":{\"text\":\"hello from the peer\"}}\n";

/// `tether ARGS` with the default log filter and no `NO_COLOR`, whatever the test's own
/// environment says.
fn tether(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    command
}

#[test]
fn logs_into_a_pipe_have_no_colour() {
    for runtime in RUNTIMES {
        let mut child = tether(&["run", "--runtime", runtime])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(STDERR_LINE.as_bytes()).unwrap();
        drop(stdin);
        let output = support::wait_output(child, GUARD);
        assert!(output.status.success(), "{runtime}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("INFO"), "{runtime}: {stderr}");
        assert!(
            stderr.contains("hello from the peer"),
            "{runtime}: {stderr}"
        );
        assert!(!stderr.contains(ESC), "{runtime}: {stderr:?}");
    }
}

/// A bridge whose program writes a line that is not JSON-RPC logs a warning; into a pipe,
/// without colour.
#[test]
fn the_bridge_warns_without_colour_into_a_pipe() {
    for runtime in RUNTIMES {
        let mut bridge = tether(&["bridge", "--runtime", runtime, "--auth", "none"])
            .args(["--", env!("CARGO_BIN_EXE_tether"), "peer"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(bridge.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listening: serde_json::Value = serde_json::from_str(&line).unwrap();
        let url = listening["url"].as_str().unwrap();
        let mut client = tether(&["connect", "--runtime", runtime, "--linger", "0", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The program writes a line that is not a message (a request it never answers), then
        // answers a request: once that answer is back, the line before it was read and warned
        // about, and the client's input ends.
        let mut stdin = client.stdin.take().unwrap();
        stdin
            .write_all(
                b"{\"jsonrpc\":\"2.0\",\"method\":\"write\",\"params\":{\"text\":\"not json\\n\"},\"id\":1}\n\
                  {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\",\"params\":[2]}\n",
            )
            .unwrap();
        let mut events = BufReader::new(client.stdout.take().unwrap());
        let mut event = String::new();
        while !event.contains("\"result\":[2]") {
            event.clear();
            assert!(
                events.read_line(&mut event).unwrap() > 0,
                "{runtime}: no answer"
            );
        }
        drop(stdin);
        assert!(
            support::wait_output(client, GUARD).status.success(),
            "{runtime}"
        );
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(bridge.id() as i32).unwrap(),
            rustix::process::Signal::INT,
        )
        .unwrap();
        let output = support::wait_output(bridge, GUARD);
        assert!(output.status.success(), "{runtime}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("WARN"), "{runtime}: {stderr}");
        assert!(stderr.contains("malformed"), "{runtime}: {stderr}");
        assert!(!stderr.contains(ESC), "{runtime}: {stderr:?}");
    }
}

/// A new pseudo-terminal: its controller, and the terminal end for a child's standard error,
/// opened through the controller itself (`TIOCGPTPEER`): a path under `/dev/pts` may name
/// another instance's terminal where more than one devpts is mounted, as in a container. Neither
/// end becomes the test's controlling terminal.
fn terminal() -> (OwnedFd, OwnedFd) {
    let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&controller).unwrap();
    unlockpt(&controller).unwrap();
    let terminal = ioctl_tiocgptpeer(&controller, OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    (controller, terminal)
}

/// Written to the terminal after tether has exited: everything before it is tether's.
const END: &str = "-- the end --";

/// `tether run` with its standard error on a terminal, `NO_COLOR` as given; what the terminal
/// showed.
fn on_a_terminal(runtime: &str, no_color: Option<&str>) -> String {
    let (controller, terminal) = terminal();
    let mut command = tether(&["run", "--runtime", runtime]);
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(terminal.try_clone().unwrap())
        .spawn()
        .unwrap();
    drop(command);
    // The terminal's output is read as it comes, so that tether never waits on it, up to the
    // mark written once tether has exited. (The terminal end is held open here until then: its
    // last close could drop what the reader has not read yet.)
    // The reader has a controller of its own: this one stays open until the mark is written,
    // whenever the reader is done.
    let reading = controller.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut file = std::fs::File::from(reading);
        let mut shown = Vec::new();
        let mut chunk = [0; 4096];
        while !String::from_utf8_lossy(&shown).contains(END) {
            let n = file.read(&mut chunk).unwrap();
            assert!(n > 0, "the terminal ended before the mark");
            shown.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&shown).into_owned()
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(STDERR_LINE.as_bytes()).unwrap();
    drop(stdin);
    let output = support::wait_output(child, GUARD);
    assert!(output.status.success(), "{runtime}: {output:?}");
    let mut terminal = std::fs::File::from(terminal);
    terminal.write_all(format!("{END}\n").as_bytes()).unwrap();
    let shown = reader.join().unwrap();
    drop(controller);
    shown
}

#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color_is_set() {
    for runtime in RUNTIMES {
        for (no_color, coloured) in [(None, true), (Some(""), true), (Some("1"), false)] {
            let shown = on_a_terminal(runtime, no_color);
            assert!(
                shown.contains("hello from the peer"),
                "{runtime} NO_COLOR={no_color:?}: {shown:?}"
            );
            assert_eq!(
                shown.contains(ESC),
                coloured,
                "{runtime} NO_COLOR={no_color:?}: {shown:?}"
            );
        }
    }
}
