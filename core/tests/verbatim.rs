//! Messages kept as their bytes: `Verbatim` gives the same verdicts as decoding into a
//! `Message`, keeps what was written unless sending it as written would differ from what tether
//! reads, and `Frames` cuts a stream exactly as a connection does.

mod common;

use std::time::Duration;

use common::{base, content_length, feed, lines};
use proptest::prelude::*;
use tether_core::framing::Frames;
use tether_core::{
    decode, Config, Control, Endpoint, Event, Framing, Id, Malformed, Message, Verbatim,
    VerbatimBatch,
};

const SEC: Duration = Duration::from_secs(1);

/// The ids of the requests in `message`, in order.
fn request_ids(message: &Message) -> Vec<Id> {
    match message {
        Message::Request(r) => vec![r.id.clone()],
        Message::Batch(items) => items.iter().flat_map(request_ids).collect(),
        _ => Vec::new(),
    }
}

/// Checks `frame` both ways and asserts they agree; the verbatim bytes decode to the same
/// message as the frame.
fn agree(frame: &[u8]) -> Result<Option<Verbatim>, TestCaseError> {
    let decoded = decode::<Message>(frame);
    let verbatim = Verbatim::decode(frame);
    match (&decoded, &verbatim) {
        (Ok(message), Ok(verbatim)) => {
            prop_assert_eq!(&decode::<Message>(verbatim.as_bytes()).unwrap(), message);
            prop_assert_eq!(verbatim.requests(), &request_ids(message)[..]);
        }
        (Err(a), Err(b)) => prop_assert_eq!(a, b),
        _ => prop_assert!(false, "{decoded:?} but {verbatim:?}"),
    }
    Ok(verbatim.ok())
}

#[test]
fn bytes_are_kept_as_written() {
    let frame = br#"{ "id" : 7, "method":"tools/call", "params":{"b":[1, 2.50]}, "jsonrpc":"2.0", "x-trace":"abc" }"#;
    let verbatim = Verbatim::decode(frame).unwrap();
    assert_eq!(verbatim.as_bytes(), frame);
    assert_eq!(verbatim.requests(), &[Id::from(7)]);
}

