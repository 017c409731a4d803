//! The little of HTTP the gateway decides with: a request's method, target and headers, and
//! the response to write. Parsing and writing HTTP is the adapter's (with an HTTP library).

use super::BodyId;

/// A request's head, as the adapter's HTTP library parsed it. Header names are compared
/// without regard to case; a header sent more than once is given once per value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (`GET`, `POST`, …).
    pub method: String,
    /// The request target: the path and the query, if any (`/mcp?token=…`).
    pub target: String,
    /// The headers, in order: name and value (a value that is not UTF-8 given lossily).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A request head.
    pub fn new(method: &str, target: &str, headers: Vec<(String, String)>) -> Self {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers,
        }
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The query, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// Every value of header `name`.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` joined with `,`, as HTTP allows for list-valued headers.
    pub fn joined(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self.header_values(name).collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// Whether this is a websocket handshake (`Upgrade: websocket`).
    pub fn is_websocket(&self) -> bool {
        self.header_values("upgrade").any(|value| {
            value
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
    }
}

/// A response for the adapter to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code; 101 accepts a websocket handshake (the library writes the rest).
    pub status: u16,
    /// Headers to send, lowercase names (the adapter adds framing headers such as
    /// `Content-Length` itself).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body,
}

/// A response's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The whole body (maybe empty).
    Full(Vec<u8>),
    /// A body taken from the gateway piece by piece with
    /// [`Gateway::take_body`](super::Gateway::take_body), and given back with
    /// [`Gateway::handle_body_dropped`](super::Gateway::handle_body_dropped) when sent or its
    /// connection is gone.
    Stream(BodyId),
}

impl Response {
    /// A status with a whole body of `kind` (no `Content-Type` for an empty body).
    pub fn full(status: u16, kind: &str, body: Vec<u8>) -> Self {
        let mut headers = Vec::new();
        if !body.is_empty() {
            headers.push(("content-type", kind.to_owned()));
        }
        Response {
            status,
            headers,
            body: Body::Full(body),
        }
    }

    /// A status whose body is a JSON-RPC error (id null) with `message`.
    pub fn error(status: u16, rpc_code: i64, message: &str) -> Self {
        Self::from_status(crate::streamable::Status::error(status, rpc_code, message))
    }

    /// A status from the Streamable HTTP machine, with its JSON body if any.
    pub fn from_status(status: crate::streamable::Status) -> Self {
        match status.body {
            Some(body) => Self::full(status.code, crate::streamable::JSON, body),
            None => Self::full(status.code, "text/plain", Vec::new()),
        }
    }

    /// The value of header `name`, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole body, if it is one.
    pub fn full_body(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Full(bytes) => Some(bytes),
            Body::Stream(_) => None,
        }
    }
}
