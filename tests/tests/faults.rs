//! The fault catalogue: children that die, hang, stop, fork and escape, owners that panic,
//! runtimes that go away. After every fault, under tokio and smol: no process of the tree alive,
//! no zombie, and this process back to the file descriptors it had before.
//!
//! File descriptor counts are process-wide, so the whole catalogue is one test that runs its
//! faults one after another.

mod support;

use std::time::Instant;

use support::*;

macro_rules! catalogue {
    ($($name:ident),* $(,)?) => {
        #[test]
        fn fault_catalogue() {
            become_subreaper();
            let tokio = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            $(
                audit(concat!("tokio: ", stringify!($name)), || {
                    tokio.block_on(guard::<tether_tokio::Tokio, _>(
                        faults::$name::<tether_tokio::Tokio>(),
                    ))
                });
            )*
            audit("tokio: runtime_dropped_with_connections_open", faults::tokio_runtime_dropped);
            // smol's reactor opens its descriptors once, on first use: before the baselines.
            smol::block_on(smol::Timer::after(std::time::Duration::from_millis(1)));
            $(
                audit(concat!("smol: ", stringify!($name)), || {
                    smol::block_on(guard::<tether_smol::Smol, _>(
                        faults::$name::<tether_smol::Smol>(),
                    ))
                });
            )*
            audit("smol: executor_dropped_with_connections_open", faults::smol_executor_dropped);
        }
    };
}

catalogue!(
    killed_with_sigkill_mid_message,
    ignoring_sigterm_and_stdin_eof,
    grandchildren_in_the_group,
    double_forked_grandchildren_in_the_group,
    leader_exits_leaving_a_grandchild_holding_stdout,
    stopped_with_sigstop,
    exits_while_we_write,
    dropped_while_flooding,
    owning_task_panics,
    spawn_fails,
);

/// Runs one fault, then waits until this process has no child left and no more descriptors
/// open than before it.
fn audit(name: &str, fault: impl FnOnce()) {
    let fds = fd_count();
    let start = Instant::now();
    fault();
    assert_back_to(fds);
    eprintln!("{name}: ok in {:?}", start.elapsed());
}

mod faults {
    use std::future::pending;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use rustix::process::{kill_process, Pid, Signal};
    use serde_json::json;
    use tether_core::MalformedKind;
    use tether_io::{Connection, Event, Message, Runtime, SendError};

    use crate::support::*;

    type Conn<R> = Connection<Message, R>;

    fn spawn_peer<R: Runtime>() -> Conn<R> {
        Conn::<R>::spawn(peer(), options()).expect("spawn the peer")
    }

    fn signal(pid: u32, signal: Signal) {
        kill_process(Pid::from_raw(pid as i32).unwrap(), signal).unwrap();
    }

    /// Every grandchild kind the peer can start: plain, ignoring `SIGTERM`, and double-forked
    /// (re-parented to us) ignoring `SIGTERM`.
    async fn grandchildren<R: Runtime>(conn: &mut Conn<R>) -> Vec<u32> {
        let mut all = Vec::new();
        for (id, params) in [
            json!({"count": 2}),
            json!({"count": 2, "ignore_term": true}),
            json!({"count": 2, "ignore_term": true, "detach": true}),
        ]
        .into_iter()
        .enumerate()
        {
            all.extend(pids(&call(conn, 100 + id as i64, "spawn", params).await));
        }
        for &p in &all {
            assert!(matches!(state(p), Some('S' | 'R')), "grandchild {p} runs");
        }
        all
    }

