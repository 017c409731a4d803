//! `Content-Length` framing through the connection: headers, limits and resynchronisation.

mod common;

use common::{content_length, feed, lsp_note, summary};
use tether_core::{Connection, Event, MalformedKind, Message};

fn header_detail(events: &[Event<Message>], at: usize) -> String {
    match &events[at] {
        Event::Malformed(m) => match &m.kind {
            MalformedKind::BadHeader { detail } => detail.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn frames_with_other_headers_and_any_case() {
    let body = r#"{"jsonrpc":"2.0","method":"b"}"#;
    let input = format!(
        "{}content-length: {}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{body}{}",
        lsp_note(0),
        body.len(),
        lsp_note(1)
    );
    let events = feed(content_length(1024), &[input.as_bytes()]);
    assert_eq!(summary(&events), ["n0", "b", "n1", "disconnected"]);
    let bytes: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
    assert_eq!(feed(content_length(1024), &bytes), events);
}

#[test]
fn bare_newlines_and_blank_lines_between_messages_are_tolerated() {
    let input = format!(
        "\r\n\r\nContent-Length: 16\n\n{{\"method\":\"a\"}}\r\n{}",
        lsp_note(1)
    );
    assert_eq!(
        summary(&feed(content_length(1024), &[input.as_bytes()])),
        ["a", "n1", "disconnected"]
    );
}

#[test]
fn a_missing_length_is_reported_and_the_next_header_found() {
    let input = format!(
        "Content-Type: x\r\n\r\n{{\"method\":\"lost\"}}{}",
        lsp_note(1)
    );
    let events = feed(content_length(1024), &[input.as_bytes()]);
    assert_eq!(summary(&events), ["malformed:header", "n1", "disconnected"]);
    assert_eq!(header_detail(&events, 0), "no Content-Length header");
}

#[test]
fn duplicate_and_non_numeric_lengths() {
    let input = format!(
        "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello{}Content-Length: ten\r\n\r\n0123456789{}Content-Length: 99999999999999999999999\r\n\r\n{}",
        lsp_note(0),
        lsp_note(1),
        lsp_note(2)
    );
    let events = feed(content_length(1024), &[input.as_bytes()]);
    // The duplicate block resynchronises at its own second header, whose body is not JSON.
    assert_eq!(
        summary(&events),
        [
            "malformed:header",
            "malformed:json",
            "n0",
            "malformed:header",
            "n1",
            "malformed:header",
            "n2",
            "disconnected"
        ]
    );
    assert_eq!(
        header_detail(&events, 0),
        "a duplicate Content-Length header"
    );
    assert!(header_detail(&events, 3).contains("\"ten\" is not a number"));
    assert_eq!(header_detail(&events, 5), "Content-Length out of range");
}

#[test]
fn garbage_and_bad_header_names_resynchronise() {
    let input = format!(
        "{{\"method\":\"raw\"}}\n{}junk junk\r\n\r\n{}",
        lsp_note(0),
        lsp_note(1)
    );
    let events = feed(content_length(1024), &[input.as_bytes()]);
    assert_eq!(
        summary(&events),
        [
            "malformed:header",
            "n0",
            "malformed:header",
            "n1",
            "disconnected"
        ]
    );
    assert_eq!(header_detail(&events, 0), "an invalid header name");
    assert_eq!(header_detail(&events, 2), "a header line without a colon");
}

#[test]
fn an_endless_header_block_is_bounded() {
    let mut input = "X-Filler: y\r\n".repeat(1000);
    input.push_str(&lsp_note(0));
    let events = feed(content_length(1024), &[input.as_bytes()]);
    assert_eq!(summary(&events), ["malformed:header", "n0", "disconnected"]);
    assert!(header_detail(&events, 0).contains("over 8192"));
}

#[test]
fn a_body_over_the_limit_is_skipped_as_it_arrives() {
    let limit = 100;
    let mut conn = Connection::<Message>::new(content_length(limit)).unwrap();
    let mut events = Vec::new();
    conn.handle_input(format!("{}Content-Length: 1000000\r\n\r\n", lsp_note(0)).as_bytes())
        .unwrap();
    let chunk = [b' '; 1000];
    for _ in 0..1000 {
        common::drain(&mut conn, &mut events);
        assert!(conn.buffered() <= limit + chunk.len());
        conn.handle_input(&chunk).unwrap();
    }
    conn.handle_input(lsp_note(1).as_bytes()).unwrap();
    conn.handle_eof();
    common::drain(&mut conn, &mut events);
    assert_eq!(
        summary(&events),
        ["n0", "malformed:too-large", "n1", "disconnected"]
    );
    let Event::Malformed(m) = &events[1] else {
        panic!()
    };
    assert_eq!(
        m.kind,
        MalformedKind::TooLarge {
            limit,
            declared: Some(1_000_000)
        }
    );
}

#[test]
fn a_lying_length_costs_one_message_at_most() {
    // Too short: the body is cut, the rest of it is garbage before the next header.
    let short = format!(
        "Content-Length: 10\r\n\r\n{{\"method\":\"a\"}}{}",
        lsp_note(1)
    );
    assert_eq!(
        summary(&feed(content_length(1024), &[short.as_bytes()])),
        ["malformed:json", "malformed:header", "n1", "disconnected"]
    );
    // Too long at the end of the stream: truncated.
    let long = format!(
        "{}Content-Length: 50\r\n\r\n{{\"method\":\"a\"}}",
        lsp_note(0)
    );
    let events = feed(content_length(1024), &[long.as_bytes()]);
    assert_eq!(
        summary(&events),
        ["n0", "malformed:truncated", "disconnected"]
    );
    let Event::Malformed(m) = &events[1] else {
        panic!()
    };
    assert_eq!(
        m.kind,
        MalformedKind::Truncated {
            expected: 50,
            received: 14
        }
    );
}

#[test]
fn a_stream_ending_inside_headers_is_reported() {
    let events = feed(content_length(1024), &[b"Content-Len"]);
    assert_eq!(summary(&events), ["malformed:header", "disconnected"]);
}
