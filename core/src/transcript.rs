//! Transcripts: every frame a connection reads and writes, as one JSON line each.
//!
//! Two halves, both without I/O or a clock:
//!
//! - **The tap.** A [`Tap`] given to [`Config::tap`] is called by the connection with every
//!   whole frame it decodes or encodes (the body, without its framing), every frame its framer
//!   had to discard, the moment it tells the driver to close its write half, and the end. The
//!   tap decides what to do with them; whoever made it supplies the time (a driver's clock, a
//!   test's virtual clock).
//! - **The line format.** An [`Entry`] is one line of a transcript:
//!
//! ```text
//! {"t_ms":12,"dir":"out","frame":{"jsonrpc":"2.0","id":1,"method":"echo"}}
//! {"t_ms":13,"dir":"in","frame":{"jsonrpc":"2.0","id":1,"result":null}}
//! {"t_ms":14,"dir":"in","frame":{"raw":"not json"}}
//! {"t_ms":15,"dir":"in","frame":{"raw":"/w==","base64":true}}
//! {"t_ms":15,"dir":"in","frame":{"raw":"{\"a\":","discarded":"frame over the limit of 16 bytes"}}
//! {"t_ms":20,"close":"out"}
//! {"t_ms":31,"end":{"reason":null,"exit":{"code":0,"signal":null}}}
//! ```
//!
//! `t_ms` counts milliseconds from the start of the session. `dir` is seen from this side:
//! `out` was sent to the peer, `in` came from it. A frame that is valid JSON is kept as its
//! value; any other frame as `{"raw": text}`, or base64 with `"base64": true` when it is not
//! UTF-8; a frame the framer discarded unread keeps only its excerpt and the reason. The
//! `close` line says this side closed its sending half (the child's stdin, a socket's write
//! side, a websocket Close) before the peer ended. The `end` line comes last: why the
//! connection ended (`null` for a clean end) and how the peer exited, for a child.
//!
//! A JSON frame that is itself an object whose only members are `raw` (and `base64` or
//! `discarded`) reads back as raw text; no JSON-RPC message has that shape.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Config, Disconnect, ExitStatus, Malformed};

/// Which way a frame went, seen from this side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the peer to this side.
    In,
    /// From this side to the peer.
    Out,
}

/// What a [`Tap`] is shown, in the order it happened.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Tapped<'a> {
    /// A whole frame, without its framing (no newline, no `Content-Length` header).
    Frame(Direction, &'a [u8]),
    /// A frame from the peer that the framer discarded unread (over the limit, a bad header,
    /// cut short by the end of the stream): only its excerpt and reason are left.
    Discarded(&'a Malformed),
    /// This side closed its sending half.
    Closed,
    /// The connection ended, with the reason of its `Disconnected` event. Nothing follows.
    End(Option<&'a Disconnect>),
}

/// A hook that sees every frame of a connection (see the [module documentation](self)).
/// It runs inside the connection's calls, so it should be quick: append to a buffer.
#[derive(Clone)]
pub struct Tap(Arc<dyn Fn(Tapped<'_>) + Send + Sync>);

impl Tap {
    /// A tap that calls `f`.
    pub fn new(f: impl Fn(Tapped<'_>) + Send + Sync + 'static) -> Self {
        Tap(Arc::new(f))
    }

    pub(crate) fn see(tap: &Option<Tap>, tapped: Tapped<'_>) {
        if let Some(tap) = tap {
            (tap.0)(tapped);
        }
    }
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tap")
    }
}

impl Config {
    /// A hook that sees every frame in and out, and the end (see [`transcript`](self)).
    pub fn tap(mut self, tap: Option<Tap>) -> Self {
        self.tap = tap;
        self
    }
}

/// How a child exited, as a transcript writes it: `{"code":…,"signal":…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code, if it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        Exit {
            code: status.code,
            signal: status.signal,
        }
    }
}

impl From<Exit> for ExitStatus {
    fn from(exit: Exit) -> Self {
        ExitStatus {
            code: exit.code,
            signal: exit.signal,
        }
    }
}

/// How the session ended: the `end` member of the last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Why the connection ended; `None` for a clean end.
    pub reason: Option<String>,
    /// How the peer exited, when it is a child.
    pub exit: Option<Exit>,
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// A frame: `{"t_ms":…,"dir":…,"frame":…}`.
    Frame {
        /// Milliseconds since the session started.
        t_ms: u64,
        /// Which way it went.
        dir: Direction,
        /// The frame: its JSON value, or `{"raw":…}` (see [`frame_value`]).
        frame: Value,
    },
    /// This side closed its sending half: `{"t_ms":…,"close":"out"}`.
    Close {
        /// Milliseconds since the session started.
        t_ms: u64,
        /// The half that closed (always [`Direction::Out`] in a recording).
        close: Direction,
    },
    /// The end: `{"t_ms":…,"end":{"reason":…,"exit":…}}`.
    End {
        /// Milliseconds since the session started.
        t_ms: u64,
        /// Why, and how the peer exited.
        end: End,
    },
}

