//! A child-process connection on smol, read as a `Stream` of events: send a request, take the
//! response, shut down, print the exit status.
//!
//! `cargo run -p tether-smol --example smol_child` runs `cat`, which sends every line back: the
//! request returns as a message of its own.

use std::process::Command;

use futures_lite::StreamExt;
use tether_smol::{Connection, Event, Options, Request};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
        let mut conn: Connection = Connection::spawn(Command::new("cat"), Options::new())?;
        conn.send(&Request::new("a", "hello", None).into()).await?;
        if let Some(Event::Message(back)) = conn.next().await {
            println!("came back: {back:?}");
        }
        let status = conn.shutdown().await;
        println!("exit status: {status:?}");
        Ok(())
    })
}
