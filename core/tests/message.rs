//! The JSON-RPC model: classification by members, rejection of what is not JSON-RPC, exact
//! round trips.

use serde_json::{json, Value};
use tether_core::{
    decode, ErrorObject, Id, Lite, Malformed, MalformedKind, Message, Notification, Request,
    Response,
};

fn ok(text: &str) -> Message {
    decode::<Message>(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn bad(text: &[u8]) -> Malformed {
    match decode::<Message>(text) {
        Ok(m) => panic!("{} decoded as {m:?}", String::from_utf8_lossy(text)),
        Err(e) => e,
    }
}

fn not_jsonrpc(text: &str) -> String {
    match bad(text.as_bytes()).kind {
        MalformedKind::NotJsonRpc { detail, .. } => detail,
        other => panic!("{text}: expected NotJsonRpc, got {other:?}"),
    }
}

fn encode<T: serde::Serialize>(m: &T) -> String {
    serde_json::to_string(m).unwrap()
}

#[test]
fn classifies_by_members() {
    assert_eq!(
        ok(r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[1]}"#),
        Message::Request(Request::new(1, "m", Some(json!([1]))))
    );
    assert_eq!(
        ok(r#"{"jsonrpc":"2.0","method":"m","params":{"a":1}}"#),
        Message::Notification(Notification::new("m", Some(json!({"a":1}))))
    );
    assert_eq!(
        ok(r#"{"jsonrpc":"2.0","id":"x","result":null}"#),
        Message::Response(Response::success("x", Value::Null))
    );
    assert_eq!(
        ok(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#),
        Message::Response(Response::error(
            Id::Null,
            ErrorObject::new(ErrorObject::PARSE_ERROR, "bad")
        ))
    );
    // A request with a null id is still a request, never a notification.
    assert!(matches!(
        ok(r#"{"id":null,"method":"m"}"#),
        Message::Request(Request { id: Id::Null, .. })
    ));
    // Member order does not matter.
    assert!(matches!(
        ok(r#"{"result":5,"id":3,"jsonrpc":"2.0"}"#),
        Message::Response(_)
    ));
}

#[test]
fn missing_version_is_accepted_and_a_wrong_one_is_not() {
    assert!(matches!(
        ok(r#"{"id":1,"method":"m"}"#),
        Message::Request(_)
    ));
    assert!(not_jsonrpc(r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#).contains("2.0"));
    not_jsonrpc(r#"{"jsonrpc":2.0,"id":1,"method":"m"}"#);
    not_jsonrpc(r#"{"jsonrpc":null,"method":"m"}"#);
}

#[test]
fn bad_ids_are_malformed_not_notifications() {
    for id in [
        "true",
        "1.5",
        "{}",
        "[1]",
        "1e3",
        "1.0",
        "18446744073709551616",
    ] {
        let detail = not_jsonrpc(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m"}}"#));
        assert!(detail.contains("id"), "{id}: {detail}");
        not_jsonrpc(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":1}}"#));
    }
}

#[test]
fn ids_at_the_edges_of_64_bits_round_trip_exactly() {
    for id in ["18446744073709551615", "-9223372036854775808", "0", "\"\""] {
        let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m"}}"#);
        let message = ok(&text);
        assert_eq!(encode(&message), text);
    }
}

#[test]
fn duplicate_members_are_malformed() {
    assert!(not_jsonrpc(r#"{"id":1,"id":2,"method":"m"}"#).contains("duplicate"));
    not_jsonrpc(r#"{"method":"a","method":"b"}"#);
    not_jsonrpc(r#"{"jsonrpc":"2.0","jsonrpc":"2.0","method":"a"}"#);
    not_jsonrpc(r#"{"id":1,"result":1,"result":2}"#);
    not_jsonrpc(r#"{"id":1,"error":{"code":1,"code":2,"message":"m"}}"#);
}

#[test]
fn shapes_that_are_not_json_rpc() {
    not_jsonrpc(r#"{"id":1,"method":"m","result":1}"#);
    not_jsonrpc(r#"{"id":1,"result":1,"error":{"code":1,"message":"m"}}"#);
    assert!(not_jsonrpc(r#"{"result":1}"#).contains("id"));
    not_jsonrpc(r#"{"id":1}"#);
    not_jsonrpc(r#"{}"#);
    not_jsonrpc(r#"{"method":5}"#);
    not_jsonrpc(r#"{"method":"m","params":5}"#);
    not_jsonrpc(r#"{"method":"m","params":"s"}"#);
    not_jsonrpc(r#"{"id":1,"params":[]}"#);
    not_jsonrpc(r#"{"id":1,"error":{"code":1.5,"message":"m"}}"#);
    not_jsonrpc(r#"{"id":1,"error":{"message":"m"}}"#);
    for scalar in ["5", "\"s\"", "null", "true", "[1,2]"] {
        not_jsonrpc(scalar);
    }
}

#[test]
fn null_params_read_as_absent() {
    assert_eq!(
        ok(r#"{"method":"m","params":null}"#),
        Message::Notification(Notification::new("m", None))
    );
}

#[test]
fn unknown_members_are_ignored() {
    assert_eq!(
        ok(r#"{"method":"m","extra":{"deep":[1,2,{"x":null}]}}"#),
        Message::Notification(Notification::new("m", None))
    );
}

#[test]
fn batches() {
    let batch = ok(r#"[{"id":1,"method":"a"},{"method":"b"},{"id":2,"result":true}]"#);
    let Message::Batch(items) = &batch else {
        panic!("{batch:?}")
    };
    assert_eq!(items.len(), 3);
    assert!(matches!(items[2], Message::Response(_)));
    assert_eq!(decode::<Message>(encode(&batch).as_bytes()).unwrap(), batch);

    assert!(not_jsonrpc("[]").contains("empty batch"));
    not_jsonrpc(r#"[[{"method":"a"}]]"#);
    not_jsonrpc(r#"[{"method":"a"},5]"#);
    not_jsonrpc(r#"[{"method":"a"},{"id":true,"method":"b"}]"#);
}

#[test]
fn encoding_refuses_batches_json_rpc_forbids() {
    assert!(serde_json::to_string(&Message::Batch(vec![])).is_err());
    let nested = Message::Batch(vec![Message::Batch(vec![
        Notification::new("a", None).into()
    ])]);
    assert!(serde_json::to_string(&nested).is_err());
}

#[test]
fn encoding_writes_the_version_unless_lite() {
    let request = Message::from(Request::new(7, "go", Some(json!({"x":1}))));
    assert_eq!(
        encode(&request),
        r#"{"jsonrpc":"2.0","id":7,"method":"go","params":{"x":1}}"#
    );
    assert_eq!(
        encode(&Lite(request.clone())),
        r#"{"id":7,"method":"go","params":{"x":1}}"#
    );
    let batch = Message::Batch(vec![request, Response::success(1, json!(2)).into()]);
    assert_eq!(
        encode(&Lite(batch)),
        r#"[{"id":7,"method":"go","params":{"x":1}},{"id":1,"result":2}]"#
    );
    assert_eq!(
        encode(&Response::error(
            "a",
            ErrorObject::new(-1, "no").with_data(json!([1]))
        )),
        r#"{"jsonrpc":"2.0","id":"a","error":{"code":-1,"message":"no","data":[1]}}"#
    );
    assert_eq!(
        encode(&Notification::new("n", None)),
        r#"{"jsonrpc":"2.0","method":"n"}"#
    );
    let lite: Lite<Message> = serde_json::from_str(r#"{"method":"n"}"#).unwrap();
    assert_eq!(lite.0, Message::Notification(Notification::new("n", None)));
}

#[test]
fn numbers_round_trip_exactly() {
    let text = r#"{"jsonrpc":"2.0","method":"m","params":[0.1,1.7976931348623157e308,5e-324,-0.0,18446744073709551615,-9223372036854775808,123456789.12345679,1e22]}"#;
    let first = ok(text);
    let again = decode::<Message>(encode(&first).as_bytes()).unwrap();
    assert_eq!(first, again);
    let Message::Notification(Notification {
        params: Some(Value::Array(values)),
        ..
    }) = &first
    else {
        panic!()
    };
    assert_eq!(values[0].as_f64(), Some(0.1));
    assert_eq!(values[4].as_u64(), Some(u64::MAX));
    assert_eq!(values[6].as_f64(), Some(123_456_789.123_456_79));
}

#[test]
fn json_errors_carry_position_and_utf8_errors_their_offset() {
    match bad(b"{\"method\":\n  \"m\",,}").kind {
        MalformedKind::InvalidJson { line, column, .. } => assert_eq!((line, column), (2, 7)),
        other => panic!("{other:?}"),
    }
    match bad(b"{\"method\":\"a\xff\"}").kind {
        MalformedKind::InvalidUtf8 { valid_up_to } => assert_eq!(valid_up_to, 12),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        bad(b"\xef\xbb\xbf{\"method\":\"m\"}").kind,
        MalformedKind::InvalidJson { .. }
    ));
    assert!(matches!(
        bad(br#"{"method":"m","params":[1e400]}"#).kind,
        MalformedKind::InvalidJson { .. }
    ));
    assert!(matches!(
        bad(b"{\"method\":\"m\"}\0").kind,
        MalformedKind::InvalidJson { .. }
    ));
}

#[test]
fn deep_nesting_is_malformed_not_a_stack_overflow() {
    // Arrays in arrays are rejected as soon as the second level opens: batches do not nest.
    let deep = "[".repeat(100_000);
    assert!(not_jsonrpc(&deep).contains("batches do not nest"));
    // Inside a member, the parser's recursion limit stops it.
    let deep = format!(r#"{{"method":"m","params":{}"#, r#"{"a":"#.repeat(100_000));
    assert!(bad(deep.as_bytes()).to_string().contains("recursion limit"));
    let inside = format!(
        r#"{{"method":"m","params":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let kind = bad(inside.as_bytes()).kind;
    assert!(
        matches!(kind, MalformedKind::InvalidJson { .. }),
        "{kind:?}"
    );
}

#[test]
fn excerpts_are_bounded() {
    let long = format!("{{\"method\":{}", "x".repeat(10_000));
    let m = bad(long.as_bytes());
    assert_eq!(m.excerpt.len(), tether_core::EXCERPT_LEN);
    assert!(long.starts_with(&m.excerpt));
    assert!(m.to_string().len() < 400, "{m}");
}

/// A protocol's own typed message enum plugs into the same decoder.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", content = "params")]
enum MyProtocol {
    #[serde(rename = "ping")]
    Ping { n: u32 },
}

#[test]
fn a_typed_message_enum_decodes_through_the_same_path() {
    assert_eq!(
        decode::<MyProtocol>(br#"{"method":"ping","params":{"n":3}}"#).unwrap(),
        MyProtocol::Ping { n: 3 }
    );
    assert!(matches!(
        decode::<MyProtocol>(br#"{"method":"pong"}"#)
            .unwrap_err()
            .kind,
        MalformedKind::NotJsonRpc { .. }
    ));
}
