//! `tether run` and `tether connect`: a session over a child process or a socket.

use std::time::Duration;

use tether_core::Message;
use tether_io::{Connection, Runtime};

use crate::args::{self, Connect, Run};
use crate::output::Output;
use crate::session;
use crate::{input, reap, record, Failure};

/// Runs PROGRAM (or the built-in peer) until the session ends and the child is reaped.
pub async fn run<R: Runtime>(args: &Run) -> Result<(), Failure> {
    reap::become_subreaper();
    let input = input::start(true).map_err(Failure::io)?;
    let command = args::program(&args.program).map_err(Failure::io)?;
    let recorder = record::open(args.record.as_deref())?;
    let options = args.common.options().stderr(args.stderr.stderr());
    let options = record::options(options, recorder.as_ref());
    let mut conn = Connection::<Message, R>::spawn(command, options).map_err(Failure::from)?;
    let mut output = Output::new(args.output);
    session::run(
        &mut conn,
        &input,
        &mut output,
        Duration::from_millis(args.linger),
    )
    .await;
    let status = conn.wait().await;
    reap::reap_group(conn.pid());
    output.exit(status);
    record::finish(recorder.as_ref(), status)
}

/// Speaks to URL until the session ends.
pub async fn connect<R: Runtime>(args: &Connect) -> Result<(), Failure> {
    let input = input::start(true).map_err(Failure::io)?;
    let recorder = record::open(args.record.as_deref())?;
    let options = record::options(args.common.options(), recorder.as_ref());
    let url = args.url.as_str();
    let mut conn: Connection<Message, R> = if url.starts_with("ws://") {
        Connection::connect_ws(url, options).await
    } else if let Some(addr) = url.strip_prefix("tcp://") {
        Connection::connect_tcp(addr, options).await
    } else if let Some(path) = url.strip_prefix("unix:") {
        Connection::connect_unix(path, options).await
    } else {
        return Err(Failure(format!(
            "unsupported URL {url:?}: expected ws://HOST:PORT/PATH, tcp://HOST:PORT or unix:PATH"
        )));
    }
    .map_err(Failure::from)?;
    let mut output = Output::new(args.output);
    session::run(
        &mut conn,
        &input,
        &mut output,
        Duration::from_millis(args.linger),
    )
    .await;
    output.exit(None);
    record::finish(recorder.as_ref(), None)
}
