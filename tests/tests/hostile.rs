//! The hostile-peer catalogue: each case is a real child (`tether-hostile CASE`) that writes one
//! kind of bad output between valid numbered notifications. For every case, under tokio and
//! smol: the exact `Malformed` kinds in their places, every notification after them in order,
//! a clean end, the child's exit 0 (it could write everything), and for the gigabyte line a
//! peak RSS within the frame limit plus 32 MiB, measured in a process of its own.

mod support;

conformance!(
    invalid_utf8,
    lone_cr,
    blank_and_crlf_lines,
    nul_bytes,
    utf8_bom,
    gigabyte_line,
    deep_arrays,
    deep_objects,
    deep_params,
    number_1e400,
    duplicate_keys,
    wrong_ids,
    arrays_and_scalars,
    not_json_rpc_objects,
    binary_garbage,
    log_lines,
    surrogates,
    trailing_garbage,
    many_bad_lines,
    limit_boundary,
    split_bytes,
    eof_mid_message,
    content_length_understated,
    content_length_not_a_number,
    content_length_overflow,
    content_length_missing,
    content_length_too_large,
    content_length_overstated_at_end,
);

/// The frame limit of the gigabyte case, and how far above it the peak RSS may go.
const MAX_FRAME: usize = 16 << 20;
const RSS_HEADROOM: usize = 32 << 20;

/// Reads the gigabyte line through tether on the runtime named by `TETHER_RSS_PROBE` (`tokio`
/// or `smol`), checks the events, and prints and bounds this process's peak RSS. Run on its
/// own by `gigabyte_line`, so that the peak is this reading's alone.
#[test]
#[ignore = "run by the gigabyte_line cases, in a process of its own"]
fn rss_probe() {
    match std::env::var("TETHER_RSS_PROBE").as_deref() {
        Ok("smol") => smol::block_on(scenarios::gigabyte_line_events::<tether_smol::Smol>()),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(scenarios::gigabyte_line_events::<tether_tokio::Tokio>()),
    }
    let peak = support::peak_rss_kib();
    println!("peak_rss_kib={peak}");
    assert!(
        peak as usize * 1024 <= MAX_FRAME + RSS_HEADROOM,
        "peak RSS {peak} KiB"
    );
}

mod scenarios {
    use std::process::Command;
    use std::sync::Arc;

    use serde_json::json;
    use tether_core::{Framing, Malformed, MalformedKind};
    use tether_io::{Connection, Event, Message, Options, Runtime};

    use crate::support::*;
    use crate::MAX_FRAME;

    /// A check on one `Malformed` event.
    type Expect = Arc<dyn Fn(&Malformed) -> bool + Send + Sync>;

    fn expect(f: impl Fn(&Malformed) -> bool + Send + Sync + 'static) -> Expect {
        Arc::new(f)
    }

    fn invalid_json(detail: &'static str) -> Expect {
        expect(
            move |m| matches!(&m.kind, MalformedKind::InvalidJson { detail: d, .. } if d.contains(detail)),
        )
    }

    fn not_json_rpc(detail: &'static str) -> Expect {
        expect(
            move |m| matches!(&m.kind, MalformedKind::NotJsonRpc { detail: d, .. } if d.contains(detail)),
        )
    }

    fn bad_header(detail: &'static str) -> Expect {
        expect(
            move |m| matches!(&m.kind, MalformedKind::BadHeader { detail: d } if d.contains(detail)),
        )
    }

    fn utf8_error_at(valid_up_to: usize) -> Expect {
        expect(move |m| m.kind == MalformedKind::InvalidUtf8 { valid_up_to })
    }

    fn too_large(limit: usize, declared: Option<u64>) -> Expect {
        expect(move |m| m.kind == MalformedKind::TooLarge { limit, declared })
    }

    /// The length of `{"jsonrpc":"2.0","method":"`: where a bad method name starts.
    const METHOD_AT: usize = r#"{"jsonrpc":"2.0","method":""#.len();

