//! One stream of a session: its events, kept after they are sent so that a client that lost
//! its connection can ask for them again, and who is reading it.

use std::collections::VecDeque;

use crate::{Message, Response};

/// What a stream carries, and so how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The stream a `GET` opens, for messages outside any request. Ends with the session.
    Standalone,
    /// A POST's requests answered as events, with anything related sent meanwhile. Ends once
    /// every request has its answer.
    Events,
    /// A POST's requests answered as one JSON body, once all are answered.
    Json {
        /// Whether the body is an array.
        batch: bool,
    },
}

/// A sent (or to be sent) event: its sequence number in the session and its bytes, already
/// written as a server-sent event.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) seq: u64,
    pub(super) bytes: Vec<u8>,
}

/// One stream's state.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) kind: Kind,
    /// Events still kept, oldest first.
    pub(super) events: VecDeque<Stored>,
    /// The last sequence number its current (or last) reader took; a resumption rewinds it.
    pub(super) cursor: u64,
    /// The highest sequence number dropped from `events`: a resumption from before it would
    /// miss events, and is refused.
    pub(super) lost: u64,
    /// The generation of the reader attached, if one is.
    pub(super) reader: Option<u64>,
    /// Requests of this stream still unanswered.
    pub(super) open_requests: usize,
    /// A JSON stream's answers, gathered until the last one arrives.
    pub(super) answers: Vec<Response>,
    /// A JSON stream's body, once complete, until taken.
    pub(super) body: Option<Vec<u8>>,
    /// No event will be added.
    pub(super) done: bool,
}

impl Stream {
    pub(super) fn new(kind: Kind) -> Self {
        Stream {
            kind,
            events: VecDeque::new(),
            cursor: 0,
            lost: 0,
            reader: None,
            open_requests: 0,
            answers: Vec::new(),
            body: None,
            done: false,
        }
    }

    /// Whether it may take messages that relate to no request in particular.
    pub(super) fn is_open_events(&self) -> bool {
        self.kind == Kind::Events && !self.done && self.reader.is_some()
    }

    /// Appends an answer to a JSON stream; the body is built once the last is in.
    pub(super) fn answer(&mut self, response: Response) {
        self.answers.push(response);
        if let Kind::Json { batch } = self.kind {
            if self.open_requests == 0 {
                let answers = std::mem::take(&mut self.answers);
                let message = match (batch, answers.len()) {
                    (false, 1) => answers.into_iter().next().map(Message::Response),
                    (_, 0) => None,
                    _ => Some(Message::Batch(
                        answers.into_iter().map(Message::Response).collect(),
                    )),
                };
                self.body = message.as_ref().map(super::encode);
                self.done = true;
            }
        }
    }
}

/// The event id of sequence number `seq` on stream `stream`: unique in the session, and
/// naming the stream, so that a resumption finds it even once the event itself is gone.
pub(super) fn event_id(stream: u64, seq: u64) -> String {
    format!("{stream}-{seq}")
}

/// The stream and sequence number an event id names, if it is one of ours.
pub(super) fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    let (stream, seq) = id.split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

/// `message` as a server-sent event with its id. JSON written by serde_json holds no line
/// break, so the whole message is one `data` line.
pub(super) fn sse_event(id: &str, message: &Message) -> Vec<u8> {
    let json = super::encode(message);
    let mut bytes = Vec::with_capacity(json.len() + id.len() + 20);
    bytes.extend_from_slice(b"id: ");
    bytes.extend_from_slice(id.as_bytes());
    bytes.extend_from_slice(b"\ndata: ");
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(b"\n\n");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_reject_strangers() {
        assert_eq!(parse_event_id(&event_id(3, 17)), Some((3, 17)));
        assert_eq!(parse_event_id("17"), None);
        assert_eq!(parse_event_id("a-1"), None);
        assert_eq!(parse_event_id("1-"), None);
    }

    #[test]
    fn an_event_is_one_data_line() {
        let message = Message::Notification(crate::Notification::new(
            "n",
            Some(serde_json::json!({"text": "two\nlines"})),
        ));
        let bytes = sse_event("0-1", &message);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("id: 0-1\ndata: {"));
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 3);
    }
}
