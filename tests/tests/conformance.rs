//! The adapter conformance suite: every scenario runs under tokio and under smol, against real
//! child processes, real pipes and real loopback sockets.

mod support;

conformance!(
    echo_round_trip,
    many_messages_in_order_both_ways,
    child_ignoring_sigterm_is_killed_after_the_second_grace,
    grandchildren_ignoring_sigterm_all_die,
    leader_exit_ends_a_grandchild_holding_stdout,
    child_exiting_mid_message,
    child_closing_stdout_but_staying_alive,
    dropping_the_connection_takes_the_tree,
    garbage_invalid_utf8_and_an_overlong_line,
    stalled_consumer_holds_a_flooding_child_back,
    content_length_framing_with_a_child,
    websocket_exchange_and_close_from_the_client,
    websocket_close_from_the_server,
    websocket_keepalive_times_out,
    websocket_binary_frames_and_pings,
    tcp_listener_and_client,
    unix_listener_and_client,
    sending_to_a_child_that_exited_fails_with_a_typed_error,
);

/// Dropping a connection needs no runtime: after tokio has shut down, the ladder still runs
/// on its own threads and takes the whole tree.
#[test]
fn tokio_dropping_after_the_runtime_shut_down_takes_the_tree() {
    support::become_subreaper();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (conn, grandchildren) = runtime.block_on(scenarios::stubborn_tree::<tether_tokio::Tokio>());
    drop(runtime);
    scenarios::drop_and_check(conn, grandchildren);
}

/// smol's global executor never shuts down; the same guarantee shown from a thread that runs
/// no executor at all.
#[test]
fn smol_dropping_outside_any_executor_takes_the_tree() {
    support::become_subreaper();
    let (conn, grandchildren) = smol::block_on(scenarios::stubborn_tree::<tether_smol::Smol>());
    std::thread::spawn(move || scenarios::drop_and_check(conn, grandchildren))
        .join()
        .unwrap();
}

mod scenarios {
    use std::time::Duration;

    use async_tungstenite::tungstenite::Message as WsMessage;
    use futures_lite::{future, StreamExt};
    use serde_json::json;
    use tether_core::{DisconnectKind, Framing, Id, MalformedKind};
    use tether_io::{Connection, Event, Listener, Message, Options, Runtime};

    use crate::support::*;

    type Conn<R> = Connection<Message, R>;

    fn spawn_peer<R: Runtime>(options: Options) -> Conn<R> {
        Conn::<R>::spawn(peer(), options).expect("spawn the peer")
    }

    pub(crate) async fn echo_round_trip<R: Runtime>() {
        let mut conn = spawn_peer::<R>(options());
        let pid = conn.pid().unwrap();
        let result = call(&mut conn, 1, "echo", json!({"hello": "world"})).await;
        assert_eq!(result, json!({"hello": "world"}));
        let status = conn.shutdown().await.unwrap();
        assert_eq!(status.code, Some(0), "{status}");
        assert_gone(pid);
    }

