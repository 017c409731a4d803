//! Messages kept as the bytes their sender wrote.
//!
//! A relay that decodes each message into values and encodes it again pays for both, and for
//! the allocations of every nested value, on every message. [`Verbatim`] checks a frame
//! against exactly the rules [`Message`] decodes by, without building anything, and keeps its
//! bytes to be sent as they are.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::malformed::classify;
use crate::message::{Fields, Shape, Structured};
use crate::{Id, Malformed, Message};

/// One JSON-RPC message (or batch), checked, kept as bytes.
///
/// Sent with [`Endpoint::send_verbatim`](crate::Endpoint::send_verbatim), its bytes go out
/// unchanged (framed for the transport), unless sending them as written would differ from the
/// message tether reads them as: without a `"jsonrpc"` member, or with `"params": null`, the
/// message is encoded again, as [`Message`] would be. Members tether does not know are kept.
#[derive(Clone)]
pub struct Verbatim {
    bytes: Bytes,
    /// The ids of the requests in it, in order: what a sender that tracks requests awaits.
    requests: Vec<Id>,
}

/// Where a [`Verbatim`]'s bytes are kept.
#[derive(Clone)]
enum Bytes {
    /// A buffer of its own.
    Own(Vec<u8>),
    /// A span of a buffer shared by the messages checked together ([`VerbatimBatch`]).
    Shared {
        buf: Arc<Vec<u8>>,
        start: usize,
        end: usize,
    },
}

impl Verbatim {
    /// Checks one frame: the same verdicts as [`decode`](crate::decode) into a [`Message`]
    /// gives, without building one.
    pub fn decode(frame: &[u8]) -> Result<Verbatim, Malformed> {
        let mut bytes = Vec::new();
        let requests = check_into(frame, &mut bytes)?;
        Ok(Verbatim {
            bytes: Bytes::Own(bytes),
            requests,
        })
    }

    /// The bytes that are sent.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Own(bytes) => bytes,
            Bytes::Shared { buf, start, end } => &buf[*start..*end],
        }
    }

    /// The ids of the requests in the message, in order.
    pub fn requests(&self) -> &[Id] {
        &self.requests
    }
}

impl PartialEq for Verbatim {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes() && self.requests == other.requests
    }
}

impl Eq for Verbatim {}

impl fmt::Debug for Verbatim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verbatim")
            .field("bytes", &String::from_utf8_lossy(self.as_bytes()))
            .field("requests", &self.requests)
            .finish()
    }
}

/// Many frames checked as [`Verbatim::decode`] checks one, their bytes gathered in one buffer
/// that the messages then share: a driver that checks frames by the hundred (a chunk of the
/// command's standard input) pays one allocation for all of them rather than one each, and
/// the thread that sends them frees one buffer, not hundreds.
#[derive(Debug, Default)]
pub struct VerbatimBatch {
    bytes: Vec<u8>,
    /// Each message checked since the last [`take`](Self::take): where its bytes end in
    /// `bytes`, and its requests.
    checked: Vec<(usize, Vec<Id>)>,
}

impl VerbatimBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one frame with the verdicts of [`Verbatim::decode`]; a valid one joins the batch.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), Malformed> {
        let requests = check_into(frame, &mut self.bytes)?;
        self.checked.push((self.bytes.len(), requests));
        Ok(())
    }

    /// How many messages are in the batch.
    pub fn len(&self) -> usize {
        self.checked.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.checked.is_empty()
    }

    /// The messages pushed since the last take, in order, sharing one buffer; the batch is
    /// left empty, with a new buffer as large for the next frames.
    pub fn take(&mut self) -> impl Iterator<Item = Verbatim> + '_ {
        // The buffer itself is handed over, not copied; the next one is sized like it.
        let next = Vec::with_capacity(self.bytes.len());
        let buf = Arc::new(std::mem::replace(&mut self.bytes, next));
        let mut start = 0;
        self.checked.drain(..).map(move |(end, requests)| {
            let bytes = Bytes::Shared {
                buf: Arc::clone(&buf),
                start,
                end,
            };
            start = end;
            Verbatim { bytes, requests }
        })
    }
}

