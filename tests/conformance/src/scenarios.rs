//! The scenarios, each generic over the runtime and run by [`suite!`](crate::suite) as a test
//! of its own. Each takes the [`Peer`] to spawn, whether it spawns one or not, so that the suite
//! calls them all alike.

use std::sync::PoisonError;
use std::time::Duration;

use futures_lite::{future, StreamExt};
use serde_json::json;
use tether_io::async_tungstenite::{self, tungstenite::Message as WsMessage};
use tether_io::{
    Connection, DisconnectKind, Event, Framing, Id, Listener, MalformedKind, Message, Options,
    Runtime, SendError, Verbatim,
};

use crate::helpers::*;
use crate::Peer;

type Conn<R> = Connection<Message, R>;

fn spawn_peer<R: Runtime>(peer: &Peer, options: Options) -> Conn<R> {
    Conn::<R>::spawn(peer.command(), options).expect("spawn the peer")
}

/// [`Runtime::spawn`] runs its task detached (nothing the caller drops cancels it) and on
/// threads of its own: the other scenarios block the calling thread while watching children
/// through `/proc`, and need the connection's tasks to go on meanwhile.
pub async fn spawned_tasks_run_detached_beside_a_blocked_caller<R: Runtime>(_: &Peer) {
    let (done, finished) = std::sync::mpsc::channel();
    R::spawn(async move {
        // A spawned task can use the runtime's timer.
        R::sleep(Duration::ZERO).await;
        done.send(()).expect("the scenario waits");
    });
    // A cancelled task drops `done` (disconnected); one that only runs on this thread never
    // runs (timeout).
    assert_eq!(
        finished.recv_timeout(GUARD),
        Ok(()),
        "the spawned task must run to completion while this thread blocks"
    );
}

/// [`Runtime::sleep`] completes for a zero duration, and takes `Duration::MAX` as "never"
/// without panicking or wrapping around.
pub async fn sleep_takes_zero_and_huge_durations<R: Runtime>(_: &Peer) {
    // A hang here is reported by the guard.
    R::sleep(Duration::ZERO).await;
    let never = async {
        R::sleep(Duration::MAX).await;
        "Duration::MAX"
    };
    let soon = async {
        R::sleep(Duration::from_millis(1)).await;
        "1 ms"
    };
    assert_eq!(
        future::or(never, soon).await,
        "1 ms",
        "which sleep ended first"
    );
}

/// A machine for the driver's scenario: one deadline, and how often it fired. A quiet one
/// behaves as the gateway does: it names whom to wake (everyone, once it fired; nobody
/// otherwise) and does not tell when its deadline moves, so the driver's timer has only its
/// own looks to go by.
#[derive(Debug, Default)]
struct Countdown {
    deadline: Option<std::time::Instant>,
    /// The deadlines the driver's timer has looked at, in order, and a notice of each look.
    looked: std::sync::Mutex<Vec<Option<std::time::Instant>>>,
    look: event_listener::Event,
    fired: u32,
    finished: bool,
    quiet: bool,
    woken: bool,
}

impl tether_io::Machine for Countdown {
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        let mut looked = self.looked.lock().unwrap_or_else(PoisonError::into_inner);
        looked.push(self.deadline);
        self.look.notify(usize::MAX);
        self.deadline
    }
    fn handle_timeout(&mut self, now: std::time::Instant) {
        if self.deadline.is_some_and(|at| at <= now) {
            self.deadline = None;
            self.fired += 1;
            self.woken = true;
        }
    }
    fn is_finished(&self) -> bool {
        self.finished
    }
    fn poll_wake(&mut self) -> Option<tether_io::Wake> {
        std::mem::take(&mut self.woken).then_some(tether_io::Wake::All)
    }
    fn names_wakes(&self) -> bool {
        self.quiet
    }
}

