//! How busy the machine was while a run took its figures.
//!
//! The one-minute load average is printed at both ends, as asked of every run; but on two cores
//! the run's own measurements keep two or three tasks runnable, so its load at the end is mostly
//! the run itself. What disturbs the ratios is other work, and that is measured directly: the
//! CPU time every process used during the run (`/proc/stat`) less this process's own and that
//! of the children it waited for (`getrusage`), per second of the run.

use std::fmt::Write as _;
use std::fs;
use std::time::Instant;

/// Above this one-minute load average at the start, on two cores, the machine is busy before
/// the run begins: other work flatters the contenders that make fewer system calls.
const QUIET_LOAD: f64 = 1.5;

/// Above this many cores' worth of other processes' CPU time during the run, it is not
/// comparable either.
const QUIET_OTHERS: f64 = 0.5;

/// The machine and this process, at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    at: Instant,
    /// The one-minute load average.
    load: f64,
    /// Seconds of CPU time every process has used, all cores together.
    busy: f64,
    /// Seconds the hypervisor ran something else while this machine wanted the CPU.
    steal: f64,
    /// Seconds of CPU time this process and its waited-for children have used.
    own: f64,
}

impl Snapshot {
    /// Now. Figures that cannot be read are not-a-number, and the run is then not comparable.
    pub(crate) fn take() -> Snapshot {
        let (busy, steal) = cpu_times().unwrap_or((f64::NAN, f64::NAN));
        Snapshot {
            at: Instant::now(),
            load: load(),
            busy,
            steal,
            own: own_cpu(),
        }
    }
}

/// The markdown paragraph on how busy the machine was between `start` and `end`, and whether
/// the run can be compared.
pub(crate) fn report(start: &Snapshot, end: &Snapshot) -> String {
    let wall = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
    let others = ((end.busy - start.busy) - (end.own - start.own)).max(0.0) / wall;
    let steal = (end.steal - start.steal).max(0.0) / wall;
    verdict(start.load, end.load, others, steal)
}

fn verdict(load_start: f64, load_end: f64, others: f64, steal: f64) -> String {
    let mut md = format!(
        "Load average (one minute): {load_start:.2} at the start, {load_end:.2} at the end (this \
         run's own work included). Other processes used {others:.2} cores on average during the \
         run; the hypervisor took {steal:.2}.\n\n"
    );
    let busy = !(load_start <= QUIET_LOAD && others <= QUIET_OTHERS);
    if busy {
        let _ = writeln!(
            md,
            "**Not comparable**: the machine was busy (a load above {QUIET_LOAD} at the start, or \
             other processes using more than {QUIET_OTHERS} cores during the run), and other \
             work flatters the contenders that make fewer system calls.\n"
        );
    }
    md
}

/// The one-minute load average.
fn load() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Seconds of CPU time used by everything (user, nice, system, interrupts) and stolen, from
/// the first line of `/proc/stat`.
fn cpu_times() -> Option<(f64, f64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = ticks[..] else {
        return None;
    };
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (hz > 0.0).then(|| ((user + nice + system + irq + softirq) / hz, steal / hz))
}

/// Seconds of CPU time this process and the children it waited for have used.
fn own_cpu() -> f64 {
    let usage = |who| {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        match unsafe { libc::getrusage(who, usage.as_mut_ptr()) } {
            0 => {
                // SAFETY: filled on success.
                let usage = unsafe { usage.assume_init() };
                let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                secs(usage.ru_utime) + secs(usage.ru_stime)
            }
            _ => f64::NAN,
        }
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_comparable_only_on_a_machine_quiet_at_the_start_and_throughout() {
        let comparable = |load, others| !verdict(load, 2.0, others, 0.0).contains("Not comparable");
        assert!(comparable(1.0, 0.1));
        assert!(comparable(1.5, 0.5));
        assert!(!comparable(1.6, 0.1));
        assert!(!comparable(1.0, 0.6));
        assert!(!comparable(f64::NAN, 0.1));
        assert!(!comparable(1.0, f64::NAN));
    }

    #[test]
    fn this_machine_reads() {
        let start = Snapshot::take();
        // Some work of our own, which is not counted as others'.
        let mut x = 0_u64;
        for i in 0..20_000_000_u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let end = Snapshot::take();
        assert!(start.busy.is_finite() && start.load.is_finite() && start.own.is_finite());
        assert!(end.own > start.own);
        assert!(report(&start, &end).starts_with("Load average"));
    }
}
