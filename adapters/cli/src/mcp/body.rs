//! A response body read from a session: the events of one stream, or one JSON document,
//! taken as hyper asks for more.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use event_listener::EventListener;
use hyper::body::{Body, Frame};
use tether_core::streamable::{Sink, Take};

use super::session::Shared;

/// One stream's reader, as a response body. Dropped (sent, or its connection gone), it
/// detaches from the stream, whose untaken events stay for a resumption.
#[derive(Debug)]
pub(super) struct Events {
    shared: Arc<Shared>,
    sink: Sink,
    /// Armed while waiting for the session to change.
    listener: Option<EventListener>,
}

impl Events {
    pub(super) fn new(shared: Arc<Shared>, sink: Sink) -> Self {
        Events {
            shared,
            sink,
            listener: None,
        }
    }
}

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            let take = {
                let mut session = self.shared.lock();
                let held_back = !session.wants_child_output();
                let take = session.take(self.sink);
                // The session's task waits while clients lag; this take may free it.
                if held_back && session.wants_child_output() {
                    self.shared.changed();
                }
                take
            };
            match take {
                Take::Data(bytes) => {
                    self.listener = None;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))));
                }
                Take::End => return Poll::Ready(None),
                // Listen first, then take again: a change in between is not missed.
                Take::Wait => match self.listener.as_mut() {
                    None => self.listener = Some(self.shared.listen()),
                    Some(listener) => {
                        ready!(Pin::new(listener).poll(cx));
                        self.listener = None;
                    }
                },
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.shared.lock().detach(self.sink, tether_io::now());
        self.shared.changed();
    }
}
