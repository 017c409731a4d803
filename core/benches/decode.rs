//! Decoding throughput: the framer against pre-split lines, and the message model against a
//! bare `serde_json::Value` parse of the same bytes.
//!
//! Criterion measures each variant; at the end the variants run again, interleaved round by
//! round, and the ratios between them are printed, since on a shared machine only ratios taken
//! side by side mean anything.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::Value;
use tether_core::{decode, Config, Connection, Event, Message};

const CHUNK: usize = 64 * 1024;

/// A workload: the bytes of a stream, and the same frames pre-split.
struct Workload {
    name: &'static str,
    stream: Vec<u8>,
    frames: Vec<(usize, usize)>,
}

impl Workload {
    fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().map(|&(s, e)| &self.stream[s..e])
    }
}

fn build(name: &'static str, count: usize, make: impl Fn(usize) -> String) -> Workload {
    let mut stream = Vec::new();
    let mut frames = Vec::with_capacity(count);
    for i in 0..count {
        let start = stream.len();
        stream.extend_from_slice(make(i).as_bytes());
        frames.push((start, stream.len()));
        stream.push(b'\n');
    }
    Workload {
        name,
        stream,
        frames,
    }
}

fn small() -> Workload {
    // About 110 bytes each, like a progress or log notification.
    build("small-1M", 1_000_000, |i| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"token":"t-{:06}","progress":{},"total":100}}}}"#,
            i % 1_000_000,
            i % 100
        )
    })
}

fn large() -> Workload {
    let text = "x".repeat(64 * 1024 - 64);
    build("large-64K", 5_000, move |i| {
        format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{"text":"{text}"}}}}"#)
    })
}

/// The whole path: 64 KiB chunks into a connection, every event polled.
fn framed(w: &Workload) -> usize {
    let mut conn = Connection::<Message>::new(Config::new()).unwrap();
    let mut n = 0;
    for chunk in w.stream.chunks(CHUNK) {
        conn.handle_input(chunk).unwrap();
        while let Some(event) = conn.poll_event() {
            if let Event::Message(m) = event {
                black_box(m);
                n += 1;
            }
        }
    }
    n
}

/// Decoding the same frames, already split.
fn presplit(w: &Workload) -> usize {
    let mut n = 0;
    for f in w.frames() {
        black_box(decode::<Message>(f).unwrap());
        n += 1;
    }
    n
}

/// The reference: parsing the same frames into a `serde_json::Value`.
fn value(w: &Workload) -> usize {
    let mut n = 0;
    for f in w.frames() {
        black_box(serde_json::from_slice::<Value>(f).unwrap());
        n += 1;
    }
    n
}

/// The common approach, for scale: an untagged enum tried shape by shape.
#[derive(serde::Deserialize)]
#[serde(untagged)]
#[allow(dead_code, reason = "the fields are only decoded, as a baseline")]
enum Untagged {
    Request {
        jsonrpc: String,
        id: Value,
        method: String,
        params: Option<Value>,
    },
    Notification {
        jsonrpc: String,
        method: String,
        params: Option<Value>,
    },
    Response {
        jsonrpc: String,
        id: Value,
        result: Option<Value>,
        error: Option<Value>,
    },
}

fn untagged(w: &Workload) -> usize {
    let mut n = 0;
    for f in w.frames() {
        black_box(serde_json::from_slice::<Untagged>(f).unwrap());
        n += 1;
    }
    n
}

type Variant = (&'static str, fn(&Workload) -> usize);

const VARIANTS: [Variant; 4] = [
    ("framed", framed),
    ("presplit", presplit),
    ("value", value),
    ("untagged", untagged),
];

fn criterion_benches(c: &mut Criterion, w: &Workload) {
    let mut group = c.benchmark_group(w.name);
    group.throughput(Throughput::Bytes(w.stream.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for (name, f) in VARIANTS {
        group.bench_with_input(BenchmarkId::from_parameter(name), w, |b, w| {
            b.iter(|| assert_eq!(f(w), w.frames.len()))
        });
    }
    group.finish();
}

/// Runs every variant once per round, interleaved, and prints the ratios of their best rounds.
#[allow(clippy::disallowed_methods, reason = "a benchmark times real runs")]
fn ratios(w: &Workload, rounds: usize) {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in VARIANTS.iter().enumerate() {
            let start = Instant::now();
            assert_eq!(f(w), w.frames.len());
            times[i].push(start.elapsed());
        }
    }
    // The fastest round of each is the one least disturbed by whatever else the machine was
    // doing; on a shared machine it is the steadiest estimate of the cost itself.
    let m: Vec<f64> = times
        .iter()
        .map(|v| v.iter().min().unwrap().as_secs_f64())
        .collect();
    let mb = w.stream.len() as f64 / 1e6;
    println!(
        "\n{} ({:.0} MB, {} frames, best of {rounds} interleaved rounds)",
        w.name,
        mb,
        w.frames.len()
    );
    for (i, (name, _)) in VARIANTS.iter().enumerate() {
        println!("  {name:<9} {:>8.1} MB/s", mb / m[i]);
    }
    println!(
        "  framer ratio  presplit/framed = {:.3}  (goal >= 0.95)",
        m[1] / m[0]
    );
    println!(
        "  model ratio   value/presplit  = {:.3}  (goal >= 1.0)",
        m[2] / m[1]
    );
    println!("  for scale     untagged/value  = {:.3}", m[3] / m[2]);
}

fn main() {
    let workloads = [small(), large()];
    let mut c = Criterion::default().configure_from_args();
    for w in &workloads {
        criterion_benches(&mut c, w);
    }
    c.final_summary();
    for w in &workloads {
        ratios(w, 11);
    }
}
