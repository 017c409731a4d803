//! The JSON-RPC 2.0 data model: requests, notifications, responses, error objects, ids and
//! batches.
//!
//! Decoding classifies an object by the members it has, in one pass into a set of optional
//! fields, never by trying each shape in turn: that is both faster than an untagged enum and
//! the only way to give a precise reason when a message is wrong (an `id` that is a boolean
//! makes the message malformed; it does not quietly turn a request into a notification).
//!
//! | members present                  | decodes to                  |
//! |----------------------------------|-----------------------------|
//! | `method` and `id`                | [`Request`]                 |
//! | `method`, no `id`                | [`Notification`]            |
//! | `id` and exactly one of `result`/`error` | [`Response`]        |
//! | anything else                    | rejected                    |
//!
//! A missing `"jsonrpc"` member is accepted, because JSON-RPC-lite peers omit it; one that is
//! present must be `"2.0"`. Duplicate members, ids that are not a string, an integer or null,
//! and `params` that are neither an object nor an array are rejected. Members this model does
//! not know are ignored. Encoding writes `"jsonrpc":"2.0"`; wrap a message in [`Lite`] to leave
//! it out.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Number, Value};

/// The protocol version this model speaks, as written in the `"jsonrpc"` member.
pub const VERSION: &str = "2.0";

/// A request, notification or response id.
///
/// Numeric ids are integers in the 64-bit range (signed or unsigned), kept exactly: an id such
/// as `18446744073709551615` round-trips unchanged. A fractional or out-of-range number is
/// rejected on decode rather than rounded, since a rounded id would never match its response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// An integer id.
    Number(Number),
    /// A string id.
    String(String),
    /// The null id, used by error responses to a message whose id could not be read.
    Null,
}

macro_rules! id_from_integer {
    ($($int:ty),*) => {$(
        impl From<$int> for Id {
            fn from(n: $int) -> Self {
                Id::Number(n.into())
            }
        }
    )*};
}

id_from_integer!(i32, u32, i64, u64);

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::String(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::String(s)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
            Id::Null => f.write_str("null"),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => n.serialize(s),
            Id::String(v) => s.serialize_str(v),
            Id::Null => s.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl<'de> Visitor<'de> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id (a string, an integer or null)")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
        Ok(Id::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
        Ok(Id::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id, E> {
        Err(E::custom(format_args!(
            "id {v} is not an integer in the 64-bit range"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
        Ok(Id::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
        Ok(Id::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Id, E> {
        Ok(Id::Null)
    }
}

/// The `error` member of an error response.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorObject {
    /// The error code; see the associated constants for the ones the specification reserves.
    pub code: i64,
    /// A short description of the error.
    pub message: String,
    /// Anything else the server wants to say about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;

    /// An error object with no `data`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with `data` attached.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)
    }
}

/// A call that expects a [`Response`] with the same id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id the response will carry.
    pub id: Id,
    /// The method to invoke.
    pub method: String,
    /// The parameters: an object, an array, or absent.
    pub params: Option<Value>,
}

impl Request {
    /// A request with the given id, method and parameters.
    pub fn new(id: impl Into<Id>, method: impl Into<String>, params: Option<Value>) -> Self {
        Request {
            id: id.into(),
            method: method.into(),
            params,
        }
    }
}

/// A call that expects no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method to invoke.
    pub method: String,
    /// The parameters: an object, an array, or absent.
    pub params: Option<Value>,
}

impl Notification {
    /// A notification with the given method and parameters.
    pub fn new(method: impl Into<String>, params: Option<Value>) -> Self {
        Notification {
            method: method.into(),
            params,
        }
    }
}

/// The answer to a [`Request`]: a result or an error, never both.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request this answers ([`Id::Null`] if that id could not be read).
    pub id: Id,
    /// `Ok(result)` for a success response, `Err(error)` for an error response.
    pub result: Result<Value, ErrorObject>,
}

impl Response {
    /// A success response.
    pub fn success(id: impl Into<Id>, result: Value) -> Self {
        Response {
            id: id.into(),
            result: Ok(result),
        }
    }

    /// An error response.
    pub fn error(id: impl Into<Id>, error: ErrorObject) -> Self {
        Response {
            id: id.into(),
            result: Err(error),
        }
    }
}

/// Any JSON-RPC message, the connection's default message type.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A success or error response.
    Response(Response),
    /// A non-empty batch of requests, notifications or responses. A batch never contains a
    /// batch: decoding rejects one, and encoding one is an error.
    Batch(Vec<Message>),
}

impl From<Request> for Message {
    fn from(m: Request) -> Self {
        Message::Request(m)
    }
}

impl From<Notification> for Message {
    fn from(m: Notification) -> Self {
        Message::Notification(m)
    }
}

impl From<Response> for Message {
    fn from(m: Response) -> Self {
        Message::Response(m)
    }
}

/// A message encoded without the `"jsonrpc"` member, for JSON-RPC-lite peers.
///
/// `Connection<Lite<Message>>` decodes exactly like `Connection<Message>` (the member is
/// optional on input either way) and leaves the member out of everything it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Lite<M>(pub M);

impl Message {
    fn serialize_with<S: Serializer>(&self, s: S, version: bool) -> Result<S::Ok, S::Error> {
        match self {
            Message::Request(r) => serialize_call(s, version, Some(&r.id), &r.method, &r.params),
            Message::Notification(n) => serialize_call(s, version, None, &n.method, &n.params),
            Message::Response(r) => serialize_response(s, version, r),
            Message::Batch(items) => {
                if items.is_empty() {
                    return Err(ser::Error::custom("an empty batch is not valid JSON-RPC"));
                }
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    if matches!(item, Message::Batch(_)) {
                        return Err(ser::Error::custom("a batch cannot contain a batch"));
                    }
                    seq.serialize_element(&Versioned(item, version))?;
                }
                seq.end()
            }
        }
    }
}

/// A message together with the choice of writing the version member.
struct Versioned<'a>(&'a Message, bool);

