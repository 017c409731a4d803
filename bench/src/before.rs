//! An older build of `tether` on the command paths, measured in the same rounds as this one,
//! so that a change's "no figure gets worse" is shown side by side rather than against a
//! `BENCHMARKS.md` written on another day.
//!
//! `bench/run --before REV` builds REV's `tether` and names it in [`BINARY_ENV`] (and REV's
//! short hash in [`REV_ENV`]); every command case then also runs it on both runtimes, as
//! `before-tokio` and `before-smol`. Only the command paths can be compared: the library
//! scenarios run `tether-tokio` and `tether-smol` compiled into this binary, so only one
//! revision of them can be in a run.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

use crate::command::{self, Via};
use crate::scenario::{Report, Scenario};
use crate::suite::{self, Case};
use crate::Contender;

/// The environment variable naming the older `tether` binary.
pub(crate) const BINARY_ENV: &str = "TETHER_BENCH_BEFORE";

/// The environment variable naming the revision that binary was built from, for the report.
pub(crate) const REV_ENV: &str = "TETHER_BENCH_BEFORE_REV";

/// A figure that moved by no more than this fraction of the figure before is taken as noise.
/// A chosen rule, for the full run's figures (best of 5 rounds of ~1 s): the short rounds of
/// `--quick` vary by far more than this, so its verdicts mean nothing.
pub(crate) const NOISE: f64 = 0.05;

/// The older build on one runtime: `tether run --runtime tokio|smol` with the older binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Before {
    Tokio,
    Smol,
}

impl Before {
    /// In the order of [`Case::befores`](crate::suite::Case), which `before as usize` indexes.
    pub(crate) const ALL: [Before; 2] = [Before::Tokio, Before::Smol];

    /// The name on a `one` command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Before::Tokio => "before-tokio",
            Before::Smol => "before-smol",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Before> {
        Before::ALL.into_iter().find(|before| before.name() == name)
    }

    /// This build's contender on the same runtime.
    pub(crate) fn after(self) -> Contender {
        match self {
            Before::Tokio => Contender::TetherTokio,
            Before::Smol => Contender::TetherSmol,
        }
    }

    /// Measures the older build on a command scenario.
    pub(crate) fn measure(self, scenario: &Scenario) -> io::Result<Report> {
        match scenario {
            Scenario::Command { path, file, count } => {
                command::run(Via::Before(self), *path, file.as_deref(), *count)
            }
            _ => Err(io::Error::other(
                "the older build is measured on the command paths only",
            )),
        }
    }
}

/// The older binary, if [`BINARY_ENV`] names one; an error if it names nothing runnable.
pub(crate) fn binary() -> io::Result<Option<PathBuf>> {
    let Some(path) = std::env::var_os(BINARY_ENV).map(PathBuf::from) else {
        return Ok(None);
    };
    if !path.is_file() {
        return Err(io::Error::other(format!(
            "{BINARY_ENV}={} is not a file",
            path.display()
        )));
    }
    Ok(Some(path))
}

/// What the report calls the older build: [`REV_ENV`], else the binary's path.
pub(crate) fn revision() -> String {
    std::env::var(REV_ENV)
        .ok()
        .filter(|rev| !rev.is_empty())
        .or_else(|| std::env::var(BINARY_ENV).ok())
        .unwrap_or_default()
}

/// Whether `after` is worse than `before` by more than [`NOISE`], for a figure where higher is
/// better (`higher`) or lower is. A figure that is not a number is never called worse.
pub(crate) fn worse(before: f64, after: f64, higher: bool) -> bool {
    match higher {
        true => after < before * (1.0 - NOISE),
        false => after > before * (1.0 + NOISE),
    }
}