/// Checks one frame and appends the bytes to send for it to `out` (nothing on an error);
/// returns the ids of its requests.
fn check_into(frame: &[u8], out: &mut Vec<u8>) -> Result<Vec<Id>, Malformed> {
    let malformed = |err: serde_json::Error| Malformed::new(classify(frame, &err), frame);
    let mut seen = Seen::default();
    // A frame that is UTF-8 throughout (nearly all) is checked once here, and its strings
    // are not checked again one by one. Otherwise the bytes are read as a `Message` reads
    // them, so that invalid UTF-8 where decoding never looks (a member it skips) is still
    // accepted.
    let checked = match std::str::from_utf8(frame) {
        Ok(text) => check(&mut serde_json::Deserializer::from_str(text), &mut seen),
        Err(_) => check(&mut serde_json::Deserializer::from_slice(frame), &mut seen),
    };
    checked.map_err(malformed)?;
    match seen.differs {
        false => out.extend_from_slice(frame),
        true => {
            let message: Message = serde_json::from_slice(frame).map_err(malformed)?;
            let mut encoded = serde_json::to_vec(&message).map_err(malformed)?;
            out.append(&mut encoded);
        }
    }
    Ok(seen.requests)
}

/// Checks one whole frame read by `de`: a message or batch, then nothing but whitespace.
fn check<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    seen: &mut Seen,
) -> Result<(), serde_json::Error> {
    Check {
        batch_allowed: true,
        seen,
    }
    .deserialize(&mut *de)?;
    de.end()
}

/// What checking a frame found beyond its validity.
#[derive(Default)]
struct Seen {
    requests: Vec<Id>,
    differs: bool,
}

/// Checks one message object, or (at the top level only) a batch of them.
struct Check<'a> {
    batch_allowed: bool,
    seen: &'a mut Seen,
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.batch_allowed {
            f.write_str("a JSON-RPC message object or a batch of them")
        } else {
            f.write_str("a JSON-RPC message object (batches do not nest)")
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.batch_allowed {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut items = 0_usize;
        while let Some(()) = seq.next_element_seed(Check {
            batch_allowed: false,
            seen: &mut *self.seen,
        })? {
            items += 1;
        }
        if items == 0 {
            return Err(de::Error::custom("an empty batch is not valid JSON-RPC"));
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let fields = Fields::<Str, Skipped>::read(map)?;
        self.seen.differs |= fields.differs_from_encoding();
        if let Shape::Request { id, .. } = fields.classify()? {
            self.seen.requests.push(id);
        }
        Ok(())
    }
}

/// A string, checked and not kept.
struct Str;

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Str, E> {
                Ok(Str)
            }
        }
        d.deserialize_str(V)
    }
}

/// Any value, checked as strictly as decoding it into a `Value` would check it (numbers in
/// range, strings and keys valid UTF-8: `IgnoredAny` checks neither), and not kept; all that
/// is remembered is whether it was structured.
struct Skipped {
    structured: bool,
}

impl Structured for Skipped {
    fn is_structured(&self) -> bool {
        self.structured
    }
}

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Skipped;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
                while map.next_entry::<Str, Skipped>()?.is_some() {}
                Ok(Skipped { structured: true })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
                while seq.next_element::<Skipped>()?.is_some() {}
                Ok(Skipped { structured: true })
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skipped, E> {
                Ok(Skipped { structured: false })
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skipped, E> {
                Ok(Skipped { structured: false })
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skipped, E> {
                Ok(Skipped { structured: false })
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skipped, E> {
                Ok(Skipped { structured: false })
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Skipped, E> {
                Ok(Skipped { structured: false })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Skipped, E> {
                Ok(Skipped { structured: false })
            }
        }
        d.deserialize_any(V)
    }
}
