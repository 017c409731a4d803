//! Who may use the bridge: the bearer token every request and handshake must carry, the
//! browser origins allowed, and (on a loopback listener) the `Host` a request may name.
//! Checked before anything is started for a request.

use std::net::{IpAddr, SocketAddr};

use super::http::{Request, Response};
use super::SERVER_ERROR;

/// How a refused token is put right, in every refusal's body: the bridge has one static token
/// and no OAuth, and a client that is not told so may go looking for an authorization server.
const TOKEN_HINT: &str = "pass the bridge's token as --header 'Authorization: Bearer TOKEN' (or \
                          ?token=TOKEN); it is the first line of the bridge's --token-file, else \
                          $TETHER_BRIDGE_TOKEN, else the token in its listening line's url. This \
                          bridge does no OAuth";

/// The admission rules of one listener.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    token: Option<String>,
    origins: Vec<String>,
    listen: Option<SocketAddr>,
}

/// Why a request was refused at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// 403: a browser page from an origin not allowed (neither `--allow-origin` nor the
    /// bridge's own address).
    Origin,
    /// 403: on a loopback listener, a `Host` that names neither loopback nor the listen
    /// address: a page that rebound a name of its own to 127.0.0.1 (DNS rebinding).
    Host,
    /// 401: no token offered.
    NoToken,
    /// 401: a token offered, but not the bridge's.
    WrongToken,
}

impl Gate {
    pub(crate) fn new(
        token: Option<String>,
        origins: Vec<String>,
        listen: Option<SocketAddr>,
    ) -> Self {
        Gate {
            token,
            origins,
            listen,
        }
    }

