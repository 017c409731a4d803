//! MCP's stateless revision (2026-07-28), in the words both ends of the Streamable HTTP
//! transport share: which request is modern, the headers that mirror its body, and how a
//! header value that HTTP cannot carry as it is travels in the `=?base64?…?=` form.
//!
//! A modern request carries its protocol version (and the client's capabilities) in
//! `params._meta`, not in a session, and repeats the version, its method and, for the methods
//! that name something, that name in headers, so that proxies can route without reading the
//! body. A client builds the headers with [`Mirror::of`] and [`Mirror::headers`]; a server
//! checks them with [`Mirror::check`], and refuses a request that disagrees with itself with
//! 400 and [`HEADER_MISMATCH`].

use std::borrow::Cow;

use data_encoding::BASE64;
use serde_json::Value;

use crate::Request;

/// The modern revisions: a request whose `_meta` names one of these is served without state.
pub const VERSIONS: &[&str] = &["2026-07-28"];

/// The header that mirrors `_meta`'s protocol version.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// The header that mirrors the request's method.
pub const METHOD_HEADER: &str = "mcp-method";

/// The header that mirrors the name a request acts on (see [`name_param`]).
pub const NAME_HEADER: &str = "mcp-name";

/// The `_meta` key of the request's protocol version.
pub const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// The `_meta` key of the client's capabilities.
pub const CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";

/// The `_meta` key of the client's name and version.
pub const CLIENT_INFO_META: &str = "io.modelcontextprotocol/clientInfo";

/// The `_meta` key a listen stream's notifications carry: the id of the
/// [`LISTEN`] request they answer.
pub const SUBSCRIPTION_META: &str = "io.modelcontextprotocol/subscriptionId";

/// The JSON-RPC code of a request whose headers disagree with its body.
pub const HEADER_MISMATCH: i64 = -32020;

/// The JSON-RPC code of a request whose protocol version the server does not speak.
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// The method a modern client (and the bridge, probing a program) asks what a server is.
pub const DISCOVER: &str = "server/discover";

/// The method of a long-lived stream of change notifications.
pub const LISTEN: &str = "subscriptions/listen";

/// The parameter whose value [`NAME_HEADER`] mirrors, for the methods that name something.
pub fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// The protocol version `params._meta` names, if it names one as a string.
pub fn meta_version(params: Option<&Value>) -> Option<&str> {
    params?.get("_meta")?.get(VERSION_META)?.as_str()
}

/// Whether a request is of the modern era: its `_meta` names one of the [`VERSIONS`].
pub fn is_modern(request: &Request) -> bool {
    meta_version(request.params.as_ref()).is_some_and(|v| VERSIONS.contains(&v))
}

/// A header value as sent: as it is when it is printable ASCII with no space at either end
/// (and does not itself look like the base64 form), else in the `=?base64?…?=` form of its
/// UTF-8 bytes.
pub fn encode_header(value: &str) -> Cow<'_, str> {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && value.trim() == value
        && sentinel(value).is_none();
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("=?base64?{}?=", BASE64.encode(value.as_bytes())))
    }
}

/// A header value as meant: the value itself, or what its `=?base64?…?=` form holds. `None`
/// for a malformed form (not canonical base64, or not UTF-8), which then matches nothing.
pub fn decode_header(value: &str) -> Option<Cow<'_, str>> {
    let Some(payload) = sentinel(value) else {
        return Some(Cow::Borrowed(value));
    };
    // data-encoding's BASE64 refuses padding errors and non-zero trailing bits: only the
    // canonical form decodes, so one name has one spelling.
    let bytes = BASE64.decode(payload.as_bytes()).ok()?;
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

/// The payload of a `=?base64?…?=` value.
fn sentinel(value: &str) -> Option<&str> {
    value.strip_prefix("=?base64?")?.strip_suffix("?=")
}

/// What a modern request's headers must say: its version, its method and, for the methods
/// that name something, that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `_meta`'s protocol version.
    pub version: String,
    /// The request's method.
    pub method: String,
    /// The value of the method's [`name_param`], if the method has one and the request
    /// carries it as a string.
    pub name: Option<String>,
}

/// Which mirrored header disagrees with the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// [`VERSION_HEADER`] is missing or is not `_meta`'s version.
    Version,
    /// [`METHOD_HEADER`] is missing or is not the method.
    Method,
    /// [`NAME_HEADER`] is missing, malformed, or is not the name.
    Name,
}

impl Mismatch {
    /// The header, for the error's message.
    pub fn header(self) -> &'static str {
        match self {
            Mismatch::Version => VERSION_HEADER,
            Mismatch::Method => METHOD_HEADER,
            Mismatch::Name => NAME_HEADER,
        }
    }
}

impl Mirror {
    /// The mirror of `request`, if `_meta` names a protocol version (any string: whether the
    /// version is spoken is decided after the headers agree).
    pub fn of(request: &Request) -> Option<Mirror> {
        let params = request.params.as_ref();
        let version = meta_version(params)?.to_owned();
        let name = name_param(&request.method)
            .and_then(|key| params?.get(key)?.as_str())
            .map(str::to_owned);
        Some(Mirror {
            version,
            method: request.method.clone(),
            name,
        })
    }