impl Serialize for Versioned<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_with(s, self.1)
    }
}

fn serialize_call<S: Serializer>(
    s: S,
    version: bool,
    id: Option<&Id>,
    method: &str,
    params: &Option<Value>,
) -> Result<S::Ok, S::Error> {
    let len = 1 + usize::from(version) + usize::from(id.is_some()) + usize::from(params.is_some());
    let mut map = s.serialize_map(Some(len))?;
    if version {
        map.serialize_entry("jsonrpc", VERSION)?;
    }
    if let Some(id) = id {
        map.serialize_entry("id", id)?;
    }
    map.serialize_entry("method", method)?;
    if let Some(params) = params {
        map.serialize_entry("params", params)?;
    }
    map.end()
}

fn serialize_response<S: Serializer>(s: S, version: bool, r: &Response) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(2 + usize::from(version)))?;
    if version {
        map.serialize_entry("jsonrpc", VERSION)?;
    }
    map.serialize_entry("id", &r.id)?;
    match &r.result {
        Ok(result) => map.serialize_entry("result", result)?,
        Err(error) => map.serialize_entry("error", error)?,
    }
    map.end()
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.serialize_with(s, true)
    }
}

impl Serialize for Lite<Message> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_with(s, false)
    }
}

impl<'de> Deserialize<'de> for Lite<Message> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Message::deserialize(d).map(Lite)
    }
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_call(s, true, Some(&self.id), &self.method, &self.params)
    }
}

impl Serialize for Notification {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_call(s, true, None, &self.method, &self.params)
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_response(s, true, self)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MessageVisitor {
            batch_allowed: true,
        })
    }
}

/// Decodes one message object, or (at the top level only) a batch of them.
struct MessageVisitor {
    batch_allowed: bool,
}