#[test]
fn what_would_read_differently_is_encoded_again() {
    // No "jsonrpc": the peer gets a JSON-RPC 2.0 message.
    let verbatim = Verbatim::decode(br#"{"id":1,"method":"m"}"#).unwrap();
    assert_eq!(
        verbatim.as_bytes(),
        br#"{"jsonrpc":"2.0","id":1,"method":"m"}"#
    );
    // "params": null is read as absent, and sent as absent.
    let verbatim = Verbatim::decode(br#"{"jsonrpc":"2.0","method":"n","params":null}"#).unwrap();
    assert_eq!(verbatim.as_bytes(), br#"{"jsonrpc":"2.0","method":"n"}"#);
    assert_eq!(verbatim.requests(), &[] as &[Id]);
}

#[test]
fn a_batch_keeps_its_bytes_and_names_its_requests() {
    let frame = br#"[{"jsonrpc":"2.0","id":"a","method":"x"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"result":null},{"jsonrpc":"2.0","id":3,"method":"y","params":[]}]"#;
    let verbatim = Verbatim::decode(frame).unwrap();
    assert_eq!(verbatim.as_bytes(), frame);
    assert_eq!(verbatim.requests(), &[Id::from("a"), Id::from(3)]);
}

#[test]
fn bad_frames_get_the_verdicts_of_decoding() {
    let frames: &[&[u8]] = &[
        b"",
        b"not json",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\"} trailing",
        b"\xff\xfe",
        b"[]",
        b"[[{\"jsonrpc\":\"2.0\",\"method\":\"m\"}]]",
        b"[1]",
        b"42",
        b"{}",
        b"{\"jsonrpc\":\"1.0\",\"method\":\"m\"}",
        b"{\"jsonrpc\":\"2.0\",\"method\":1}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":3}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"result\":1}",
        b"{\"jsonrpc\":\"2.0\",\"params\":{}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"x\"}}",
        b"{\"jsonrpc\":\"2.0\",\"result\":1}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"m\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"m\"}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"method\":\"n\"}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{\"a\":}}",
    ];
    for frame in frames {
        let verbatim = Verbatim::decode(frame);
        assert_eq!(
            verbatim.as_ref().err(),
            decode::<Message>(frame).as_ref().err(),
            "{}",
            String::from_utf8_lossy(frame)
        );
        assert!(verbatim.is_err(), "{}", String::from_utf8_lossy(frame));
    }
}

#[test]
fn invalid_utf8_is_judged_where_decoding_looks_at_it() {
    // In a member tether skips, as decoding does: accepted both ways, and kept.
    let skipped = b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"x\":\"\xff\"}";
    let verbatim = agree(skipped).unwrap().unwrap();
    assert_eq!(verbatim.as_bytes(), skipped);
    // In a member it reads: refused both ways, with the same verdict.
    for frame in [
        &b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}"[..],
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":[\"\xff\"]}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{\"\xff\":1}}",
    ] {
        assert!(agree(frame).unwrap().is_none());
    }
}

/// A JSON value of any kind, small.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i32>().prop_map(|n| n.to_string()),
        Just("1.5".to_owned()),
        Just("1e400".to_owned()),
        "[a-z\\\\\"]{0,4}".prop_map(|s| format!("{s:?}")),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..3).prop_map(|v| {
                let members: Vec<String> =
                    v.into_iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// An object made of any of the members a message may have, each with any kind of value,
/// sometimes twice, in any order.
fn object() -> impl Strategy<Value = String> {
    let member = prop_oneof![
        prop_oneof![Just("\"2.0\"".to_owned()), value()].prop_map(|v| format!("\"jsonrpc\":{v}")),
        prop_oneof![any::<u16>().prop_map(|n| n.to_string()), value()]
            .prop_map(|v| format!("\"id\":{v}")),
        prop_oneof![Just("\"m\"".to_owned()), value()].prop_map(|v| format!("\"method\":{v}")),
        value().prop_map(|v| format!("\"params\":{v}")),
        value().prop_map(|v| format!("\"result\":{v}")),
        prop_oneof![Just(r#"{"code":-1,"message":"no"}"#.to_owned()), value()]
            .prop_map(|v| format!("\"error\":{v}")),
        value().prop_map(|v| format!("\"extra\":{v}")),
    ];
    prop::collection::vec(member, 0..6).prop_map(|m| format!("{{{}}}", m.join(",")))
}

/// A frame: one object, a batch of them, or something else.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => object().prop_map(String::into_bytes),
        1 => prop::collection::vec(object(), 0..4).prop_map(|v| format!("[{}]", v.join(",")).into_bytes()),
        1 => value().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn verbatim_agrees_with_decoding(frame in frame()) {
        agree(&frame)?;
    }

    /// A batch gives each frame the verdict `Verbatim::decode` gives it, and hands out the
    /// same messages in order, however its frames are split between takes; its messages
    /// outlive the batch and the takes after them.
    #[test]
    fn a_batch_agrees_with_one_frame_at_a_time(
        frames in prop::collection::vec(frame(), 0..12),
        takes in prop::collection::vec(any::<bool>(), 12),
    ) {
        let mut batch = VerbatimBatch::new();
        let mut verdicts = Vec::new();
        let mut got = Vec::new();
        for (frame, take) in frames.iter().zip(&takes) {
            verdicts.push(batch.push(frame).err());
            prop_assert_eq!(batch.len(), verdicts.iter().filter(|v| v.is_none()).count() - got.len());
            if *take {
                got.extend(batch.take());
                prop_assert!(batch.is_empty());
            }
        }
        got.extend(batch.take());
        drop(batch);
        let one_at_a_time: Vec<Result<Verbatim, Malformed>> =
            frames.iter().map(|f| Verbatim::decode(f)).collect();
        let expected_verdicts: Vec<Option<Malformed>> =
            one_at_a_time.iter().map(|v| v.as_ref().err().cloned()).collect();
        prop_assert_eq!(verdicts, expected_verdicts);
        let expected: Vec<Verbatim> = one_at_a_time.into_iter().filter_map(Result::ok).collect();
        prop_assert_eq!(got.len(), expected.len());
        for (got, expected) in got.iter().zip(&expected) {
            prop_assert_eq!(got.as_bytes(), expected.as_bytes());
            prop_assert_eq!(got.requests(), expected.requests());
        }
    }

    #[test]
    fn valid_messages_are_kept_as_written(
        id in any::<u32>(),
        params in prop::collection::vec(value(), 0..3),
    ) {
        let frame = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"m","params":[{}]}}"#,
            params.join(",")
        );
        // Values may be out of range (1e400): those frames are refused both ways.
        if let Some(verbatim) = agree(frame.as_bytes())? {
            prop_assert_eq!(verbatim.as_bytes(), frame.as_bytes());
        }
    }

    /// Frames cuts any chunking of any stream exactly as a connection does: the same frames
    /// (checked as verbatim messages) and the same malformed verdicts, in the same order.
    #[test]
    fn frames_cut_as_a_connection_does(
        pieces in prop::collection::vec(prop_oneof![
            frame().prop_map(|mut f| { f.push(b'\n'); f }),
            Just(b"\r\n".to_vec()),
            (1..100usize).prop_map(|n| vec![b'z'; n]),
        ], 0..12),
        chunk in 1..64usize,
        limit in 1..120usize,
        content_length_framing in any::<bool>(),
    ) {
        let input: Vec<u8> = match content_length_framing {
            false => pieces.concat(),
            true => pieces
                .iter()
                .flat_map(|p| {
                    let mut f = format!("Content-Length: {}\r\n\r\n", p.len()).into_bytes();
                    f.extend_from_slice(p);
                    f
                })
                .collect(),
        };
        let (framing, config) = match content_length_framing {
            false => (Framing::Lines, lines(limit)),
            true => (Framing::ContentLength, content_length(limit)),
        };
        let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
        let expected: Vec<Result<Message, Malformed>> = feed(config, &chunks)
            .into_iter()
            .filter_map(|event| match event {
                Event::Message(m) => Some(Ok(m)),
                Event::Malformed(m) => Some(Err(m)),
                Event::Disconnected(_) => None,
            })
            .collect();
        let mut frames = Frames::new(framing, limit).unwrap();
        let mut got = Vec::new();
        let mut take = |frames: &mut Frames| {
            while let Some(next) = frames.poll_frame(Verbatim::decode) {
                got.push(next.and_then(|v| v).map(|v| decode::<Message>(v.as_bytes()).unwrap()));
            }
        };
        for c in &chunks {
            frames.handle_input(c);
            prop_assert!(frames.buffered() <= limit.max(tether_core::framing::MAX_HEADER) + chunk);
            take(&mut frames);
        }
        frames.handle_eof();
        take(&mut frames);
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn zero_is_no_frame_limit() {
    assert!(Frames::new(Framing::Lines, 0).is_err());
}

/// What the endpoint queued to write, reported written.
fn written(ep: &mut Endpoint) -> Vec<u8> {
    let mut out = Vec::new();
    let n = ep.poll_transmit(&mut out);
    ep.handle_transmitted(n);
    while let Some(frame) = ep.poll_transmit_frame() {
        ep.handle_transmitted(frame.len());
        out.extend_from_slice(&frame);
        out.push(b'|');
    }
    out
}

#[test]
fn sent_as_written_and_framed_for_each_transport() {
    let frame = br#"{"jsonrpc":"2.0","method":"n","params":{"a" : 1}}"#;
    let verbatim = Verbatim::decode(frame).unwrap();
    let t0 = base();
    let cases = [
        (Framing::Lines, [&frame[..], b"\n"].concat()),
        (
            Framing::ContentLength,
            [
                &format!("Content-Length: {}\r\n\r\n", frame.len()).into_bytes()[..],
                frame,
            ]
            .concat(),
        ),
        (Framing::Messages, [&frame[..], b"|"].concat()),
    ];
    for (framing, expected) in cases {
        let mut ep = Endpoint::new(Config::new().framing(framing), t0).unwrap();
        ep.send_verbatim(&verbatim).unwrap();
        assert_eq!(written(&mut ep), expected, "{framing:?}");
    }
}

#[test]
fn its_requests_are_tracked_until_answered() {
    let t0 = base();
    let mut ep = Endpoint::new(Config::new(), t0).unwrap();
    ep.track_requests();
    let verbatim = Verbatim::decode(br#"{"jsonrpc":"2.0","id":7,"method":"slow"}"#).unwrap();
    ep.send_verbatim(&verbatim).unwrap();
    written(&mut ep);
    ep.finish(5 * SEC, t0);
    assert_eq!(std::iter::from_fn(|| ep.poll_control()).count(), 0);
    ep.handle_input(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":1}\n", t0 + SEC)
        .unwrap();
    assert_eq!(std::iter::from_fn(|| ep.poll_event()).count(), 1);
    assert_eq!(
        std::iter::from_fn(|| ep.poll_control()).collect::<Vec<_>>(),
        vec![Control::CloseWrite]
    );
}

#[test]
fn the_budget_holds_for_verbatim_sends() {
    let t0 = base();
    let mut ep = Endpoint::new(Config::new().send_budget(10), t0).unwrap();
    let verbatim = Verbatim::decode(br#"{"jsonrpc":"2.0","method":"a-long-method-name"}"#).unwrap();
    ep.send_verbatim(&verbatim).unwrap();
    assert!(matches!(
        ep.send_verbatim(&verbatim),
        Err(tether_core::SendError::Full)
    ));
}

#[test]
fn many_go_while_the_budget_has_room_and_each_request_is_tracked() {
    let t0 = base();
    // Room for two of these (the budget is checked before each is queued).
    let mut ep = Endpoint::new(Config::new().send_budget(60), t0).unwrap();
    ep.track_requests();
    let messages: Vec<Verbatim> = (1..=4)
        .map(|id| {
            let frame = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"slow"}}"#);
            Verbatim::decode(frame.as_bytes()).unwrap()
        })
        .collect();
    assert!(matches!(ep.send_verbatim_many(&messages), Ok(2)));
    assert!(matches!(
        ep.send_verbatim_many(&messages[2..]),
        Err(tether_core::SendError::Full)
    ));
    let out = written(&mut ep);
    assert_eq!(
        out,
        [messages[0].as_bytes(), b"\n", messages[1].as_bytes(), b"\n"].concat()
    );
    assert!(matches!(ep.send_verbatim_many(&messages[2..]), Ok(2)));
    written(&mut ep);
    // All four are awaited at the end of input, and only they.
    ep.finish(5 * SEC, t0);
    for id in 1..=4 {
        assert_eq!(std::iter::from_fn(|| ep.poll_control()).count(), 0, "{id}");
        let answer = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":1}}\n");
        ep.handle_input(answer.as_bytes(), t0 + SEC).unwrap();
        assert_eq!(std::iter::from_fn(|| ep.poll_event()).count(), 1);
    }
    assert_eq!(
        std::iter::from_fn(|| ep.poll_control()).collect::<Vec<_>>(),
        vec![Control::CloseWrite]
    );
}

#[test]
fn many_stops_at_a_close_and_says_so_for_the_first() {
    let t0 = base();
    let mut ep = Endpoint::new(Config::new(), t0).unwrap();
    let verbatim = Verbatim::decode(br#"{"jsonrpc":"2.0","method":"n"}"#).unwrap();
    assert!(matches!(ep.send_verbatim_many(&[]), Ok(0)));
    ep.close(t0);
    assert!(matches!(
        ep.send_verbatim_many(&[verbatim.clone(), verbatim]),
        Err(tether_core::SendError::Closed)
    ));
}
