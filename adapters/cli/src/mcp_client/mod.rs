//! `tether connect http://HOST:PORT/PATH`: a client of MCP's Streamable HTTP transport, in
//! both eras (a session started by `initialize`, or stateless requests whose `_meta` names
//! revision 2026-07-28, chosen line by line by the core client machine), through the drivers'
//! HTTP transport
//! ([`Connection::connect_http`]), so that the session runs through the same
//! [`session::run`](crate::session::run) loop as every other URL: linger, output modes,
//! `--record` and signals behave alike.
//!
//! All this module adds is the flags: `--header` and `--token-file` go with every request.
//! What the transport does with a refusal (`HTTP 401 Unauthorized from POST: …` ends the
//! session, and the `disconnected` event names it), when it resumes a stream and after what
//! wait, are the core client machine's decisions.

use tether_core::Message;
use tether_io::async_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tether_io::{Connection, HeaderValue, Options, Runtime};

use crate::args::{Connect, Token};
use crate::Failure;

/// A connection to the Streamable HTTP endpoint at `args.url`, with `--header` and
/// `--token-file` on every request.
pub async fn open<R: Runtime>(
    args: &Connect,
    options: Options,
) -> Result<Connection<Message, R>, Failure> {
    let mut headers = args.headers.clone();
    if let Some(Token(token)) = &args.token_file {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| Failure(format!("the token cannot go in a header: {e}")))?;
        headers.retain(|(name, _)| name != AUTHORIZATION);
        headers.push((AUTHORIZATION, bearer));
    }
    Connection::connect_http(&args.url, headers, options)
        .await
        .map_err(Failure::from)
}

/// Whether `url` is an MCP endpoint this client can reach (`http://HOST[:PORT][/PATH]`, no
/// credentials in it): checked as the command line is parsed, so that a bad one is a usage
/// error.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    tether_io::check_http_url(url).map_err(|e| e.to_string())
}
