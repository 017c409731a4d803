//! The adapter conformance suite (`tether-conformance`), run under tokio and under smol, against
//! real child processes, real pipes and real loopback sockets; and, for each runtime, the one
//! test an adapter writes itself: dropping a connection once the runtime is gone.

mod support;

use tether_conformance::scenarios;

mod tokio_runtime {
    tether_conformance::suite! {
        runtime: tether_tokio::Tokio,
        block_on: |scenario| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(scenario)
        },
        peer: crate::support::test_peer(),
    }
}

mod smol_runtime {
    tether_conformance::suite! {
        runtime: tether_smol::Smol,
        block_on: smol::block_on,
        peer: crate::support::test_peer(),
    }
}

/// Dropping a connection needs no runtime: after tokio has shut down, the ladder still runs
/// on its own threads and takes the whole tree.
#[test]
fn tokio_dropping_after_the_runtime_shut_down_takes_the_tree() {
    support::become_subreaper();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (conn, grandchildren) = runtime.block_on(scenarios::stubborn_tree::<tether_tokio::Tokio>(
        &support::test_peer(),
    ));
    drop(runtime);
    scenarios::drop_and_check(conn, grandchildren);
}

/// smol's global executor never shuts down; the same guarantee shown from a thread that runs
/// no executor at all.
#[test]
fn smol_dropping_outside_any_executor_takes_the_tree() {
    support::become_subreaper();
    let (conn, grandchildren) = smol::block_on(scenarios::stubborn_tree::<tether_smol::Smol>(
        &support::test_peer(),
    ));
    std::thread::spawn(move || scenarios::drop_and_check(conn, grandchildren))
        .join()
        .unwrap();
}
