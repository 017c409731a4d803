//! The loop shared by `tether run` and `tether connect`: standard input to the peer, the
//! peer's events to standard output. When to close, how long to linger for answers and how
//! long to wait for the peer's end are the endpoint's decisions.

use std::collections::VecDeque;
use std::future::pending;
use std::pin::pin;
use std::time::Duration;

use futures_lite::future;
use smol::channel::Receiver;
use tether_core::Message;
use tether_io::{Connection, Event, Runtime};

use crate::input::{Input, Line};
use crate::output::Output;

enum Step {
    Event(Option<Event<Message>>),
    Input(Option<Input>),
    Sent,
}

/// Runs until the connection has ended (its `disconnected` event is written). After standard
/// input ends, the session closes once every request sent has been answered, or after
/// `linger`.
pub async fn run<R: Runtime>(
    conn: &mut Connection<Message, R>,
    input: &Receiver<Input>,
    output: &mut Output,
    linger: Duration,
) {
    conn.track_requests();
    let sender = conn.sender();
    // Standard input's lines still to send, in order.
    let mut outgoing = VecDeque::new();
    loop {
        let step = {
            let sending = !outgoing.is_empty();
            let read = async {
                if sending || input.is_closed() && input.is_empty() {
                    pending::<()>().await;
                }
                Step::Input(input.recv().await.ok())
            };
            let send = async {
                if !sending {
                    pending::<()>().await;
                }
                // Taken off only once sent, should an event interrupt the batch.
                while let Some(message) = outgoing.front() {
                    // A message refused because the connection has ended is dropped: the
                    // `disconnected` event says why.
                    drop(sender.send_tracked(message).await);
                    outgoing.pop_front();
                }
                Step::Sent
            };
            let events = async { Step::Event(conn.recv().await) };
            let mut next = pin!(future::or(events, future::or(read, send)));
            // Output is flushed once nothing more is ready, not once per line.
            match future::poll_once(next.as_mut()).await {
                Some(step) => step,
                None => {
                    output.flush();
                    next.await
                }
            }
        };
        match step {
            Step::Event(Some(Event::Message(message))) => output.message(&message),
            Step::Event(Some(Event::Malformed(malformed))) => {
                output.malformed(&malformed.to_string())
            }
            Step::Event(Some(Event::Disconnected(reason))) => {
                output.disconnected(reason.map(|r| r.to_string()));
                // A child whose output ended is shut down; a socket is closed.
                conn.close();
                return;
            }
            Step::Event(None) => return,
            Step::Input(Some(Input::Lines(lines))) => {
                for line in lines {
                    match line {
                        Line::Message(_) if conn.is_closing() => {
                            output.invalid_input("the connection is closing")
                        }
                        Line::Message(message) => outgoing.push_back(message),
                        Line::Invalid(reason) => output.invalid_input(&reason),
                    }
                }
            }
            Step::Input(Some(Input::End) | None) => conn.finish(linger),
            Step::Input(Some(Input::Signal)) => conn.close(),
            Step::Sent => {}
        }
    }
}
