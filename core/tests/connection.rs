//! The connection's contracts: ends, sends, the budget, closing, message transports.

mod common;

use common::{drain, lines, note, summary};
use serde_json::json;
use tether_core::{
    Config, ConfigError, Connection, Disconnect, DisconnectKind, Event, Framing, Message,
    Notification, Request, SendError, UsageError,
};

fn conn(config: Config) -> Connection<Message> {
    Connection::new(config).unwrap()
}

fn transmitted(c: &mut Connection<Message>) -> String {
    let mut out = Vec::new();
    let n = c.poll_transmit(&mut out);
    assert_eq!(n, out.len());
    c.handle_transmitted(n);
    String::from_utf8(out).unwrap()
}

#[test]
fn bad_configuration_is_an_error_not_a_panic() {
    assert_eq!(
        Connection::<Message>::new(Config::new().max_frame(0)).unwrap_err(),
        ConfigError::ZeroMaxFrame
    );
    assert_eq!(
        Connection::<Message>::new(Config::new().send_budget(0)).unwrap_err(),
        ConfigError::ZeroSendBudget
    );
}

#[test]
fn disconnected_comes_once_last_and_nothing_follows() {
    let mut c = conn(lines(1024));
    c.handle_input(note(0).as_bytes()).unwrap();
    c.handle_eof();
    c.handle_eof();
    c.handle_read_error("late");
    c.handle_input(note(1).as_bytes()).unwrap();
    let mut events = Vec::new();
    drain(&mut c, &mut events);
    assert_eq!(summary(&events), ["n0", "disconnected"]);
    assert!(c.is_closed());
    assert_eq!(c.poll_event(), None);
    c.handle_write_error("later");
    assert_eq!(c.poll_event(), None);
}

#[test]
fn a_read_error_delivers_complete_frames_then_names_the_connection() {
    let mut c = conn(lines(1024));
    c.handle_input(format!("{}{}{{\"method\":\"partial", note(0), note(1)).as_bytes())
        .unwrap();
    c.handle_read_error("connection reset");
    let mut events = Vec::new();
    drain(&mut c, &mut events);
    assert_eq!(
        summary(&events),
        [
            "n0",
            "n1",
            "disconnected:connection test: read failed: connection reset"
        ]
    );
    assert_eq!(
        events[2],
        Event::Disconnected(Some(Disconnect {
            label: "test".into(),
            kind: DisconnectKind::Read("connection reset".into())
        }))
    );
}

#[test]
fn sends_are_queued_in_order_as_one_buffer() {
    let mut c = conn(lines(1024));
    for i in 0..3 {
        c.send(&Request::new(i, "m", Some(json!([i]))).into())
            .unwrap();
    }
    assert_eq!(
        transmitted(&mut c),
        "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"m\",\"params\":[0]}\n\
         {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":[1]}\n\
         {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"m\",\"params\":[2]}\n"
    );
    assert_eq!(transmitted(&mut c), "");
    // A caller buffer that is not empty is appended to.
    c.send(&Notification::new("a", None).into()).unwrap();
    let mut out = b"before|".to_vec();
    c.poll_transmit(&mut out);
    assert_eq!(out, b"before|{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n");
}

#[test]
fn content_length_output_has_exact_headers() {
    let mut c = conn(Config::new().framing(Framing::ContentLength));
    c.send(&Notification::new("é", None).into()).unwrap();
    c.send(&Notification::new("b", None).into()).unwrap();
    let out = transmitted(&mut c);
    assert_eq!(
        out,
        "Content-Length: 31\r\n\r\n{\"jsonrpc\":\"2.0\",\"method\":\"é\"}\
         Content-Length: 30\r\n\r\n{\"jsonrpc\":\"2.0\",\"method\":\"b\"}"
    );
    // And it reads back.
    let events = common::feed(
        Config::new().framing(Framing::ContentLength),
        &[out.as_bytes()],
    );
    assert_eq!(summary(&events), ["é", "b", "disconnected"]);
}

#[test]
fn an_unencodable_message_is_an_error_and_not_a_disconnect() {
    let mut c = conn(lines(1024));
    c.send(&Notification::new("a", None).into()).unwrap();
    assert!(matches!(
        c.send(&Message::Batch(vec![])),
        Err(SendError::Encode(_))
    ));
    c.send(&Notification::new("b", None).into()).unwrap();
    assert_eq!(
        transmitted(&mut c),
        "{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n{\"jsonrpc\":\"2.0\",\"method\":\"b\"}\n"
    );
    assert_eq!(c.poll_event(), None);
    assert!(!c.is_input_ended());
}

#[test]
fn the_send_budget_bounds_queued_and_unwritten_bytes() {
    let mut c = conn(lines(1024).send_budget(100));
    let msg: Message = Notification::new("x".repeat(40), None).into();
    c.send(&msg).unwrap();
    c.send(&msg).unwrap();
    // 140 bytes queued: over the budget, so the next send is refused until bytes are written.
    assert!(!c.can_send());
    assert!(matches!(c.send(&msg), Err(SendError::Full)));
    let mut out = Vec::new();
    let n = c.poll_transmit(&mut out);
    // Handed out but not yet written still counts.
    assert!(matches!(c.send(&msg), Err(SendError::Full)));
    assert_eq!(n, 140);
    c.handle_transmitted(30);
    assert!(matches!(c.send(&msg), Err(SendError::Full)));
    c.handle_transmitted(n - 30);
    assert!(c.can_send());
    c.send(&msg).unwrap();
}

