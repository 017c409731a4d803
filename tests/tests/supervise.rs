//! Supervision through the library, under both runtimes: a child restarted under the same
//! connection (the owner's connection survives, sends go to the new child), the restart
//! reports and the end report, and requests pending at a crash failed through the request
//! layer.

mod support;

conformance!(
    a_crashed_child_is_restarted_under_the_same_connection,
    pending_requests_fail_through_the_request_layer_and_the_next_child_answers,
);

mod scenarios {
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use serde_json::json;
    use tether_core::{ErrorObject, Request, RpcError};
    use tether_io::{
        Connection, EndCause, Event, Message, Options, RestartMode, RestartPolicy, RpcOptions,
        Runtime, Stderr,
    };

    use crate::support::*;

    fn tag() -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        format!(
            "lib-supervise-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// `sh -c script`, tagged, with a counter file of its own in `$COUNT`.
    fn shell(script: &str, tag: &str) -> (Command, std::path::PathBuf) {
        let count = std::env::temp_dir().join(format!("tether-{tag}.count"));
        let _ = std::fs::remove_file(&count);
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .env("COUNT", &count)
            .env("TETHER_TEST_TAG", tag);
        (command, count)
    }

    fn policy() -> RestartPolicy {
        RestartPolicy {
            mode: RestartMode::OnFailure,
            backoff: Duration::from_millis(20),
            ..RestartPolicy::default()
        }
    }

    /// The first child dies (code 4, a word on stderr); the next one answers every line.
    const CRASH_THEN_SERVE: &str = r#"n=$(cat "$COUNT" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$COUNT"
if [ $n -le 1 ]; then echo "first one down" >&2; exit 4; fi
while read line; do
  id=$(echo "$line" | sed 's/.*"id":\([0-9]*\).*/\1/')
  echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":$n}"
done"#;

    pub(crate) async fn a_crashed_child_is_restarted_under_the_same_connection<R: Runtime>() {
        let tag = tag();
        let (command, count) = shell(CRASH_THEN_SERVE, &tag);
        let options = Options::new().restart(policy()).stderr(Stderr::Null);
        let mut conn = Connection::<Message, R>::spawn(command, options).unwrap();
        let first = conn.pid().unwrap();
        let report = conn.restarts().next().await.expect("a restart");
        assert_eq!(report.attempt, 1);
        assert_eq!(report.delay, Duration::from_millis(20));
        assert_eq!(report.end.cause, EndCause::Failed);
        assert_eq!(report.end.status.code, Some(4));
        assert_eq!(report.end.stderr_tail.as_deref(), Some("first one down\n"));
        // Sent during the delay or after: either way the next child gets it.
        conn.send(&Request::new(7, "work", None).into())
            .await
            .unwrap();
        match conn.recv().await {
            Some(Event::Message(Message::Response(response))) => {
                assert_eq!(response.id, 7.into());
                assert_eq!(response.result, Ok(json!(2)));
            }
            other => panic!("{other:?}"),
        }
        assert_ne!(conn.pid(), Some(first), "a new child");
        assert!(conn.end().is_none(), "not ended");
        conn.close();
        while conn.recv().await.is_some() {}
        let status = conn.wait().await.unwrap();
        assert_eq!(status.code, Some(0));
        let end = conn.end().unwrap();
        assert_eq!(end.cause, EndCause::Requested);
        assert_eq!(end.stderr_tail.as_deref(), Some(""));
        assert!(conn.survivors().is_empty());
        assert_eq!(tagged(&tag), Vec::<u32>::new());
        let _ = std::fs::remove_file(count);
    }

    /// The first child reads one request and is killed before it answers.
    const DIE_ON_FIRST_REQUEST: &str = r#"n=$(cat "$COUNT" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$COUNT"
if [ $n -le 1 ]; then read line; kill -9 $$; fi
while read line; do
  id=$(echo "$line" | sed 's/.*"id":\([0-9]*\).*/\1/')
  echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":$n}"
done"#;

    pub(crate) async fn pending_requests_fail_through_the_request_layer_and_the_next_child_answers<
        R: Runtime,
    >() {
        let tag = tag();
        let (command, count) = shell(DIE_ON_FIRST_REQUEST, &tag);
        let options = Options::new().restart(policy()).stderr(Stderr::Null);
        let conn = Connection::<Message, R>::spawn(command, options).unwrap();
        let restarts = conn.restarts();
        let (client, incoming) = conn.into_rpc(RpcOptions::default());
        let failed = client.request("work", None).await;
        match failed {
            Err(RpcError::Response(ErrorObject { code, message, .. })) => {
                assert_eq!(code, ErrorObject::INTERNAL_ERROR);
                assert!(message.contains("killed by signal 9"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let report = restarts.next().await.unwrap();
        assert_eq!(report.end.status.signal, Some(9));
        assert_eq!(client.request("work", None).await, Ok(json!(2)));
        let status = client.shutdown().await.unwrap();
        assert_eq!(status.code, Some(0), "the last child ended as asked");
        drop((client, incoming));
        // Nothing of the tree is left.
        for _ in 0..(GUARD.as_millis() / 10) {
            if tagged(&tag).is_empty() {
                break;
            }
            R::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(tagged(&tag), Vec::<u32>::new());
        let _ = std::fs::remove_file(count);
    }
}
