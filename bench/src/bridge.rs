//! The bridge's MCP paths, measured from outside as an HTTP client reaches them: stateless
//! (2026-07-28) requests through a pool of one and of four programs, against legacy sessions
//! (an `initialize`, then a program of the session's own) in the same run, and what idle
//! `subscriptions/listen` streams cost the bridge in memory.
//!
//! The program behind the bridge is [`peer`], this binary's own small MCP server (`tether-bench
//! mcp-peer`): it answers at once, so that the figures are the bridge's and not a slow
//! program's. The client is in this process, on smol and hyper, the same for every
//! measurement: only the bridge's runtime and its mode change between rows.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use serde_json::{json, Value};
use tether_io::HyperIo;

/// The modern revision every stateless request names.
const MODERN: &str = "2026-07-28";

/// The legacy revision the sessions negotiate.
const LEGACY: &str = "2025-06-18";

/// How the bridge serves the measured requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Stateless requests through `--pool N` programs.
    Pool(usize),
    /// One legacy session (and program) per client.
    Legacy,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Legacy, Mode::Pool(1), Mode::Pool(4)];

    fn title(self) -> String {
        match self {
            Mode::Pool(n) => format!("stateless, `--pool {n}`"),
            Mode::Legacy => "legacy sessions, a program each".to_owned(),
        }
    }
}

/// How much is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Clients at once, each on its own connection.
    clients: usize,
    /// Requests each client makes, one after the other.
    requests: usize,
    /// Idle listen streams held open for the memory figure.
    streams: usize,
}

impl Load {
    pub(crate) const FULL: Load = Load {
        clients: 16,
        requests: 500,
        streams: 1000,
    };
    pub(crate) const QUICK: Load = Load {
        clients: 4,
        requests: 50,
        streams: 100,
    };
}

/// `tether-bench mcp-peer`: an MCP server on stdin and stdout that speaks both eras and answers
/// every request at once: `server/discover`, `initialize`, `tools/list`, `tools/call` (echoing
/// its `text` argument), and `subscriptions/listen` (acknowledged, then left open).
pub(crate) fn peer() -> io::Result<()> {
    let stdin = io::stdin().lock();
    let mut out = io::BufWriter::new(io::stdout().lock());
    for line in stdin.lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) else {
            continue;
        };
        let params = &message["params"];
        let result = match method {
            "server/discover" => json!({
                "supportedVersions": [MODERN],
                "capabilities": {"tools": {"listChanged": true}},
                "resultType": "complete",
            }),
            "initialize" => json!({
                "protocolVersion": params["protocolVersion"].as_str().unwrap_or(LEGACY),
                "capabilities": {"tools": {"listChanged": true}},
                "serverInfo": {"name": "tether-bench", "version": "0"},
            }),
            "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
            "tools/call" => json!({
                "content": [{"type": "text", "text": params["arguments"]["text"].clone()}],
                "isError": false,
            }),
            "subscriptions/listen" => {
                let ack = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/subscriptions/acknowledged",
                    "params": {
                        "notifications": params["notifications"].clone(),
                        "_meta": {"io.modelcontextprotocol/subscriptionId": id.clone()},
                    },
                });
                writeln!(out, "{ack}")?;
                out.flush()?;
                continue;
            }
            _ => {
                let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}});
                writeln!(out, "{error}")?;
                out.flush()?;
                continue;
            }
        };
        writeln!(
            out,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "result": result})
        )?;
        out.flush()?;
    }
    Ok(())
}

/// A bridge running the peer, ended (SIGTERM, then reaped) when dropped.
struct Bridge {
    child: Child,
    host: String,
}

