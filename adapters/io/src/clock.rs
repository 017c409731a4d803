//! The one place the drivers read the clock. Every time the endpoint is handed comes from
//! here, so a driver's notion of "now" has a single source.

use std::time::Instant;

/// The current time.
#[allow(
    clippy::disallowed_methods,
    reason = "the single clock read of the drivers"
)]
pub(crate) fn now() -> Instant {
    Instant::now()
}
