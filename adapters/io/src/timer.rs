//! The one timer of a connection: sleeps until the endpoint's next deadline and hands it the
//! time, for as long as the owner holds the connection. (Once the owner is gone, the process
//! layer's own thread does the same for a child.)

use std::sync::Arc;

use futures_lite::future;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock;
use crate::process::Lifetime;
use crate::shared::Shared;
use crate::Runtime;

/// Fires the endpoint's deadlines until the connection is finished or abandoned.
pub(crate) async fn run<M, R>(shared: Arc<Shared<M>>)
where
    M: Serialize + DeserializeOwned + Send + 'static,
    R: Runtime,
{
    loop {
        // Listening first: a deadline set after this point wakes the task.
        let changed = shared.timer.listen();
        let deadline = {
            let state = shared.lock();
            if state.abandoned || state.ep.is_finished() {
                return;
            }
            state.ep.poll_timeout()
        };
        match deadline {
            Some(deadline) if deadline <= clock::now() => {
                shared.tick();
                // A restart's delay may have passed: the endpoint says when.
                let respawn = shared.lock().ep.poll_respawn();
                if respawn {
                    // The child before is released first (reaped, its cgroups removed): the
                    // next one starts on a clean slate.
                    if let Some(child) = shared.child() {
                        shared
                            .wait_for(&shared.progress, |s| s.abandoned || child.is_released())
                            .await;
                    }
                    crate::process::respawn::<M, R>(&shared);
                }
            }
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(clock::now());
                future::or(R::sleep(wait), changed).await;
            }
            None => changed.await,
        }
    }
}