impl Bridge {
    fn start(runtime: &str, mode: Mode) -> io::Result<Bridge> {
        let exe = std::env::current_exe()?;
        let tether = exe.with_file_name("tether");
        let mut command = Command::new(&tether);
        command.args([
            "bridge",
            "--runtime",
            runtime,
            "--auth",
            "none",
            "--stderr",
            "null",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "4096",
        ]);
        if let Mode::Pool(n) = mode {
            command.args(["--pool", &n.to_string()]);
        }
        command.arg("--").arg(&exe).arg("mcp-peer");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| io::Error::other(format!("{}: {err}", tether.display())))?;
        let mut stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("no stdout"))?,
        );
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let listening: Value = serde_json::from_str(&line)
            .map_err(|err| io::Error::other(format!("bridge said {line:?}: {err}")))?;
        let host = listening["addr"]
            .as_str()
            .ok_or_else(|| io::Error::other(format!("no address in {line:?}")))?
            .to_owned();
        drain(stdout);
        Ok(Bridge { child, host })
    }

    /// The bridge's resident memory now, in KiB.
    fn rss_kib(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS"))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // SAFETY: a plain signal to our own child, which is not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Reads the bridge's later lines, so that its output never fills.
fn drain(mut stdout: BufReader<ChildStdout>) {
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        while matches!(stdout.read_until(b'\n', &mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
    });
}

/// One HTTP/1.1 connection to the bridge.
async fn connect(host: &str) -> io::Result<SendRequest<Full<Bytes>>> {
    let stream = smol::net::TcpStream::connect(host).await?;
    let (sender, connection) = http1::handshake(HyperIo(stream))
        .await
        .map_err(io::Error::other)?;
    smol::spawn(async move {
        let _ = connection.await;
    })
    .detach();
    Ok(sender)
}

/// Sends a POST of `body` to `/mcp`, with `headers`, and waits for the response's head.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> io::Result<hyper::Response<hyper::body::Incoming>> {
    let mut request = Request::post(format!("http://{host}/mcp"))
        .header("host", host)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(io::Error::other)?;
    sender.ready().await.map_err(io::Error::other)?;
    sender.send_request(request).await.map_err(io::Error::other)
}

/// A POST of `body` to `/mcp`, with `headers`; the status, a header's value, and the body read
/// whole (an event stream ends after the answer).
async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> io::Result<(u16, Option<String>, Bytes)> {
    let response = send(sender, host, headers, body).await?;
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    Ok((status, session, body))
}

/// A `tools/call` of `echo` with id `id`, modern (its `_meta` and mirrored headers) or not.
fn call(id: usize, modern: bool) -> Value {
    let mut params = json!({"name": "echo", "arguments": {"text": format!("hello {id}")}});
    if modern {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        });
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

/// Checks that an answer came: a 2xx status and a result in the body.
fn answered(what: &str, (status, _, body): &(u16, Option<String>, Bytes)) -> io::Result<()> {
    if (200..300).contains(status) && has_result(body) {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what}: {status} {}",
        String::from_utf8_lossy(body)
    )))
}

fn has_result(body: &[u8]) -> bool {
    body.windows(8).any(|w| w == b"\"result\"")
}

