//! `Connection::connect_http`, the drivers' Streamable HTTP transport, under tokio and smol,
//! against the official Python MCP SDK's own server (`tests/peers/mcp_http_server.py`, the SDK
//! installed into `.peers/venv` by `scripts/install-peers`): messages arrive whole, as events of
//! the connection, in order; a refusal ends the connection with a reason that names it; a URL
//! that cannot work and a server that cannot be reached are typed errors.
//!
//! The same server serves the stateless revision (2026-07-28) too, and refuses a request whose
//! mirrored headers are missing or disagree with its body: the modern scenarios check that a
//! request whose `_meta` names it goes alone, with those headers and no session, that a
//! refusal is that request's answer, and that cancelling one closes its stream. A legacy-only
//! server (`@modelcontextprotocol/server-everything`, on the TypeScript SDK 1.x) answers a
//! modern request with an error, never a hang.

mod support;

conformance!(
    a_session_carries_whole_messages_and_ends_with_delete,
    a_refusal_ends_the_connection_with_the_status_as_the_reason,
    a_bad_url_and_an_unreachable_server_are_typed_errors,
    sending_never_waits_for_the_owner_to_read,
    modern_requests_go_alone_with_their_mirrored_headers_and_no_session,
    a_modern_refusal_is_the_requests_answer_and_the_connection_goes_on,
    cancelling_a_modern_request_closes_its_stream,
    a_modern_request_to_a_legacy_only_server_is_answered_with_an_error,
);

