//! `tether bridge`: a websocket server that gives each connection its own child process.

use std::future::pending;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use event_listener::Event as Notify;
use futures_lite::future;
use tether_core::{CloseReason, Message};
use tether_io::async_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response as HttpResponse,
};
use tether_io::async_tungstenite::tungstenite::http::StatusCode;
use tether_io::{Connection, Event, Io, Runtime};

use crate::args::{self, Bridge};
use crate::input::{self, Input};
use crate::output::{Mode, Output};
use crate::{reap, record, Failure};

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
    record::prepare_folder(args.record.as_deref())?;
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
}

/// Relays one websocket client and its own child until both have ended. The endpoints decide
/// the rest: malformed frames from the client are answered with JSON-RPC errors, the Close
/// code says why the session ended, and every close is bounded in time.
async fn session<R: Runtime>(stream: R::TcpStream, peer: SocketAddr, hub: &Hub, args: &Bridge) {
    let options = args.common.options().stderr(args.stderr.stderr());
    let ws_options = options
        .clone()
        .answer_malformed(true)
        .label(format!("ws:{peer}"));
    let mut ws = match Connection::<Message, R>::accept_ws(stream, ws_options).await {
        Ok(ws) => ws,
        Err(err) => return tracing::debug!(%err, "handshake failed"),
    };
    let recorder = record::session(args.record.as_deref());
    let options = record::options(options, recorder.as_ref());
    let mut child = match args::program(&args.program)
        .map_err(|e| e.to_string())
        .and_then(|c| Connection::<Message, R>::spawn(c, options).map_err(|e| e.to_string()))
    {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(%err, "cannot start the program");
            ws.close_because(CloseReason::ProgramFailed);
            while ws.recv().await.is_some() {}
            return;
        }
    };
    let (mut ws_done, mut child_done, mut stopping) = (false, false, false);
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
                async {
                    if stopping {
                        pending::<()>().await;
                    }
                    hub.until(|h| h.stopping.load(Ordering::Acquire)).await;
                    Side::Stop
                },
            ),
        )
        .await;
        match side {
            Side::Ws(Some(Event::Message(message))) => {
                let _ = child.send(&message).await;
            }
            // Answered by the endpoint.
            Side::Ws(Some(Event::Malformed(malformed))) => {
                tracing::debug!(%malformed, "the client sent a malformed message");
            }
            Side::Ws(Some(Event::Disconnected(_)) | None) => {
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
                record::finish_session(recorder.as_ref(), status);
                if let Some(status) = status {
                    ws.close_because(CloseReason::ProgramEnded(status));
                }
            }
            Side::Stop => {
                stopping = true;
                ws.close_because(CloseReason::GoingAway);
                child.close();
            }
        }
    }
}
