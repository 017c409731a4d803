//! Language servers nobody here wrote, over Content-Length framing, under tokio and smol:
//! pyright (`pyright-langserver --stdio`, Node, from npm) and python-lsp-server (`pylsp`,
//! Python, from PyPI), both installed into `.peers/` by `scripts/install-peers`.
//!
//! Each goes through a session as an editor drives it (initialize, initialized, didOpen, a
//! hover answered), then the LSP goodbye by hand (the `shutdown` request, its answer, the
//! `exit` notification) after which the server must exit by itself with status 0. One is
//! killed while it is in the middle of writing a message.

mod support;

conformance!(pyright_session, pylsp_session, pylsp_killed_mid_message);

mod scenarios {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use rustix::process::{kill_process, Pid, Signal};
    use serde_json::{json, Value};
    use tether_io::{
        Connection, Event, Framing, Id, Malformed, MalformedKind, Message, Notification, Options,
        Request, Response, Runtime, Stderr,
    };

    use crate::support::*;

    /// A file under `.peers/`, which must have been installed.
    fn installed(path: &str) -> PathBuf {
        let full = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.peers")
            .join(path);
        assert!(
            full.exists(),
            "{} is missing: run scripts/install-peers (scripts/test does)",
            full.display()
        );
        full
    }

    fn pyright() -> Command {
        let mut command = Command::new(installed("node_modules/.bin/pyright-langserver"));
        command.arg("--stdio");
        command
    }

    fn pylsp() -> Command {
        Command::new(installed("venv/bin/pylsp"))
    }

    /// Content-Length framing; interpreters take their time to start and exit, so the grace
    /// must not cut a clean exit short.
    fn options() -> Options {
        Options::new()
            .framing(Framing::ContentLength)
            .grace(Duration::from_secs(10))
    }

    /// The document every session opens; the hover is on the call of `greet`.
    const DOCUMENT: &str = "def greet(name: str) -> str:\n    \"\"\"Say hello to someone.\"\"\"\n    return \"hello \" + name\n\n\ngreet(\"tether\")\n";
    const HOVER_AT: (u32, u32) = (5, 1);

    /// A language client over a tether connection: it numbers its requests and answers the
    /// server's own requests (`window/workDoneProgress/create` and the like) with `null`.
    struct Client<R: Runtime> {
        conn: Connection<Message, R>,
        next_id: i64,
    }

    impl<R: Runtime> Client<R> {
        fn spawn(server: Command) -> Self {
            Client {
                conn: Connection::spawn(server, options()).unwrap(),
                next_id: 1,
            }
        }

        async fn notify(&self, method: &str, params: Value) {
            let notification = Notification::new(method, Some(params));
            self.conn.send(&notification.into()).await.unwrap();
        }

        /// Sends a request and returns its id, without waiting for the answer.
        async fn send(&mut self, method: &str, params: Value) -> Id {
            let id = Id::from(self.next_id);
            self.next_id += 1;
            let request = Request::new(id.clone(), method, Some(params));
            self.conn.send(&request.into()).await.unwrap();
            id
        }

        /// Receives until the response to `id` arrives, and returns its result.
        async fn answer(&mut self, id: &Id) -> Value {
            loop {
                match self.conn.recv().await {
                    Some(Event::Message(Message::Response(r))) if &r.id == id => {
                        return r.result.unwrap_or_else(|e| panic!("{id}: {e:?}"));
                    }
                    Some(Event::Message(Message::Request(r))) => {
                        let reply = Response::success(r.id, Value::Null);
                        self.conn.send(&reply.into()).await.unwrap();
                    }
                    Some(Event::Message(_)) => {}
                    other => panic!("expected the answer to {id}, got {other:?}"),
                }
            }
        }

        async fn call(&mut self, method: &str, params: Value) -> Value {
            let id = self.send(method, params).await;
            self.answer(&id).await
        }

        /// initialize, its answer, initialized, and didOpen of `text` as `uri`.
        async fn open(&mut self, uri: &str, text: &str) {
            let root = uri.rsplit_once('/').unwrap().0;
            let init = self
                .call(
                    "initialize",
                    json!({
                        "processId": std::process::id(),
                        "rootUri": root,
                        "workspaceFolders": [{"uri": root, "name": "tether"}],
                        "capabilities": {
                            "textDocument": {"hover": {"contentFormat": ["markdown", "plaintext"]}}
                        },
                        "clientInfo": {"name": "tether-tests"},
                    }),
                )
                .await;
            // `true` or an options object: either way, hovers are served.
            let hover = &init["capabilities"]["hoverProvider"];
            assert!(!hover.is_null() && hover != &json!(false), "{init}");
            self.notify("initialized", json!({})).await;
            let document = json!({"uri": uri, "languageId": "python", "version": 1, "text": text});
            self.notify("textDocument/didOpen", json!({ "textDocument": document }))
                .await;
        }
    }

    /// A `file:` URI in a folder of the test's own, for a document that need not exist on disk.
    fn document_uri(server: &str) -> String {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lsp-{server}"));
        std::fs::create_dir_all(&dir).unwrap();
        format!("file://{}/greet.py", dir.display())
    }

