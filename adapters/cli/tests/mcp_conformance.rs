//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, pinned in
//! `tests/peers/package.json`, run on the Node 22 the npm package `node` puts in `.peers/`),
//! under both runtimes:
//!
//! - its **server** scenarios (`--suite all`) against `tether bridge`, in front of a stdio
//!   server with the suite's tools, resources and prompts (`tests/peers/mcp_conformance_server.mjs`);
//! - its **client** scenarios against `tether connect`, driven by a small application
//!   (`tests/peers/mcp_conformance_client.py`) that speaks MCP through it.
//!
//! Every check of every scenario must pass (warnings are the suite's own "acceptable"), except
//! the few listed below with the fix that will remove them. The suite writes each scenario's
//! checks into a folder; the test reads them and names every failure. Without the suite in
//! `.peers/` (`scripts/install-peers` installs it) the tests say so and pass.
#![allow(
    clippy::disallowed_methods,
    reason = "the tests bound their waits with the real clock; the command itself reads none"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const RUNTIMES: [&str; 2] = ["tokio", "smol"];

/// Server scenarios known to fail, each with the fix that will remove it. A known failure that
/// passes is reported, so that the line is removed once the fix lands.
const KNOWN_SERVER_FAILURES: &[&str] = &[];

/// Client scenarios not run: OAuth flows (`auth/*`). `tether connect` has no OAuth client;
/// `--token-file` sends a bearer token the user already holds.
const CLIENT_SCENARIOS_NOT_RUN: &str = "auth/";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The Node 22 binary and the suite's entry point, if `.peers/` has them.
fn suite() -> Option<(PathBuf, PathBuf)> {
    let peers =
        std::env::var_os("TETHER_PEERS").map_or_else(|| root().join(".peers"), PathBuf::from);
    let node = peers.join("node_modules/.bin/node");
    let conformance = peers.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    if node.exists() && conformance.exists() {
        Some((node, conformance))
    } else {
        eprintln!(
            "skipped: the MCP conformance suite or Node 22 is not in {} (run scripts/install-peers)",
            peers.display()
        );
        None
    }
}

/// The scenarios `conformance list` names under `heading` ("Server" or "Client").
fn scenarios(node: &Path, conformance: &Path, heading: &str) -> Vec<String> {
    let output = Command::new(node)
        .arg(conformance)
        .arg("list")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let mut names = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            inside = line.starts_with(heading);
            continue;
        }
        if let (true, Some(entry)) = (inside, line.trim().strip_prefix("- ")) {
            names.push(entry.split_whitespace().next().unwrap().to_owned());
        }
    }
    assert!(!names.is_empty(), "no {heading} scenarios in: {text}");
    names
}

/// Each scenario's failed checks, from the folders the suite wrote into `dir`: the folder's
/// name, less `prefix` and the timestamp, is the scenario's.
fn failures(dir: &Path, prefix: &str, scenario: &str) -> Option<Vec<String>> {
    let folder_prefix = format!("{prefix}{}-", scenario.replace('/', "-"));
    let mut found = None;
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The timestamp starts with the year: a longer scenario name sharing the prefix does
        // not.
        let Some(rest) = name.strip_prefix(&folder_prefix) else {
            continue;
        };
        if !rest.starts_with("20") {
            continue;
        }
        let checks: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path.join("checks.json")).ok()?).unwrap();
        let failed = checks
            .iter()
            .filter(|c| c["status"] == "FAILURE")
            .map(|c| format!("{}: {}", c["id"], c["errorMessage"]))
            .collect();
        found = Some(failed);
    }
    found
}

/// A fresh folder for one run's results.
fn results(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tether-conformance-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running bridge, killed if the test fails before it is stopped.
struct Bridge(Child);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_server_scenarios_pass_through_the_bridge() {
    let Some((node, conformance)) = suite() else {
        return;
    };
    let all = scenarios(&node, &conformance, "Server");
    for runtime in RUNTIMES {
        // No token: the suite's client sends none; the bridge listens on loopback only.
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["bridge", "--runtime", runtime, "--auth", "none", "--"])
            .arg(&node)
            .arg(root().join("tests/peers/mcp_conformance_server.mjs"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let listening = support::listening(&mut child);
        // Nothing more is read from it: a bridge whose output is closed goes on serving.
        drop(child.stdout.take());
        let bridge = Bridge(child);
        let url = listening["mcp_url"].as_str().unwrap().to_owned();
        let dir = results(&format!("server-{runtime}"));
        let run = Command::new(&node)
            .arg(&conformance)
            .args(["server", "--url", &url, "--suite", "all", "-o"])
            .arg(&dir)
            .output()
            .unwrap();
        drop(bridge);
        let mut unexpected = Vec::new();
        for scenario in &all {
            let known = KNOWN_SERVER_FAILURES.contains(&scenario.as_str());
            match failures(&dir, "server-", scenario) {
                None => unexpected.push(format!("{scenario}: no results")),
                Some(failed) if failed.is_empty() && known => eprintln!(
                    "{runtime}: {scenario} passes now: remove it from KNOWN_SERVER_FAILURES"
                ),
                Some(failed) if !failed.is_empty() && !known => {
                    unexpected.push(format!("{scenario}: {failed:?}"));
                }
                Some(_) => {}
            }
        }
        assert!(
            unexpected.is_empty(),
            "{runtime}: {} of {} server scenarios failed: {unexpected:#?}\n{}",
            unexpected.len(),
            all.len(),
            String::from_utf8_lossy(&run.stdout)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_client_scenarios_pass_through_connect() {
    let Some((node, conformance)) = suite() else {
        return;
    };
    let all = scenarios(&node, &conformance, "Client");
    let (run, skipped): (Vec<_>, Vec<_>) = all
        .iter()
        .partition(|s| !s.starts_with(CLIENT_SCENARIOS_NOT_RUN));
    eprintln!("not run (no OAuth in tether connect): {skipped:?}");
    assert!(run.len() >= 4, "{run:?}");
    let client = root().join("tests/peers/mcp_conformance_client.py");
    for runtime in RUNTIMES {
        let dir = results(&format!("client-{runtime}"));
        // The suite splits the command at spaces and appends the server's URL.
        let command = format!(
            "python3 {} {} --runtime {runtime}",
            client.display(),
            env!("CARGO_BIN_EXE_tether")
        );
        let mut unexpected = Vec::new();
        for scenario in &run {
            let output = Command::new(&node)
                .arg(&conformance)
                .args(["client", "--command", &command, "--scenario", scenario])
                .args(["--timeout", "30000", "-o"])
                .arg(&dir)
                .output()
                .unwrap();
            match failures(&dir, "", scenario) {
                None => unexpected.push(format!("{scenario}: no results: {output:?}")),
                Some(failed) if !failed.is_empty() => {
                    let stderr = std::fs::read_dir(&dir)
                        .unwrap()
                        .filter_map(|e| {
                            let path = e.unwrap().path();
                            let name = path.file_name()?.to_string_lossy().into_owned();
                            name.starts_with(scenario.as_str())
                                .then(|| std::fs::read_to_string(path.join("stderr.txt")).ok())
                                .flatten()
                        })
                        .collect::<String>();
                    unexpected.push(format!("{scenario}: {failed:?}\nclient stderr: {stderr}"));
                }
                Some(_) => {}
            }
        }
        assert!(
            unexpected.is_empty(),
            "{runtime}: client scenarios failed: {unexpected:#?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
