//! Who may open a bridge session: the token every handshake must carry, and the browser
//! origins allowed. Checked on the handshake request, before any child is spawned.

use std::io::{self, Read};
use std::net::SocketAddr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tether_io::async_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tether_io::async_tungstenite::tungstenite::http::{
    header, HeaderMap, HeaderValue, StatusCode, Uri,
};

use crate::args::{Auth, Bridge, Token};
use crate::http::refusal;

/// Where a token comes from when no `--token-file` is given.
const TOKEN_ENV: &str = "TETHER_BRIDGE_TOKEN";

/// The bytes of a generated token: 256 bits, written as 64 hex digits.
const TOKEN_BYTES: usize = 32;

/// What a URL's query may carry unescaped (RFC 3986's unreserved characters).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The bridge's admission rules.
#[derive(Debug)]
pub struct Gate {
    /// `None` with `--auth none`.
    token: Option<Token>,
    origins: Vec<String>,
}

impl Gate {
    /// The rules the flags ask for. The token is `--token-file`'s, else
    /// `$TETHER_BRIDGE_TOKEN`'s (when set and not empty), else a new random one.
    pub fn new(args: &Bridge) -> io::Result<Self> {
        let token = match args.auth {
            Auth::None => None,
            Auth::Token => Some(match (&args.token_file, std::env::var(TOKEN_ENV)) {
                (Some(token), _) => token.clone(),
                (None, Ok(token)) if !token.is_empty() => Token(token),
                (None, _) => generate()?,
            }),
        };
        Ok(Gate {
            token,
            origins: args.allow_origins.clone(),
        })
    }

    /// The websocket URL of a bridge listening on `addr`, with the token in its query.
    pub fn url(&self, addr: SocketAddr) -> String {
        match &self.token {
            Some(Token(token)) => {
                format!(
                    "ws://{addr}/?token={}",
                    utf8_percent_encode(token, UNRESERVED)
                )
            }
            None => format!("ws://{addr}/"),
        }
    }
}

impl Gate {
    /// Whether a browser page from `origin` may make requests (`--allow-origin`).
    pub fn allows_origin(&self, origin: &HeaderValue) -> bool {
        self.origins
            .iter()
            .any(|allowed| origin == allowed.as_str())
    }

    /// Whether a request with these headers and URI may go on: `Err` with 403 for an
    /// `Origin` not allowed, or 401 without the token (in `Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`). The websocket handshake and every HTTP request are checked alike.
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), Refused> {
        let foreign = headers
            .get_all(header::ORIGIN)
            .iter()
            .any(|origin| !self.allows_origin(origin));
        if foreign {
            return Err(Refused::Origin);
        }
        let Some(Token(token)) = &self.token else {
            return Ok(());
        };
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok()?.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim().as_bytes().to_vec());
        let query = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.strip_prefix("token="))
            .map(|value| percent_decode_str(value).collect::<Vec<u8>>());
        // Every credential offered is compared in full, whichever matches.
        let (offered, matched) = bearer
            .chain(query)
            .fold((false, false), |(_, matched), offered| {
                (true, same(&offered, token.as_bytes()) | matched)
            });
        match (offered, matched) {
            (_, true) => Ok(()),
            (false, false) => Err(Refused::NoToken),
            (true, false) => Err(Refused::WrongToken),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 403: a browser page from an origin not allowed.
    Origin,
    /// 401: no token offered.
    NoToken,
    /// 401: a token offered, but not the bridge's.
    WrongToken,
}

/// The JSON-RPC error code of a refusal: a server error, as for the endpoint's other refusals.
const SERVER_ERROR: i64 = -32000;

/// How a refused token is put right, in every refusal's body: the bridge has one static token
/// and no OAuth, and a client that is not told so may go looking for an authorization server.
const TOKEN_HINT: &str = "pass the bridge's token as --header 'Authorization: Bearer TOKEN' (or \
                          ?token=TOKEN); it is the first line of the bridge's --token-file, else \
                          $TETHER_BRIDGE_TOKEN, else the token in its listening line's url. This \
                          bridge does no OAuth";

impl Refused {
    /// The status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            Refused::Origin => StatusCode::FORBIDDEN,
            Refused::NoToken | Refused::WrongToken => StatusCode::UNAUTHORIZED,
        }
    }

    /// What is wrong and how to put it right, for a person: the message of the body's
    /// JSON-RPC error.
    pub fn message(self) -> String {
        match self {
            Refused::Origin => "origin not allowed: the bridge serves a browser page only from \
                                an origin named by --allow-origin"
                .to_owned(),
            Refused::NoToken => format!("missing bearer token: {TOKEN_HINT}"),
            Refused::WrongToken => format!("wrong bearer token: {TOKEN_HINT}"),
        }
    }

    /// The body: a JSON-RPC error (id null) with [`message`](Self::message), which an MCP
    /// client shows as the server's error.
    pub fn body(self) -> Vec<u8> {
        tether_core::streamable::Status::error(
            self.status().as_u16(),
            SERVER_ERROR,
            &self.message(),
        )
        .body
        .unwrap_or_default()
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 7235 requires one; RFC 6750 says what it
    /// holds). It names the bearer scheme and, for a wrong token, `invalid_token` with a
    /// description; it carries no `resource_metadata` (RFC 9728), since the bridge has no
    /// authorization server for a client to discover. `None` for a 403.
    pub fn challenge(self) -> Option<HeaderValue> {
        match self {
            Refused::Origin => None,
            // A request that offered nothing is told the scheme and no error (RFC 6750, 3.1).
            Refused::NoToken => Some(HeaderValue::from_static(r#"Bearer realm="tether""#)),
            Refused::WrongToken => Some(HeaderValue::from_static(
                r#"Bearer realm="tether", error="invalid_token", error_description="wrong bearer token: pass the bridge's token, this bridge does no OAuth""#,
            )),
        }
    }
}

/// The websocket handshake's check: [`Gate::check`]; a refusal has the same status, challenge
/// and body as over HTTP.
impl Callback for &Gate {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        self.check(request.headers(), request.uri())
            .map_err(|refused| {
                let mut refusal = refusal(refused.status(), "");
                let body = String::from_utf8_lossy(&refused.body()).into_owned();
                let headers = refusal.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                headers.insert(header::CONTENT_LENGTH, body.len().into());
                if let Some(challenge) = refused.challenge() {
                    headers.insert(header::WWW_AUTHENTICATE, challenge);
                }
                *refusal.body_mut() = Some(body);
                refusal
            })?;
        Ok(response)
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    a.len() == b.len() && difference == 0
}

/// A token of `TOKEN_BYTES` from the OS's random source, in hex.
fn generate() -> io::Result<Token> {
    random_hex().map(Token)
}

/// 256 bits from the OS's random source, in hex: a token, or a session id no one can guess.
pub fn random_hex() -> io::Result<String> {
    let mut bytes = [0; TOKEN_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_compares_whole_slices() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
        assert!(same(b"", b""));
    }
}
