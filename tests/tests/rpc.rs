//! The request layer under both runtimes: out-of-order answers, many concurrent callers,
//! disconnects, deadlines, cancellation, stray ids, and serving the peer's requests.

mod support;

conformance!(
    responses_out_of_order_reach_their_callers,
    many_tasks_request_concurrently,
    a_disconnect_fails_every_pending_request,
    a_deadline_expires_and_cancels,
    a_response_with_the_wrong_id_is_reported,
    the_peers_requests_are_served,
    typed_results_and_notifications,
    mcp_initialize_and_tools_with_server_everything,
);

mod scenarios {
    use std::time::Duration;

    use futures_lite::future;
    use serde_json::{json, Value};
    use tether_core::{ErrorObject, Id, Notification, Request, Response, RpcError};
    use tether_io::{
        Client, Connection, Event, Inbound, Incoming, Listener, Message, Options, RpcOptions,
        Runtime,
    };

    use crate::support::*;

    type Conn<R> = Connection<Message, R>;

    /// A raw connection (`server`) whose peer is a request layer (`client`), over TCP.
    async fn pair<R: Runtime>(rpc: RpcOptions) -> (Conn<R>, Client, Incoming) {
        let listener = Listener::<R>::bind_tcp("127.0.0.1:0", Options::new())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (server, client) = future::zip(listener.accept::<Message>(), async {
            Conn::<R>::connect_tcp(&addr, Options::new()).await.unwrap()
        })
        .await;
        let (client, incoming) = client.into_rpc(rpc);
        (server.unwrap(), client, incoming)
    }

    async fn next_request<R: Runtime>(server: &mut Conn<R>) -> Request {
        match server.recv().await {
            Some(Event::Message(Message::Request(r))) => r,
            other => panic!("{other:?}"),
        }
    }

    /// Runs `n` requests concurrently on the runtime's tasks; returns their results in order.
    async fn concurrently<R: Runtime>(
        client: &Client,
        n: usize,
        method: &'static str,
    ) -> Vec<Result<Value, RpcError>> {
        let (tx, rx) = async_channel::unbounded();
        for i in 0..n {
            let (client, tx) = (client.clone(), tx.clone());
            R::spawn(async move {
                let result = client.request(method, Some(json!([i]))).await;
                tx.send((i, result)).await.unwrap();
            });
        }
        let mut results: Vec<_> = (0..n).map(|_| None).collect();
        for _ in 0..n {
            let (i, result) = rx.recv().await.unwrap();
            results[i] = Some(result);
        }
        results.into_iter().map(Option::unwrap).collect()
    }

