//! `tether bridge`: a websocket server that gives each connection its own child process.

use std::future::pending;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use event_listener::Event as Notify;
use futures_lite::future;
use tether_core::{CloseReason, ExitStatus, Message};
use tether_io::async_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response as HttpResponse,
};
use tether_io::async_tungstenite::tungstenite::http::StatusCode;
use tether_io::{Connection, Event, Io, Recorder, Runtime};

use crate::args::{self, Auth, Bridge};
use crate::gate::Gate;
use crate::http::{self, Head, Replay};
use crate::input;
use crate::output;
use crate::{mcp, reap, record, Failure};

/// The variable that tells each child its client's address (`IP:PORT`).
const CLIENT_ADDR: &str = "TETHER_CLIENT_ADDR";

/// `{"event":"listening","addr":"127.0.0.1:PORT","url":"ws://…","mcp_url":"http://…/mcp"}`,
/// in that order.
#[derive(serde::Serialize)]
struct Listening {
    event: &'static str,
    addr: String,
    url: String,
    mcp_url: String,
}

/// The sessions being served (websocket connections and HTTP sessions alike), and the order
/// to stop.
#[derive(Debug, Default)]
pub struct Hub {
    active: AtomicUsize,
    stopping: AtomicBool,
    changed: Notify,
}

/// A session's place in the hub, given back when dropped.
#[derive(Debug)]
pub struct Place(Arc<Hub>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify(usize::MAX);
    }
}

