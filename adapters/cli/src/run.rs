//! `tether run` and `tether connect`: a session over a child process or a socket.

use std::time::Duration;

use tether_core::Message;
use tether_io::async_tungstenite::tungstenite::client::IntoClientRequest;
use tether_io::async_tungstenite::tungstenite::http::{header, HeaderValue};
use tether_io::{Connection, Runtime};

use crate::args::{self, Connect, Run, Token};
use crate::output::Output;
use crate::session;
use crate::{input, reap, record, Failure};

/// Runs PROGRAM (or the built-in peer) until the session ends and the child is reaped.
pub async fn run<R: Runtime>(args: &Run) -> Result<(), Failure> {
    reap::become_subreaper();
    let mut inputs = input::start(true).map_err(Failure::io)?;
    let command = args::program(&args.program).map_err(Failure::io)?;
    let recorder = record::open(args.record.as_deref())?;
    let options = args.spawning.apply(args.common.options());
    let options = args.supervise.apply(options);
    let options = record::options(options, recorder.as_ref());
    let mut conn = Connection::<Message, R>::spawn(command, options).map_err(Failure::from)?;
    session::read_stdin(&conn, &mut inputs, args.common.max_frame).map_err(Failure::io)?;
    let output = Output::new(args.output).map_err(Failure::io)?;
    let restarts = conn.restarts();
    // Each restart is printed as it is scheduled, beside the session's events.
    let printed = async {
        while let Some(report) = restarts.next().await {
            output.restart(&report).await;
            // Rare, and awaited by whoever watches: out at once.
            output.flush().await;
        }
        std::future::pending::<bool>().await
    };
    let session = session::run(
        &mut conn,
        &inputs,
        &output,
        Duration::from_millis(args.linger),
    );
    let signalled = futures_lite::future::or(session, printed).await;
    // Restarts decided as the session ended are printed all the same (unless another signal
    // says not to wait).
    session::until_signal(&inputs, async {
        while let Some(report) = restarts.next().await {
            output.restart(&report).await;
        }
    })
    .await;
    let status = conn.wait().await;
    reap::reap_group(conn.pid());
    let survivors = conn.survivors();
    let end = conn.end();
    finish_output(&inputs, output, status, end.as_ref(), &survivors, signalled).await;
    record::finish(recorder.as_ref(), status)?;
    match survivors.is_empty() {
        true => Ok(()),
        // Containment is tether's own promise: not keeping it is tether failing.
        false => Err(Failure(format!(
            "{} descendants of the child outlived the kill (pids {survivors:?})",
            survivors.len()
        ))),
    }
}

/// Speaks to URL until the session ends.
pub async fn connect<R: Runtime>(args: &Connect) -> Result<(), Failure> {
    let mut inputs = input::start(true).map_err(Failure::io)?;
    let recorder = record::open(args.record.as_deref())?;
    let options = record::options(args.common.options(), recorder.as_ref());
    let url = args.url.as_str();
    let mut conn: Connection<Message, R> = if url.starts_with("ws://") {
        let mut request = url
            .into_client_request()
            .map_err(|_| Failure::from(tether_io::Error::Url(url.to_owned())))?;
        let headers = request.headers_mut();
        for (name, value) in &args.headers {
            headers.append(name, value.clone());
        }
        if let Some(Token(token)) = &args.token_file {
            let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| Failure(format!("the token cannot go in a header: {e}")))?;
            headers.insert(header::AUTHORIZATION, bearer);
        }
        Connection::connect_ws_with(request, options)
            .await
            .map_err(Failure::from)
    } else if args.is_http() {
        crate::mcp_client::open(args, options).await
    } else if let Some(addr) = url.strip_prefix("tcp://") {
        Connection::connect_tcp(addr, options)
            .await
            .map_err(Failure::from)
    } else if let Some(path) = url.strip_prefix("unix:") {
        Connection::connect_unix(path, options)
            .await
            .map_err(Failure::from)
    } else {
        Err(Failure(format!(
            "unsupported URL {url:?}: expected ws://HOST:PORT/PATH, http://HOST:PORT/PATH, \
             tcp://HOST:PORT or unix:PATH"
        )))
    }?;
    session::read_stdin(&conn, &mut inputs, args.common.max_frame).map_err(Failure::io)?;
    let output = Output::new(args.output).map_err(Failure::io)?;
    let signalled = session::run(
        &mut conn,
        &inputs,
        &output,
        Duration::from_millis(args.linger),
    )
    .await;
    finish_output(&inputs, output, None, None, &[], signalled).await;
    record::finish(recorder.as_ref(), None)
}

/// Writes the last lines. After a signal, another one ends tether even if nobody reads them.
async fn finish_output(
    inputs: &input::Inputs,
    output: Output,
    status: Option<tether_core::ExitStatus>,
    end: Option<&tether_io::EndReport>,
    survivors: &[u32],
    signalled: bool,
) {
    match signalled {
        true => session::until_signal(inputs, output.exit(status, end, survivors)).await,
        false => output.exit(status, end, survivors).await,
    }
}