impl Entry {
    /// The line for what a tap saw at `t_ms`; `None` for the end, which becomes a line only
    /// once the exit status is known ([`Entry::End`]).
    pub fn tapped(t_ms: u64, tapped: Tapped<'_>) -> Option<Entry> {
        match tapped {
            Tapped::Frame(dir, bytes) => Some(Entry::Frame {
                t_ms,
                dir,
                frame: frame_value(bytes),
            }),
            Tapped::Discarded(malformed) => {
                let mut raw = Map::new();
                raw.insert("raw".into(), Value::String(malformed.excerpt.clone()));
                raw.insert(
                    "discarded".into(),
                    Value::String(malformed.kind.to_string()),
                );
                Some(Entry::Frame {
                    t_ms,
                    dir: Direction::In,
                    frame: Value::Object(raw),
                })
            }
            Tapped::Closed => Some(Entry::Close {
                t_ms,
                close: Direction::Out,
            }),
            Tapped::End(_) => None,
        }
    }

    /// The line, without its newline.
    pub fn to_line(&self) -> String {
        // A tree of plain values and strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A line of a transcript that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transcript line {line}: {detail}")]
pub struct TranscriptError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub detail: String,
}

/// Reads a transcript: one [`Entry`] per non-blank line.
pub fn parse(text: &str) -> Result<Vec<Entry>, TranscriptError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| TranscriptError {
                line: n + 1,
                detail: e.to_string(),
            })
        })
        .collect()
}

/// How a frame is kept in a transcript: its JSON value if it is valid JSON, else
/// `{"raw": text}`, else (not UTF-8) `{"raw": base64, "base64": true}`.
pub fn frame_value(bytes: &[u8]) -> Value {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return value;
    }
    let mut raw = Map::new();
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            raw.insert("raw".into(), Value::String(text.to_owned()));
        }
        Err(_) => {
            raw.insert("raw".into(), Value::String(base64::encode(bytes)));
            raw.insert("base64".into(), Value::Bool(true));
        }
    }
    Value::Object(raw)
}

/// The raw bytes of a frame kept as `{"raw":…}`, or `None` for a JSON frame.
pub fn raw_bytes(frame: &Value) -> Option<Vec<u8>> {
    let object = frame.as_object()?;
    let text = object.get("raw")?.as_str()?;
    let known = |key: &String| matches!(key.as_str(), "raw" | "base64" | "discarded");
    if !object.keys().all(known) {
        return None;
    }
    match object.get("base64") {
        Some(Value::Bool(true)) => base64::decode(text),
        _ => Some(text.as_bytes().to_vec()),
    }
}

/// The bytes of a frame as it went over the wire (a JSON frame re-encoded compactly).
pub fn frame_bytes(frame: &Value) -> Vec<u8> {
    raw_bytes(frame).unwrap_or_else(|| frame.to_string().into_bytes())
}

/// Standard base64 with padding, for the rare frame that is not UTF-8. Written here because
/// the core takes no dependency beyond serde, serde_json, thiserror and memchr.
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.trim_end_matches('=').as_bytes();
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        for chunk in text.chunks(4) {
            if chunk.len() == 1 {
                return None;
            }
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                let v = ALPHABET.iter().position(|a| a == c)? as u32;
                n |= v << (18 - 6 * i);
            }
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips_every_length() {
            let bytes: Vec<u8> = (0..=255).collect();
            for len in 0..bytes.len() {
                let text = super::encode(&bytes[..len]);
                assert_eq!(text.len() % 4, 0);
                assert_eq!(super::decode(&text).as_deref(), Some(&bytes[..len]));
            }
            assert_eq!(super::encode(b"foobar"), "Zm9vYmFy");
            assert_eq!(super::encode(b"fo"), "Zm8=");
            assert_eq!(super::decode("Zm8"), Some(b"fo".to_vec()));
            assert_eq!(super::decode("Z"), None);
            assert_eq!(super::decode("Zm!="), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_keep_their_json_or_their_bytes() {
        let json = br#"{"jsonrpc":"2.0","id":1,"method":"m"}"#;
        assert_eq!(
            frame_value(json),
            json!({"jsonrpc":"2.0","id":1,"method":"m"})
        );
        // Members come back in serde_json's order: the same message, not the same bytes.
        let again: Value = serde_json::from_slice(&frame_bytes(&frame_value(json))).unwrap();
        assert_eq!(again, frame_value(json));
        assert_eq!(frame_value(b"not json"), json!({"raw": "not json"}));
        assert_eq!(frame_bytes(&frame_value(b"not json")), b"not json".to_vec());
        let binary = [0xff, 0xfe, b'{'];
        assert_eq!(frame_value(&binary), json!({"raw": "//57", "base64": true}));
        assert_eq!(frame_bytes(&frame_value(&binary)), binary.to_vec());
    }

    #[test]
    fn lines_read_back_as_written() {
        let entries = vec![
            Entry::Frame {
                t_ms: 0,
                dir: Direction::Out,
                frame: json!({"jsonrpc":"2.0","id":1,"method":"m"}),
            },
            Entry::Close {
                t_ms: 3,
                close: Direction::Out,
            },
            Entry::End {
                t_ms: 4,
                end: End {
                    reason: None,
                    exit: Some(Exit {
                        code: Some(0),
                        signal: None,
                    }),
                },
            },
        ];
        let text: String = entries.iter().map(|e| e.to_line() + "\n").collect();
        assert_eq!(
            text.lines().nth(2),
            Some(r#"{"t_ms":4,"end":{"reason":null,"exit":{"code":0,"signal":null}}}"#)
        );
        assert_eq!(parse(&text), Ok(entries));
        let err = parse("{\"t_ms\":1}\n").unwrap_err();
        assert_eq!(err.line, 1);
    }
}