/// One client's work: `requests` calls, stateless, or in a session of its own.
async fn client(host: String, mode: Mode, requests: usize) -> io::Result<()> {
    let mut sender = connect(&host).await?;
    let mut session = None;
    if mode == Mode::Legacy {
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": {},
            "clientInfo": {"name": "tether-bench", "version": "0"}}});
        let reply = post(&mut sender, &host, &[], &initialize).await?;
        answered("initialize", &reply)?;
        let id = reply.1.ok_or_else(|| io::Error::other("no session id"))?;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let headers = [
            ("mcp-session-id", id.as_str()),
            ("mcp-protocol-version", LEGACY),
        ];
        post(&mut sender, &host, &headers, &initialized).await?;
        session = Some(id);
    }
    for i in 1..=requests {
        let reply = match &session {
            Some(id) => {
                let headers = [
                    ("mcp-session-id", id.as_str()),
                    ("mcp-protocol-version", LEGACY),
                ];
                post(&mut sender, &host, &headers, &call(i, false)).await?
            }
            None => {
                let headers = [
                    ("mcp-protocol-version", MODERN),
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "echo"),
                ];
                post(&mut sender, &host, &headers, &call(i, true)).await?
            }
        };
        answered("tools/call", &reply)?;
    }
    if let Some(id) = session {
        let request = Request::delete(format!("http://{host}/mcp"))
            .header("host", &host)
            .header("mcp-session-id", id)
            .body(Full::new(Bytes::new()))
            .map_err(io::Error::other)?;
        sender.ready().await.map_err(io::Error::other)?;
        sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// Requests per second through a fresh bridge: every client at once, sessions (for legacy)
/// and their programs' starts included.
fn throughput(runtime: &str, mode: Mode, load: Load) -> io::Result<f64> {
    let bridge = Bridge::start(runtime, mode)?;
    let host = bridge.host.clone();
    let start = Instant::now();
    smol::block_on(async {
        let tasks: Vec<_> = (0..load.clients)
            .map(|_| smol::spawn(client(host.clone(), mode, load.requests)))
            .collect();
        for task in tasks {
            task.await?;
        }
        io::Result::Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    drop(bridge);
    Ok((load.clients * load.requests) as f64 / secs)
}

/// The bridge's memory with no stream, then with `streams` idle listen streams open (each
/// answered with its 200 head), in KiB.
fn listen_memory(runtime: &str, streams: usize) -> io::Result<(u64, u64)> {
    let bridge = Bridge::start(runtime, Mode::Pool(1))?;
    let host = bridge.host.clone();
    smol::block_on(async {
        // One request first, so that the pool's program is up and probed before the baseline.
        let mut sender = connect(&host).await?;
        let headers = [
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ];
        answered(
            "tools/call",
            &post(&mut sender, &host, &headers, &call(0, true)).await?,
        )?;
        let before = bridge.rss_kib()?;
        let mut open = Vec::with_capacity(streams);
        for i in 0..streams {
            let mut sender = connect(&host).await?;
            let body = json!({"jsonrpc": "2.0", "id": i, "method": "subscriptions/listen", "params": {
                "notifications": {"toolsListChanged": true},
                "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                          "io.modelcontextprotocol/clientCapabilities": {}}}});
            let headers = [
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "subscriptions/listen"),
            ];
            let response = send(&mut sender, &host, &headers, &body).await?;
            if response.status() != 200 {
                return Err(io::Error::other(format!(
                    "listen stream {i}: {}",
                    response.status()
                )));
            }
            open.push((sender, response));
        }
        let after = bridge.rss_kib()?;
        drop(open);
        Ok((before, after))
    })
}

/// The bridge's section of the report: each mode on each runtime, `rounds` times, medians.
pub(crate) fn section(load: Load, rounds: usize) -> io::Result<String> {
    let runtimes = ["tokio", "smol"];
    let start = crate::load::Snapshot::take();
    let mut figures = vec![vec![Vec::new(); runtimes.len()]; Mode::ALL.len()];
    for round in 0..rounds {
        for (m, mode) in Mode::ALL.into_iter().enumerate() {
            for (r, runtime) in runtimes.into_iter().enumerate() {
                let rps = throughput(runtime, mode, load)?;
                eprintln!(
                    "round {}/{rounds}  bridge {:<34} {runtime:<6} {rps:>9.0} requests/s",
                    round + 1,
                    mode.title()
                );
                figures[m][r].push(rps);
            }
        }
    }
    let busy = crate::load::report(&start, &crate::load::Snapshot::take());
    let mut md = format!(
        "\n### The bridge: MCP requests\n\n{}{} clients at once, each on its own connection, each \
         making {} `tools/call` requests one after the other (a legacy client first opens its \
         session: `initialize`, a program of its own, `notifications/initialized`; and closes it \
         after). The program is `tether-bench mcp-peer`, which answers at once. Requests per \
         second, median of {rounds}; the ratio is against legacy sessions on the same \
         runtime.\n\n| mode | tether-tokio | tether-smol |\n|---|---|---|\n",
        busy, load.clients, load.requests
    );
    let medians: Vec<Vec<f64>> = figures
        .iter()
        .map(|by_runtime| by_runtime.iter().map(|v| median(v)).collect())
        .collect();
    let legacy = &medians[0];
    for (m, mode) in Mode::ALL.into_iter().enumerate() {
        let cells: Vec<String> = medians[m]
            .iter()
            .zip(legacy)
            .map(|(rps, base)| format!("{rps:.0}/s ({:.2}×)", rps / base))
            .collect();
        let _ = writeln!(md, "| {} | {} |", mode.title(), cells.join(" | "));
    }
    let _ = writeln!(
        md,
        "\nIdle `subscriptions/listen` streams: {} held open at once (each answered with its \
         200 head), the bridge's resident memory before and after.\n\n| runtime | before | \
         after | per stream |\n|---|---|---|---|",
        load.streams
    );
    for runtime in runtimes {
        let (before, after) = listen_memory(runtime, load.streams)?;
        eprintln!("bridge listen streams {runtime}: {before} KiB -> {after} KiB");
        let per = after.saturating_sub(before) as f64 / load.streams as f64;
        let _ = writeln!(
            md,
            "| tether-{runtime} | {:.1} MiB | {:.1} MiB | {per:.1} KiB |",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
    }
    md.push('\n');
    Ok(md)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}
