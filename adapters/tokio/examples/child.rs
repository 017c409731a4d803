//! A child-process connection on tokio: send a request, read the response, shut down, print
//! the exit status.
//!
//! `cargo run -p tether-tokio --example child [-- PROGRAM ARGS...]`; without a program it
//! runs a one-line shell server that answers the first request with "pong".

use std::process::Command;

use serde_json::json;
use tether_tokio::{Connection, Event, Message, Options, Request};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut conn: Connection = Connection::spawn(command(), Options::new())?;
    conn.send(&Request::new(1, "ping", Some(json!({}))).into())
        .await?;
    while let Some(event) = conn.recv().await {
        match event {
            Event::Message(Message::Response(response)) => {
                println!("response: {:?}", response.result);
                break;
            }
            Event::Message(other) => println!("message: {other:?}"),
            Event::Malformed(malformed) => println!("malformed: {malformed}"),
            Event::Disconnected(reason) => println!("disconnected: {reason:?}"),
        }
    }
    let status = conn.shutdown().await;
    println!("exit status: {status:?}");
    Ok(())
}

fn command() -> Command {
    let mut args = std::env::args().skip(1);
    match args.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
        None => {
            let mut command = Command::new("sh");
            command.args([
                "-c",
                r#"read request; echo '{"jsonrpc":"2.0","id":1,"result":"pong"}'; cat >/dev/null"#,
            ]);
            command
        }
    }
}