/// [`tether_io::Driver`] fires a machine's deadline once it has passed, including one set
/// while the timer task sleeps towards a later one (after changes that moved nothing, for a
/// machine that does not tell), and wakes whoever waits on the result; driving a
/// [`Gateway`](tether_core::gateway::Gateway), a connection that sends no request is dropped
/// at its handshake deadline.
pub async fn driver_fires_deadlines_and_wakes_waiters<R: Runtime>(_: &Peer) {
    for quiet in [false, true] {
        let driver = tether_io::Driver::start::<R>(Countdown {
            quiet,
            ..Countdown::default()
        });
        let far = tether_io::now() + Duration::from_secs(3600);
        driver.with(|m, _| m.deadline = Some(far));
        // An earlier deadline, set while the timer sleeps towards the far one (once it has
        // looked at it), after changes that did not move it.
        loop {
            let (seen, look) = driver.with(|m, _| {
                let looked = m.looked.lock().unwrap_or_else(PoisonError::into_inner);
                (looked.contains(&Some(far)), m.look.listen())
            });
            if seen {
                break;
            }
            look.await;
        }
        for _ in 0..100 {
            driver.with(|m, _| m.deadline = Some(far));
        }
        let set = tether_io::now();
        driver.with(|m, now| m.deadline = Some(now + Duration::from_millis(20)));
        driver.wait(|m, _| (m.fired == 1).then_some(())).await;
        assert!(
            tether_io::now().duration_since(set) >= Duration::from_millis(20),
            "quiet: {quiet}: fired before its deadline"
        );
        driver.with(|m, now| m.deadline = Some(now));
        driver.wait(|m, _| (m.fired == 2).then_some(())).await;
        driver.with(|m, _| m.finished = true);
    }

    use tether_core::gateway::{Config, Gateway, Order};
    let config = Config::default().handshake_timeout(Duration::from_millis(30));
    let gateway = tether_io::Driver::start::<R>(Gateway::new(config));
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let started = tether_io::now();
    let conn = gateway.with(|g, now| g.handle_accept(peer, now));
    gateway
        .wait(|g, _| (g.connection(conn) == Order::Drop).then_some(()))
        .await;
    assert!(
        tether_io::now().duration_since(started) >= Duration::from_millis(30),
        "dropped before its deadline"
    );
}

/// One request to a child and its answer; `shutdown` closes the child's stdin, the child exits
/// 0 on that end of file, and it is reaped. Fails if dropping the
/// [`PipeWriter`](Runtime::PipeWriter) does not close the pipe: the ladder then kills the child.
pub async fn echo_round_trip<R: Runtime>(peer: &Peer) {
    let mut conn = spawn_peer::<R>(peer, options());
    let pid = conn.pid().unwrap();
    let result = call(&mut conn, 1, "echo", json!({"hello": "world"})).await;
    assert_eq!(result, json!({"hello": "world"}));
    let status = conn.shutdown().await.unwrap();
    assert_eq!(status.code, Some(0), "{status}");
    assert_gone(pid);
}

/// A hundred thousand requests and answers in flight at once, then as many notifications from
/// the child: every message arrives, in order, in both directions.
pub async fn many_messages_in_order_both_ways<R: Runtime>(peer: &Peer) {
    const N: i64 = 100_000;
    let mut conn = spawn_peer::<R>(peer, options());
    let sender = conn.sender();
    let send_all = async move {
        for i in 0..N {
            sender.send(&request(i, "echo", json!([i]))).await.unwrap();
        }
    };
    let receive_all = async {
        for i in 0..N {
            match conn.recv().await {
                Some(Event::Message(Message::Response(r))) => {
                    assert_eq!(r.id, Id::from(i));
                    assert_eq!(r.result.unwrap(), json!([i]));
                }
                other => panic!("at {i}: {other:?}"),
            }
        }
    };
    future::zip(send_all, receive_all).await;

    conn.send(&request(-1, "notify", json!({"count": N, "size": 10})))
        .await
        .unwrap();
    let (result, ticks) = response(&mut conn).await;
    assert_eq!(result, json!({"sent": N}));
    assert_eq!(ticks.len(), N as usize);
    for (i, tick) in ticks.iter().enumerate() {
        let Message::Notification(n) = tick else {
            panic!("{tick:?}")
        };
        assert_eq!(n.params.as_ref().unwrap()["n"], json!(i));
    }
    assert_eq!(conn.shutdown().await.unwrap().code, Some(0));
}

