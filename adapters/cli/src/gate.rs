//! Who may open a bridge session: the token every handshake must carry, and the browser
//! origins allowed. Checked on the handshake request, before any child is spawned.

use std::io::{self, Read};
use std::net::SocketAddr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tether_io::async_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tether_io::async_tungstenite::tungstenite::http::{header, StatusCode};

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

/// The handshake's check: it goes on, or is refused with 403 for an `Origin` not allowed, or
/// 401 without the token (in `Authorization: Bearer TOKEN` or `?token=TOKEN`).
impl Callback for &Gate {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        let foreign = request
            .headers()
            .get_all(header::ORIGIN)
            .iter()
            .any(|origin| {
                !self
                    .origins
                    .iter()
                    .any(|allowed| origin == allowed.as_str())
            });
        if foreign {
            return Err(refusal(StatusCode::FORBIDDEN, "origin not allowed"));
        }
        let Some(Token(token)) = &self.token else {
            return Ok(response);
        };
        let bearer = request
            .headers()
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|value| value.to_str().ok()?.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim().as_bytes().to_vec());
        let query = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.strip_prefix("token="))
            .map(|value| percent_decode_str(value).collect::<Vec<u8>>());
        // Every credential offered is compared in full, whichever matches.
        let matched = bearer.chain(query).fold(false, |matched, offered| {
            same(&offered, token.as_bytes()) | matched
        });
        if matched {
            Ok(response)
        } else {
            let mut refused = refusal(StatusCode::UNAUTHORIZED, "a valid token is required");
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            Err(refused)
        }
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
    let mut bytes = [0; TOKEN_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(Token(bytes.iter().map(|b| format!("{b:02x}")).collect()))
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