    pub(crate) async fn responses_out_of_order_reach_their_callers<R: Runtime>() {
        let (mut server, client, _incoming) = pair::<R>(RpcOptions::new()).await;
        let serve = async {
            let mut requests = Vec::new();
            for _ in 0..10 {
                requests.push(next_request(&mut server).await);
            }
            for r in requests.into_iter().rev() {
                let answer = json!({"echo": r.params.clone().unwrap()});
                server
                    .send(&Response::success(r.id, answer).into())
                    .await
                    .unwrap();
            }
        };
        let (results, ()) = future::zip(concurrently::<R>(&client, 10, "m"), serve).await;
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(result.unwrap(), json!({"echo": [i]}));
        }
    }

    pub(crate) async fn many_tasks_request_concurrently<R: Runtime>() {
        let conn = Conn::<R>::spawn(peer(), options()).unwrap();
        let (client, _incoming) = conn.into_rpc(RpcOptions::new());
        let results = concurrently::<R>(&client, 1000, "echo").await;
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(result.unwrap(), json!([i]));
        }
        assert_eq!(client.shutdown().await.unwrap().code, Some(0));
    }

    pub(crate) async fn a_disconnect_fails_every_pending_request<R: Runtime>() {
        let (mut server, client, mut incoming) = pair::<R>(RpcOptions::new()).await;
        let hang_up = async {
            for _ in 0..20 {
                next_request(&mut server).await;
            }
            // Every request has arrived: hang up without answering any.
            drop(server);
        };
        let (results, ()) = future::zip(concurrently::<R>(&client, 20, "m"), hang_up).await;
        assert!(
            results.iter().all(|r| *r == Err(RpcError::Disconnected)),
            "{results:?}"
        );
        assert!(matches!(
            incoming.next().await,
            Some(Inbound::Disconnected(_))
        ));
        assert!(incoming.next().await.is_none());
        // Later requests fail at once.
        assert!(client.request("late", None).await.is_err());
        assert_eq!(client.finished().await, None);
    }

    pub(crate) async fn a_deadline_expires_and_cancels<R: Runtime>() {
        let rpc = RpcOptions::new()
            .timeout(Duration::from_millis(200))
            .cancel_notification(|id| {
                Notification::new("notifications/cancelled", Some(json!({"requestId": id})))
            });
        let (mut server, client, _incoming) = pair::<R>(rpc).await;
        let cancelled = |event: Option<Event<Message>>| match event {
            Some(Event::Message(Message::Notification(n))) => {
                assert_eq!(n.method, "notifications/cancelled");
                n.params.unwrap()["requestId"].clone()
            }
            other => panic!("{other:?}"),
        };
        // Unanswered: the deadline fails it, and the peer is told to stop working on it.
        assert_eq!(client.request("slow", None).await, Err(RpcError::TimedOut));
        let slow = next_request(&mut server).await;
        assert_eq!(cancelled(server.recv().await), json!(slow.id));
        // Dropping a request's future cancels it, and the peer is told too.
        let abandoned = future::or(
            async { Some(client.request("abandoned", None).await) },
            async { None::<Result<Value, RpcError>> },
        )
        .await;
        assert_eq!(abandoned, None);
        let dropped = next_request(&mut server).await;
        assert_eq!(dropped.method, "abandoned");
        assert_eq!(cancelled(server.recv().await), json!(dropped.id));
        // The connection still works.
        let ask = client.request("after", None);
        let answer = async {
            let r = next_request(&mut server).await;
            server
                .send(&Response::success(r.id, json!("fine")).into())
                .await
                .unwrap();
        };
        assert_eq!(future::zip(ask, answer).await.0, Ok(json!("fine")));
    }

    pub(crate) async fn a_response_with_the_wrong_id_is_reported<R: Runtime>() {
        let (mut server, client, mut incoming) = pair::<R>(RpcOptions::new()).await;
        let ask = client.request("m", None);
        let answer = async {
            let r = next_request(&mut server).await;
            let wrong = Response::success(Id::from("not-yours"), json!(0));
            server.send(&wrong.into()).await.unwrap();
            match incoming.next().await {
                Some(Inbound::Unmatched(response)) => {
                    assert_eq!(response.id, Id::from("not-yours"))
                }
                other => panic!("{other:?}"),
            }
            server
                .send(&Response::error(r.id, ErrorObject::new(-5, "no")).into())
                .await
                .unwrap();
        };
        let (result, ()) = future::zip(ask, answer).await;
        assert_eq!(result, Err(RpcError::Response(ErrorObject::new(-5, "no"))));
    }

    pub(crate) async fn the_peers_requests_are_served<R: Runtime>() {
        let (mut server, _client, mut incoming) = pair::<R>(RpcOptions::new()).await;
        let handler = async {
            let mut served = 0;
            while let Some(item) = incoming.next().await {
                match item {
                    Inbound::Request(request, responder) if request.method == "add" => {
                        let p = request.params.unwrap();
                        let sum = p[0].as_i64().unwrap() + p[1].as_i64().unwrap();
                        responder.respond(Ok(json!(sum)));
                        served += 1;
                    }
                    // Left unanswered: dropping the responder answers for it.
                    Inbound::Request(..) => served += 1,
                    Inbound::Notification(n) => assert_eq!(n.method, "note"),
                    Inbound::Disconnected(_) => break,
                    other => panic!("{other:?}"),
                }
            }
            served
        };
        let peer = async {
            server
                .send(&Request::new(1, "add", Some(json!([2, 3]))).into())
                .await
                .unwrap();
            server
                .send(&Notification::new("note", None).into())
                .await
                .unwrap();
            server
                .send(&Request::new(2, "ignored", None).into())
                .await
                .unwrap();
            let mut answers = Vec::new();
            while answers.len() < 2 {
                match server.recv().await {
                    Some(Event::Message(Message::Response(r))) => answers.push(r),
                    other => panic!("{other:?}"),
                }
            }
            server.close();
            answers
        };
        let (served, answers) = future::zip(handler, peer).await;
        assert_eq!(served, 2);
        assert_eq!(answers[0], Response::success(1, json!(5)));
        assert_eq!(answers[1].id, Id::from(2));
        assert_eq!(
            answers[1].result.as_ref().unwrap_err().code,
            ErrorObject::INTERNAL_ERROR
        );
    }

    pub(crate) async fn typed_results_and_notifications<R: Runtime>() {
        let conn = Conn::<R>::spawn(peer(), options()).unwrap();
        let (client, incoming) = conn.into_rpc(RpcOptions::new());
        // Nobody listens for incoming traffic: it is dropped, and requests still work.
        drop(incoming);
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Sent {
            sent: u64,
        }
        let sent: Sent = client
            .request_as("notify", Some(json!({"count": 50})))
            .await
            .unwrap();
        assert_eq!(sent, Sent { sent: 50 });
        assert!(matches!(
            client
                .request_as::<Sent>("echo", Some(json!({"other": 1})))
                .await,
            Err(RpcError::Decode(_))
        ));
        assert_eq!(
            client.request("nope", None).await.unwrap_err(),
            RpcError::Response(ErrorObject::new(
                ErrorObject::METHOD_NOT_FOUND,
                "method not found: nope"
            ))
        );
        client.notify("whatever", None).await.unwrap();
        assert_eq!(client.shutdown().await.unwrap().code, Some(0));
    }

    /// The real MCP reference server, installed by `scripts/install-peers`.
    fn server_everything() -> std::process::Command {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        assert!(
            script.exists(),
            "{} is missing: run scripts/install-peers",
            script.display()
        );
        let mut command = std::process::Command::new("node");
        command.arg(script).arg("stdio");
        command
    }

    pub(crate) async fn mcp_initialize_and_tools_with_server_everything<R: Runtime>() {
        let options = Options::new().stderr(tether_io::Stderr::Null);
        let conn = Conn::<R>::spawn(server_everything(), options).unwrap();
        let pid = conn.pid().unwrap();
        let (client, mut incoming) =
            conn.into_rpc(RpcOptions::new().timeout(Duration::from_secs(30)));
        // The server may ask us things (roots, sampling) and tell us things (logs): serve it.
        R::spawn(async move {
            while let Some(item) = incoming.next().await {
                if let Inbound::Request(request, responder) = item {
                    let error = ErrorObject::new(
                        ErrorObject::METHOD_NOT_FOUND,
                        format!("the test client does not serve {}", request.method),
                    );
                    responder.respond(Err(error));
                }
            }
        });
        let init = client
            .request(
                "initialize",
                Some(json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "tether-tests", "version": "0.1.0"}
                })),
            )
            .await
            .unwrap();
        assert_eq!(init["protocolVersion"], "2025-06-18", "{init}");
        assert!(init["serverInfo"]["name"].is_string(), "{init}");
        client
            .notify("notifications/initialized", None)
            .await
            .unwrap();
        let tools = client.request("tools/list", Some(json!({}))).await.unwrap();
        let names: Vec<&str> = tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"echo"), "{names:?}");
        let echoed = client
            .request(
                "tools/call",
                Some(json!({"name": "echo", "arguments": {"message": "through tether"}})),
            )
            .await
            .unwrap();
        assert!(echoed.to_string().contains("through tether"), "{echoed}");
        match client.request("no/such/method", None).await {
            Err(RpcError::Response(error)) => assert_eq!(error.code, ErrorObject::METHOD_NOT_FOUND),
            other => panic!("{other:?}"),
        }
        let status = client.shutdown().await.unwrap();
        assert!(status.success(), "{status}");
        assert_gone(pid);
    }
}