/// A child that ignores SIGTERM and its stdin's end is killed (SIGKILL) after the second grace
/// period, and reaped.
pub async fn child_ignoring_sigterm_is_killed_after_the_second_grace<R: Runtime>(peer: &Peer) {
    let mut conn = spawn_peer::<R>(peer, options());
    let pid = conn.pid().unwrap();
    assert_eq!(
        call(&mut conn, 1, "ignore_term", json!({"stay": true})).await,
        json!(true)
    );
    let status = conn.shutdown().await.unwrap();
    assert_eq!((status.code, status.signal), (None, Some(9)), "{status}");
    assert_gone(pid);
}

/// Grandchildren that ignore SIGTERM, the child's own and double-forked ones that it no longer
/// parents, all die with the child.
pub async fn grandchildren_ignoring_sigterm_all_die<R: Runtime>(peer: &Peer) {
    become_subreaper();
    let mut conn = spawn_peer::<R>(peer, options());
    let pid = conn.pid().unwrap();
    let mut all = pids(
        &call(
            &mut conn,
            1,
            "spawn",
            json!({"count": 3, "ignore_term": true}),
        )
        .await,
    );
    let detached = json!({"count": 2, "ignore_term": true, "detach": true});
    all.extend(pids(&call(&mut conn, 2, "spawn", detached).await));
    for &p in &all {
        assert!(matches!(state(p), Some('S' | 'R')), "grandchild {p} runs");
    }
    assert_eq!(conn.shutdown().await.unwrap().code, Some(0));
    assert_gone(pid);
    for p in all {
        assert_dead(p);
    }
}

/// When the child exits on its own while a grandchild holds its stdout open, the group kill
/// ends the grandchild and with it the stream: `Disconnected(None)`, then the exit status.
pub async fn leader_exit_ends_a_grandchild_holding_stdout<R: Runtime>(peer: &Peer) {
    become_subreaper();
    let mut conn = spawn_peer::<R>(peer, options());
    let pid = conn.pid().unwrap();
    let holder = json!({"count": 1, "hold_stdout": true, "ignore_term": true});
    let grandchild = pids(&call(&mut conn, 1, "spawn", holder).await)[0];
    conn.send(&request(2, "exit", json!({"code": 7})))
        .await
        .unwrap();
    // The grandchild still holds the pipe; only the group kill on the leader's exit ends
    // the stream.
    assert_eq!(conn.recv().await, Some(Event::Disconnected(None)));
    assert_eq!(conn.recv().await, None);
    assert_eq!(conn.wait().await.unwrap().code, Some(7));
    assert_dead(grandchild);
    assert_gone(pid);
}