    pub(crate) async fn killed_with_sigkill_mid_message<R: Runtime>() {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tether-hostile"));
        command.arg("partial_and_hang");
        let mut conn = Conn::<R>::spawn(command, options()).unwrap();
        let pid = conn.pid().unwrap();
        assert!(matches!(
            conn.recv().await,
            Some(Event::Message(Message::Notification(_)))
        ));
        // The partial message was in the same write as the tick: it is in the pipe.
        signal(pid, Signal::KILL);
        match conn.recv().await {
            Some(Event::Malformed(m)) => {
                assert!(matches!(m.kind, MalformedKind::InvalidJson { .. }), "{m}");
                assert_eq!(m.excerpt, "{\"jsonrpc\":\"2.0\",\"method\":\"cu");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.recv().await, Some(Event::Disconnected(None)));
        assert_eq!(conn.recv().await, None);
        let status = conn.shutdown().await.unwrap();
        assert_eq!((status.code, status.signal), (None, Some(9)), "{status}");
        assert_gone(pid);
    }

    pub(crate) async fn ignoring_sigterm_and_stdin_eof<R: Runtime>() {
        let mut conn = spawn_peer::<R>();
        let pid = conn.pid().unwrap();
        call(&mut conn, 1, "ignore_term", json!({"stay": true})).await;
        let start = Instant::now();
        let status = conn.shutdown().await.unwrap();
        // Neither the closed stdin nor SIGTERM ended it: only the kill after both graces.
        assert_eq!(status.signal, Some(9), "{status}");
        assert!(
            start.elapsed() >= Duration::from_millis(600),
            "{:?}",
            start.elapsed()
        );
        assert_gone(pid);
    }

    pub(crate) async fn grandchildren_in_the_group<R: Runtime>() {
        let mut conn = spawn_peer::<R>();
        let pid = conn.pid().unwrap();
        let all = grandchildren(&mut conn).await;
        assert_eq!(conn.shutdown().await.unwrap().code, Some(0));
        assert_gone(pid);
        for p in all {
            assert_dead(p);
        }
    }

    pub(crate) async fn double_forked_grandchildren_in_the_group<R: Runtime>() {
        let mut conn = spawn_peer::<R>();
        let pid = conn.pid().unwrap();
        let detached = json!({"count": 4, "ignore_term": true, "detach": true});
        let orphans = pids(&call(&mut conn, 1, "spawn", detached).await);
        // Their parent is gone: they are ours now (we are the subreaper), yet still in the
        // child's group.
        let me = std::process::id();
        for &p in &orphans {
            assert!(children().contains(&p), "orphan {p} came to {me}");
        }
        call(&mut conn, 2, "ignore_term", json!({"stay": true})).await;
        assert_eq!(conn.shutdown().await.unwrap().signal, Some(9));
        assert_gone(pid);
        for p in orphans {
            assert_dead(p);
        }
    }

    pub(crate) async fn leader_exits_leaving_a_grandchild_holding_stdout<R: Runtime>() {
        let mut conn = spawn_peer::<R>();
        let pid = conn.pid().unwrap();
        let holder = json!({"count": 1, "hold_stdout": true, "ignore_term": true});
        let grandchild = pids(&call(&mut conn, 1, "spawn", holder).await)[0];
        conn.send(&request(2, "exit", json!({"code": 7})))
            .await
            .unwrap();
        assert_eq!(conn.recv().await, Some(Event::Disconnected(None)));
        assert_eq!(conn.wait().await.unwrap().code, Some(7));
        assert_dead(grandchild);
        assert_eq!(conn.shutdown().await.unwrap().code, Some(7));
        assert_gone(pid);
    }

    pub(crate) async fn stopped_with_sigstop<R: Runtime>() {
        let mut conn = spawn_peer::<R>();
        let pid = conn.pid().unwrap();
        let all = grandchildren(&mut conn).await;
        signal(pid, Signal::STOP);
        wait_until(|| state(pid) == Some('T'), "the child to stop");
        // A stopped child reads nothing and cannot handle SIGTERM; only the kill ends it.
        let status = conn.shutdown().await.unwrap();
        assert_eq!(status.signal, Some(9), "{status}");
        assert_gone(pid);
        for p in all {
            assert_dead(p);
        }
    }

    pub(crate) async fn exits_while_we_write<R: Runtime>() {
        let mut conn = Conn::<R>::spawn(peer(), options().send_budget(64 * 1024)).unwrap();
        let pid = conn.pid().unwrap();
        conn.send(&request(1, "exit", json!({"code": 4})))
            .await
            .unwrap();
        // Keep sending 1 MiB requests: once the child is gone, a send fails with a typed
        // error instead of hanging or panicking (writing to the closed pipe is EPIPE).
        let big = request(2, "echo", json!(["y".repeat(1 << 20)]));
        let error = loop {
            if let Err(e) = conn.send(&big).await {
                break e;
            }
        };
        assert!(matches!(error, SendError::Disconnected), "{error:?}");
        assert!(matches!(conn.recv().await, Some(Event::Disconnected(_))));
        assert_eq!(conn.recv().await, None);
        assert_eq!(conn.shutdown().await.unwrap().code, Some(4));
        assert_gone(pid);
    }

    pub(crate) async fn dropped_while_flooding<R: Runtime>() {
        let mut conn = spawn_peer::<R>();
        let pid = conn.pid().unwrap();
        let all = grandchildren(&mut conn).await;
        conn.send(&request(
            1,
            "notify",
            json!({"count": 1_000_000, "size": 100}),
        ))
        .await
        .unwrap();
        assert!(matches!(
            conn.recv().await,
            Some(Event::Message(Message::Notification(_)))
        ));
        wait_until(|| blocked_writing(pid), "the flooding child to block");
        drop(conn);
        assert_gone(pid);
        for p in all {
            assert_dead(p);
        }
    }

    pub(crate) async fn owning_task_panics<R: Runtime>() {
        let (tx, rx) = smol::channel::bounded(1);
        R::spawn(async move {
            let mut conn = spawn_peer::<R>();
            let mut all = grandchildren(&mut conn).await;
            call(&mut conn, 1, "ignore_term", json!({"stay": true})).await;
            all.push(conn.pid().unwrap());
            tx.send(all).await.unwrap();
            panic!("the task owning the connection panics (on purpose)");
        });
        let mut all = rx.recv().await.unwrap();
        let pid = all.pop().unwrap();
        // Unwinding dropped the connection: its ladder takes the tree.
        assert_gone(pid);
        for p in all {
            assert_dead(p);
        }
    }

    pub(crate) async fn spawn_fails<R: Runtime>() {
        let error = Conn::<R>::spawn(Command::new("/nonexistent/tether-peer"), options())
            .expect_err("no such program");
        assert!(
            error.to_string().contains("/nonexistent/tether-peer"),
            "{error}"
        );
    }

    /// Three connections with their trees: two owned by tasks still pending when the runtime
    /// is dropped, one owned here and dropped only after the runtime is gone.
    pub(crate) fn tokio_runtime_dropped() {
        type Tokio = tether_tokio::Tokio;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (kept, mut leaders, all) = runtime.block_on(guard::<Tokio, _>(async {
            let (mut leaders, mut all) = (Vec::new(), Vec::new());
            for _ in 0..2 {
                let mut conn = spawn_peer::<Tokio>();
                all.extend(grandchildren(&mut conn).await);
                leaders.push(conn.pid().unwrap());
                tokio::spawn(async move {
                    let _owned = conn;
                    pending::<()>().await;
                });
            }
            let mut kept = spawn_peer::<Tokio>();
            all.extend(grandchildren(&mut kept).await);
            (kept, leaders, all)
        }));
        leaders.push(kept.pid().unwrap());
        drop(runtime);
        drop(kept);
        gone(&leaders, all);
    }

    /// The same with a smol executor of our own, dropped with its tasks still pending.
    pub(crate) fn smol_executor_dropped() {
        type Smol = tether_smol::Smol;
        let executor = smol::Executor::new();
        let (tx, rx) = smol::channel::unbounded();
        for _ in 0..3 {
            let tx = tx.clone();
            executor
                .spawn(async move {
                    let mut conn = spawn_peer::<Smol>();
                    let all = grandchildren(&mut conn).await;
                    tx.send((conn.pid().unwrap(), all)).await.unwrap();
                    pending::<()>().await;
                })
                .detach();
        }
        let (leaders, all): (Vec<u32>, Vec<Vec<u32>>) =
            smol::block_on(executor.run(guard::<Smol, _>(async {
                let mut trees = Vec::new();
                for _ in 0..3 {
                    trees.push(rx.recv().await.unwrap());
                }
                trees.into_iter().unzip()
            })));
        drop(executor);
        gone(&leaders, all.concat());
    }

    /// The leaders first (their watchers reap them), then their descendants, which came to us
    /// as their parents died.
    fn gone(leaders: &[u32], descendants: Vec<u32>) {
        for &p in leaders {
            assert_gone(p);
        }
        for p in descendants {
            assert_dead(p);
        }
    }
}
