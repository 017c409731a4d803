//! The loop shared by `tether run` and `tether connect`: standard input to the peer, the
//! peer's events to standard output, and an orderly close.

use std::future::pending;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::channel::Receiver;
use tether_core::{decode, Correlator, Message};
use tether_io::{Connection, Event, Runtime};

use crate::input::Input;
use crate::output::Output;

/// How a session closes.
#[derive(Debug, Clone, Copy)]
pub struct Closing {
    /// After stdin ends, how long to wait for responses to the requests sent.
    pub linger: Duration,
    /// After the close starts, how long to wait for the peer's end (`None`: as long as it
    /// takes, because a child's shutdown ladder bounds it already).
    pub bound: Option<Duration>,
}

enum Step {
    Event(Option<Event<Message>>),
    Input(Option<Input>),
    Sent,
    Timer,
}

/// Runs until the connection has ended (its `disconnected` event is written), or until the
/// close bound passes after a close began.
pub async fn run<R: Runtime>(
    conn: &mut Connection<Message, R>,
    input: &Receiver<Input>,
    output: &mut Output,
    closing: Closing,
) {
    let sender = conn.sender();
    // Requests sent whose responses have not arrived: stdin's end waits for them.
    let mut requests = Correlator::new();
    let mut outgoing: Option<Message> = None;
    let mut stdin_open = true;
    let mut close_started: Option<Instant> = None;
    let mut linger_until: Option<Instant> = None;
    loop {
        let deadline = match close_started {
            Some(at) => closing.bound.map(|b| at + b),
            None => linger_until,
        };
        let step = {
            let event = async { Step::Event(conn.recv().await) };
            let read = async {
                if outgoing.is_some() || input.is_closed() && input.is_empty() {
                    pending::<()>().await;
                }
                Step::Input(input.recv().await.ok())
            };
            let send = async {
                match &outgoing {
                    // A message refused because the connection has ended is dropped: the
                    // `disconnected` event says why.
                    Some(message) => drop(sender.send(message).await),
                    None => pending::<()>().await,
                }
                Step::Sent
            };
            let timer = async {
                match deadline {
                    Some(d) => R::sleep(d.saturating_duration_since(Instant::now())).await,
                    None => pending::<()>().await,
                }
                Step::Timer
            };
            let mut next = pin!(future::or(event, future::or(read, future::or(send, timer))));
            // Output is flushed once nothing more is ready, not once per line.
            match future::poll_once(next.as_mut()).await {
                Some(step) => step,
                None => {
                    output.flush();
                    next.await
                }
            }
        };
        let mut close = false;
        match step {
            Step::Event(Some(Event::Message(message))) => {
                answered(&message, &mut requests);
                output.message(&message);
                close = !stdin_open && requests.pending() == 0;
            }
            Step::Event(Some(Event::Malformed(malformed))) => {
                output.malformed(&malformed.to_string())
            }
            Step::Event(Some(Event::Disconnected(reason))) => {
                output.disconnected(reason.map(|r| r.to_string()));
                if close_started.is_none() {
                    conn.close();
                }
                return;
            }
            Step::Event(None) => return,
            Step::Input(Some(Input::Line(line))) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match decode::<Message>(&line) {
                    Ok(message) if close_started.is_none() => {
                        sent(&message, &mut requests);
                        outgoing = Some(message);
                    }
                    Ok(_) => output.invalid_input("the connection is closing"),
                    Err(malformed) => output.invalid_input(&malformed.to_string()),
                }
            }
            Step::Input(Some(Input::End) | None) => {
                stdin_open = false;
                close = requests.pending() == 0;
                linger_until = Some(Instant::now() + closing.linger);
            }
            Step::Input(Some(Input::Signal)) => close = true,
            Step::Sent => outgoing = None,
            Step::Timer => {
                if close_started.is_some() {
                    output.disconnected(Some(format!(
                        "connection {}: the peer did not close within {:?}",
                        conn.label(),
                        closing.bound.unwrap_or_default()
                    )));
                    return;
                }
                close = true;
            }
        }
        if close && close_started.is_none() {
            close_started = Some(Instant::now());
            conn.close();
        }
    }
}

/// Tracks the requests in a message we send. A caller reusing an id still pending is not
/// tracked twice: its first answer counts for both.
fn sent(message: &Message, pending: &mut Correlator) {
    match message {
        Message::Request(request) => {
            let _ = pending.track(Instant::now(), request.id.clone(), None);
        }
        Message::Batch(items) => items.iter().for_each(|item| sent(item, pending)),
        _ => {}
    }
}

/// Marks the requests a received message answers.
fn answered(message: &Message, pending: &mut Correlator) {
    match message {
        Message::Response(response) => {
            pending.handle_response(response.clone());
            while pending.poll_completion().is_some() {}
        }
        Message::Batch(items) => items.iter().for_each(|item| answered(item, pending)),
        _ => {}
    }
}