    /// The whole session, ending with the goodbye: the server must then exit by itself, with
    /// status 0, and the connection end cleanly with nothing malformed on the way.
    async fn session<R: Runtime>(server: Command, name: &str) {
        let mut client = Client::<R>::spawn(server);
        let pid = client.conn.pid().unwrap();
        client.open(&document_uri(name), DOCUMENT).await;

        let (line, character) = HOVER_AT;
        let position = json!({
            "textDocument": {"uri": document_uri(name)},
            "position": {"line": line, "character": character},
        });
        let hover = client.call("textDocument/hover", position).await;
        // The answer knows the function: its name and its docstring, read from the document.
        let contents = hover["contents"].to_string();
        assert!(contents.contains("greet"), "{hover}");
        assert!(contents.contains("Say hello to someone."), "{hover}");

        // The LSP goodbye: `shutdown` is answered with null, then `exit` ends the server.
        assert_eq!(client.call("shutdown", Value::Null).await, Value::Null);
        client
            .conn
            .send(&Notification::new("exit", None).into())
            .await
            .unwrap();
        loop {
            match client.conn.recv().await {
                Some(Event::Message(Message::Notification(_))) => {}
                Some(Event::Disconnected(None)) => break,
                other => panic!("expected the end of the connection, got {other:?}"),
            }
        }
        // Waiting asks nothing of the child: it exits by itself, after the goodbye.
        let status = client.conn.wait().await.unwrap();
        assert_eq!((status.code, status.signal), (Some(0), None), "{status}");
        assert_eq!(client.conn.shutdown().await, Some(status));
        assert_gone(pid);
    }

    pub(crate) async fn pyright_session<R: Runtime>() {
        session::<R>(pyright(), "pyright").await;
    }

    pub(crate) async fn pylsp_session<R: Runtime>() {
        session::<R>(pylsp(), "pylsp").await;
    }

    /// Whether any thread of `pid` is blocked writing to a full pipe (pylsp writes from a
    /// thread of its own).
    fn any_thread_blocked_writing(pid: u32) -> bool {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|task| {
                std::fs::read_to_string(task.path().join("wchan"))
                    .is_ok_and(|w| w.contains("pipe_write"))
            })
    }

    /// pylsp is killed while it writes the answer to a hover, an answer larger than a pipe
    /// holds (the function's docstring is 200 kB), which nobody reads meanwhile. What was
    /// written arrives; the frame cut short is reported as truncated, truthfully, and nothing
    /// else is malformed; the connection ends cleanly as far as reading goes, the status says
    /// SIGKILL, and the server is gone. (pyright would not do: Node buffers what the pipe does
    /// not take instead of blocking.)
    pub(crate) async fn pylsp_killed_mid_message<R: Runtime>() {
        // A frame limit of 300 kB and one event of read-ahead: two answers of 200 kB fill
        // what tether reads ahead of an owner that is not receiving, so pylsp blocks inside
        // the third. Its standard error is discarded, so that the only pipe it can block on
        // is its standard output.
        let options = options()
            .max_frame(300_000)
            .read_ahead(1, 1)
            .stderr(Stderr::Null);
        let mut client = Client::<R> {
            conn: Connection::spawn(pylsp(), options).unwrap(),
            next_id: 1,
        };
        let pid = client.conn.pid().unwrap();
        let uri = document_uri("pylsp-killed");
        let docstring = "word ".repeat(40_000);
        let text = format!("def big():\n    \"\"\"{docstring}\"\"\"\n\n\nbig()\n");
        client.open(&uri, &text).await;
        let hover = json!({
            "textDocument": {"uri": uri},
            "position": {"line": 4, "character": 1},
        });
        for _ in 0..3 {
            client.send("textDocument/hover", hover.clone()).await;
        }
        // Nobody receives: the read-ahead fills, then the server's stdout pipe, and the
        // server blocks inside an answer.
        wait_until(|| any_thread_blocked_writing(pid), "pylsp to block writing");
        kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL).unwrap();

        let mut answers = 0;
        let mut malformed: Vec<Malformed> = Vec::new();
        let reason = loop {
            match client.conn.recv().await {
                Some(Event::Message(Message::Response(_))) => {
                    assert!(malformed.is_empty(), "an answer after {malformed:?}");
                    answers += 1;
                }
                Some(Event::Message(_)) => {
                    assert!(malformed.is_empty(), "a message after {malformed:?}");
                }
                Some(Event::Malformed(m)) => malformed.push(m),
                Some(Event::Disconnected(reason)) => break reason,
                None => panic!("the connection ended without Disconnected"),
            }
        };
        // A killed writer's pipe simply ends: a clean end of stream, as far as reading goes.
        assert_eq!(reason, None);
        assert!(answers < 3, "every answer arrived whole");
        assert_eq!(malformed.len(), 1, "{malformed:?}");
        match &malformed[0].kind {
            MalformedKind::Truncated { expected, received } => {
                assert!(*expected > 200_000, "{:?}", malformed[0]);
                assert!(received < expected, "{:?}", malformed[0]);
            }
            other => panic!("only the truncated answer is truthful here, got {other:?}"),
        }
        let status = client.conn.shutdown().await.unwrap();
        assert_eq!(status.signal, Some(9), "{status}");
        assert_gone(pid);
    }
}
