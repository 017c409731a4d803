//! The conformance suite of tether's runtime adapters: every scenario that `tether-tokio` and
//! `tether-smol` pass, generic over [`tether_io::Runtime`], for a third runtime to pass too.
//!
//! # Writing a runtime adapter
//!
//! 1. **Implement [`Runtime`](tether_io::Runtime)** for a marker type: a spawner, a timer, and
//!    the runtime's pipes and sockets as futures-io streams. `tether-tokio` and `tether-smol`
//!    are about a hundred lines each; copy their shape. The trait's documentation states the
//!    rules its signatures cannot: spawned tasks are detached and may outlive the runtime,
//!    pipes are non-blocking and registered with the reactor, dropping the stdin writer closes
//!    the descriptor, TCP streams have `TCP_NODELAY`, `sleep` takes zero and `Duration::MAX`,
//!    and why each bound is there.
//! 2. **Name the types** for your users, as the two adapters do: re-export `tether_io::*` and
//!    define `type Connection<M = Message> = tether_io::Connection<M, YourRuntime>` and
//!    `type Listener = tether_io::Listener<YourRuntime>`.
//! 3. **Run the suite**: add `tether-conformance` to your dev-dependencies and call
//!    [`suite!`] once, in an integration test (say `tests/conformance.rs`):
//!
//!    ```no_run
//!    mod smol_runtime {
//!        tether_conformance::suite! {
//!            runtime: tether_smol::Smol,
//!            block_on: smol::block_on,
//!            peer: tether_conformance::Peer::new("/path/to/tether-test-peer"),
//!        }
//!    }
//!    # fn main() {}
//!    ```
//!
//!    Then `cargo test --test conformance` runs every scenario as a test of its own.
//! 4. **Add one test of your own** for what only your runtime can show: that a connection
//!    dropped after the runtime has stopped still takes its child's whole tree.
//!    [`scenarios::stubborn_tree`] and [`scenarios::drop_and_check`] do the work; see
//!    `tether-tests`' `tests/conformance.rs` for the tokio and smol versions.
//!
//! # What the suite needs
//!
//! - **The test peer**, a program that answers JSON-RPC requests by misbehaving on demand
//!   (ignoring SIGTERM, forking grandchildren, flooding, exiting mid-message). It is
//!   `tether-tests`' `tether-test-peer` binary (inside this workspace,
//!   `env!("CARGO_BIN_EXE_tether-test-peer")` in `tether-tests`' own tests; elsewhere, build it
//!   with `cargo build -p tether-tests --bin tether-test-peer`), or the `tether` command's
//!   built-in peer: `Peer::new("tether").arg("peer")`.
//! - **Linux**: the scenarios watch processes through `/proc` and make the test process a
//!   child subreaper, so that orphaned grandchildren are theirs to reap and check.
//! - **A `block_on` that runs spawned tasks on other threads.** Some scenarios block the
//!   calling thread while they watch a child through `/proc`, and the connection's tasks must
//!   go on meanwhile: a multi-threaded runtime whose `block_on` enters the runtime's context
//!   (so that `spawn` and `sleep` work inside the scenario), or an executor like smol's global
//!   one. The first scenario,
//!   [`spawned_tasks_run_detached_beside_a_blocked_caller`](scenarios::spawned_tasks_run_detached_beside_a_blocked_caller),
//!   says so plainly when this is not the case.
//!
//! # Failure reports
//!
//! [`suite!`] makes one `#[test]` per scenario, named after it, so a failure names the
//! scenario (`smol_runtime::websocket_keepalive_times_out ... FAILED`), with the assertion's
//! message and its line in [`scenarios`]; the scenarios run in parallel like any tests; one
//! can be run alone (`cargo test --test conformance keepalive`); and a scenario that hangs
//! fails after [`GUARD`](helpers::GUARD) instead of holding up the run.

#![deny(missing_docs)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

pub mod helpers;
pub mod scenarios;

/// How to start the test peer (see the crate documentation): a program and its arguments.
#[derive(Debug, Clone)]
pub struct Peer {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Peer {
    /// The peer is `program`, run without arguments (`tether-test-peer`).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Peer {
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// Adds an argument to the peer's command line (`peer`, for the `tether` command).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// A command that starts one peer.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        command
    }
}

/// Expands to one `#[test]` per scenario of the suite, each run under `runtime`:
///
/// ```text
/// tether_conformance::suite! {
///     runtime: RUNTIME_TYPE,   // implements tether_io::Runtime
///     block_on: EXPR,          // callable with a future; runs it to completion
///     peer: EXPR,              // a tether_conformance::Peer
/// }
/// ```
///
/// Each test evaluates `block_on` and `peer` afresh (so `block_on` may build a runtime of its
/// own, which the test then drops), and runs the scenario under [`helpers::guard`]. Call it
/// inside a module named after the runtime, as the scenarios' names become the tests' names.
/// The tokio instantiation, for example:
///
/// ```no_run
/// mod tokio_runtime {
///     tether_conformance::suite! {
///         runtime: tether_tokio::Tokio,
///         block_on: |scenario| {
///             tokio::runtime::Builder::new_multi_thread()
///                 .worker_threads(2)
///                 .enable_all()
///                 .build()
///                 .expect("a tokio runtime")
///                 .block_on(scenario)
///         },
///         peer: tether_conformance::Peer::new("/path/to/tether-test-peer"),
///     }
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! suite {
    (runtime: $runtime:ty, block_on: $block_on:expr, peer: $peer:expr $(,)?) => {
        $crate::suite! {
            @scenarios $runtime, $block_on, $peer;
            spawned_tasks_run_detached_beside_a_blocked_caller,
            sleep_takes_zero_and_huge_durations,
            driver_fires_deadlines_and_wakes_waiters,
            echo_round_trip,
            many_messages_in_order_both_ways,
            child_ignoring_sigterm_is_killed_after_the_second_grace,
            grandchildren_ignoring_sigterm_all_die,
            leader_exit_ends_a_grandchild_holding_stdout,
            child_exiting_mid_message,
            child_closing_stdout_but_staying_alive,
            dropping_the_connection_takes_the_tree,
            garbage_invalid_utf8_and_an_overlong_line,
            stalled_consumer_holds_a_flooding_child_back,
            a_large_send_completes_while_the_peer_echoes,
            a_peer_streaming_while_it_receives_a_large_request,
            sends_complete_after_the_owner_received_and_left,
            verbatim_batches_go_in_order_within_the_budget,
            content_length_framing_with_a_child,
            websocket_exchange_and_close_from_the_client,
            websocket_close_from_the_server,
            websocket_keepalive_times_out,
            websocket_binary_frames_and_pings,
            tcp_listener_and_client,
            unix_listener_and_client,
            waiting_for_the_exit_reads_what_the_child_writes,
            sending_to_a_child_that_exited_fails_with_a_typed_error,
        }
    };
    (@scenarios $runtime:ty, $block_on:expr, $peer:expr; $($scenario:ident,)*) => {
        $(
            #[test]
            fn $scenario() {
                let peer: $crate::Peer = $peer;
                ($block_on)($crate::helpers::guard::<$runtime, _>(
                    $crate::scenarios::$scenario::<$runtime>(&peer),
                ));
            }
        )*
    };
}
