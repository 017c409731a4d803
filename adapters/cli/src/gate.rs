//! Where the bridge's token comes from, and the URL that carries it. The checks (the token,
//! `Origin`, `Host`) are the core gateway's.

use std::io::{self, Read};
use std::net::SocketAddr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::args::{Auth, Bridge, Token};

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

/// The bridge's token.
#[derive(Debug)]
pub struct Gate {
    /// `None` with `--auth none`.
    token: Option<Token>,
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
        Ok(Gate { token })
    }

    /// The token, for the gateway to check.
    pub fn token(&self) -> Option<String> {
        self.token.as_ref().map(|Token(token)| token.clone())
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
