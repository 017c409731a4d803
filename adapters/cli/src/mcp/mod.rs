//! `tether bridge`'s HTTP: MCP's Streamable HTTP at `/mcp` (and whatever else a client asks
//! for), on the same port as its websockets. hyper speaks HTTP; the core gateway decides every
//! answer; this module moves request heads and bodies in and responses out.

mod body;

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_lite::future;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tether_core::gateway::{self, BodyError, ConnId, Gateway, Order};
use tether_io::{Driver, Io};

use crate::gate;
use crate::hyper_io::HyperIo;
use body::Events;

/// A response: a whole body, or a session's stream.
type Answer = Response<Either<Full<Bytes>, Events>>;

/// Serves HTTP on connection `conn` (whose first request was read ahead and is read again)
/// until the client closes it or the gateway orders otherwise: on [`Order::Drain`] the
/// requests in progress may finish and no more are taken, on [`Order::Drop`] it is closed.
pub async fn serve(stream: impl Io, conn: ConnId, gateway: Arc<Driver<Gateway>>) {
    let service = {
        let gateway = Arc::clone(&gateway);
        service_fn(move |request| {
            let gateway = Arc::clone(&gateway);
            async move { Ok::<_, Infallible>(answer(&gateway, conn, request).await) }
        })
    };
    let mut connection = pin!(http1::Builder::new().serve_connection(HyperIo(stream), service));
    let order = |wanted: Order| {
        let gateway = Arc::clone(&gateway);
        async move {
            gateway
                .wait_on(Some(conn.channel()), |g, _| {
                    let order = g.connection(conn);
                    (order == wanted || order == Order::Drop).then_some(())
                })
                .await;
            None
        }
    };
    let served = future::or(
        async { Some(connection.as_mut().await) },
        order(Order::Drain),
    )
    .await;
    let result = match served {
        Some(result) => Some(result),
        None => {
            connection.as_mut().graceful_shutdown();
            future::or(async { Some(connection.await) }, order(Order::Drop)).await
        }
    };
    if let Some(Err(err)) = result {
        tracing::debug!(conn = conn.get(), %err, "HTTP connection ended");
    }
}

/// One request: its head to the gateway, its body if the gateway wants it, the gateway's
/// answer back.
async fn answer(
    gateway: &Arc<Driver<Gateway>>,
    conn: ConnId,
    request: Request<Incoming>,
) -> Answer {
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let head = gateway::Request::new(parts.method.as_str(), &target, headers);
    let id = gateway.with(|g, now| g.handle_request(conn, head, now));
    if let Some(limit) = gateway.peek(|g| g.wants_body(id)) {
        let body = match Limited::new(body, limit).collect().await {
            Ok(body) => Ok(body.to_bytes().to_vec()),
            Err(err) if err.is::<LengthLimitError>() => Err(BodyError::TooLarge),
            Err(err) => {
                tracing::debug!(conn = conn.get(), %err, "request body not read");
                Err(BodyError::Failed)
            }
        };
        gateway.with(|g, now| {
            g.handle_body(id, body, now, || {
                gate::random_hex()
                    .map_err(|err| tracing::warn!(%err, "no session id"))
                    .ok()
            })
        });
    }
    let response = gateway
        .wait_on(Some(conn.channel()), |g, _| g.take_response(id))
        .await;
    hyper_response(response, gateway)
}

/// The gateway's response as hyper's.
fn hyper_response(response: gateway::Response, gateway: &Arc<Driver<Gateway>>) -> Answer {
    let body = match response.body {
        gateway::Body::Full(bytes) => Either::Left(Full::new(Bytes::from(bytes))),
        gateway::Body::Stream(body) => Either::Right(Events::new(Arc::clone(gateway), body)),
    };
    let mut answer = Response::new(body);
    if let Ok(status) = response.status.try_into() {
        *answer.status_mut() = status;
    }
    let headers = answer.headers_mut();
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    answer
}
