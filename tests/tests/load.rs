//! Cycles and load, under tokio and smol: many spawn → exchange → shutdown cycles, and many
//! children at once each exchanging many messages. Afterwards this process has no child left
//! and no more file descriptors than before.
//!
//! `light_load` runs in the default suite; `heavy_load` (1,000 cycles, 200 children × 1,000
//! messages) is opt-in: `cargo test -p tether-tests --release --test load -- --ignored
//! --nocapture` prints its figures.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::*;

/// Descriptor and child counts are process-wide: the two tests never overlap.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn light_load() {
    load(50, 20, 1000);
}

#[test]
#[ignore = "heavy: run with --release --test load -- --ignored"]
fn heavy_load() {
    load(1000, 200, 1000);
}

fn load(cycles: usize, children: usize, messages: i64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // smol's reactor opens its descriptors once, on first use: before the baseline.
    smol::block_on(smol::Timer::after(Duration::from_millis(1)));
    let fds = fd_count();
    for runtime in ["tokio", "smol"] {
        let start = Instant::now();
        match runtime {
            "tokio" => tokio.block_on(guard::<tether_tokio::Tokio, _>(scenarios::cycles::<
                tether_tokio::Tokio,
            >(cycles))),
            _ => smol::block_on(guard::<tether_smol::Smol, _>(scenarios::cycles::<
                tether_smol::Smol,
            >(cycles))),
        }
        let took = start.elapsed();
        assert_back_to(fds);
        report(runtime, &format!("{cycles} cycles"), took);

        let start = Instant::now();
        match runtime {
            "tokio" => tokio.block_on(guard::<tether_tokio::Tokio, _>(scenarios::crowd::<
                tether_tokio::Tokio,
            >(
                children, messages
            ))),
            _ => smol::block_on(guard::<tether_smol::Smol, _>(scenarios::crowd::<
                tether_smol::Smol,
            >(
                children, messages
            ))),
        }
        let took = start.elapsed();
        assert_back_to(fds);
        report(
            runtime,
            &format!("{children} children x {messages} messages"),
            took,
        );
    }
}

fn report(runtime: &str, what: &str, took: Duration) {
    eprintln!(
        "{runtime}: {what} in {took:.2?}; peak RSS so far {} KiB; back to {} fds, no child",
        peak_rss_kib(),
        fd_count()
    );
}

mod scenarios {
    use serde_json::json;
    use tether_io::{Connection, Event, Id, Message, Runtime};

    use crate::support::*;

    type Conn<R> = Connection<Message, R>;

    /// Spawn → one exchange → shutdown, `n` times in a row; each child is reaped by the time
    /// its shutdown returns.
    pub(crate) async fn cycles<R: Runtime>(n: usize) {
        for i in 0..n {
            let mut conn = Conn::<R>::spawn(peer(), options()).unwrap();
            assert_eq!(call(&mut conn, 1, "echo", json!([i])).await, json!([i]));
            assert_eq!(conn.shutdown().await.unwrap().code, Some(0), "cycle {i}");
            assert_eq!(children(), Vec::<u32>::new(), "after cycle {i}");
        }
    }

    /// `children` peers at once, each sent `messages` pipelined requests whose responses must
    /// come back in order, then all shut down.
    pub(crate) async fn crowd<R: Runtime>(children: usize, messages: i64) {
        let (tx, rx) = smol::channel::unbounded();
        for c in 0..children {
            let tx = tx.clone();
            let mut conn = Conn::<R>::spawn(peer(), options()).unwrap();
            R::spawn(async move {
                let sender = conn.sender();
                let send_all = async move {
                    for i in 0..messages {
                        sender
                            .send(&request(i, "echo", json!([c, i])))
                            .await
                            .unwrap();
                    }
                };
                let receive_all = async {
                    for i in 0..messages {
                        match conn.recv().await {
                            Some(Event::Message(Message::Response(r))) => {
                                assert_eq!(r.id, Id::from(i));
                                assert_eq!(r.result.unwrap(), json!([c, i]));
                            }
                            other => panic!("child {c}, message {i}: {other:?}"),
                        }
                    }
                };
                futures_lite::future::zip(send_all, receive_all).await;
                let status = conn.shutdown().await.unwrap();
                tx.send(status.code).await.unwrap();
            });
        }
        drop(tx);
        let mut done = 0;
        while let Ok(code) = rx.recv().await {
            assert_eq!(code, Some(0));
            done += 1;
        }
        // A task that panicked dropped its sender without a status.
        assert_eq!(done, children);
    }
}