    pub(crate) async fn many_messages_in_order_both_ways<R: Runtime>() {
        const N: i64 = 100_000;
        let mut conn = spawn_peer::<R>(options());
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

    pub(crate) async fn child_ignoring_sigterm_is_killed_after_the_second_grace<R: Runtime>() {
        let mut conn = spawn_peer::<R>(options());
        let pid = conn.pid().unwrap();
        assert_eq!(
            call(&mut conn, 1, "ignore_term", json!({"stay": true})).await,
            json!(true)
        );
        let status = conn.shutdown().await.unwrap();
        assert_eq!((status.code, status.signal), (None, Some(9)), "{status}");
        assert_gone(pid);
    }

    pub(crate) async fn grandchildren_ignoring_sigterm_all_die<R: Runtime>() {
        become_subreaper();
        let mut conn = spawn_peer::<R>(options());
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

    pub(crate) async fn leader_exit_ends_a_grandchild_holding_stdout<R: Runtime>() {
        become_subreaper();
        let mut conn = spawn_peer::<R>(options());
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

    pub(crate) async fn child_exiting_mid_message<R: Runtime>() {
        let mut conn = spawn_peer::<R>(options());
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

    pub(crate) async fn child_closing_stdout_but_staying_alive<R: Runtime>() {
        let mut conn = spawn_peer::<R>(options());
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

    pub(crate) async fn dropping_the_connection_takes_the_tree<R: Runtime>() {
        become_subreaper();
        let (conn, grandchildren) = stubborn_tree::<R>().await;
        let sender = conn.sender();
        drop_and_check(conn, grandchildren);
        // A sender that outlives its connection learns that it is gone.
        sender.closed().await;
        assert!(matches!(
            sender.send(&request(3, "echo", json!([]))).await,
            Err(tether_io::SendError::Disconnected)
        ));
    }

    pub(crate) async fn garbage_invalid_utf8_and_an_overlong_line<R: Runtime>() {
        let mut conn = spawn_peer::<R>(options().max_frame(1024));
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

    pub(crate) async fn stalled_consumer_holds_a_flooding_child_back<R: Runtime>() {
        const N: u64 = 200_000;
        let mut conn = spawn_peer::<R>(options());
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

    pub(crate) async fn content_length_framing_with_a_child<R: Runtime>() {
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
            Conn::<R>::accept_ws(stream, server, format!("ws-server:{peer}"))
                .await
                .unwrap()
        };
        let connect = async { Conn::<R>::connect_ws(&url, client).await.unwrap() };
        future::zip(accept, connect).await
    }

    pub(crate) async fn websocket_exchange_and_close_from_the_client<R: Runtime>() {
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

    pub(crate) async fn websocket_close_from_the_server<R: Runtime>() {
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
            Err(tether_io::SendError::Disconnected)
        ));
    }

    pub(crate) async fn websocket_keepalive_times_out<R: Runtime>() {
        let listener = R::bind_tcp("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", R::tcp_local_addr(&listener).unwrap());
        // A server that completes the handshake and then never reads: pings go unanswered.
        let silent = async {
            let (stream, _) = R::accept_tcp(&listener).await.unwrap();
            async_tungstenite::accept_async(stream).await.unwrap()
        };
        let options =
            Options::new().keepalive(Duration::from_millis(100), Duration::from_millis(200));
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

    pub(crate) async fn websocket_binary_frames_and_pings<R: Runtime>() {
        let listener = R::bind_tcp("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", R::tcp_local_addr(&listener).unwrap());
        let accept = async {
            let (stream, _) = R::accept_tcp(&listener).await.unwrap();
            Conn::<R>::accept_ws(stream, Options::new().max_frame(1000), "server".into())
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

    pub(crate) async fn tcp_listener_and_client<R: Runtime>() {
        let listener = Listener::<R>::bind_tcp("127.0.0.1:0", Options::new())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client = Conn::<R>::connect_tcp(&addr, Options::new()).await.unwrap();
        listener_exchange(listener, client).await;
    }

    pub(crate) async fn unix_listener_and_client<R: Runtime>() {
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
    /// SIGTERM too.
    pub(crate) async fn stubborn_tree<R: Runtime>() -> (Conn<R>, Vec<u32>) {
        let mut conn = spawn_peer::<R>(options());
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

    pub(crate) fn drop_and_check<R: Runtime>(conn: Conn<R>, grandchildren: Vec<u32>) {
        let pid = conn.pid().unwrap();
        drop(conn);
        for p in grandchildren {
            assert_dead(p);
        }
        assert_gone(pid);
    }

    pub(crate) async fn sending_to_a_child_that_exited_fails_with_a_typed_error<R: Runtime>() {
        let mut conn = spawn_peer::<R>(options());
        conn.send(&request(1, "exit", json!({"code": 0})))
            .await
            .unwrap();
        conn.wait().await;
        // Nobody polls events, so the end of its stdout is not seen yet: the broken pipe is.
        let big = request(2, "echo", json!(["x".repeat(100_000)]));
        let mut refused = None;
        for _ in 0..10_000 {
            if let Err(err) = conn.send(&big).await {
                refused = Some(err);
                break;
            }
        }
        assert!(
            matches!(refused, Some(tether_io::SendError::Disconnected)),
            "{refused:?}"
        );
        match conn.recv().await {
            Some(Event::Disconnected(Some(d))) => {
                assert!(matches!(d.kind, DisconnectKind::Write(_)), "{d}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.recv().await, None);
    }
}