    /// Whether a page from `origin` may make requests: named by `--allow-origin`, or the
    /// bridge's own origin (a page the bridge's address served: same-origin).
    pub(crate) fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|allowed| allowed == origin) || self.is_own_origin(origin)
    }

    /// `http://HOST:PORT` where PORT is the listen port and HOST the listen address, or a
    /// loopback name when the listener is loopback (or listens everywhere).
    fn is_own_origin(&self, origin: &str) -> bool {
        let Some(listen) = self.listen else {
            return false;
        };
        let Some(authority) = origin.strip_prefix("http://") else {
            return false;
        };
        let Some((host, port)) = split_port(authority) else {
            return false;
        };
        if port != Some(listen.port()) {
            return false;
        }
        let loopback_listener = listen.ip().is_loopback() || listen.ip().is_unspecified();
        match parse_host(host) {
            Some(HostName::Ip(ip)) => ip == listen.ip() || (loopback_listener && ip.is_loopback()),
            Some(HostName::Localhost) => loopback_listener,
            None => false,
        }
    }

    /// Whether `host` (the `Host` header) may be served: always on a listener that is not
    /// loopback; on a loopback one, only a loopback name or the listen address, with any port.
    fn allows_host(&self, host: &str) -> bool {
        let Some(listen) = self.listen else {
            return true;
        };
        if !listen.ip().is_loopback() {
            return true;
        }
        let Some((name, _)) = split_port(host.trim()) else {
            return false;
        };
        match parse_host(name) {
            Some(HostName::Ip(ip)) => ip.is_loopback() || ip == listen.ip(),
            Some(HostName::Localhost) => true,
            None => false,
        }
    }

    /// Whether `request` may go on: the `Origin`, then the `Host`, then the token (in
    /// `Authorization: Bearer TOKEN` or `?token=TOKEN`).
    pub(crate) fn check(&self, request: &Request) -> Result<(), Refused> {
        if request
            .header_values("origin")
            .any(|origin| !self.allows_origin(origin))
        {
            return Err(Refused::Origin);
        }
        if request
            .header_values("host")
            .any(|host| !self.allows_host(host))
        {
            return Err(Refused::Host);
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let bearer = request
            .header_values("authorization")
            .filter_map(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim().as_bytes().to_vec());
        let query = request
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.strip_prefix("token="))
            .map(percent_decode);
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

impl Refused {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Refused::Origin | Refused::Host => 403,
            Refused::NoToken | Refused::WrongToken => 401,
        }
    }

    /// What is wrong and how to put it right, for a person: the message of the body's
    /// JSON-RPC error.
    pub fn message(self) -> String {
        match self {
            Refused::Origin => "origin not allowed: the bridge serves a browser page only from \
                                its own address or an origin named by --allow-origin"
                .to_owned(),
            Refused::Host => "host not allowed: a bridge listening on loopback serves requests \
                              for a loopback name or its own address only"
                .to_owned(),
            Refused::NoToken => format!("missing bearer token: {TOKEN_HINT}"),
            Refused::WrongToken => format!("wrong bearer token: {TOKEN_HINT}"),
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 7235 requires one; RFC 6750 says what it
    /// holds): the bearer scheme and, for a wrong token, `invalid_token`. It carries no
    /// `resource_metadata` (RFC 9728): the bridge has no authorization server to discover.
    pub fn challenge(self) -> Option<&'static str> {
        match self {
            Refused::Origin | Refused::Host => None,
            // A request that offered nothing is told the scheme and no error (RFC 6750, 3.1).
            Refused::NoToken => Some(r#"Bearer realm="tether""#),
            Refused::WrongToken => Some(
                r#"Bearer realm="tether", error="invalid_token", error_description="wrong bearer token: pass the bridge's token, this bridge does no OAuth""#,
            ),
        }
    }

    /// The whole answer: the status, a JSON-RPC error body (id null) that an MCP client shows
    /// as the server's error, and for a 401 the challenge. The same over HTTP and for a
    /// websocket handshake.
    pub fn response(self) -> Response {
        let mut response = Response::error(self.status(), SERVER_ERROR, &self.message());
        if let Some(challenge) = self.challenge() {
            response
                .headers
                .push(("www-authenticate", challenge.to_owned()));
        }
        response
    }
}

enum HostName {
    Ip(IpAddr),
    Localhost,
}

/// A host as in a URL: an IPv4 literal, `[IPv6]`, or `localhost` (any case, a final dot
/// allowed).
fn parse_host(host: &str) -> Option<HostName> {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse().ok().map(HostName::Ip);
    }
    if let Ok(ip) = host.parse() {
        return Some(HostName::Ip(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    name.eq_ignore_ascii_case("localhost")
        .then_some(HostName::Localhost)
}

/// `host[:port]` (the host possibly `[v6]`) split; `None` for a port that is not a number.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let colon = match authority.rfind(':') {
        Some(at) if !authority[at..].contains(']') => at,
        _ => return Some((authority, None)),
    };
    let port = authority[colon + 1..].parse().ok()?;
    Some((&authority[..colon], Some(port)))
}

/// `%XX` escapes decoded (a malformed one is kept as it is).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    a.len() == b.len() && difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(listen: &str) -> Gate {
        Gate::new(
            Some("secret".into()),
            vec!["http://ok.example".into()],
            Some(listen.parse().unwrap()),
        )
    }

    fn request(headers: &[(&str, &str)], target: &str) -> Request {
        Request::new(
            "POST",
            target,
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn same_compares_whole_slices() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
        assert!(same(b"", b""));
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b"), b"a b");
        assert_eq!(percent_decode("a%2"), b"a%2");
        assert_eq!(percent_decode("%zz%"), b"%zz%");
        assert_eq!(percent_decode("%41"), b"A");
    }

    #[test]
    fn the_bridges_own_origin_is_allowed_and_others_are_not() {
        let g = gate("127.0.0.1:8080");
        for own in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert!(g.allows_origin(own), "{own}");
        }
        for foreign in [
            "http://127.0.0.1:8081",
            "https://127.0.0.1:8080",
            "http://evil.example:8080",
            "http://localhost",
            "null",
            "http://127.0.0.1:x",
        ] {
            assert!(!g.allows_origin(foreign), "{foreign}");
        }
        assert!(g.allows_origin("http://ok.example"));
    }

    #[test]
    fn a_loopback_listener_refuses_a_foreign_host() {
        let g = gate("127.0.0.1:8080");
        let auth = ("authorization", "Bearer secret");
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:9",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert_eq!(
                g.check(&request(&[auth, ("host", host)], "/mcp")),
                Ok(()),
                "{host}"
            );
        }
        for host in ["evil.example:8080", "evil.example", "10.0.0.1:8080", ""] {
            assert_eq!(
                g.check(&request(&[auth, ("host", host)], "/mcp")),
                Err(Refused::Host),
                "{host}"
            );
        }
        let wide = gate("0.0.0.0:8080");
        assert_eq!(
            wide.check(&request(&[auth, ("host", "evil.example")], "/")),
            Ok(())
        );
    }

    #[test]
    fn tokens_come_by_header_or_query() {
        let g = gate("127.0.0.1:8080");
        assert_eq!(g.check(&request(&[], "/mcp")), Err(Refused::NoToken));
        assert_eq!(
            g.check(&request(&[("authorization", "Basic c2VjcmV0")], "/mcp")),
            Err(Refused::NoToken)
        );
        assert_eq!(
            g.check(&request(&[("authorization", "Bearer nope")], "/mcp")),
            Err(Refused::WrongToken)
        );
        assert_eq!(g.check(&request(&[], "/?token=secre%74")), Ok(()));
        assert_eq!(
            g.check(&request(&[], "/?token=nope")),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            g.check(&request(
                &[("origin", "http://evil.example")],
                "/?token=secret"
            )),
            Err(Refused::Origin)
        );
    }
}
