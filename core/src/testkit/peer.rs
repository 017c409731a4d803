//! The scripted peer: a sans-IO machine that plays a [`Script`] against whatever client
//! frames it is handed.

use serde_json::Value;

use super::script::{compare, Mismatch, Script, Step};
use crate::transcript::{self, frame_bytes};
use crate::{ExitStatus, Response};

/// What the peer does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOutput {
    /// Write this frame (without framing) to the client.
    Frame(Vec<u8>),
    /// Close the peer's output.
    Close,
    /// Exit with this status; the output closes with it.
    Exit(ExitStatus),
}

/// Plays a [`Script`]: frames from the client in ([`handle_frame`](Self::handle_frame),
/// [`handle_close`](Self::handle_close)), what the peer does out
/// ([`poll_output`](Self::poll_output), until `None`). No I/O and no clock: the testkit's
/// [`Session`](super::Session) drives one against an endpoint in virtual time, and
/// `tether replay` against a live client on its standard input and output.
///
/// Ids: when a request matches an expected one, the expected id maps to the live one, and
/// each response the script sends later carries the live id.
#[derive(Debug, Clone)]
pub struct ScriptedPeer {
    steps: Vec<Step>,
    next: usize,
    /// Expected request id → the live client's id for it.
    ids: Vec<(Value, Value)>,
    /// The live id of the request matched last, for [`Step::Reply`].
    last_request: Option<Value>,
}

impl ScriptedPeer {
    /// A peer at the first step of `script`.
    pub fn new(script: Script) -> Self {
        ScriptedPeer {
            steps: script.steps().to_vec(),
            next: 0,
            ids: Vec::new(),
            last_request: None,
        }
    }

