//! Newline-delimited framing through the connection.

mod common;

use common::{feed, lines, note, summary};
use tether_core::{Connection, Event, MalformedKind, Message};

#[test]
fn crlf_blank_and_whitespace_lines() {
    let input = "\n  \t \r\n{\"method\":\"a\"}\r\n\r\n{\"method\":\"b\"}\n   \n";
    assert_eq!(
        summary(&feed(lines(1024), &[input.as_bytes()])),
        ["a", "b", "disconnected"]
    );
}

#[test]
fn a_final_line_without_newline_is_decoded_at_eof() {
    assert_eq!(
        summary(&feed(
            lines(1024),
            &[b"{\"method\":\"a\"}\n{\"method\":\"b\"}"]
        )),
        ["a", "b", "disconnected"]
    );
    // ... with a trailing carriage return too.
    assert_eq!(
        summary(&feed(lines(1024), &[b"{\"method\":\"a\"}\r"])),
        ["a", "disconnected"]
    );
}

#[test]
fn malformed_lines_do_not_end_the_connection() {
    let input = format!(
        "{}garbage\n{}\u{feff}{{\"method\":\"x\"}}\n{}{{\"id\":true,\"method\":\"m\"}}\n{}",
        note(0),
        note(1),
        note(2),
        note(3)
    );
    assert_eq!(
        summary(&feed(lines(1024), &[input.as_bytes()])),
        [
            "n0",
            "malformed:json",
            "n1",
            "malformed:json",
            "n2",
            "malformed:not-jsonrpc",
            "n3",
            "disconnected"
        ]
    );
}

#[test]
fn lone_carriage_returns_and_nul_bytes_are_malformed() {
    let input = format!(
        "{}{{\"method\":\"a\"}}\r{{\"method\":\"b\"}}\n\0\0\n{}",
        note(0),
        note(1)
    );
    assert_eq!(
        summary(&feed(lines(1024), &[input.as_bytes()])),
        [
            "n0",
            "malformed:json",
            "malformed:json",
            "n1",
            "disconnected"
        ]
    );
}

#[test]
fn an_overlong_line_is_one_malformed_and_is_discarded_as_it_arrives() {
    let limit = 1000;
    let mut conn = Connection::<Message>::new(lines(limit)).unwrap();
    let mut events = Vec::new();
    conn.handle_input(note(0).as_bytes()).unwrap();
    let chunk = vec![b'x'; 300];
    // Ten mebibytes of one line, in 300-byte chunks: the buffer never grows past the limit
    // plus one chunk.
    for _ in 0..(10 << 20) / 300 {
        common::drain(&mut conn, &mut events);
        assert!(
            conn.buffered() <= limit + chunk.len(),
            "{}",
            conn.buffered()
        );
        conn.handle_input(&chunk).unwrap();
    }
    conn.handle_input(format!("tail\n{}", note(1)).as_bytes())
        .unwrap();
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
            declared: None
        }
    );
    assert!(m.excerpt.chars().all(|c| c == 'x'));
}

#[test]
fn the_limit_counts_the_line_without_its_newline() {
    let exact = format!("{{\"method\":\"{}\"}}", "a".repeat(20));
    let limit = exact.len();
    let input = format!("{exact}\n{exact}x\n{exact}\n");
    let events = feed(lines(limit), &[input.as_bytes()]);
    assert_eq!(
        summary(&events).iter().map(|s| &s[..3]).collect::<Vec<_>>(),
        ["aaa", "mal", "aaa", "dis"]
    );
    // The same verdicts byte by byte.
    let bytes: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
    assert_eq!(feed(lines(limit), &bytes), events);
}

#[test]
fn an_overlong_final_line_at_eof_is_too_large() {
    let events = feed(lines(10), &[b"{\"method\":\"abcdefgh\"}"]);
    assert_eq!(summary(&events), ["malformed:too-large", "disconnected"]);
}

#[test]
fn chunking_never_changes_the_events() {
    let input = format!(
        "{}\r\n\n{{bad\n{}{}\n{}x{{\"id\":1,\"result\":[1,2,3]}}\n{}",
        note(0),
        note(1),
        "y".repeat(200),
        note(2),
        note(3)
    );
    let whole = feed(lines(64), &[input.as_bytes()]);
    assert_eq!(
        summary(&whole),
        [
            "n0",
            "malformed:json",
            "n1",
            "malformed:too-large",
            "n2",
            "malformed:json",
            "n3",
            "disconnected"
        ]
    );
    for size in [1, 2, 3, 7, 64, 65, 1000] {
        let chunks: Vec<&[u8]> = input.as_bytes().chunks(size).collect();
        assert_eq!(feed(lines(64), &chunks), whole, "chunk size {size}");
    }
}