#[test]
fn a_write_error_disconnects_once_and_fails_later_sends() {
    let mut c = conn(lines(1024));
    c.handle_input(note(0).as_bytes()).unwrap();
    c.send(&Notification::new("a", None).into()).unwrap();
    c.handle_write_error("broken pipe");
    assert_eq!(c.queued(), 0);
    assert!(matches!(
        c.send(&Notification::new("b", None).into()),
        Err(SendError::Disconnected)
    ));
    c.handle_eof();
    let mut events = Vec::new();
    drain(&mut c, &mut events);
    assert_eq!(
        summary(&events),
        [
            "n0",
            "disconnected:connection test: write failed: broken pipe"
        ]
    );
    assert!(!c.poll_close_write());
}

#[test]
fn sends_fail_after_the_end_was_delivered() {
    let mut c = conn(lines(1024));
    c.handle_eof();
    // Until the owner has seen the end, it may still queue.
    c.send(&Notification::new("a", None).into()).unwrap();
    assert_eq!(c.poll_event(), Some(Event::Disconnected(None)));
    assert!(matches!(
        c.send(&Notification::new("b", None).into()),
        Err(SendError::Disconnected)
    ));
}

#[test]
fn close_waits_for_the_queue_to_drain_then_closes_the_write_half_once() {
    let mut c = conn(lines(1024));
    c.send(&Notification::new("a", None).into()).unwrap();
    c.close();
    c.close();
    assert!(matches!(
        c.send(&Notification::new("b", None).into()),
        Err(SendError::Closed)
    ));
    assert!(!c.poll_close_write());
    let mut out = Vec::new();
    let n = c.poll_transmit(&mut out);
    assert!(!c.poll_close_write());
    c.handle_transmitted(n);
    assert!(c.poll_close_write());
    assert!(!c.poll_close_write());
    // Reading goes on until the peer ends.
    c.handle_input(note(0).as_bytes()).unwrap();
    c.handle_eof();
    let mut events = Vec::new();
    drain(&mut c, &mut events);
    assert_eq!(summary(&events), ["n0", "disconnected"]);
}

#[test]
fn inputs_for_the_wrong_transport_are_usage_errors() {
    let mut stream = conn(lines(1024));
    assert_eq!(
        stream.handle_frame(b"{}".to_vec()),
        Err(UsageError::FrameOnStreamTransport)
    );
    assert_eq!(stream.poll_transmit_frame(), None);
    let mut frames = conn(Config::new().framing(Framing::Messages));
    assert_eq!(
        frames.handle_input(b"{}"),
        Err(UsageError::BytesOnMessageTransport)
    );
    assert_eq!(frames.poll_transmit(&mut Vec::new()), 0);
}

#[test]
fn message_transports_carry_one_message_per_frame() {
    let mut c = conn(
        Config::new()
            .framing(Framing::Messages)
            .max_frame(64)
            .label("ws"),
    );
    c.handle_frame(note(0).trim_end().as_bytes().to_vec())
        .unwrap();
    // A newline inside a frame is just whitespace.
    c.handle_frame(b"{\"method\":\n\"n1\"}".to_vec()).unwrap();
    c.handle_frame(vec![b' '; 65]).unwrap();
    c.handle_frame(b"not json".to_vec()).unwrap();
    c.handle_frame(note(2).into_bytes()).unwrap();
    assert_eq!(c.buffered(), 31 + 16 + 8 + 32);
    c.handle_eof();
    let mut events = Vec::new();
    drain(&mut c, &mut events);
    assert_eq!(
        summary(&events),
        [
            "n0",
            "n1",
            "malformed:too-large",
            "malformed:json",
            "n2",
            "disconnected"
        ]
    );

    let mut c = conn(Config::new().framing(Framing::Messages).send_budget(40));
    c.send(&Notification::new("a", None).into()).unwrap();
    c.send(&Notification::new("b", None).into()).unwrap();
    assert!(matches!(
        c.send(&Notification::new("c", None).into()),
        Err(SendError::Full)
    ));
    let first = c.poll_transmit_frame().unwrap();
    assert_eq!(first, b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}");
    assert_eq!(
        c.poll_transmit_frame().unwrap(),
        b"{\"jsonrpc\":\"2.0\",\"method\":\"b\"}"
    );
    assert_eq!(c.poll_transmit_frame(), None);
    c.handle_transmitted(2 * first.len());
    c.close();
    assert!(c.poll_close_write());
}

/// A message type whose encoding writes a raw newline, as a hand-written `Serialize` could.
#[derive(Debug, serde::Deserialize)]
struct Pretty(serde_json::Value);

impl serde::Serialize for Pretty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string_pretty(&self.0).unwrap();
        let raw = serde_json::value::RawValue::from_string(text).unwrap();
        raw.serialize(s)
    }
}

#[test]
fn a_newline_in_an_encoding_never_splits_a_line() {
    let mut c = Connection::<Pretty>::new(lines(1024)).unwrap();
    c.send(&Pretty(json!({"method":"m","params":{"a":"x\ny"}})))
        .unwrap();
    let mut out = Vec::new();
    c.poll_transmit(&mut out);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    let events = common::feed(lines(1024), &[&out]);
    assert_eq!(summary(&events), ["m", "disconnected"]);
}