    /// What the child wrote: ticks `0..ticks`, `gap` between each two, `tail` after the last.
    async fn check<R: Runtime>(
        case: &str,
        options: Options,
        ticks: u64,
        gap: &[Expect],
        tail: &[Expect],
    ) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tether-hostile"));
        command.arg(case);
        let mut conn = Connection::<Message, R>::spawn(command, options).unwrap();
        let mut malformed = 0;
        for n in 0..ticks {
            match conn.recv().await {
                Some(Event::Message(Message::Notification(tick))) => {
                    assert_eq!(tick.method, "tick", "{case}");
                    assert_eq!(tick.params.unwrap()["n"], json!(n), "{case}");
                }
                other => panic!("{case}: expected tick {n}, got {other:?}"),
            }
            let bad = if n + 1 < ticks { gap } else { tail };
            for (i, check) in bad.iter().enumerate() {
                match conn.recv().await {
                    Some(Event::Malformed(m)) => {
                        assert!(check(&m), "{case}: bad output {i} after tick {n}: {m}");
                        malformed += 1;
                    }
                    other => panic!("{case}: expected malformed {i} after tick {n}, got {other:?}"),
                }
            }
        }
        assert_eq!(conn.recv().await, Some(Event::Disconnected(None)), "{case}");
        assert_eq!(conn.recv().await, None, "{case}");
        let status = conn.shutdown().await.unwrap();
        assert_eq!(status.code, Some(0), "{case}: {status}");
        assert_eq!(
            malformed,
            gap.len() * (ticks as usize - 1) + tail.len(),
            "{case}"
        );
    }

    async fn lines<R: Runtime>(case: &str, gap: &[Expect]) {
        check::<R>(case, options(), 3, gap, &[]).await;
    }

    async fn content_length<R: Runtime>(case: &str, options: Options, gap: &[Expect]) {
        check::<R>(case, options.framing(Framing::ContentLength), 3, gap, &[]).await;
    }

    pub(crate) async fn invalid_utf8<R: Runtime>() {
        lines::<R>("invalid_utf8", &[utf8_error_at(METHOD_AT)]).await;
    }

    pub(crate) async fn lone_cr<R: Runtime>() {
        // A lone `\r` does not end a line: two messages joined by it are one bad frame.
        lines::<R>("lone_cr", &[invalid_json("trailing characters")]).await;
    }

    pub(crate) async fn blank_and_crlf_lines<R: Runtime>() {
        lines::<R>("blank_and_crlf_lines", &[]).await;
    }

    pub(crate) async fn nul_bytes<R: Runtime>() {
        let gap = [
            invalid_json("expected value"),
            invalid_json("control character"),
        ];
        lines::<R>("nul_bytes", &gap).await;
    }

    pub(crate) async fn utf8_bom<R: Runtime>() {
        let bom = expect(|m| {
            matches!(
                m.kind,
                MalformedKind::InvalidJson {
                    line: 1,
                    column: 1,
                    ..
                }
            ) && m.excerpt.starts_with('\u{feff}')
        });
        lines::<R>("utf8_bom", &[bom]).await;
    }

    pub(crate) async fn gigabyte_line<R: Runtime>() {
        let runtime = if std::any::type_name::<R>().contains("Smol") {
            "smol"
        } else {
            "tokio"
        };
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "rss_probe", "--nocapture"])
            .env("TETHER_RSS_PROBE", runtime)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{runtime}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let peak: usize = stdout
            .lines()
            .find_map(|l| l.strip_prefix("peak_rss_kib="))
            .expect("the probe's figure")
            .parse()
            .unwrap();
        eprintln!("{runtime}: peak RSS reading a 1 GiB line: {peak} KiB");
        assert!(peak * 1024 <= MAX_FRAME + crate::RSS_HEADROOM);
        // The probe really read the line: its peak is above the frame limit it had to fill.
        assert!(peak * 1024 > MAX_FRAME, "{peak} KiB");
    }

    /// The gigabyte case itself, for [`crate::rss_probe`].
    pub(crate) async fn gigabyte_line_events<R: Runtime>() {
        let options = options().max_frame(MAX_FRAME);
        check::<R>(
            "gigabyte_line",
            options,
            2,
            &[too_large(MAX_FRAME, None)],
            &[],
        )
        .await;
    }

    pub(crate) async fn deep_arrays<R: Runtime>() {
        // At the top, an array is a batch: the decoder refuses the second level at once.
        let gap = [not_json_rpc("batches do not nest")];
        lines::<R>("deep_arrays", &gap).await;
    }

    pub(crate) async fn deep_objects<R: Runtime>() {
        // An unknown member is skipped without recursion, however deep; what is left is no
        // message.
        let gap = [not_json_rpc("no `method`, `result` or `error`")];
        lines::<R>("deep_objects", &gap).await;
    }

    pub(crate) async fn deep_params<R: Runtime>() {
        // Params are parsed: the parser's recursion limit, not the stack, stops it.
        lines::<R>("deep_params", &[invalid_json("recursion limit exceeded")]).await;
    }

    pub(crate) async fn number_1e400<R: Runtime>() {
        lines::<R>("number_1e400", &[invalid_json("number out of range")]).await;
    }

    pub(crate) async fn duplicate_keys<R: Runtime>() {
        let gap = [
            not_json_rpc("duplicate field `method`"),
            not_json_rpc("duplicate field `id`"),
        ];
        lines::<R>("duplicate_keys", &gap).await;
    }

    pub(crate) async fn wrong_ids<R: Runtime>() {
        let gap = [
            not_json_rpc("invalid type: boolean `true`"),
            not_json_rpc("id 1.5 is not an integer"),
            not_json_rpc("invalid type: sequence"),
            not_json_rpc("invalid type: map"),
            not_json_rpc("id 18446744073709552000 is not an integer"),
            not_json_rpc("id -1000 is not an integer"),
        ];
        lines::<R>("wrong_ids", &gap).await;
    }

    pub(crate) async fn arrays_and_scalars<R: Runtime>() {
        let gap = [
            not_json_rpc("empty batch"),
            not_json_rpc("invalid type: integer `1`"),
            not_json_rpc("batches do not nest"),
            not_json_rpc("invalid type: integer `42`"),
            not_json_rpc("invalid type: string \"text\""),
            not_json_rpc("invalid type: null"),
            not_json_rpc("invalid type: boolean `true`"),
        ];
        lines::<R>("arrays_and_scalars", &gap).await;
    }

    pub(crate) async fn not_json_rpc_objects<R: Runtime>() {
        let gap = [
            not_json_rpc("no `method`, `result` or `error`"),
            not_json_rpc("1.0"),
            not_json_rpc("`params` must be an object or an array"),
            not_json_rpc("cannot have both `method` and `result`"),
            not_json_rpc("no `method`, `result` or `error`"),
        ];
        lines::<R>("not_json_rpc_objects", &gap).await;
    }

    pub(crate) async fn binary_garbage<R: Runtime>() {
        let gap = [expect(|m| {
            matches!(m.kind, MalformedKind::InvalidUtf8 { .. })
                && m.excerpt.len() <= 3 * tether_core::EXCERPT_LEN
        })];
        lines::<R>("binary_garbage", &gap).await;
    }

    pub(crate) async fn log_lines<R: Runtime>() {
        let gap = [
            invalid_json("expected value at line 1 column 1"),
            invalid_json("expected value at line 1 column 1"),
        ];
        lines::<R>("log_lines", &gap).await;
    }

    pub(crate) async fn surrogates<R: Runtime>() {
        let gap = [invalid_json("hex escape"), utf8_error_at(METHOD_AT)];
        lines::<R>("surrogates", &gap).await;
    }

    pub(crate) async fn trailing_garbage<R: Runtime>() {
        lines::<R>("trailing_garbage", &[invalid_json("trailing characters")]).await;
    }

    pub(crate) async fn many_bad_lines<R: Runtime>() {
        let gap = vec![invalid_json("expected value"); 10_000];
        lines::<R>("many_bad_lines", &gap).await;
    }

    pub(crate) async fn limit_boundary<R: Runtime>() {
        // Tick 1 is exactly 4096 bytes long and arrives; the lines of 4097 do not.
        let options = options().max_frame(4096);
        check::<R>("limit_boundary", options, 3, &[too_large(4096, None)], &[]).await;
    }

    pub(crate) async fn split_bytes<R: Runtime>() {
        let cut = expect(|m| {
            matches!(m.kind, MalformedKind::InvalidJson { .. })
                && m.excerpt == "{\"jsonrpc\":\"2.0\",\"method\":\"é😀\""
        });
        lines::<R>("split_bytes", &[cut]).await;
    }

    pub(crate) async fn eof_mid_message<R: Runtime>() {
        // The stream ends inside a message: what arrived is still judged, once.
        let cut = expect(|m| {
            matches!(m.kind, MalformedKind::InvalidJson { .. })
                && m.excerpt == "{\"jsonrpc\":\"2.0\",\"method\":\"cut"
        });
        check::<R>("eof_mid_message", options(), 1, &[], &[cut]).await;
    }

    pub(crate) async fn content_length_understated<R: Runtime>() {
        // The body is cut short at the declared 10 bytes; the rest of it is a bad header
        // block, after which the framer finds the next `Content-Length:`.
        let gap = [
            expect(|m| {
                matches!(m.kind, MalformedKind::InvalidJson { .. }) && m.excerpt == "{\"jsonrpc\""
            }),
            bad_header("an invalid header name"),
        ];
        content_length::<R>("content_length_understated", options(), &gap).await;
    }

    pub(crate) async fn content_length_not_a_number<R: Runtime>() {
        let gap = [bad_header("Content-Length \"ten\" is not a number")];
        content_length::<R>("content_length_not_a_number", options(), &gap).await;
    }

    pub(crate) async fn content_length_overflow<R: Runtime>() {
        let gap = [bad_header("Content-Length out of range")];
        content_length::<R>("content_length_overflow", options(), &gap).await;
    }

    pub(crate) async fn content_length_missing<R: Runtime>() {
        let gap = [bad_header("no Content-Length header")];
        content_length::<R>("content_length_missing", options(), &gap).await;
    }

    pub(crate) async fn content_length_too_large<R: Runtime>() {
        let gap = [too_large(4096, Some(4097))];
        content_length::<R>("content_length_too_large", options().max_frame(4096), &gap).await;
    }

    pub(crate) async fn content_length_overstated_at_end<R: Runtime>() {
        let truncated = expect(|m| {
            m.kind
                == MalformedKind::Truncated {
                    expected: 1000,
                    received: 10,
                }
        });
        let options = options().framing(Framing::ContentLength);
        check::<R>(
            "content_length_overstated_at_end",
            options,
            1,
            &[],
            &[truncated],
        )
        .await;
    }
}
