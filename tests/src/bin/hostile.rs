//! `tether-hostile CASE`: a child that writes one kind of bad output between valid, numbered
//! notifications, byte for byte, then exits 0.
//!
//! Line cases write `tick 0, BAD, tick 1, BAD, tick 2`; the `content_length_*` cases frame the
//! ticks with `Content-Length` headers; a few cases end with their bad output instead (the
//! stream stops inside it). Every write is a raw `write(2)` on a duplicate of fd 1, so what the
//! reader sees is exactly what is written here, in the chunks written here.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::Duration;

/// How many times the bad output is written (between ticks 0..=TIMES).
const TIMES: u64 = 2;

/// The frame limit the `limit_boundary` and `content_length_too_large` cases are written for.
const SMALL_LIMIT: usize = 4096;

fn main() -> io::Result<()> {
    let case = std::env::args().nth(1).unwrap_or_default();
    let mut out = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    match case.as_str() {
        "invalid_utf8" => lines(&mut out, b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}\n"),
        "lone_cr" => lines(
            &mut out,
            b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\r{\"jsonrpc\":\"2.0\",\"method\":\"b\"}\n",
        ),
        "blank_and_crlf_lines" => lines(&mut out, b"\n\r\n  \t \r\n\r\r\n\n"),
        "nul_bytes" => lines(
            &mut out,
            b"\0\0\0\0\n{\"jsonrpc\":\"2.0\",\"method\":\"a\0b\"}\n",
        ),
        "utf8_bom" => lines(&mut out, b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"method\":\"bom\"}\n"),
        "gigabyte_line" => {
            tick(&mut out, 0)?;
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..1024 {
                out.write_all(&chunk)?;
            }
            out.write_all(b"\n")?;
            tick(&mut out, 1)
        }
        "deep_arrays" => lines(&mut out, &nested(b"[", b"]", b"")),
        "deep_objects" => lines(&mut out, &nested(b"{\"a\":", b"}", b"1")),
        "deep_params" => {
            let mut bad = b"{\"jsonrpc\":\"2.0\",\"method\":\"deep\",\"params\":".to_vec();
            bad.extend(nested(b"[", b"]", b""));
            bad.insert(bad.len() - 1, b'}');
            lines(&mut out, &bad)
        }
        "number_1e400" => lines(
            &mut out,
            b"{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":[1e400]}\n",
        ),
        "duplicate_keys" => lines(
            &mut out,
            b"{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"method\":\"b\"}\n\
              {\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"result\":0}\n",
        ),
        "wrong_ids" => lines(
            &mut out,
            b"{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"m\"}\n\
              {\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"m\"}\n\
              {\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"m\"}\n\
              {\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"result\":0}\n\
              {\"jsonrpc\":\"2.0\",\"id\":18446744073709551616,\"result\":0}\n\
              {\"jsonrpc\":\"2.0\",\"id\":-1e3,\"error\":{\"code\":1,\"message\":\"m\"}}\n",
        ),
        "arrays_and_scalars" => lines(
            &mut out,
            b"[]\n[1,2]\n[[{\"jsonrpc\":\"2.0\",\"method\":\"a\"}]]\n42\n\"text\"\nnull\ntrue\n",
        ),
        "not_json_rpc_objects" => lines(
            &mut out,
            b"{\"hello\":\"world\"}\n\
              {\"jsonrpc\":\"1.0\",\"method\":\"a\"}\n\
              {\"jsonrpc\":\"2.0\",\"method\":\"a\",\"params\":5}\n\
              {\"jsonrpc\":\"2.0\",\"method\":\"a\",\"result\":1}\n\
              {\"jsonrpc\":\"2.0\",\"id\":1}\n",
        ),
        "binary_garbage" => lines(&mut out, &garbage(64 * 1024)),
        "log_lines" => lines(
            &mut out,
            b"INFO server listening on port 8080\n\x1b[31mERROR\x1b[0m boom\n",
        ),
        "surrogates" => lines(
            &mut out,
            b"{\"jsonrpc\":\"2.0\",\"method\":\"\\ud800\"}\n\
              {\"jsonrpc\":\"2.0\",\"method\":\"\xed\xa0\x80\"}\n",
        ),
        "trailing_garbage" => lines(&mut out, b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"} x\n"),
        "many_bad_lines" => lines(&mut out, &b"!\n".repeat(10_000)),
        "limit_boundary" => {
            // Tick 1 is exactly at the limit; the bad line one byte over it.
            tick(&mut out, 0)?;
            out.write_all(&padded(99, SMALL_LIMIT + 1))?;
            out.write_all(&padded(1, SMALL_LIMIT))?;
            out.write_all(&padded(99, SMALL_LIMIT + 1))?;
            tick(&mut out, 2)
        }
        "split_bytes" => {
            // Everything, one byte per write, with a pause after each: multi-byte characters
            // and frames arrive in pieces.
            let mut all = Vec::new();
            for n in 0..TIMES {
                all.extend(tick_line(n));
                all.extend("{\"jsonrpc\":\"2.0\",\"method\":\"é😀\"\n".as_bytes());
            }
            all.extend(tick_line(TIMES));
            for byte in all {
                out.write_all(&[byte])?;
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(())
        }
        "partial_and_hang" => {
            // One write: a whole tick and the start of the next message; then wait to be
            // killed. Whoever has read the tick knows the partial message is in the pipe.
            let mut bytes = tick_line(0);
            bytes.extend(b"{\"jsonrpc\":\"2.0\",\"method\":\"cu");
            out.write_all(&bytes)?;
            loop {
                std::thread::park();
            }
        }
        "eof_mid_message" => {
            tick(&mut out, 0)?;
            out.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"cut")
        }
        "content_length_understated" => content_length(
            &mut out,
            b"Content-Length: 10\r\n\r\n{\"jsonrpc\":\"2.0\",\"method\":\"lie\"}",
        ),
        "content_length_not_a_number" => content_length(
            &mut out,
            b"Content-Length: ten\r\n\r\n{\"jsonrpc\":\"2.0\",\"method\":\"a\"}",
        ),
        "content_length_overflow" => content_length(
            &mut out,
            b"Content-Length: 99999999999999999999999\r\n\r\n{\"jsonrpc\":\"2.0\",\"method\":\"a\"}",
        ),
        "content_length_missing" => content_length(
            &mut out,
            b"Content-Type: application/json\r\n\r\n{\"jsonrpc\":\"2.0\",\"method\":\"a\"}",
        ),
        "content_length_too_large" => {
            let body = vec![b' '; SMALL_LIMIT + 1];
            let mut bad = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
            bad.extend(body);
            content_length(&mut out, &bad)
        }
        "content_length_overstated_at_end" => {
            framed(&mut out, &tick_line(0))?;
            out.write_all(b"Content-Length: 1000\r\n\r\n{\"jsonrpc\"")
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown case {other:?}"),
        )),
    }
}

