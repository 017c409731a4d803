//! `tether bridge`: a websocket server that gives each connection its own child process.

use std::future::pending;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::Event as Notify;
use futures_lite::future;
use tether_core::{ErrorObject, Id, MalformedKind, Message, Response};
use tether_io::async_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response as HttpResponse,
};
use tether_io::async_tungstenite::tungstenite::http::StatusCode;
use tether_io::{Connection, Event, Io, Runtime};

use crate::args::{self, Bridge};
use crate::input::{self, Input};
use crate::output::{Mode, Output};
use crate::{reap, Failure};

/// `{"event":"listening","addr":"127.0.0.1:PORT"}`, in that order.
#[derive(serde::Serialize)]
struct Listening {
    event: &'static str,
    addr: String,
}

/// The connections being served, and the order to stop.
#[derive(Debug, Default)]
struct Hub {
    active: AtomicUsize,
    stopping: AtomicBool,
    changed: Notify,
}

impl Hub {
    /// Takes a place if fewer than `max` are taken.
    fn admit(&self, max: usize) -> bool {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify(usize::MAX);
    }

    async fn until(&self, condition: impl Fn(&Hub) -> bool) {
        loop {
            let listener = self.changed.listen();
            if condition(self) {
                return;
            }
            listener.await;
        }
    }
}

/// Serves until `SIGINT` or `SIGTERM`, then closes every connection, tears down every child
/// tree, and returns.
pub async fn bridge<R: Runtime>(args: &Bridge) -> Result<(), Failure> {
    reap::become_subreaper();
    let signals = input::start(false).map_err(Failure::io)?;
    let listener = R::bind_tcp(&args.listen)
        .await
        .map_err(|e| Failure(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = R::tcp_local_addr(&listener).map_err(Failure::io)?;
    Output::new(Mode::Events).notice(&Listening {
        event: "listening",
        addr: addr.to_string(),
    });
    let hub = Arc::new(Hub::default());
    loop {
        let accepted = future::or(async { Some(R::accept_tcp(&listener).await) }, async {
            while !matches!(signals.recv().await, Ok(Input::Signal) | Err(_)) {}
            None
        })
        .await;
        match accepted {
            Some(Ok((stream, peer))) => {
                R::spawn(serve::<R>(stream, peer, Arc::clone(&hub), args.clone()));
            }
            Some(Err(err)) => tracing::warn!(%err, "accept failed"),
            None => break,
        }
    }
    tracing::debug!("stopping: closing every connection");
    hub.stopping.store(true, Ordering::Release);
    hub.changed.notify(usize::MAX);
    hub.until(|h| h.active.load(Ordering::Acquire) == 0).await;
    Ok(())
}

async fn serve<R: Runtime>(stream: R::TcpStream, peer: SocketAddr, hub: Arc<Hub>, args: Bridge) {
    if !hub.admit(args.max_connections) {
        refuse(stream).await;
        return;
    }
    session::<R>(stream, peer, &hub, &args).await;
    hub.release();
}

/// Answers the handshake with 503 and closes.
async fn refuse(stream: impl Io) {
    // The callback's signature is the websocket library's; its error is the refusal itself.
    #[allow(clippy::result_large_err, reason = "the signature is tungstenite's")]
    let callback = |_: &Request, _: HttpResponse| -> Result<HttpResponse, ErrorResponse> {
        let mut response = ErrorResponse::new(Some("too many connections".into()));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        Err(response)
    };
    let _ = tether_io::async_tungstenite::accept_hdr_async(stream, callback).await;
}

enum Side {
    Ws(Option<Event<Message>>),
    Child(Option<Event<Message>>),
    Stop,
    Timeout,
}

async fn session<R: Runtime>(stream: R::TcpStream, peer: SocketAddr, hub: &Hub, args: &Bridge) {
    let label = format!("ws:{peer}");
    let options = args.common.options().stderr(args.stderr.stderr());
    let grace = Duration::from_millis(args.common.grace);
    let mut ws = match Connection::<Message, R>::accept_ws(stream, options.clone(), label).await {
        Ok(ws) => ws,
        Err(err) => return tracing::debug!(%err, "handshake failed"),
    };
    let mut child = match args::program(&args.program)
        .map_err(|e| e.to_string())
        .and_then(|c| Connection::<Message, R>::spawn(c, options).map_err(|e| e.to_string()))
    {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(%err, "cannot start the program");
            ws.close_with(1011, "cannot start the program");
            while ws.recv().await.is_some() {}
            return;
        }
    };
    let (mut ws_done, mut child_done, mut stopping) = (false, false, false);
    let mut ws_deadline: Option<Instant> = None;
    while !(ws_done && child_done) {
        let side = future::or(
            async {
                if ws_done {
                    pending::<()>().await;
                }
                Side::Ws(ws.recv().await)
            },
            future::or(
                async {
                    if child_done {
                        pending::<()>().await;
                    }
                    Side::Child(child.recv().await)
                },
                future::or(
                    async {
                        if stopping {
                            pending::<()>().await;
                        }
                        hub.until(|h| h.stopping.load(Ordering::Acquire)).await;
                        Side::Stop
                    },
                    async {
                        match ws_deadline {
                            Some(d) => R::sleep(d.saturating_duration_since(Instant::now())).await,
                            None => pending::<()>().await,
                        }
                        Side::Timeout
                    },
                ),
            ),
        )
        .await;
        match side {
            Side::Ws(Some(Event::Message(message))) => {
                let _ = child.send(&message).await;
            }
            Side::Ws(Some(Event::Malformed(malformed))) => {
                let code = match malformed.kind {
                    MalformedKind::NotJsonRpc { .. } => ErrorObject::INVALID_REQUEST,
                    _ => ErrorObject::PARSE_ERROR,
                };
                let error = ErrorObject::new(code, malformed.kind.to_string());
                let _ = ws.send(&Response::error(Id::Null, error).into()).await;
            }
            Side::Ws(Some(Event::Disconnected(_)) | None) | Side::Timeout => {
                ws_done = true;
                child.close();
            }
            Side::Child(Some(Event::Message(message))) => {
                if !ws_done {
                    let _ = ws.send(&message).await;
                }
            }
            Side::Child(Some(Event::Malformed(malformed))) => {
                tracing::warn!(%malformed, "the program wrote a malformed message");
            }
            Side::Child(Some(Event::Disconnected(_)) | None) => {
                child_done = true;
                child.close();
                let status = child.wait().await;
                reap::reap_group(child.pid());
                let (code, reason) = match status {
                    Some(s) if s.success() => (1000, "the program exited".to_owned()),
                    Some(s) => (1011, format!("the program ended: {s}")),
                    None => (1011, "the program ended".to_owned()),
                };
                ws.close_with(code, &reason);
                ws_deadline.get_or_insert(Instant::now() + grace);
            }
            Side::Stop => {
                stopping = true;
                ws.close_with(1001, "the bridge is shutting down");
                child.close();
                ws_deadline.get_or_insert(Instant::now() + grace);
            }
        }
    }
}