    /// A frame from the client. It must be what the current step expects; if not, the peer
    /// stays at that step and says what it expected.
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), Mismatch> {
        let received = transcript::frame_value(frame);
        let Some(Step::Expect(expect)) = self.steps.get(self.next) else {
            return Err(self.mismatch(&received, Vec::new()));
        };
        if let Err(differences) = compare(expect, &received) {
            return Err(self.mismatch(&received, differences));
        }
        let expected = expect.frame.clone();
        self.learn_ids(&expected, &received);
        self.next += 1;
        Ok(())
    }

    /// The client closed its side. Fine when the script waits for it, or has nothing left to
    /// expect; a mismatch while a frame is still expected.
    pub fn handle_close(&mut self) -> Result<(), Mismatch> {
        match self.steps.get(self.next) {
            Some(Step::AwaitClose) => {
                self.next += 1;
                Ok(())
            }
            Some(Step::Expect(expect)) => Err(Mismatch {
                step: self.next + 1,
                expected: Step::Expect(expect.clone()).to_string(),
                received: "the end of the client's output".to_owned(),
                differences: Vec::new(),
            }),
            _ => Ok(()),
        }
    }

    /// What the peer does next, or `None` while it waits for the client (or has done all).
    pub fn poll_output(&mut self) -> Option<PeerOutput> {
        let output = match self.steps.get(self.next)? {
            Step::Send(frame) => PeerOutput::Frame(frame_bytes(&self.with_live_ids(frame))),
            Step::Reply(result) => {
                let id = self.last_request.clone().unwrap_or(Value::Null);
                let response = Response {
                    id: serde_json::from_value(id).unwrap_or(crate::Id::Null),
                    result: result.clone(),
                };
                // A response of plain values always serializes.
                PeerOutput::Frame(serde_json::to_vec(&response).unwrap_or_default())
            }
            Step::Close => PeerOutput::Close,
            Step::Exit(status) => PeerOutput::Exit(*status),
            Step::Expect(_) | Step::AwaitClose | Step::Killed(_) => return None,
        };
        self.next += 1;
        Some(output)
    }

    /// Whether `signal` ends the peer now: any signal does, except a `SIGTERM` (15) while
    /// the script says it is only killed by another.
    pub fn dies_of(&self, signal: i32) -> bool {
        match self.steps.get(self.next) {
            Some(Step::Killed(wanted)) => signal != 15 || *wanted == 15,
            _ => true,
        }
    }

    /// The step the peer is at, if any is left.
    pub fn current(&self) -> Option<&Step> {
        self.steps.get(self.next)
    }

    /// Whether every step has been taken (a final [`Step::Killed`] counts as taken: it only
    /// says how the peer ends).
    pub fn is_done(&self) -> bool {
        matches!(self.steps.get(self.next), None | Some(Step::Killed(_)))
    }

    /// `Ok` when every step has been taken; else what the peer still expected.
    pub fn check_done(&self) -> Result<(), Mismatch> {
        match self.is_done() {
            true => Ok(()),
            false => Err(Mismatch {
                step: self.next + 1,
                expected: self.steps[self.next].to_string(),
                received: "nothing more".to_owned(),
                differences: Vec::new(),
            }),
        }
    }

    fn mismatch(&self, received: &Value, differences: Vec<String>) -> Mismatch {
        let expected = match self.steps.get(self.next) {
            Some(step) => step.to_string(),
            None => "nothing more".to_owned(),
        };
        Mismatch {
            step: self.next + 1,
            expected,
            received: received.to_string(),
            differences,
        }
    }

    fn learn_ids(&mut self, expected: &Value, received: &Value) {
        match (expected, received) {
            (Value::Array(want), Value::Array(got)) => {
                for (want, got) in want.iter().zip(got) {
                    self.learn_ids(want, got);
                }
            }
            (Value::Object(want), Value::Object(got)) if got.contains_key("method") => {
                if let (Some(want), Some(got)) = (want.get("id"), got.get("id")) {
                    if !want.is_null() {
                        self.ids.retain(|(recorded, _)| recorded != want);
                        self.ids.push((want.clone(), got.clone()));
                    }
                    self.last_request = Some(got.clone());
                }
            }
            _ => {}
        }
    }

    /// `frame` with each response's id replaced by the live id it maps to.
    fn with_live_ids(&self, frame: &Value) -> Value {
        match frame {
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| self.with_live_ids(i)).collect())
            }
            Value::Object(o) if !o.contains_key("method") => {
                let mut o = o.clone();
                if let Some(id) = o.get_mut("id") {
                    if let Some((_, live)) = self.ids.iter().find(|(recorded, _)| recorded == id) {
                        *id = live.clone();
                    }
                }
                Value::Object(o)
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Matching;
    use serde_json::json;

    fn bytes(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn recorded_answers_carry_the_live_ids() {
        let recorded = [
            r#"{"t_ms":0,"dir":"out","frame":{"jsonrpc":"2.0","id":1,"method":"a"}}"#,
            r#"{"t_ms":0,"dir":"out","frame":{"jsonrpc":"2.0","id":2,"method":"b"}}"#,
            r#"{"t_ms":1,"dir":"in","frame":[{"jsonrpc":"2.0","id":2,"result":"B"},{"jsonrpc":"2.0","id":1,"result":"A"}]}"#,
            r#"{"t_ms":2,"close":"out"}"#,
            r#"{"t_ms":3,"end":{"reason":null,"exit":{"code":4,"signal":null}}}"#,
        ]
        .join("\n");
        let script = Script::from_transcript(&recorded, Matching::Method).unwrap();
        let mut peer = ScriptedPeer::new(script);
        assert_eq!(peer.poll_output(), None);
        peer.handle_frame(&bytes(json!({"id": "x", "method": "a"})))
            .unwrap();
        peer.handle_frame(&bytes(json!({"id": 7, "method": "b"})))
            .unwrap();
        let Some(PeerOutput::Frame(frame)) = peer.poll_output() else {
            panic!("no answer")
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&frame).unwrap(),
            json!([{"jsonrpc":"2.0","id":7,"result":"B"},{"jsonrpc":"2.0","id":"x","result":"A"}])
        );
        assert_eq!(peer.poll_output(), None);
        assert!(peer.handle_frame(b"{}").is_err());
        peer.handle_close().unwrap();
        assert_eq!(
            peer.poll_output(),
            Some(PeerOutput::Exit(ExitStatus {
                code: Some(4),
                signal: None
            }))
        );
        assert!(peer.is_done());
    }

    #[test]
    fn a_mismatch_says_what_was_expected_and_what_came() {
        let mut peer = ScriptedPeer::new(Script::new().expect_request("initialize"));
        let err = peer
            .handle_frame(&bytes(json!({"id": 1, "method": "tools/list"})))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "step 1 of the script:\n  expected: a request for \"initialize\"\n  received: \
             {\"id\":1,\"method\":\"tools/list\"}\n    method: expected \"initialize\", \
             received \"tools/list\""
        );
        assert_eq!(
            peer.handle_close().unwrap_err().received,
            "the end of the client's output"
        );
        assert!(peer.check_done().is_err());
    }
}
