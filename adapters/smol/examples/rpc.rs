//! The request layer on smol: `request().await` against a child, then shut it down.
//!
//! `cargo run -p tether-smol --example rpc [-- PROGRAM ARGS...]`; without a program it runs
//! a shell that reads and answers nothing, so the request times out after one second and the
//! peer is sent a cancel notification.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tether_smol::{Connection, Notification, Options, RpcOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut command = match args.next() {
        Some(program) => Command::new(program),
        None => {
            let mut silent = Command::new("sh");
            silent.args(["-c", "cat >/dev/null"]);
            silent
        }
    };
    command.args(args);
    let conn: Connection = Connection::spawn(command, Options::new())?;
    let rpc = RpcOptions::new()
        .timeout(Duration::from_secs(1))
        .cancel_notification(|id| {
            Notification::new("notifications/cancelled", Some(json!({ "requestId": id })))
        });
    let (client, incoming) = conn.into_rpc(rpc);
    // This example serves no requests from the peer: they are answered with -32601.
    drop(incoming);
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
