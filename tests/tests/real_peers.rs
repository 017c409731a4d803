//! Interop with MCP servers nobody here wrote, under tokio and smol: the reference
//! `@modelcontextprotocol/server-everything` (Node) and a server built on the official Python
//! SDK (`tests/peers/mcp_server.py`). Both are installed into `.peers/` by
//! `scripts/install-peers` (which `scripts/test` runs).

mod support;

conformance!(server_everything, python_mcp_sdk);

mod scenarios {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use serde_json::{json, Value};
    use tether_io::{Connection, Event, Id, Message, Notification, Options, Runtime};

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

    /// The MCP exchange every server must get through: initialize, the initialized
    /// notification, tools/list, a call of the echo tool, an unknown method; then a shutdown
    /// that starts by closing the server's stdin, which must end it cleanly. Responses are
    /// matched by id: servers may answer out of order and notify in between.
    async fn mcp_exchange<R: Runtime>(server: Command, echoed: &str) {
        // Interpreters take their time to exit: the grace must not cut a clean exit short.
        let options = Options::new().grace(Duration::from_secs(10));
        let mut conn = Connection::<Message, R>::spawn(server, options).unwrap();
        let pid = conn.pid().unwrap();
        let initialize = json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "tether-tests", "version": "0.1.0"},
        });
        conn.send(&request(1, "initialize", initialize))
            .await
            .unwrap();
        let mut responses = HashMap::new();
        collect(&mut conn, &mut responses, 1).await;
        let init = responses[&Id::from(1)].as_ref().unwrap();
        assert_eq!(init["protocolVersion"], "2025-06-18", "{init}");
        assert!(init["capabilities"]["tools"].is_object(), "{init}");

        let initialized = Notification::new("notifications/initialized", None);
        conn.send(&initialized.into()).await.unwrap();
        conn.send(&request(2, "tools/list", json!({})))
            .await
            .unwrap();
        let call = json!({"name": "echo", "arguments": {"message": "hello from tether"}});
        conn.send(&request(3, "tools/call", call)).await.unwrap();
        conn.send(&request(4, "no/such/method", json!({})))
            .await
            .unwrap();
        collect(&mut conn, &mut responses, 4).await;

        let tools = responses[&Id::from(2)].as_ref().unwrap();
        let names: Vec<&str> = tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"echo"), "{names:?}");
        let called = responses[&Id::from(3)].as_ref().unwrap();
        assert_eq!(called["content"][0]["text"], echoed, "{called}");
        let unknown = responses[&Id::from(4)].as_ref().unwrap_err();
        assert_eq!(unknown.code, -32601, "{unknown:?}");

        let status = conn.shutdown().await.unwrap();
        assert_eq!((status.code, status.signal), (Some(0), None), "{status}");
        assert_gone(pid);
    }

    type Outcome = Result<Value, tether_io::ErrorObject>;

    /// Receives until `count` responses in all have arrived, each id once; notifications and
    /// requests from the server are let through, anything malformed fails.
    async fn collect<R: Runtime>(
        conn: &mut Connection<Message, R>,
        responses: &mut HashMap<Id, Outcome>,
        count: usize,
    ) {
        while responses.len() < count {
            match conn.recv().await {
                Some(Event::Message(Message::Response(r))) => {
                    let id = r.id.clone();
                    assert!(responses.insert(r.id, r.result).is_none(), "{id} twice");
                }
                Some(Event::Message(Message::Notification(_) | Message::Request(_))) => {}
                other => panic!("expected a response, got {other:?}"),
            }
        }
    }

    pub(crate) async fn server_everything<R: Runtime>() {
        let mut server = Command::new("node");
        server
            .arg(installed(
                "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            ))
            .arg("stdio");
        mcp_exchange::<R>(server, "Echo: hello from tether").await;
    }

    pub(crate) async fn python_mcp_sdk<R: Runtime>() {
        let mut server = Command::new(installed("venv/bin/python"));
        server.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/mcp_server.py"));
        mcp_exchange::<R>(server, "hello from tether").await;
    }
}