/// `{"jsonrpc":"2.0","method":"tick","params":{"n":N}}` and a newline.
fn tick_line(n: u64) -> Vec<u8> {
    format!("{{\"jsonrpc\":\"2.0\",\"method\":\"tick\",\"params\":{{\"n\":{n}}}}}\n").into_bytes()
}

fn tick(out: &mut File, n: u64) -> io::Result<()> {
    out.write_all(&tick_line(n))
}

/// A tick whose line (newline included) is `len + 1` bytes: `len` before the newline.
fn padded(n: u64, len: usize) -> Vec<u8> {
    let bare = tick_line(n).len() - 1 + ",\"pad\":\"\"".len();
    let pad = "x".repeat(len - bare);
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"tick\",\"params\":{{\"n\":{n},\"pad\":\"{pad}\"}}}}\n"
    )
    .into_bytes()
}

/// Ticks on lines, `bad` between each two.
fn lines(out: &mut File, bad: &[u8]) -> io::Result<()> {
    for n in 0..TIMES {
        tick(out, n)?;
        out.write_all(bad)?;
    }
    tick(out, TIMES)
}

fn framed(out: &mut File, body: &[u8]) -> io::Result<()> {
    write!(out, "Content-Length: {}\r\n\r\n", body.len())?;
    out.write_all(body)
}

/// Ticks with `Content-Length` headers, `bad` between each two.
fn content_length(out: &mut File, bad: &[u8]) -> io::Result<()> {
    for n in 0..TIMES {
        framed(out, &tick_line(n))?;
        out.write_all(bad)?;
    }
    framed(out, &tick_line(TIMES))
}

/// 100,000 levels of `open`, then `inner`, then as many `close`, and a newline.
fn nested(open: &[u8], close: &[u8], inner: &[u8]) -> Vec<u8> {
    const DEPTH: usize = 100_000;
    let mut bytes = open.repeat(DEPTH);
    bytes.extend(inner);
    bytes.extend(close.repeat(DEPTH));
    bytes.push(b'\n');
    bytes
}

/// `len` pseudo-random bytes (xorshift, fixed seed) with no newline among them, then one.
fn garbage(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state as u8 {
                b'\n' => 0,
                b => b,
            }
        })
        .collect();
    bytes.push(b'\n');
    bytes
}
