//! A streamed response body read from the gateway: the events of one stream, or one JSON
//! document, taken as hyper asks for more.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use event_listener::EventListener;
use hyper::body::{Body, Frame};
use tether_core::gateway::{BodyId, Gateway};
use tether_core::streamable::Take;
use tether_io::Driver;

/// One stream's reader, as a response body. Dropped (sent, or its connection gone), it tells
/// the gateway, which keeps the untaken events for a resumption.
#[derive(Debug)]
pub(super) struct Events {
    gateway: Arc<Driver<Gateway>>,
    body: BodyId,
    /// The channel its waits are on (its session's).
    channel: Option<u64>,
    /// Armed while waiting for the gateway to change.
    listener: Option<EventListener>,
}

impl Events {
    pub(super) fn new(gateway: Arc<Driver<Gateway>>, body: BodyId) -> Self {
        let channel = gateway.peek(|g| g.body_channel(body));
        Events {
            gateway,
            body,
            channel,
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
            let body = self.body;
            let take = self.gateway.take(|g, _| match g.take_body(body) {
                Take::Wait => None,
                other => Some(other),
            });
            match take {
                Some(Take::Data(bytes)) => {
                    self.listener = None;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))));
                }
                Some(_) => return Poll::Ready(None),
                // Listen first, then take again: a change in between is not missed.
                None => match self.listener.as_mut() {
                    None => self.listener = Some(self.gateway.listen(self.channel)),
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
        let body = self.body;
        self.gateway.with(|g, now| g.handle_body_dropped(body, now));
    }
}
