//! `tether bridge`: a websocket and Streamable HTTP server that gives each session its own
//! program. Every decision is the core gateway's ([`tether_core::gateway`]), driven by
//! [`tether_io::Driver`]; this module accepts connections, hands each to the websocket library
//! or to hyper, and moves messages between clients, the gateway and programs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use tether_core::gateway::{self, ConnId, Gateway, Order, ToClient};
use tether_core::streamable::Settings;
use tether_core::Message;
use tether_io::async_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response as HttpResponse,
};
use tether_io::{Connection, Driver, Event, Io, Runtime};

use crate::args::{Auth, Bridge};
use crate::gate::Gate;
use crate::http::{self, Head};
use crate::program;
use crate::{input, mcp, output, reap, record, Failure};

/// `{"event":"listening","addr":"127.0.0.1:PORT","url":"ws://…","mcp_url":"http://…/mcp"}`,
/// in that order.
#[derive(serde::Serialize)]
struct Listening {
    event: &'static str,
    addr: String,
    url: String,
    mcp_url: String,
}

/// Serves until `SIGINT` or `SIGTERM`, then closes every connection, tears down every child
/// tree, and returns.
pub async fn bridge<R: Runtime>(args: &Bridge) -> Result<(), Failure> {
    reap::become_subreaper();
    let gate = Gate::new(args).map_err(Failure::io)?;
    record::prepare_folder(args.record.as_deref())?;
    let inputs = input::start(false).map_err(Failure::io)?;
    let listener = R::bind_tcp(&args.listen)
        .await
        .map_err(|e| Failure(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = R::tcp_local_addr(&listener).map_err(Failure::io)?;
    if args.auth == Auth::None && !addr.ip().is_loopback() {
        eprintln!(
            "tether: warning: listening on {addr} with --auth none: anyone who reaches this \
             address can run the program"
        );
    }
    output::notice(&Listening {
        event: "listening",
        addr: addr.to_string(),
        url: gate.url(addr),
        mcp_url: format!("http://{addr}{}", gateway::PATH),
    });
    let settings = Settings::default();
    let idle = args.idle_timeout.map(Duration::from_millis);
    let config = gateway::Config::default()
        .token(gate.token())
        .allow_origins(args.allow_origins.clone())
        .listen(addr)
        .max_connections(args.max_connections)
        .handshake_timeout(Duration::from_millis(args.handshake_timeout))
        .shutdown_grace(Duration::from_millis(args.common.grace))
        .max_body(args.common.max_frame)
        .pool(args.pool as usize)
        .restart(args.supervise.policy())
        .session(
            settings
                .clone()
                .idle_timeout(idle.or(settings.idle_timeout)),
        );
    let gateway = Driver::start::<R>(Gateway::new(config));
    let args = Arc::new(args.clone());
    R::spawn(program::starter::<R>(
        Arc::clone(&gateway),
        Arc::clone(&args),
    ));
    loop {
        let accepted = future::or(async { Some(R::accept_tcp(&listener).await) }, async {
            let _ = inputs.signals.recv().await;
            None
        })
        .await;
        match accepted {
            Some(Ok((stream, peer))) => {
                R::spawn(serve::<R>(
                    stream,
                    peer,
                    Arc::clone(&gateway),
                    Arc::clone(&args),
                ));
            }
            Some(Err(err)) => tracing::warn!(%err, "accept failed"),
            None => break,
        }
    }
    tracing::debug!("stopping: closing every connection");
    gateway.with(|g, now| g.handle_stop(now));
    gateway.wait(|g, _| g.is_finished().then_some(())).await;
    Ok(())
}

/// Serves one TCP connection until it ends or the gateway drops it: a health check, HTTP, or
/// a websocket session once its handshake is accepted.
async fn serve<R: Runtime>(
    stream: R::TcpStream,
    peer: SocketAddr,
    gateway: Arc<Driver<Gateway>>,
    args: Arc<Bridge>,
) {
    let conn = gateway.with(|g, now| g.handle_accept(peer, now));
    let dropped = async {
        gateway
            .wait_until(Some(conn.channel()), |g| g.connection(conn) == Order::Drop)
            .await;
        tracing::debug!(%peer, "dropped: no handshake in time, or the bridge is stopping");
    };
    future::or(open::<R>(stream, peer, conn, &gateway, &args), dropped).await;
    gateway.with(|g, now| g.handle_closed(conn, now));
}

/// Reads the first request head and hands the connection to whoever speaks its protocol.
async fn open<R: Runtime>(
    stream: R::TcpStream,
    peer: SocketAddr,
    conn: ConnId,
    gateway: &Arc<Driver<Gateway>>,
    args: &Bridge,
) {
    let (head, stream) = match http::read_head(stream).await {
        Ok(read) => read,
        Err(err) => {
            tracing::debug!(%peer, %err, "no request");
            return;
        }
    };
    match head {
        Head::Health(request) => {
            let answer = gateway.with(|g, now| {
                let id = g.handle_request(conn, request, now);
                g.take_response(id)
            });
            if let Some(answer) = answer {
                if let Err(err) = http::health(stream, answer).await {
                    tracing::debug!(%peer, %err, "health answer failed");
                }
            }
        }
        Head::Http => mcp::serve(stream, conn, Arc::clone(gateway)).await,
        Head::Websocket => websocket::<R>(stream, peer, conn, gateway, args).await,
    }
}

/// A websocket handshake, answered by the gateway; once accepted, the session.
async fn websocket<R: Runtime>(
    stream: impl Io,
    peer: SocketAddr,
    conn: ConnId,
    gateway: &Arc<Driver<Gateway>>,
    args: &Bridge,
) {
    // The callback's signature is the websocket library's; its error is the refusal itself.
    #[allow(clippy::result_large_err, reason = "the signature is tungstenite's")]
    let callback =
        |request: &Request, response: HttpResponse| -> Result<HttpResponse, ErrorResponse> {
            let target = request.uri().path_and_query().map_or_else(
                || request.uri().path().to_owned(),
                |p| p.as_str().to_owned(),
            );
            let headers = request
                .headers()
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect();
            let head = gateway::Request::new(request.method().as_str(), &target, headers);
            let answer = gateway.with(|g, now| g.handle_handshake(conn, head, now));
            if answer.status == 101 {
                Ok(response)
            } else {
                Err(http::refusal(answer))
            }
        };
    let options = args
        .common
        .options()
        .answer_malformed(true)
        .idle_timeout(args.idle_timeout.map(Duration::from_millis))
        .label(format!("ws:{peer}"));
    let client = match Connection::<Message, R>::accept_ws_with(stream, options, callback).await {
        Ok(client) => client,
        Err(err) => {
            tracing::debug!(%peer, %err, "handshake refused or failed");
            return;
        }
    };
    gateway.with(|g, now| g.handle_ws_open(conn, now));
    session(client, conn, gateway).await;
}

/// Relays one websocket client to and from the gateway until the client's connection has
/// ended, each direction on its own: what the client sends, while the gateway wants it; what
/// the gateway has for the client, until it says to close.
async fn session<R: Runtime>(
    mut client: Connection<Message, R>,
    conn: ConnId,
    gateway: &Arc<Driver<Gateway>>,
) {
    let to_client = client.sender();
    let channel = Some(conn.channel());
    let reading = async {
        loop {
            // A client that has left is read to its end, wanted or not.
            future::or(
                gateway.wait_until(channel, |g| g.wants_client_input(conn)),
                to_client.closed(),
            )
            .await;
            match client.recv().await {
                Some(Event::Message(message)) => {
                    gateway.with(|g, now| g.handle_client_message(conn, message, now));
                }
                // Answered by the endpoint.
                Some(Event::Malformed(malformed)) => {
                    tracing::debug!(%malformed, "the client sent a malformed message");
                }
                Some(Event::Disconnected(_)) | None => break,
            }
        }
        gateway.with(|g, now| g.handle_closed(conn, now));
    };
    let writing = async {
        loop {
            let next = gateway
                .wait_on(channel, |g, _| match g.poll_client(conn) {
                    Some(next) => Some(Some(next)),
                    None if g.client_closing(conn) => Some(None),
                    None => None,
                })
                .await;
            match next {
                Some(ToClient::Message(message)) => {
                    // Abandoned if the client is to be closed at once, or is gone.
                    future::or(
                        async {
                            let _ = to_client.send(&message).await;
                        },
                        gateway.wait_until(channel, |g| g.client_closing(conn)),
                    )
                    .await;
                }
                Some(ToClient::Close(reason)) => to_client.close_because(reason),
                None => break,
            }
        }
    };
    future::zip(reading, writing).await;
}
