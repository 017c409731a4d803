//! The request layer on tokio: `request().await`, with a deadline and a cancel notification.
//!
//! `cargo run -p tether-tokio --example tokio_rpc -- target/debug/tether peer`; without a program,
//! a shell that never answers shows the deadline at work.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tether_tokio::{Connection, Notification, Options, RpcOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let command = match args.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
        None => {
            let mut silent = Command::new("sh");
            silent.args(["-c", "cat >/dev/null"]);
            silent
        }
    };
    let conn: Connection = Connection::spawn(command, Options::new())?;
    let (client, _incoming) = conn.into_rpc(
        RpcOptions::new()
            .timeout(Duration::from_secs(1))
            .cancel_notification(|id| {
                Notification::new("notifications/cancelled", Some(json!({ "requestId": id })))
            }),
    );
    match client
        .request("echo", Some(json!({"hello": "world"})))
        .await
    {
        Ok(result) => println!("result: {result}"),
        Err(err) => println!("no result: {err}"),
    }
    println!("exit status: {:?}", client.shutdown().await);
    Ok(())
}