impl<'de> de::DeserializeSeed<'de> for MessageVisitor {
    type Value = Message;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Message, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.batch_allowed {
            f.write_str("a JSON-RPC message object or a batch of them")
        } else {
            f.write_str("a JSON-RPC message object (batches do not nest)")
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
        if !self.batch_allowed {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(MessageVisitor {
            batch_allowed: false,
        })? {
            items.push(item);
        }
        if items.is_empty() {
            return Err(de::Error::custom("an empty batch is not valid JSON-RPC"));
        }
        Ok(Message::Batch(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Message, A::Error> {
        let fields = Fields::<String, Value>::read(map)?;
        Ok(match fields.classify()? {
            Shape::Request { id, method, params } => {
                Message::Request(Request { id, method, params })
            }
            Shape::Notification { method, params } => {
                Message::Notification(Notification { method, params })
            }
            Shape::Response { id, result } => Message::Response(Response { id, result }),
        })
    }
}

fn once<T, E: de::Error>(slot: &Option<T>, name: &'static str) -> Result<(), E> {
    match slot {
        Some(_) => Err(E::duplicate_field(name)),
        None => Ok(()),
    }
}

/// Every member a message may have, each as it was found (or not).
///
/// What the members are decoded into is a choice: a [`Message`] keeps them whole (`String`
/// and `Value`); a [`Verbatim`](crate::Verbatim) message only checks them, as its
/// bytes are what is sent. One reader and one set of rules serve both, so both accept exactly
/// the same messages.
pub(crate) struct Fields<Method, Payload> {
    jsonrpc: Option<VersionTag>,
    id: Option<Id>,
    method: Option<Method>,
    params: Option<Option<Payload>>,
    result: Option<Payload>,
    error: Option<ErrorObject>,
}

impl<Method, Payload> Fields<Method, Payload> {
    /// Whether these members, sent as they were written, would differ from the message
    /// tether reads them as: no `"jsonrpc"` member (JSON-RPC lite, or sloppy), or
    /// `"params": null` (read as absent).
    pub(crate) fn differs_from_encoding(&self) -> bool {
        self.jsonrpc.is_none() || matches!(self.params, Some(None))
    }
}

/// A message's kind and members, as [`Fields::classify`] found them.
pub(crate) enum Shape<Method, Payload> {
    Request {
        id: Id,
        method: Method,
        params: Option<Payload>,
    },
    Notification {
        method: Method,
        params: Option<Payload>,
    },
    Response {
        id: Id,
        result: Result<Payload, ErrorObject>,
    },
}

/// A decoded `params` value that can say whether it is structured (an object or an array).
pub(crate) trait Structured {
    fn is_structured(&self) -> bool;
}

impl Structured for Value {
    fn is_structured(&self) -> bool {
        self.is_object() || self.is_array()
    }
}

impl<'de, Method: Deserialize<'de>, Payload: Deserialize<'de> + Structured>
    Fields<Method, Payload>
{
    /// Reads the members of one message object.
    pub(crate) fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut fields = Fields {
            jsonrpc: None,
            id: None,
            method: None,
            params: None,
            result: None,
            error: None,
        };
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Jsonrpc => {
                    once(&fields.jsonrpc, "jsonrpc")?;
                    fields.jsonrpc = Some(map.next_value::<VersionTag>()?);
                }
                Field::Id => {
                    once(&fields.id, "id")?;
                    fields.id = Some(map.next_value()?);
                }
                Field::Method => {
                    once(&fields.method, "method")?;
                    fields.method = Some(map.next_value()?);
                }
                Field::Params => {
                    once(&fields.params, "params")?;
                    fields.params = Some(map.next_value()?);
                }
                Field::Result => {
                    once(&fields.result, "result")?;
                    fields.result = Some(map.next_value()?);
                }
                Field::Error => {
                    once(&fields.error, "error")?;
                    fields.error = Some(map.next_value()?);
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }

    pub(crate) fn classify<E: de::Error>(self) -> Result<Shape<Method, Payload>, E> {
        if let Some(method) = self.method {
            if self.result.is_some() || self.error.is_some() {
                return Err(E::custom(
                    "a message cannot have both `method` and `result`/`error`",
                ));
            }
            // `"params": null` is read as absent: sloppy peers send it, and the specification
            // gives null no meaning here.
            let params = self.params.flatten();
            if let Some(p) = &params {
                if !p.is_structured() {
                    return Err(E::custom("`params` must be an object or an array"));
                }
            }
            return Ok(match self.id {
                Some(id) => Shape::Request { id, method, params },
                None => Shape::Notification { method, params },
            });
        }
        if self.params.is_some() {
            return Err(E::custom("`params` without `method`"));
        }
        let result = match (self.result, self.error) {
            (Some(_), Some(_)) => {
                return Err(E::custom(
                    "a response cannot have both `result` and `error`",
                ))
            }
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(error),
            (None, None) => {
                return Err(E::custom(
                    "not a request, notification or response: no `method`, `result` or `error`",
                ))
            }
        };
        match self.id {
            Some(id) => Ok(Shape::Response { id, result }),
            None => Err(E::missing_field("id")),
        }
    }
}

/// A `"jsonrpc"` member that was present and said `"2.0"`.
struct VersionTag;

impl<'de> Deserialize<'de> for VersionTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = VersionTag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"2.0\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VersionTag, E> {
                if v == VERSION {
                    Ok(VersionTag)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// The member names a message may carry.
enum Field {
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "jsonrpc" => Field::Jsonrpc,
                    "id" => Field::Id,
                    "method" => Field::Method,
                    "params" => Field::Params,
                    "result" => Field::Result,
                    "error" => Field::Error,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}
