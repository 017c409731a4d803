//! The little HTTP the bridge speaks before it knows what a connection is for: it reads the
//! first request's head (to answer `GET /healthz` at once, and to tell a websocket handshake
//! from the requests hyper serves), hands the bytes read on, and writes the gateway's plain
//! responses. Parsing is httparse's, writing the head is tungstenite's; what to answer is the
//! gateway's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tether_core::gateway::{self, Body};
use tether_io::async_tungstenite::tungstenite::handshake::server::{write_response, ErrorResponse};
use tether_io::async_tungstenite::tungstenite::http::{header, HeaderName, HeaderValue, Response};
use tether_io::Io;

/// The longest request head looked at; a longer one goes to the handshake unrecognised.
const MAX_HEAD: usize = 16 * 1024;

/// The headers httparse makes room for (tungstenite's own limit is higher; a request with
/// more headers is simply not recognised as a health check).
const MAX_HEADERS: usize = 64;

/// A stream whose first bytes, already read, are read again.
#[derive(Debug)]
pub struct Replay<S> {
    head: Vec<u8>,
    read: usize,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let rest = &this.head[this.read..];
        if rest.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        this.read += n;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// What the request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// `GET /healthz`, for the gateway to answer.
    Health(gateway::Request),
    /// A websocket handshake (`Upgrade: websocket`): the handshake decides.
    Websocket,
    /// Any other request (MCP's endpoint, or anything unknown, or not HTTP at all): HTTP
    /// answers it.
    Http,
}

/// Reads until the request head is complete (or over 16 KiB, or not HTTP); returns what
/// it asks for and the stream, from which the handshake reads those bytes again. Fails if the
/// stream ends first.
pub async fn read_head<S: Io>(mut stream: S) -> io::Result<(Head, Replay<S>)> {
    let mut head = Vec::new();
    let mut chunk = [0; 1024];
    let asks = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Complete(_)) => {
                let path = request.path.unwrap_or_default();
                let path = path.split_once('?').map_or(path, |(path, _)| path);
                let upgrade = request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("upgrade")
                        && String::from_utf8_lossy(h.value)
                            .split(',')
                            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
                });
                break match (request.method, path) {
                    (Some("GET"), gateway::HEALTH) => {
                        let headers = request
                            .headers
                            .iter()
                            .map(|h| {
                                let value = String::from_utf8_lossy(h.value).into_owned();
                                (h.name.to_ascii_lowercase(), value)
                            })
                            .collect();
                        Head::Health(gateway::Request::new(
                            "GET",
                            request.path.unwrap_or_default(),
                            headers,
                        ))
                    }
                    _ if upgrade => Head::Websocket,
                    _ => Head::Http,
                };
            }
            // Too long or not HTTP: HTTP says so.
            Ok(httparse::Status::Partial) | Err(_) => break Head::Http,
        }
    };
    let replay = Replay {
        head,
        read: 0,
        stream,
    };
    Ok((asks, replay))
}

/// Writes the gateway's answer to a health check, then closes.
pub async fn health(mut stream: impl Io, answer: gateway::Response) -> io::Result<()> {
    let mut response = Response::builder()
        .status(answer.status)
        .header(header::CONNECTION, "close");
    let body = match answer.body {
        Body::Full(body) => body,
        Body::Stream(_) => Vec::new(),
    };
    for (name, value) in &answer.headers {
        response = response.header(*name, value.as_str());
    }
    let response = response
        .header(header::CONTENT_LENGTH, body.len())
        .body(())
        .map_err(io::Error::other)?;
    let mut bytes = Vec::new();
    write_response(&mut bytes, &response).map_err(io::Error::other)?;
    bytes.extend_from_slice(&body);
    stream.write_all(&bytes).await?;
    stream.close().await
}

/// The gateway's refusal of a websocket handshake, as the websocket library takes it.
pub fn refusal(answer: gateway::Response) -> ErrorResponse {
    let body = match answer.body {
        Body::Full(body) => String::from_utf8_lossy(&body).into_owned(),
        Body::Stream(_) => String::new(),
    };
    let mut response = ErrorResponse::new(None);
    if let Ok(status) = answer.status.try_into() {
        *response.status_mut() = status;
    }
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                headers.insert(name, value);
            }
        }
    }
    headers.insert(header::CONTENT_LENGTH, body.len().into());
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    *response.body_mut() = Some(body);
    response
}
