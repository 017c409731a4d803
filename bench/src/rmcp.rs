//! rmcp, the official Rust MCP SDK, as a Rust user would pick it instead: its
//! `TokioChildProcess` transport in the client role, used directly (`send` and `receive`,
//! without the service layer, whose request bookkeeping the scenarios do not need).

use std::io;
use std::process::Command;
use std::time::Duration;

use rmcp::model::{ClientJsonRpcMessage, NumberOrString, ServerJsonRpcMessage};
use rmcp::service::RoleClient;
use rmcp::transport::{TokioChildProcess, Transport};

use crate::client::{Client, Incoming};

/// A child spoken to through rmcp's transport.
pub(crate) struct Rmcp {
    transport: TokioChildProcess,
}

impl Client for Rmcp {
    type Out = ClientJsonRpcMessage;
    type In = ServerJsonRpcMessage;

    /// rmcp has a line length limit of its own; `max_frame` is not passed on.
    fn spawn(command: Command, _max_frame: usize) -> io::Result<Self> {
        let (transport, _) = TokioChildProcess::builder(tokio::process::Command::from(command))
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        Ok(Rmcp { transport })
    }

    /// rmcp skips a line that does not parse without a word, so nothing is ever malformed.
    async fn recv(&mut self) -> Option<Incoming<ServerJsonRpcMessage>> {
        Transport::<RoleClient>::receive(&mut self.transport)
            .await
            .map(Incoming::Message)
    }

    /// rmcp's `send` takes the message by value: the pool's copy is cloned, as a caller
    /// keeping its own would.
    async fn send(&mut self, message: &ClientJsonRpcMessage) -> io::Result<()> {
        Transport::<RoleClient>::send(&mut self.transport, message.clone()).await
    }

    /// rmcp closes the child's stdin, waits for its exit and reaps it, but keeps the status
    /// to itself: a child that exits within rmcp's wait counts as a success.
    async fn finish(mut self) -> io::Result<bool> {
        self.transport.graceful_shutdown().await?;
        Ok(true)
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn request_id(message: &ServerJsonRpcMessage) -> Option<u64> {
        match message {
            ServerJsonRpcMessage::Request(request) => match request.id {
                NumberOrString::Number(n) => u64::try_from(n).ok(),
                NumberOrString::String(_) => None,
            },
            _ => None,
        }
    }
}