mod scenarios {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, ChildStdout, Command, Stdio};

    use serde_json::{json, Value};
    use tether_conformance::helpers::request;
    use tether_core::streamable::EXCHANGE_FAILED;
    use tether_io::{
        Connection, DisconnectKind, Error, Event, HeaderName, HeaderValue, Id, Message,
        Notification, Options, Runtime,
    };

    /// A port nobody listens on: bound, then released.
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A loopback port that refuses connections for as long as the socket returned lives:
    /// bound and never listening, so that no test running beside can take it meanwhile (as
    /// it could a port found free and let go).
    fn refusing_port() -> (rustix::fd::OwnedFd, u16) {
        use rustix::net::{AddressFamily, SocketType};
        let socket = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        rustix::net::bind(&socket, &any).unwrap();
        let bound = rustix::net::getsockname(&socket).unwrap();
        let port = std::net::SocketAddr::try_from(bound).unwrap().port();
        (socket, port)
    }

    /// A connection to the server started with `--token sesame`, with that token.
    async fn with_token<R: Runtime>(url: &str) -> Connection<Message, R> {
        let bearer = (
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer sesame"),
        );
        Connection::<Message, R>::connect_http(url, [bearer], Options::new())
            .await
            .unwrap()
    }

    /// Closes `conn`, whose end must then be clean.
    async fn closes_cleanly<R: Runtime>(conn: &mut Connection<Message, R>) {
        conn.close();
        match conn.recv().await {
            Some(Event::Disconnected(None)) => {}
            other => panic!("expected a clean end, got {other:?}"),
        }
    }

    /// The stateless revision.
    const MODERN: &str = "2026-07-28";

    /// A request of the stateless revision: its version and capabilities in `_meta`.
    fn modern(id: i64, method: &str, mut params: Value) -> Message {
        params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!(MODERN);
        params["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
        request(id, method, params)
    }

    /// The error of a response.
    fn error(message: &Message) -> &tether_io::ErrorObject {
        match message {
            Message::Response(response) => response.result.as_ref().unwrap_err(),
            other => panic!("not a response: {other:?}"),
        }
    }

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

        /// The next `count` requests the server answered, in the order it answered them.
        fn next_requests(&mut self, count: usize) -> Vec<Value> {
            let mut seen = 0;
            self.until(|r| {
                seen += usize::from(r["event"] == "request");
                seen == count
            })
            .into_iter()
            .filter(|r| r["event"] == "request")
            .collect()
        }

        /// The requests the server answered, up to the first one `wanted` picks.
        fn until(&mut self, mut wanted: impl FnMut(&Value) -> bool) -> Vec<Value> {
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
        let mut conn = with_token::<R>(&server.url).await;
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
    /// so the server may answer them in any order. The same holds for modern requests, each
    /// an exchange of its own.
    pub(crate) async fn sending_never_waits_for_the_owner_to_read<R: Runtime>() {
        let server = Server::start(&[]);
        let options = || Options::new().read_ahead(1, 1 << 20).send_budget(1024);
        let mut conn = Connection::<Message, R>::connect_http(&server.url, [], options())
            .await
            .unwrap();
        conn.send(&initialize()).await.unwrap();
        until_answer(&mut conn, 1).await;
        let initialized = Notification::new("notifications/initialized", None);
        conn.send(&initialized.into()).await.unwrap();
        ten_echoes_then_their_answers(conn, |id, echo| request(id, "tools/call", echo)).await;
        let conn = Connection::<Message, R>::connect_http(&server.url, [], options())
            .await
            .unwrap();
        ten_echoes_then_their_answers(conn, |id, echo| modern(id, "tools/call", echo)).await;
    }

    /// Sends ten calls of `echo` without reading, then reads their answers, then closes.
    async fn ten_echoes_then_their_answers<R: Runtime>(
        mut conn: Connection<Message, R>,
        call: impl Fn(i64, Value) -> Message,
    ) {
        let padding = "p".repeat(600);
        for id in 2..12 {
            let echo = json!({"name": "echo", "arguments": {"message": format!("{id}{padding}")}});
            conn.send(&call(id, echo)).await.unwrap();
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
        let (_bound, port) = refusing_port();
        let url = format!("http://127.0.0.1:{port}/mcp");
        match Connection::<Message, R>::connect_http(&url, [], Options::new()).await {
            Err(Error::Connect { addr, .. }) => assert_eq!(addr, format!("127.0.0.1:{port}")),
            other => panic!("{other:?}"),
        }
    }

    /// Each modern request in a POST of its own, sent together and answered in any order: a
    /// discovery, a listing, a call of a tool whose name is not ASCII (so `Mcp-Name` in its
    /// base64 form, which the SDK decodes and checks) and a call whose progress comes on its
    /// own stream, in order, before its answer. The server saw no `initialize`, no session
    /// id either way, and on every request the headers that mirror its body.
    pub(crate) async fn modern_requests_go_alone_with_their_mirrored_headers_and_no_session<
        R: Runtime,
    >() {
        let mut server = Server::start(&[]);
        let mut conn = Connection::<Message, R>::connect_http(&server.url, [], Options::new())
            .await
            .unwrap();
        conn.send(&modern(1, "server/discover", json!({})))
            .await
            .unwrap();
        let discovered = until_answer(&mut conn, 1).await;
        assert_eq!(result(&discovered[0])["supportedVersions"], json!([MODERN]));
        let weather = json!({"name": "météo", "arguments": {"city": "Zürich"}});
        let mut steps = json!({"name": "steps", "arguments": {"count": 3}});
        steps["_meta"]["progressToken"] = json!("p4");
        conn.send(&modern(2, "tools/list", json!({})))
            .await
            .unwrap();
        conn.send(&modern(3, "tools/call", weather)).await.unwrap();
        conn.send(&modern(4, "tools/call", steps)).await.unwrap();
        // Answers in any order; 4's progress before 4's answer.
        let mut answers = std::collections::HashMap::new();
        let mut progress = Vec::new();
        while answers.len() < 3 {
            match conn.recv().await {
                Some(Event::Message(Message::Response(response))) => {
                    answers.insert(response.id.clone(), response);
                }
                Some(Event::Message(Message::Notification(note))) => {
                    assert_eq!(note.method, "notifications/progress");
                    let params = note.params.unwrap();
                    assert_eq!(params["progressToken"], "p4");
                    assert!(
                        !answers.contains_key(&Id::from(4)),
                        "after 4's answer: {params}"
                    );
                    progress.push(params["progress"].as_i64().unwrap());
                }
                other => panic!("expected answers, got {other:?}"),
            }
        }
        assert_eq!(progress, [1, 2, 3]);
        let tools = answers[&Id::from(2)].result.as_ref().unwrap()["tools"].clone();
        assert!(
            tools
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "météo"),
            "{tools}"
        );
        let weather = answers[&Id::from(3)].result.as_ref().unwrap();
        assert_eq!(weather["content"][0]["text"], "sunny in Zürich");
        assert_eq!(
            answers[&Id::from(4)].result.as_ref().unwrap()["content"][0]["text"],
            "3 steps"
        );
        closes_cleanly(&mut conn).await;
        let seen = server.next_requests(4);
        let mut methods: Vec<_> = seen.iter().map(|r| r["mcp_method"].clone()).collect();
        methods.sort_by_key(Value::to_string);
        assert_eq!(
            methods,
            ["server/discover", "tools/call", "tools/call", "tools/list"],
            "{seen:#?}"
        );
        for request in &seen {
            assert_eq!(request["method"], "POST", "{request}");
            assert_eq!(request["status"], 200, "{request}");
            assert_eq!(request["protocol"], MODERN, "{request}");
            assert!(request["session"].is_null(), "{request}");
            assert!(request["minted"].is_null(), "{request}");
        }
        let names: Vec<_> = seen.iter().map(|r| r["mcp_name"].clone()).collect();
        assert!(
            names.contains(&json!("=?base64?bcOpdMOpbw==?=")),
            "{seen:#?}"
        );
        assert!(names.contains(&json!("steps")), "{seen:#?}");
    }

    /// A refusal of a modern request is its answer, with its id: the SDK's 404 and -32601
    /// for an unknown method as it is, a 401 with a text body as an error naming the status.
    /// The connection goes on after each.
    pub(crate) async fn a_modern_refusal_is_the_requests_answer_and_the_connection_goes_on<
        R: Runtime,
    >() {
        let server = Server::start(&["--token", "sesame"]);
        let mut conn = Connection::<Message, R>::connect_http(&server.url, [], Options::new())
            .await
            .unwrap();
        for id in [1, 2] {
            conn.send(&modern(id, "tools/list", json!({})))
                .await
                .unwrap();
            let refused = until_answer(&mut conn, id).await;
            let error = error(&refused[0]);
            assert_eq!(error.code, EXCHANGE_FAILED);
            assert_eq!(
                error.message,
                "HTTP 401 Unauthorized from POST: missing or wrong bearer token"
            );
            assert_eq!(error.data, Some(json!({"status": 401})));
        }
        closes_cleanly(&mut conn).await;

        let mut conn = with_token::<R>(&server.url).await;
        conn.send(&modern(3, "no/such/method", json!({})))
            .await
            .unwrap();
        let missing = until_answer(&mut conn, 3).await;
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(error(&missing[0]).code, -32601);
        conn.send(&modern(4, "tools/list", json!({})))
            .await
            .unwrap();
        let tools = until_answer(&mut conn, 4).await;
        assert!(result(&tools[0])["tools"].is_array());
        closes_cleanly(&mut conn).await;
    }

    /// `notifications/cancelled` naming a modern request in flight is not posted: its stream
    /// is closed, which the SDK takes as the cancellation (the tool sees it cancelled), and
    /// nothing of the request reaches the owner afterwards.
    pub(crate) async fn cancelling_a_modern_request_closes_its_stream<R: Runtime>() {
        let mut server = Server::start(&[]);
        let mut conn = Connection::<Message, R>::connect_http(&server.url, [], Options::new())
            .await
            .unwrap();
        let mut held = json!({"name": "steps", "arguments": {"count": 1, "hold": 30}});
        held["_meta"]["progressToken"] = json!(1);
        conn.send(&modern(1, "tools/call", held)).await.unwrap();
        // The first progress commits the stream.
        match conn.recv().await {
            Some(Event::Message(Message::Notification(note))) => {
                assert_eq!(note.method, "notifications/progress")
            }
            other => panic!("expected progress, got {other:?}"),
        }
        let cancel = Notification::new(
            "notifications/cancelled",
            Some(json!({"requestId": 1, "reason": "changed my mind"})),
        );
        conn.send(&cancel.into()).await.unwrap();
        let cancelled = server.until(|r| r["event"] == "cancelled");
        // One POST (the call), then the tool's cancellation: the cancel was never posted.
        let posts: Vec<_> = cancelled
            .iter()
            .filter(|r| r["event"] == "request")
            .collect();
        assert_eq!(posts.len(), 1, "{cancelled:#?}");
        assert_eq!(posts[0]["mcp_name"], "steps");
        conn.send(&modern(2, "tools/list", json!({})))
            .await
            .unwrap();
        let after = until_answer(&mut conn, 2).await;
        assert_eq!(after.len(), 1, "{after:?}");
        closes_cleanly(&mut conn).await;
    }

    /// A server of the legacy era only: the TypeScript SDK's, which refuses a POST without a
    /// session that is not `initialize`. The modern request is answered with its error; the
    /// connection goes on.
    pub(crate) async fn a_modern_request_to_a_legacy_only_server_is_answered_with_an_error<
        R: Runtime,
    >() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let everything =
            root.join(".peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        let node = root.join(".peers/node_modules/node/bin/node");
        let port = free_port();
        let mut child = Command::new(node)
            .arg(everything)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on port") {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "server-everything ended"
            );
        }
        struct Kill(Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _server = Kill(child);
        let url = format!("http://127.0.0.1:{port}/mcp");
        let mut conn = Connection::<Message, R>::connect_http(&url, [], Options::new())
            .await
            .unwrap();
        for id in [7, 8] {
            conn.send(&modern(id, "tools/list", json!({})))
                .await
                .unwrap();
            let refused = until_answer(&mut conn, id).await;
            assert_eq!(refused.len(), 1, "{refused:?}");
            let error = error(&refused[0]);
            assert!(error.message.contains("Bad Request"), "{error:?}");
        }
        closes_cleanly(&mut conn).await;
    }
}