/// A child that exits in the middle of a message: the partial frame is reported `Malformed`,
/// then the connection ends cleanly with the child's status.
pub async fn child_exiting_mid_message<R: Runtime>(peer: &Peer) {
    let mut conn = spawn_peer::<R>(peer, options());
    let partial = json!({"text": "{\"jsonrpc\":\"2.0\",\"method\":\"cut"});
    conn.send(&request(1, "write", partial)).await.unwrap();
    conn.send(&request(2, "exit", json!({"code": 3})))
        .await
        .unwrap();
    match conn.recv().await {
        Some(Event::Malformed(m)) => {
            assert!(matches!(m.kind, MalformedKind::InvalidJson { .. }), "{m}");
            assert!(m.excerpt.ends_with("\"cut"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.recv().await, Some(Event::Disconnected(None)));
    assert_eq!(conn.shutdown().await.unwrap().code, Some(3));
}

/// A child that closes its stdout and stays alive: the stream ends, the child is not taken
/// for dead, and `shutdown` still kills and reaps it.
pub async fn child_closing_stdout_but_staying_alive<R: Runtime>(peer: &Peer) {
    let mut conn = spawn_peer::<R>(peer, options());
    let pid = conn.pid().unwrap();
    call(&mut conn, 1, "ignore_term", json!({"stay": true})).await;
    conn.send(&request(2, "close_stdout", json!({})))
        .await
        .unwrap();
    assert_eq!(conn.recv().await, Some(Event::Disconnected(None)));
    assert!(
        matches!(state(pid), Some('S' | 'R')),
        "the child is still alive after closing its stdout"
    );
    assert_eq!(conn.exit_status(), None);
    let status = conn.shutdown().await.unwrap();
    assert_eq!(status.signal, Some(9), "{status}");
    assert_gone(pid);
}

/// Dropping a connection inside the runtime takes the whole tree (see [`drop_and_check`]), and
/// a [`Sender`](tether_io::Sender) that outlives it learns that it is gone.
pub async fn dropping_the_connection_takes_the_tree<R: Runtime>(peer: &Peer) {
    become_subreaper();
    let (conn, grandchildren) = stubborn_tree::<R>(peer).await;
    let sender = conn.sender();
    drop_and_check(conn, grandchildren);
    // A sender that outlives its connection learns that it is gone.
    sender.closed().await;
    assert!(matches!(
        sender.send(&request(3, "echo", json!([]))).await,
        Err(SendError::Disconnected)
    ));
}

/// Garbage, invalid UTF-8 and a 4 MiB line over a 1 KiB limit each give one `Malformed`, and
/// the next message still arrives.
pub async fn garbage_invalid_utf8_and_an_overlong_line<R: Runtime>(peer: &Peer) {
    let mut conn = spawn_peer::<R>(peer, options().max_frame(1024));
    let writes = [
        json!({"text": "garbage\n"}),
        json!({"bytes": [0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a]}),
        json!({"text": "y", "repeat": 4 << 20}),
        json!({"text": "\n"}),
    ];
    for (i, w) in writes.into_iter().enumerate() {
        conn.send(&request(i as i64, "write", w)).await.unwrap();
    }
    conn.send(&request(9, "echo", json!(["after"])))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    loop {
        match conn.recv().await {
            Some(Event::Malformed(m)) => kinds.push(m.kind),
            Some(Event::Message(Message::Response(r))) => {
                assert_eq!(r.result.unwrap(), json!(["after"]));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(kinds[0], MalformedKind::InvalidJson { .. }),
        "{kinds:?}"
    );
    assert!(
        matches!(kinds[1], MalformedKind::InvalidUtf8 { valid_up_to: 2 }),
        "{kinds:?}"
    );
    assert_eq!(
        kinds[2],
        MalformedKind::TooLarge {
            limit: 1024,
            declared: None
        }
    );
    assert_eq!(kinds.len(), 3);
    conn.shutdown().await;
}

/// While nobody receives, a child flooding its stdout ends up blocked on the full pipe once the
/// read-ahead is full (the frame limit, then 128 events), rather than buffered into this
/// process without bound; every notification still arrives afterwards. 200,000 notifications
/// of about 130 bytes are far more than the read-ahead holds.
pub async fn stalled_consumer_holds_a_flooding_child_back<R: Runtime>(peer: &Peer) {
    const N: u64 = 200_000;
    let mut conn = spawn_peer::<R>(peer, options());
    let pid = conn.pid().unwrap();
    conn.send(&request(1, "notify", json!({"count": N, "size": 100})))
        .await
        .unwrap();
    // Nobody polls: the child must end up blocked on its full stdout pipe, not buffered
    // into our memory.
    wait_until(|| blocked_writing(pid), "the flooding child to block");
    let (result, ticks) = response(&mut conn).await;
    assert_eq!(result, json!({"sent": N}));
    assert_eq!(ticks.len() as u64, N);
    conn.shutdown().await;
}

/// Full duplex: a 40 MiB request to `cat`, then a small one, and only then the first receive.
/// `cat` echoes while it reads, so the first send completes only if the connection reads the
/// echo while its owner is still sending; both echoes arrive whole and in order.
pub async fn a_large_send_completes_while_the_peer_echoes<R: Runtime>(_: &Peer) {
    let options = options().max_frame(64 << 20);
    let mut conn = Conn::<R>::spawn(std::process::Command::new("cat"), options).unwrap();
    let big = "x".repeat(40 << 20);
    conn.send(&request(1, "echo", json!([big]))).await.unwrap();
    conn.send(&request(2, "echo", json!(["small"])))
        .await
        .unwrap();
    for id in [1, 2] {
        match conn.recv().await {
            Some(Event::Message(Message::Request(r))) => {
                assert_eq!(r.id, Id::from(id));
                let length = r.params.unwrap()[0].as_str().unwrap().len();
                assert_eq!(length, if id == 1 { 40 << 20 } else { 5 });
            }
            other => panic!("echo {id}: {other:?}"),
        }
    }
    assert_eq!(conn.shutdown().await.unwrap().code, Some(0));
}

/// Full duplex with a peer that writes before it reads: it streams 3 MB of notifications
/// while a 20 MB request to it is still being sent, and the owner receives only once both of
/// its sends have returned. Every notification, then every answer, arrives in order.
pub async fn a_peer_streaming_while_it_receives_a_large_request<R: Runtime>(peer: &Peer) {
    const N: u64 = 20_000;
    let mut conn = spawn_peer::<R>(peer, options().max_frame(64 << 20));
    conn.send(&request(1, "notify", json!({"count": N, "size": 130})))
        .await
        .unwrap();
    let big = "y".repeat(20 << 20);
    conn.send(&request(2, "echo", json!([big]))).await.unwrap();
    conn.send(&request(3, "echo", json!(["after"])))
        .await
        .unwrap();
    let (result, ticks) = response(&mut conn).await;
    assert_eq!(result, json!({"sent": N}));
    assert_eq!(ticks.len() as u64, N);
    let (echo, _) = response(&mut conn).await;
    assert_eq!(echo[0].as_str().map(str::len), Some(20 << 20));
    let (echo, _) = response(&mut conn).await;
    assert_eq!(echo, json!(["after"]));
    assert_eq!(conn.shutdown().await.unwrap().code, Some(0));
}

/// The owner receives one event and leaves `recv` for good while its sends still wait for
/// room: the connection goes on reading (the reader task takes over), so `cat`, which echoes
/// while it reads, takes the rest of the request and every send completes.
pub async fn sends_complete_after_the_owner_received_and_left<R: Runtime>(_: &Peer) {
    let options = options().max_frame(64 << 20).send_budget(1 << 20);
    let mut conn = Conn::<R>::spawn(std::process::Command::new("cat"), options).unwrap();
    let sender = conn.sender();
    conn.send(&request(0, "first", json!([]))).await.unwrap();
    let sends = async {
        let big = "z".repeat(10 << 20);
        sender.send(&request(1, "big", json!([big]))).await.unwrap();
        sender.send(&request(2, "small", json!([]))).await.unwrap();
        sender.send(&request(3, "last", json!([]))).await.unwrap();
    };
    let receive_one = async { conn.recv().await };
    let ((), first) = future::zip(sends, receive_one).await;
    assert!(
        matches!(first, Some(Event::Message(Message::Request(ref r))) if r.id == Id::from(0)),
        "{first:?}"
    );
    for id in 1..=3 {
        match conn.recv().await {
            Some(Event::Message(Message::Request(r))) => assert_eq!(r.id, Id::from(id)),
            other => panic!("echo {id}: {other:?}"),
        }
    }
    assert_eq!(conn.shutdown().await.unwrap().code, Some(0));
}

/// A batch of verbatim messages far over the send budget, sent in one call to `cat` while the
/// owner receives: the batch goes as the budget frees up, every echo arrives, in order; once
/// the connection is closing, a batch is refused whole, with none sent.
pub async fn verbatim_batches_go_in_order_within_the_budget<R: Runtime>(_: &Peer) {
    const N: usize = 20_000;
    let options = options().send_budget(4 << 10);
    let mut conn = Conn::<R>::spawn(std::process::Command::new("cat"), options).unwrap();
    let sender = conn.sender();
    let messages: Vec<Verbatim> = (0..N)
        .map(|i| {
            let line = format!(r#"{{"jsonrpc":"2.0","method":"n","params":[{i}], "x": "kept"}}"#);
            Verbatim::decode(line.as_bytes()).unwrap()
        })
        .collect();
    let send = async {
        sender.send_verbatim_all(&messages).await.unwrap();
    };
    let receive = async {
        for i in 0..N {
            match conn.recv().await {
                Some(Event::Message(Message::Notification(n))) => {
                    assert_eq!(n.params, Some(json!([i])), "at {i}");
                }
                other => panic!("at {i}: {other:?}"),
            }
        }
    };
    future::zip(send, receive).await;
    sender.close();
    let refused = sender.send_verbatim_all(&messages[..3]).await;
    assert!(
        matches!(refused, Err((0, SendError::Closed))),
        "{refused:?}"
    );
    assert_eq!(sender.send_verbatim_all(&[]).await.ok(), Some(()));
    conn.shutdown().await;
}

/// `Content-Length` framing through `cat`, which echoes the frames back byte for byte.
pub async fn content_length_framing_with_a_child<R: Runtime>(_: &Peer) {
    // `cat` echoes our Content-Length frames back byte for byte.
    let mut conn = Conn::<R>::spawn(
        std::process::Command::new("cat"),
        options().framing(Framing::ContentLength),
    )
    .unwrap();
    for i in 0..100 {
        conn.send(&request(i, "m", json!({"i": i, "text": "é\n\r"})))
            .await
            .unwrap();
    }
    for i in 0..100 {
        match conn.recv().await {
            Some(Event::Message(Message::Request(r))) => {
                assert_eq!(r.id, Id::from(i));
                assert_eq!(r.params.unwrap()["text"], json!("é\n\r"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(conn.shutdown().await.unwrap().code, Some(0));
}

async fn ws_pair<R: Runtime>(server: Options, client: Options) -> (Conn<R>, Conn<R>) {
    let listener = R::bind_tcp("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/rpc", R::tcp_local_addr(&listener).unwrap());
    let accept = async {
        let (stream, peer) = R::accept_tcp(&listener).await.unwrap();
        Conn::<R>::accept_ws(stream, server.label(format!("ws-server:{peer}")))
            .await
            .unwrap()
    };
    let connect = async { Conn::<R>::connect_ws(&url, client).await.unwrap() };
    future::zip(accept, connect).await
}

/// A websocket over the runtime's TCP streams: a thousand requests and answers, then a close
/// from the client that both sides see as a clean end.
pub async fn websocket_exchange_and_close_from_the_client<R: Runtime>(_: &Peer) {
    let (mut server, mut client) = ws_pair::<R>(Options::new(), Options::new()).await;
    for i in 0..1000 {
        client.send(&request(i, "echo", json!([i]))).await.unwrap();
    }
    for i in 0..1000 {
        match server.recv().await {
            Some(Event::Message(Message::Request(r))) => {
                assert_eq!(r.id, Id::from(i));
                let reply = tether_io::Response::success(r.id, r.params.unwrap());
                server.send(&reply.into()).await.unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    for i in 0..1000 {
        let (result, _) = response(&mut client).await;
        assert_eq!(result, json!([i]));
    }
    client.close();
    assert_eq!(server.recv().await, Some(Event::Disconnected(None)));
    assert_eq!(client.recv().await, Some(Event::Disconnected(None)));
    assert_eq!(client.recv().await, None);
}

/// A close from the websocket server: the client gets what was sent before it, then a clean
/// end, and a later send fails with a typed error.
pub async fn websocket_close_from_the_server<R: Runtime>(_: &Peer) {
    let (mut server, mut client) = ws_pair::<R>(Options::new(), Options::new()).await;
    server.send(&request(1, "hello", json!([]))).await.unwrap();
    server.close();
    assert!(matches!(
        client.recv().await,
        Some(Event::Message(Message::Request(_)))
    ));
    assert_eq!(client.recv().await, Some(Event::Disconnected(None)));
    assert_eq!(server.recv().await, Some(Event::Disconnected(None)));
    // Sending after the end fails with a typed error.
    assert!(matches!(
        client.send(&request(2, "late", json!([]))).await,
        Err(SendError::Disconnected)
    ));
}

/// A websocket peer that never answers pings: the keepalive, on the runtime's timer, ends the
/// connection with a timeout naming the URL.
pub async fn websocket_keepalive_times_out<R: Runtime>(_: &Peer) {
    let listener = R::bind_tcp("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", R::tcp_local_addr(&listener).unwrap());
    // A server that completes the handshake and then never reads: pings go unanswered.
    let silent = async {
        let (stream, _) = R::accept_tcp(&listener).await.unwrap();
        async_tungstenite::accept_async(stream).await.unwrap()
    };
    let options = Options::new().keepalive(Duration::from_millis(100), Duration::from_millis(200));
    let (_silent, mut client) = future::zip(silent, async {
        Conn::<R>::connect_ws(&url, options).await.unwrap()
    })
    .await;
    match client.recv().await {
        Some(Event::Disconnected(Some(d))) => {
            assert!(matches!(d.kind, DisconnectKind::Timeout(_)), "{d}");
            assert!(d.to_string().contains(&url), "{d}");
        }
        other => panic!("{other:?}"),
    }
}

/// Binary frames carry messages, pings are answered without the owner sending anything, and a
/// message over the limit ends the connection with a read error.
pub async fn websocket_binary_frames_and_pings<R: Runtime>(_: &Peer) {
    let listener = R::bind_tcp("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", R::tcp_local_addr(&listener).unwrap());
    let accept = async {
        let (stream, _) = R::accept_tcp(&listener).await.unwrap();
        Conn::<R>::accept_ws(stream, Options::new().max_frame(1000).label("server"))
            .await
            .unwrap()
    };
    let connect = async {
        let stream = R::connect_tcp(&url[5..url.len() - 1]).await.unwrap();
        async_tungstenite::client_async(&url, stream)
            .await
            .unwrap()
            .0
    };
    let (mut server, mut raw) = future::zip(accept, connect).await;
    let binary = serde_json::to_vec(&request(1, "bin", json!([1]))).unwrap();
    raw.send(WsMessage::Binary(binary.into())).await.unwrap();
    raw.send(WsMessage::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match server.recv().await {
        Some(Event::Message(Message::Request(r))) => assert_eq!(r.method, "bin"),
        other => panic!("{other:?}"),
    }
    // The pong comes back without the server sending anything.
    match raw.next().await {
        Some(Ok(WsMessage::Pong(payload))) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("{other:?}"),
    }
    server.send(&request(2, "text", json!([2]))).await.unwrap();
    match raw.next().await {
        Some(Ok(WsMessage::Text(text))) => assert!(text.contains("\"text\""), "{text}"),
        other => panic!("{other:?}"),
    }
    // Over the limit: the websocket layer refuses it and the connection ends with a reason.
    raw.send(WsMessage::Text("x".repeat(5000).into()))
        .await
        .unwrap();
    match server.recv().await {
        Some(Event::Disconnected(Some(d))) => {
            assert!(matches!(d.kind, DisconnectKind::Read(_)), "{d}")
        }
        other => panic!("{other:?}"),
    }
}

async fn listener_exchange<R: Runtime>(listener: Listener<R>, client: Conn<R>) {
    let mut client = client;
    let mut server: Conn<R> = listener.accept().await.unwrap();
    for i in 0..1000 {
        client.send(&request(i, "up", json!([i]))).await.unwrap();
        server.send(&request(i, "down", json!([i]))).await.unwrap();
    }
    for i in 0..1000 {
        for (conn, method) in [(&mut server, "up"), (&mut client, "down")] {
            match conn.recv().await {
                Some(Event::Message(Message::Request(r))) => {
                    assert_eq!((r.id, r.method.as_str()), (Id::from(i), method))
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // The client closes its write half; the server sees the end, then closes too.
    client.close();
    assert_eq!(server.recv().await, Some(Event::Disconnected(None)));
    server.close();
    assert_eq!(client.recv().await, Some(Event::Disconnected(None)));
}

/// A listener and a client over the runtime's TCP sockets exchange a thousand messages each
/// way, then each closes its write half and the other sees the end.
pub async fn tcp_listener_and_client<R: Runtime>(_: &Peer) {
    let listener = Listener::<R>::bind_tcp("127.0.0.1:0", Options::new())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = Conn::<R>::connect_tcp(&addr, Options::new()).await.unwrap();
    listener_exchange(listener, client).await;
}

/// The same exchange as [`tcp_listener_and_client`] over the runtime's Unix sockets.
pub async fn unix_listener_and_client<R: Runtime>(_: &Peer) {
    let path = std::env::temp_dir().join(format!(
        "tether-test-{}-{:?}.sock",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&path);
    let listener = Listener::<R>::bind_unix(&path, Options::new()).unwrap();
    let client = Conn::<R>::connect_unix(&path, Options::new())
        .await
        .unwrap();
    listener_exchange(listener, client).await;
    let _ = std::fs::remove_file(&path);
}

/// A child that ignores SIGTERM and its stdin's end, with two grandchildren that ignore
/// SIGTERM too: the connection and the grandchildren's pids, for [`drop_and_check`].
///
/// Not a scenario of the suite on its own: with [`drop_and_check`], it is how an adapter shows
/// in a test of its own that a connection dropped after its runtime has stopped still takes
/// its tree (`tether-tests`' `tests/conformance.rs` has one such test per runtime).
pub async fn stubborn_tree<R: Runtime>(peer: &Peer) -> (Connection<Message, R>, Vec<u32>) {
    let mut conn = spawn_peer::<R>(peer, options());
    let spawned = call(
        &mut conn,
        1,
        "spawn",
        json!({"count": 2, "ignore_term": true}),
    )
    .await;
    call(&mut conn, 2, "ignore_term", json!({"stay": true})).await;
    (conn, pids(&spawned))
}

/// Drops `conn` and waits until the child and every one of `grandchildren` has died and been
/// reaped. Needs no runtime: the ladder runs on threads of its own.
pub fn drop_and_check<R: Runtime>(conn: Connection<Message, R>, grandchildren: Vec<u32>) {
    let pid = conn.pid().unwrap();
    drop(conn);
    for p in grandchildren {
        assert_dead(p);
    }
    assert_gone(pid);
}

/// The owner waits for the exit without receiving: what the child writes before it exits,
/// more than its pipe holds, is read meanwhile (within the read-ahead), so the child is not
/// left blocked on a full pipe and exits; then every message comes out, in order, and the end.
pub async fn waiting_for_the_exit_reads_what_the_child_writes<R: Runtime>(peer: &Peer) {
    const N: u64 = 100;
    let mut conn = spawn_peer::<R>(peer, options());
    conn.send(&request(1, "notify", json!({"count": N, "size": 2000})))
        .await
        .unwrap();
    conn.send(&request(2, "exit", json!({"code": 3})))
        .await
        .unwrap();
    assert_eq!(conn.wait().await.unwrap().code, Some(3));
    for n in 0..N {
        match conn.recv().await {
            Some(Event::Message(Message::Notification(tick))) => {
                assert_eq!(tick.params.unwrap()["n"], n);
            }
            other => panic!("tick {n}: {other:?}"),
        }
    }
    assert!(matches!(
        conn.recv().await,
        Some(Event::Message(Message::Response(_)))
    ));
    assert!(matches!(conn.recv().await, Some(Event::Disconnected(None))));
}

/// Sending to a child that has exited fails with a typed error once the pipe breaks, and the
/// connection ends: cleanly if the end of the child's output was read first (the reader runs
/// whether or not the owner receives), else with the write error.
pub async fn sending_to_a_child_that_exited_fails_with_a_typed_error<R: Runtime>(peer: &Peer) {
    let mut conn = spawn_peer::<R>(peer, options());
    conn.send(&request(1, "exit", json!({"code": 0})))
        .await
        .unwrap();
    conn.wait().await;
    let big = request(2, "echo", json!(["x".repeat(100_000)]));
    let mut refused = None;
    for _ in 0..10_000 {
        if let Err(err) = conn.send(&big).await {
            refused = Some(err);
            break;
        }
    }
    assert!(
        matches!(refused, Some(SendError::Disconnected)),
        "{refused:?}"
    );
    loop {
        match conn.recv().await {
            Some(Event::Message(_)) => {}
            Some(Event::Disconnected(None)) => break,
            Some(Event::Disconnected(Some(d))) => {
                assert!(matches!(d.kind, DisconnectKind::Write(_)), "{d}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(conn.recv().await, None);
}