impl Hub {
    /// Takes a place if fewer than `max` are taken.
    pub fn admit(self: &Arc<Self>, max: usize) -> Option<Place> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(Arc::clone(self)))
    }

    /// Sessions alive.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Whether the bridge is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Completes once the bridge is stopping.
    pub async fn stopping(&self) {
        self.until(Hub::is_stopping).await;
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
    let gate = Arc::new(Gate::new(args).map_err(Failure::io)?);
    record::prepare_folder(args.record.as_deref())?;
    let inputs = input::start(false, args.common.max_frame).map_err(Failure::io)?;
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
        mcp_url: format!("http://{addr}{}", mcp::PATH),
    });
    let hub = Arc::new(Hub::default());
    let sessions = Arc::new(mcp::Sessions::default());
    let args = Arc::new(args.clone());
    loop {
        let accepted = future::or(async { Some(R::accept_tcp(&listener).await) }, async {
            let _ = inputs.signals.recv().await;
            None
        })
        .await;
        match accepted {
            Some(Ok((stream, peer))) => {
                let (hub, gate) = (Arc::clone(&hub), Arc::clone(&gate));
                let (sessions, args) = (Arc::clone(&sessions), Arc::clone(&args));
                R::spawn(serve::<R>(stream, peer, hub, gate, sessions, args));
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

/// Serves one TCP connection: a health check, MCP's endpoint over HTTP, or a websocket
/// session once its handshake is accepted; the first request must arrive (and a handshake
/// complete) within the handshake timeout (or, once the bridge is stopping, never).
async fn serve<R: Runtime>(
    stream: R::TcpStream,
    peer: SocketAddr,
    hub: Arc<Hub>,
    gate: Arc<Gate>,
    sessions: Arc<mcp::Sessions>,
    args: Arc<Bridge>,
) {
    let limit = Duration::from_millis(args.handshake_timeout);
    let opened = future::or(open::<R>(stream, peer, &hub, &gate, &args), async {
        future::or(
            R::sleep(limit),
            hub.until(|h| h.stopping.load(Ordering::Acquire)),
        )
        .await;
        tracing::debug!(%peer, "handshake unfinished in time, or the bridge is stopping: dropped");
        None
    })
    .await;
    match opened {
        Some(Opened::Ws(ws, _place)) => session::<R>(ws, peer, &hub, &args).await,
        Some(Opened::Http(stream)) => {
            let endpoint = mcp::Endpoint {
                hub,
                gate,
                sessions,
                args,
                peer,
            };
            endpoint.serve::<R>(stream).await;
        }
        None => {}
    }
}

/// A connection whose first request was read in time.
enum Opened<R: Runtime, S> {
    /// A websocket session, and its place in the hub.
    Ws(Connection<Message, R>, Place),
    /// HTTP for the MCP endpoint.
    Http(Replay<S>),
}

/// Reads the request; answers a health check, hands MCP's endpoint to HTTP, refuses the
/// handshake (503 over the connection limit, 403 for an origin not allowed, 401 without the
/// token) or accepts it.
async fn open<R: Runtime>(
    stream: R::TcpStream,
    peer: SocketAddr,
    hub: &Arc<Hub>,
    gate: &Gate,
    args: &Bridge,
) -> Option<Opened<R, R::TcpStream>> {
    let (head, stream) = http::read_head(stream)
        .await
        .map_err(|err| tracing::debug!(%peer, %err, "no request"))
        .ok()?;
    if head == Head::Health {
        let connections = hub.active.load(Ordering::Acquire);
        if let Err(err) = http::health(stream, connections).await {
            tracing::debug!(%peer, %err, "health answer failed");
        }
        return None;
    }
    if head == Head::Http {
        return Some(Opened::Http(stream));
    }
    let Some(place) = hub.admit(args.max_connections) else {
        refuse(stream).await;
        return None;
    };
    let options = args
        .common
        .options()
        .answer_malformed(true)
        .idle_timeout(args.idle_timeout.map(Duration::from_millis))
        .label(format!("ws:{peer}"));
    match Connection::accept_ws_with(stream, options, gate).await {
        Ok(ws) => Some(Opened::Ws(ws, place)),
        Err(err) => {
            tracing::debug!(%err, "handshake refused or failed");
            None
        }
    }
}

/// Answers the handshake with 503 and closes.
async fn refuse(stream: impl Io) {
    // The callback's signature is the websocket library's; its error is the refusal itself.
    #[allow(clippy::result_large_err, reason = "the signature is tungstenite's")]
    let callback = |_: &Request, _: HttpResponse| -> Result<HttpResponse, ErrorResponse> {
        Err(http::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections",
        ))
    };
    let _ = tether_io::async_tungstenite::accept_hdr_async(stream, callback).await;
}

/// Relays one websocket client and its own child (which finds the client's address in
/// `TETHER_CLIENT_ADDR`) until both have ended, each direction on its own, so that neither a
/// client that does not read nor a program that does not read holds the other direction
/// back. The endpoints decide the rest: malformed frames from the client are answered with
/// JSON-RPC errors, an idle session is closed, the Close code says why the session ended, and
/// every close is bounded in time.
async fn session<R: Runtime>(
    mut ws: Connection<Message, R>,
    peer: SocketAddr,
    hub: &Hub,
    args: &Bridge,
) {
    let (mut child, recorder) = match Program::start::<R>(args, peer) {
        Ok(started) => started,
        Err(err) => {
            tracing::warn!(%err, "cannot start the program");
            ws.close_because(CloseReason::ProgramFailed);
            while ws.recv().await.is_some() {}
            return;
        }
    };
    let (to_client, to_program) = (ws.sender(), child.sender());
    let from_client = async {
        while let Some(event) = ws.recv().await {
            match event {
                // A client that has left no longer waits on a program that does not read.
                Event::Message(message) => {
                    future::or(
                        async {
                            let _ = to_program.send(&message).await;
                        },
                        to_client.closed(),
                    )
                    .await;
                }
                // Answered by the endpoint.
                Event::Malformed(malformed) => {
                    tracing::debug!(%malformed, "the client sent a malformed message");
                }
                Event::Disconnected(_) => break,
            }
        }
        to_program.close();
    };
    let from_program = async {
        while let Some(event) = child.recv().await {
            match event {
                // Refused once the client has gone: nobody is left to read it.
                Event::Message(message) => drop(to_client.send(&message).await),
                Event::Malformed(malformed) => {
                    tracing::warn!(%malformed, "the program wrote a malformed message");
                }
                Event::Disconnected(_) => break,
            }
        }
        if let Some(status) = Program::end(&child, recorder.as_ref()).await {
            to_client.close_because(CloseReason::ProgramEnded(status));
        }
    };
    let stop = async {
        hub.until(|h| h.stopping.load(Ordering::Acquire)).await;
        to_client.close_because(CloseReason::GoingAway);
        to_program.close();
        pending::<()>().await
    };
    future::or(future::zip(from_client, from_program), async {
        stop.await;
        ((), ())
    })
    .await;
}

/// A session's program: started with the flags' options, the client's address in
/// `TETHER_CLIENT_ADDR` and, with `--record`, a transcript of its own.
#[derive(Debug)]
pub struct Program;

impl Program {
    /// Starts the program for a client at `peer`.
    pub fn start<R: Runtime>(
        args: &Bridge,
        peer: SocketAddr,
    ) -> Result<(Connection<Message, R>, Option<Recorder>), String> {
        let options = args.spawning.apply(args.common.options());
        let recorder = record::session(args.record.as_deref());
        let options = record::options(options, recorder.as_ref());
        let mut command = args::program(&args.program).map_err(|e| e.to_string())?;
        command.env(CLIENT_ADDR, peer.to_string());
        let child = Connection::<Message, R>::spawn(command, options).map_err(|e| e.to_string())?;
        Ok((child, recorder))
    }

    /// Once the program's output has ended: shuts it down (the ladder), waits for its exit,
    /// reaps what is left of its group and ends its transcript.
    pub async fn end<R: Runtime>(
        child: &Connection<Message, R>,
        recorder: Option<&Recorder>,
    ) -> Option<ExitStatus> {
        child.close();
        let status = child.wait().await;
        reap::reap_group(child.pid());
        record::finish_session(recorder, status);
        status
    }
}
