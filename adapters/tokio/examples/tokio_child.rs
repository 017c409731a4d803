//! A child-process connection on tokio: send a request, read the response, shut down, print
//! the exit status.
//!
//! `cargo run -p tether-tokio --example tokio_child -- PROGRAM [ARGS...]`, for instance
//! `-- target/debug/tether peer`; without a program, a one-line shell server answers.

use std::process::Command;

use serde_json::json;
use tether_tokio::{Connection, Event, Message, Options, Request};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut command = Command::new(args.first().map_or("sh", String::as_str));
    match args.split_first() {
        Some((_, rest)) => command.args(rest),
        None => command.args([
            "-c",
            r#"read _; echo '{"jsonrpc":"2.0","id":1,"result":"pong"}'; cat"#,
        ]),
    };
    let mut conn: Connection = Connection::spawn(command, Options::new())?;
    conn.send(&Request::new(1, "echo", Some(json!(["ping"]))).into())
        .await?;
    // Events come in order; a notification may arrive before the response.
    while let Some(event) = conn.recv().await {
        if let Event::Message(Message::Response(response)) = event {
            println!("response: {:?}", response.result);
            break;
        }
    }
    println!("exit status: {:?}", conn.shutdown().await);
    Ok(())
}