/// The "Before and after" section: every command case that has the older build's rounds.
pub(crate) fn section(revision: &str, cases: &[Case]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n### Before and after\n");
    let _ = writeln!(
        md,
        "The command paths with `tether` built at `{revision}` (before) and at this tree \
         (after), in the same rounds and rotation as every other contender. The figure shown \
         is the one of the tables above: best-of-rounds throughput, lowest p50. A figure is \
         worse only if it is worse than before by more than {:.0}% (after ÷ before below \
         {:.2}× for throughput, above {:.2}× for latency), a rule for the full run: the short \
         rounds of `--quick` vary by more than that.\n",
        NOISE * 100.0,
        1.0 - NOISE,
        1.0 + NOISE,
    );
    let _ = writeln!(
        md,
        "| scenario | measure | before tokio | after tokio | before smol | after smol | tokio after ÷ before | smol after ÷ before | worse (tokio / smol) |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
    );
    let compared: Vec<&Case> = cases
        .iter()
        .filter(|case| case.befores.iter().all(|rounds| !rounds.is_empty()))
        .collect();
    let mut worsened = Vec::new();
    for case in &compared {
        let (measure, higher, decimals) = suite::shown(case.kind);
        let mut figures = Vec::new();
        let mut ratios = Vec::new();
        let mut verdicts = Vec::new();
        for before in Before::ALL {
            let old = suite::figure(case.kind, &case.befores[before as usize]);
            let new = suite::figure(case.kind, case.rounds(before.after()));
            figures.push(suite::number(old, decimals));
            figures.push(suite::number(new, decimals));
            ratios.push(format!("{:.2}×", new / old));
            let worse = worse(old, new, higher);
            if worse {
                worsened.push(format!("{} ({})", case.title, before.after().name()));
            }
            verdicts.push(if worse { "**yes**" } else { "no" });
        }
        let _ = writeln!(
            md,
            "| {} | {measure} | {} | {} | {} |",
            case.title,
            figures.join(" | "),
            ratios.join(" | "),
            verdicts.join(" / ")
        );
    }
    let _ = writeln!(md);
    if compared.is_empty() {
        let _ = writeln!(md, "No command path was measured with the older build.");
    } else if worsened.is_empty() {
        let _ = writeln!(
            md,
            "No command figure is worse than before by more than {:.0}%.",
            NOISE * 100.0
        );
    } else {
        let _ = writeln!(md, "Worse than before: {}.", worsened.join("; "));
    }

    let _ = writeln!(
        md,
        "\nCPU time and context switches per message or round trip, from each build's \
         cheapest round, as in \"Where the time goes\" (the command's own, from `wait4`, with \
         the child it reaps):\n"
    );
    let _ = writeln!(
        md,
        "| scenario | before tokio | after tokio | before smol | after smol |\n|---|---:|---:|---:|---:|"
    );
    for case in &compared {
        let cells: Vec<String> = Before::ALL
            .into_iter()
            .flat_map(|before| {
                [
                    suite::cost(&case.befores[before as usize]),
                    suite::cost(case.rounds(before.after())),
                ]
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", case.title, cells.join(" | "));
    }
    let _ = writeln!(
        md,
        "\nThe library scenarios (every row above that is not a command path) are not \
         compared: they run the `tether-tokio` and `tether-smol` crates compiled into \
         `tether-bench` itself, so an older revision of them cannot be in the same run. Code \
         that only they exercise is not covered by this section."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CliPath;
    use crate::suite::Kind;

    #[test]
    fn throughput_is_worse_only_below_the_noise() {
        assert!(!worse(1000.0, 1000.0, true));
        assert!(!worse(1000.0, 951.0, true));
        assert!(!worse(1000.0, 950.0, true));
        assert!(worse(1000.0, 949.0, true));
        assert!(!worse(1000.0, 2000.0, true));
    }

    #[test]
    fn latency_is_worse_only_above_the_noise() {
        assert!(!worse(100.0, 100.0, false));
        assert!(!worse(100.0, 105.0, false));
        assert!(worse(100.0, 105.1, false));
        assert!(!worse(100.0, 50.0, false));
    }

    #[test]
    fn not_a_number_is_never_worse() {
        assert!(!worse(f64::NAN, 1.0, true));
        assert!(!worse(1.0, f64::NAN, false));
    }

    #[test]
    fn names_round_trip_and_pair_with_this_build() {
        for before in Before::ALL {
            assert_eq!(Before::parse(before.name()), Some(before));
        }
        assert_eq!(Before::parse("tether-tokio"), None);
        assert_eq!(Before::Tokio.after(), Contender::TetherTokio);
        assert_eq!(Before::Smol.after(), Contender::TetherSmol);
    }

    #[test]
    fn the_library_scenarios_are_refused() {
        let err = Before::Tokio
            .measure(&Scenario::PingPong { count: 1 })
            .unwrap_err();
        assert!(err.to_string().contains("command paths only"), "{err}");
    }

    fn timed(secs: f64, cpu_secs: f64, switches: u64) -> Report {
        Report {
            secs,
            cpu_secs,
            switches,
            messages: 1000,
            bytes: 113_000,
            ..Report::default()
        }
    }

    fn pinged(p50_us: u64) -> Report {
        Report {
            secs: 1.0,
            cpu_secs: 0.5,
            switches: 4000,
            messages: 1000,
            p50_ns: p50_us * 1000,
            p99_ns: p50_us * 2000,
            ..Report::default()
        }
    }

    /// A command case whose every contender took `after`, and whose older build took
    /// `before_tokio` and `before_smol`.
    fn case(kind: Kind, path: CliPath, after: &[Report], before: [&[Report]; 2]) -> Case {
        let mut case = Case::new(
            format!("command {path:?}"),
            kind,
            Scenario::Command {
                path,
                file: None,
                count: 1000,
            },
        );
        for rounds in &mut case.reports {
            rounds.extend_from_slice(after);
        }
        for (rounds, before) in case.befores.iter_mut().zip(before) {
            rounds.extend_from_slice(before);
        }
        case
    }

    #[test]
    fn the_section_renders_figures_ratios_verdicts_and_costs() {
        let throughput = Kind::Throughput { goal: None };
        let latency = Kind::Latency { goal: 0.8 };
        let cases = [
            // After: best 1.0 s, 1000 msg/s. Before tokio best 0.5 s (2000 msg/s: now worse);
            // before smol best 1.02 s (980 msg/s: within the noise).
            case(
                throughput,
                CliPath::Write,
                &[timed(1.2, 0.3, 50), timed(1.0, 0.2, 40)],
                [&[timed(0.5, 0.1, 10)], &[timed(1.02, 0.25, 30)]],
            ),
            // After p50 10 µs; before 12 and 9 µs: better, and worse by 11%.
            case(
                latency,
                CliPath::RoundTrip,
                &[pinged(10)],
                [&[pinged(12)], &[pinged(9)]],
            ),
            // Never measured with the older build: left out.
            case(
                throughput,
                CliPath::Read,
                &[timed(1.0, 0.2, 40)],
                [&[], &[]],
            ),
        ];
        let md = section("abc1234", &cases);
        assert!(md.contains("### Before and after"), "{md}");
        assert!(md.contains("`abc1234`"), "{md}");
        assert!(
            md.contains(
                "| command Write | msg/s (higher is better) | 2,000 | 1,000 | 980 | 1,000 | 0.50× | 1.02× | **yes** / no |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| command RoundTrip | p50 µs (lower is better) | 12.0 | 10.0 | 9.0 | 10.0 | 0.83× | 1.11× | no / **yes** |"
            ),
            "{md}"
        );
        assert!(!md.contains("command Read"), "{md}");
        assert!(
            md.contains(
                "Worse than before: command Write (tether-tokio); command RoundTrip (tether-smol)."
            ),
            "{md}"
        );
        // The cheapest round of each: 0.1 s of CPU for 1000 messages, 10 switches.
        assert!(
            md.contains(
                "| command Write | 100.00 µs CPU, 0.010 switches | 200.00 µs CPU, 0.040 switches | 250.00 µs CPU, 0.030 switches | 200.00 µs CPU, 0.040 switches |"
            ),
            "{md}"
        );
        assert!(md.contains("compiled into `tether-bench` itself"), "{md}");
    }

    #[test]
    fn a_section_without_worse_figures_says_so() {
        let cases = [case(
            Kind::Throughput { goal: None },
            CliPath::Read,
            &[timed(1.0, 0.2, 40)],
            [&[timed(1.0, 0.2, 40)], &[timed(1.04, 0.2, 40)]],
        )];
        let md = section("abc1234", &cases);
        assert!(md.contains("| no / no |"), "{md}");
        assert!(
            md.contains("No command figure is worse than before by more than 5%."),
            "{md}"
        );
    }

    #[test]
    fn a_section_without_any_older_rounds_says_so() {
        let md = section("abc1234", &[]);
        assert!(
            md.contains("No command path was measured with the older build."),
            "{md}"
        );
    }
}
