//! `Connection::connect_http`, the drivers' Streamable HTTP transport, under tokio and smol,
//! against the official Python MCP SDK's own server (`tests/peers/mcp_http_server.py`, the SDK
//! installed into `.peers/venv` by `scripts/install-peers`): messages arrive whole, as events of
//! the connection, in order; a refusal ends the connection with a reason that names it; a URL
//! that cannot work and a server that cannot be reached are typed errors.

mod support;

conformance!(
    a_session_carries_whole_messages_and_ends_with_delete,
    a_refusal_ends_the_connection_with_the_status_as_the_reason,
    a_bad_url_and_an_unreachable_server_are_typed_errors,
    sending_never_waits_for_the_owner_to_read,
);

mod scenarios {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, ChildStdout, Command, Stdio};

    use serde_json::{json, Value};
    use tether_conformance::helpers::request;
    use tether_io::{
        Connection, DisconnectKind, Error, Event, HeaderName, HeaderValue, Id, Message,
        Notification, Options, Runtime,
    };

    /// The SDK's server, killed when dropped; its standard output reports each request.
    struct Server {
        child: Child,
        log: BufReader<ChildStdout>,
        url: String,
    }

    impl Server {
        fn start(args: &[&str]) -> Self {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let python = root.join(".peers/venv/bin/python");
            assert!(
                python.exists(),
                "{} is missing: run scripts/install-peers",
                python.display()
            );
            let mut child = Command::new(python)
                .arg(root.join("tests/peers/mcp_http_server.py"))
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut log = BufReader::new(child.stdout.take().unwrap());
            let listening = Self::next(&mut log);
            assert_eq!(listening["event"], "listening", "{listening}");
            let url = format!("http://127.0.0.1:{}/mcp", listening["port"]);
            Server { child, log, url }
        }

        fn next(log: &mut BufReader<ChildStdout>) -> Value {
            let mut line = String::new();
            log.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap()
        }

        /// The requests the server answered, up to the first one `wanted` picks.
        fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
            let mut seen = Vec::new();
            loop {
                let request = Self::next(&mut self.log);
                let done = wanted(&request);
                seen.push(request);
                if done {
                    return seen;
                }
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn initialize() -> Message {
        request(
            1,
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "tether-tests", "version": "0.1.0"},
            }),
        )
    }

    /// Events until the response to `id`, that one last; anything malformed fails.
    async fn until_answer<R: Runtime>(conn: &mut Connection<Message, R>, id: i64) -> Vec<Message> {
        let mut messages = Vec::new();
        loop {
            match conn.recv().await {
                Some(Event::Message(message)) => {
                    let done = matches!(&message, Message::Response(r) if r.id == Id::from(id));
                    messages.push(message);
                    if done {
                        return messages;
                    }
                }
                other => panic!("expected the answer to {id}, got {other:?}"),
            }
        }
    }

    fn result(message: &Message) -> &Value {
        match message {
            Message::Response(response) => response.result.as_ref().unwrap(),
            other => panic!("not a response: {other:?}"),
        }
    }

    pub(crate) async fn a_session_carries_whole_messages_and_ends_with_delete<R: Runtime>() {
        let mut server = Server::start(&[]);
        let mut conn = Connection::<Message, R>::connect_http(&server.url, [], Options::new())
            .await
            .unwrap();
        assert_eq!(conn.label(), server.url);
        conn.send(&initialize()).await.unwrap();
        let init = until_answer(&mut conn, 1).await;
        assert_eq!(result(&init[0])["protocolVersion"], "2025-06-18");
        let initialized = Notification::new("notifications/initialized", None);
        conn.send(&initialized.into()).await.unwrap();
        // A message with line breaks in its strings and larger than any one read arrives
        // whole.
        let text = format!("one\ntwo\r\n{}", "x".repeat(200_000));
        let echo = json!({"name": "echo", "arguments": {"message": text}});
        conn.send(&request(2, "tools/call", echo)).await.unwrap();
        let answer = until_answer(&mut conn, 2).await;
        assert_eq!(answer.len(), 1);
        assert_eq!(result(&answer[0])["content"][0]["text"], text.as_str());
        // The tool's log message comes on the call's own stream, before its answer.
        let chatty = json!({"name": "chatty", "arguments": {"message": "busy"}});
        conn.send(&request(3, "tools/call", chatty)).await.unwrap();
        let events = until_answer(&mut conn, 3).await;
        assert!(
            matches!(&events[0], Message::Notification(n) if n.method == "notifications/message"),
            "{events:?}"
        );
        conn.close();
        match conn.recv().await {
            Some(Event::Disconnected(None)) => {}
            other => panic!("expected a clean end, got {other:?}"),
        }
        assert!(conn.recv().await.is_none());
        let requests = server.until(|r| r["method"] == "DELETE");
        let delete = requests.last().unwrap();
        assert_eq!(delete["status"], 200, "{requests:#?}");
        assert!(delete["session"].is_string(), "{delete}");
    }

    pub(crate) async fn a_refusal_ends_the_connection_with_the_status_as_the_reason<R: Runtime>() {
        let server = Server::start(&["--token", "sesame"]);
        let mut conn = Connection::<Message, R>::connect_http(&server.url, [], Options::new())
            .await
            .unwrap();
        conn.send(&initialize()).await.unwrap();
        match conn.recv().await {
            Some(Event::Disconnected(Some(disconnect))) => match &disconnect.kind {
                DisconnectKind::Read(detail) => {
                    assert!(
                        detail.contains("HTTP 401 Unauthorized from POST"),
                        "{disconnect}"
                    );
                }
                other => panic!("{other:?}"),
            },
            other => panic!("expected the refusal as the end, got {other:?}"),
        }
        assert!(conn.recv().await.is_none());
        assert!(conn.send(&initialize()).await.is_err());

        // With the token, the same server answers.
        let bearer = (
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer sesame"),
        );
        let mut conn =
            Connection::<Message, R>::connect_http(&server.url, [bearer], Options::new())
                .await
                .unwrap();
        conn.send(&initialize()).await.unwrap();
        let init = until_answer(&mut conn, 1).await;
        assert_eq!(result(&init[0])["protocolVersion"], "2025-06-18");
        conn.close();
        while let Some(event) = conn.recv().await {
            if let Event::Disconnected(reason) = event {
                assert_eq!(reason, None);
            }
        }
    }

    /// Full duplex: with a read-ahead of one message and a send budget of about one request,
    /// an owner that sends ten requests without reading gets every send through (the answers
    /// wait, the POSTs do not), then reads every answer. Each request has a POST of its own,
    /// so the server may answer them in any order.
    pub(crate) async fn sending_never_waits_for_the_owner_to_read<R: Runtime>() {
        let server = Server::start(&[]);
        let options = Options::new().read_ahead(1, 1 << 20).send_budget(1024);
        let mut conn = Connection::<Message, R>::connect_http(&server.url, [], options)
            .await
            .unwrap();
        conn.send(&initialize()).await.unwrap();
        until_answer(&mut conn, 1).await;
        let initialized = Notification::new("notifications/initialized", None);
        conn.send(&initialized.into()).await.unwrap();
        let padding = "p".repeat(600);
        for id in 2..12 {
            let echo = json!({"name": "echo", "arguments": {"message": format!("{id}{padding}")}});
            conn.send(&request(id, "tools/call", echo)).await.unwrap();
        }
        let mut answered = std::collections::HashMap::new();
        while answered.len() < 10 {
            match conn.recv().await {
                Some(Event::Message(Message::Response(response))) => {
                    let text = response.result.unwrap()["content"][0]["text"].clone();
                    assert!(answered.insert(response.id, text).is_none());
                }
                Some(Event::Message(_)) => {}
                other => panic!("expected answers, got {other:?}"),
            }
        }
        for id in 2..12 {
            let text = &answered[&Id::from(id)];
            assert_eq!(text.as_str().unwrap(), format!("{id}{padding}"));
        }
        conn.close();
        while conn.recv().await.is_some() {}
    }

    pub(crate) async fn a_bad_url_and_an_unreachable_server_are_typed_errors<R: Runtime>() {
        for url in ["https://127.0.0.1:1/mcp", "http://user:pw@127.0.0.1:1/mcp"] {
            match Connection::<Message, R>::connect_http(url, [], Options::new()).await {
                Err(Error::HttpUrl { url: named, .. }) => assert_eq!(named, url),
                other => panic!("{url}: {other:?}"),
            }
        }
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/mcp");
        match Connection::<Message, R>::connect_http(&url, [], Options::new()).await {
            Err(Error::Connect { addr, .. }) => assert_eq!(addr, format!("127.0.0.1:{port}")),
            other => panic!("{other:?}"),
        }
    }
}
