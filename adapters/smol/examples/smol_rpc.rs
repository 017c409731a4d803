//! The request layer on smol, serving the peer's requests while making our own.
//!
//! `cargo run -p tether-smol --example smol_rpc` talks to `cat`, which sends our request straight
//! back: it arrives as a request *from* the peer, our handler answers it, `cat` sends that
//! answer back too, and it completes our own request.

use std::process::Command;

use serde_json::json;
use tether_smol::{Connection, Inbound, Options, RpcOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
        let conn: Connection = Connection::spawn(Command::new("cat"), Options::new())?;
        let (client, mut incoming) = conn.into_rpc(RpcOptions::new());
        smol::spawn(async move {
            while let Some(item) = incoming.next().await {
                if let Inbound::Request(request, responder) = item {
                    responder.respond(Ok(json!({ "served": request.method })));
                }
            }
        })
        .detach();
        let result = client.request("greet", Some(json!(["world"]))).await?;
        println!("result: {result}");
        println!("exit status: {:?}", client.shutdown().await);
        Ok(())
    })
}
