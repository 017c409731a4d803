//! The one place the drivers read the clock. Every time the endpoint is handed comes from
//! here, so a driver's notion of "now" has a single source.

use std::time::Instant;

/// The current time. Public so that code built on these drivers (the `tether` command's
/// HTTP sessions, say) hands its state machines the same clock instead of reading its own.
#[allow(
    clippy::disallowed_methods,
    reason = "the single clock read of the drivers"
)]
pub fn now() -> Instant {
    Instant::now()
}