    /// The headers a client sends with the request, names in lower case.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (VERSION_HEADER, encode_header(&self.version).into_owned()),
            (METHOD_HEADER, encode_header(&self.method).into_owned()),
        ];
        if let Some(name) = &self.name {
            headers.push((NAME_HEADER, encode_header(name).into_owned()));
        }
        headers
    }

    /// Whether the headers a server received (looked up by lower-case name) agree with the
    /// body. The version and method are compared as sent; the name after decoding its
    /// base64 form.
    pub fn check<'h>(&self, header: impl Fn(&str) -> Option<&'h str>) -> Result<(), Mismatch> {
        if header(VERSION_HEADER) != Some(self.version.as_str()) {
            return Err(Mismatch::Version);
        }
        if header(METHOD_HEADER) != Some(self.method.as_str()) {
            return Err(Mismatch::Method);
        }
        if let Some(name) = &self.name {
            let sent = header(NAME_HEADER).and_then(decode_header);
            if sent.as_deref() != Some(name.as_str()) {
                return Err(Mismatch::Name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(method: &str, params: Value) -> Request {
        Request::new(1, method, Some(params))
    }

    fn modern(method: &str, mut params: Value) -> Request {
        params["_meta"] = json!({ VERSION_META: "2026-07-28", CAPABILITIES_META: {} });
        request(method, params)
    }

    #[test]
    fn plain_values_go_as_they_are_and_others_in_base64() {
        assert_eq!(encode_header("get_weather"), "get_weather");
        assert_eq!(encode_header("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(encode_header(" padded"), "=?base64?IHBhZGRlZA==?=");
        assert_eq!(encode_header("line\nbreak"), "=?base64?bGluZQpicmVhaw==?=");
        // A value that looks like the form itself is wrapped, so it decodes to itself.
        let tricky = "=?base64?aGk=?=";
        assert_eq!(
            decode_header(&encode_header(tricky)).as_deref(),
            Some(tricky)
        );
        for value in ["", "a b", "日本", "\u{7f}", "tab\t", "file:///tmp/x y"] {
            assert_eq!(decode_header(&encode_header(value)).as_deref(), Some(value));
        }
    }

    #[test]
    fn a_malformed_base64_form_decodes_to_nothing() {
        assert_eq!(decode_header("=?base64?!!!?="), None);
        // Non-zero trailing bits: "aGk=" is canonical for "hi", "aGl=" is not.
        assert_eq!(decode_header("=?base64?aGl=?=").as_deref(), None);
        assert_eq!(decode_header("=?base64?aGk=?=").as_deref(), Some("hi"));
        // Not UTF-8.
        assert_eq!(decode_header("=?base64?/w==?="), None);
    }

    #[test]
    fn a_modern_request_is_known_by_its_meta() {
        assert!(is_modern(&modern("tools/list", json!({}))));
        assert!(!is_modern(&request("tools/list", json!({}))));
        let mut old = modern("tools/list", json!({}));
        old.params.as_mut().unwrap()["_meta"][VERSION_META] = json!("2025-06-18");
        assert!(!is_modern(&old));
        assert!(Mirror::of(&old).is_some(), "any version is mirrored");
        old.params.as_mut().unwrap()["_meta"][VERSION_META] = json!(7);
        assert!(Mirror::of(&old).is_none());
        assert!(!is_modern(&Request::new(1, "tools/list", None)));
    }

    #[test]
    fn the_headers_a_client_sends_pass_the_check() {
        let call = modern("tools/call", json!({"name": "météo", "arguments": {}}));
        let mirror = Mirror::of(&call).unwrap();
        let headers = mirror.headers();
        assert_eq!(headers.len(), 3);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(mirror.check(find), Ok(()));
        let list = Mirror::of(&modern("tools/list", json!({}))).unwrap();
        assert_eq!(list.headers().len(), 2);
        let read = Mirror::of(&modern("resources/read", json!({"uri": "file:///a"}))).unwrap();
        assert_eq!(read.name.as_deref(), Some("file:///a"));
    }

    #[test]
    fn each_disagreeing_header_is_named() {
        let call = modern("tools/call", json!({"name": "echo"}));
        let mirror = Mirror::of(&call).unwrap();
        let with = |version: Option<&'static str>,
                    method: Option<&'static str>,
                    name: Option<&'static str>| {
            mirror.check(move |h| match h {
                VERSION_HEADER => version,
                METHOD_HEADER => method,
                NAME_HEADER => name,
                _ => None,
            })
        };
        let (v, m, n) = (Some("2026-07-28"), Some("tools/call"), Some("echo"));
        assert_eq!(with(v, m, n), Ok(()));
        assert_eq!(with(None, m, n), Err(Mismatch::Version));
        assert_eq!(with(Some("2025-06-18"), m, n), Err(Mismatch::Version));
        assert_eq!(with(v, None, n), Err(Mismatch::Method));
        assert_eq!(with(v, Some("tools/list"), n), Err(Mismatch::Method));
        assert_eq!(with(v, m, None), Err(Mismatch::Name));
        assert_eq!(with(v, m, Some("other")), Err(Mismatch::Name));
        assert_eq!(with(v, m, Some("=?base64?ZWNobw==?=")), Ok(()));
        assert_eq!(with(v, m, Some("=?base64?ZWNobw?=")), Err(Mismatch::Name));
        assert_eq!(Mismatch::Name.header(), "mcp-name");
    }
}
