//! The bridge's programs: started when the gateway asks, each joined to the gateway by one
//! task that moves its messages both ways, and ended (the ladder, the reap, the transcript)
//! once its output is over.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_lite::future;
use tether_core::gateway::{Gateway, ProgramId, Start, ToProgram};
use tether_core::{ExitStatus, Message};
use tether_io::{Connection, Driver, Event, Recorder, Runtime};

use crate::args::{self, Bridge};
use crate::{reap, record};

/// The variable that tells each program its client's address (`IP:PORT`).
const CLIENT_ADDR: &str = "TETHER_CLIENT_ADDR";

/// Starts every program the gateway asks for, until the gateway is finished.
pub async fn starter<R: Runtime>(gateway: Arc<Driver<Gateway>>, args: Arc<Bridge>) {
    loop {
        let next = gateway
            .wait(|g, _| match g.poll_start() {
                Some(start) => Some(Some(start)),
                None if g.is_finished() => Some(None),
                None => None,
            })
            .await;
        let Some(Start {
            program,
            client,
            channel,
        }) = next
        else {
            return;
        };
        match start::<R>(&args, client) {
            Ok((child, recorder)) => {
                gateway.with(|g, now| g.handle_started(program, Ok(()), now));
                let joined = Joined {
                    gateway: Arc::clone(&gateway),
                    program,
                    channel: Some(channel),
                };
                R::spawn(run::<R>(joined, child, recorder));
            }
            Err(err) => {
                tracing::warn!(%err, "cannot start the program");
                gateway.with(|g, now| g.handle_started(program, Err(err), now));
            }
        }
    }
}

/// Starts the program for a client at `client` (none for a pool program, shared by modern
/// clients): the flags' options, the client's address in `TETHER_CLIENT_ADDR` and, with
/// `--record`, a transcript of its own.
fn start<R: Runtime>(
    args: &Bridge,
    client: Option<SocketAddr>,
) -> Result<(Connection<Message, R>, Option<Recorder>), String> {
    let options = args.spawning.apply(args.common.options());
    let recorder = record::session(args.record.as_deref());
    let options = record::options(options, recorder.as_ref());
    let mut command = args::program(&args.program).map_err(|e| e.to_string())?;
    if let Some(client) = client {
        command.env(CLIENT_ADDR, client.to_string());
    }
    let child = Connection::<Message, R>::spawn(command, options).map_err(|e| e.to_string())?;
    Ok((child, recorder))
}

/// A program and where it meets the gateway.
struct Joined {
    gateway: Arc<Driver<Gateway>>,
    program: ProgramId,
    /// The channel its waiters wait on.
    channel: Option<u64>,
}

/// Joins one program to the gateway until it has ended: its messages in while the gateway
/// wants them, the gateway's for it out (a send it does not take is abandoned once it is to
/// close), then its end reported.
async fn run<R: Runtime>(
    joined: Joined,
    mut child: Connection<Message, R>,
    recorder: Option<Recorder>,
) {
    let Joined {
        gateway,
        program,
        channel,
    } = joined;
    let to_child = child.sender();
    let reading = async {
        loop {
            gateway
                .wait_on(channel, |g, _| {
                    g.wants_program_output(program).then_some(())
                })
                .await;
            match child.recv().await {
                Some(Event::Message(message)) => {
                    gateway.with(|g, now| g.handle_program_message(program, message, now));
                }
                Some(Event::Malformed(malformed)) => {
                    tracing::warn!(%malformed, "the program wrote a malformed message");
                }
                Some(Event::Disconnected(_)) | None => break,
            }
        }
        let status = end(&child, recorder.as_ref()).await;
        tracing::debug!(program = program.get(), ?status, "a program ended");
        gateway.with(|g, now| g.handle_program_end(program, status, now));
    };
    let writing = async {
        loop {
            let next = gateway
                .wait_on(channel, |g, _| match g.poll_program(program) {
                    Some(next) => Some(Some(next)),
                    None if g.program_closing(program) => Some(None),
                    None => None,
                })
                .await;
            match next {
                Some(ToProgram::Message(message)) => {
                    future::or(
                        async {
                            // Refused only once the program's input is closed; its end follows.
                            let _ = to_child.send(&message).await;
                        },
                        gateway.wait_on(channel, |g, _| g.program_closing(program).then_some(())),
                    )
                    .await;
                }
                Some(ToProgram::Close) | None => {
                    to_child.close();
                    break;
                }
            }
        }
    };
    future::zip(reading, writing).await;
}

/// Once the program's output has ended: shuts it down (the ladder), waits for its exit, reaps
/// what is left of its group and ends its transcript.
async fn end<R: Runtime>(
    child: &Connection<Message, R>,
    recorder: Option<&Recorder>,
) -> Option<ExitStatus> {
    child.close();
    let status = child.wait().await;
    reap::reap_group(child.pid());
    record::finish_session(recorder, status);
    status
}
