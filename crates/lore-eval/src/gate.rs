//! The regression gate: a run's overall metrics per mode against the committed baseline, each
//! within its tolerance, and no leak at all.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::metrics::higher_is_better;
use crate::runner::RunResult;

/// Allowed drop of a metric (absolute) unless the baseline or the set's manifest says otherwise.
pub const DEFAULT_TOLERANCE: f64 = 0.03;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub set: String,
    pub cases: usize,
    pub default_tolerance: f64,
    /// Per-metric tolerances.
    #[serde(default)]
    pub tolerance: BTreeMap<String, f64>,
    /// mode → metric → value (overall means; latencies are machine-dependent and left out).
    pub modes: BTreeMap<String, BTreeMap<String, f64>>,
    /// The settings the baseline was recorded with, for the reader.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

impl Baseline {
    pub fn from_run(result: &RunResult, tolerance: &BTreeMap<String, f64>) -> Self {
        let modes = result
            .summary
            .iter()
            .map(|(mode, groups)| {
                let metrics = groups
                    .get("all")
                    .map(|all| {
                        all.iter()
                            .filter(|(name, _)| !name.starts_with("latency.") && *name != "cases")
                            .map(|(name, stat)| {
                                let value = if name == "leaks" { stat.sum } else { stat.mean };
                                (name.clone(), (value * 10_000.0).round() / 10_000.0)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (mode.clone(), metrics)
            })
            .collect();
        let cases = result.cases.iter().map(|c| c.id.as_str()).collect::<std::collections::HashSet<_>>().len();
        Baseline {
            set: result.set.clone(),
            cases,
            default_tolerance: DEFAULT_TOLERANCE,
            tolerance: tolerance.clone(),
            modes,
            settings: result.settings.clone(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::Baseline {
            path: path.to_owned(),
            message: format!("{e} (record one with `lore eval <set> --update-baseline`)"),
        })?;
        serde_json::from_str(&text).map_err(|e| EvalError::Baseline { path: path.to_owned(), message: e.to_string() })
    }

    pub fn save(&self, path: &Path) -> Result<(), EvalError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| EvalError::io(parent, e))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n").map_err(|e| EvalError::io(path, e))
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GateReport {
    pub failures: Vec<String>,
    pub improvements: Vec<String>,
}

impl GateReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Compares a run with the baseline. `overrides` are the manifest's tolerances (they win).
pub fn check(result: &RunResult, baseline: &Baseline, overrides: &BTreeMap<String, f64>) -> GateReport {
    let mut report = GateReport::default();
    for case in &result.cases {
        for leak in &case.leaks {
            report.failures.push(format!(
                "leak: case {} ({}) as {}: {} {} ({})",
                case.id, case.mode, case.asker, leak.kind, leak.location, leak.reason
            ));
        }
    }
    let current = Baseline::from_run(result, overrides);
    if current.cases != baseline.cases {
        report.failures.push(format!(
            "the set has {} cases, the baseline {}: rerun with --update-baseline if the set changed on purpose",
            current.cases, baseline.cases
        ));
    }
    for (mode, metrics) in &baseline.modes {
        let Some(now) = current.modes.get(mode) else {
            report.failures.push(format!("mode {mode} is in the baseline but was not run"));
            continue;
        };
        for (metric, &before) in metrics {
            let tolerance = overrides
                .get(metric)
                .or_else(|| baseline.tolerance.get(metric))
                .copied()
                .unwrap_or(baseline.default_tolerance);
            let Some(&after) = now.get(metric) else {
                report.failures.push(format!("{mode} {metric}: in the baseline ({before:.4}) but not measured"));
                continue;
            };
            let (worse, better) = if higher_is_better(metric) {
                (after < before - tolerance, after > before + tolerance)
            } else if metric == "leaks" {
                (after > before, after < before)
            } else {
                (after > before + tolerance, after < before - tolerance)
            };
            let line = format!("{mode} {metric}: {before:.4} -> {after:.4} (tolerance {tolerance})");
            if worse {
                report.failures.push(line);
            } else if better {
                report.improvements.push(line);
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Stat;

    fn run(mrr: f64, false_rate: f64) -> RunResult {
        let stat = |mean| Stat { mean, n: 10, sum: mean * 10.0 };
        let all = BTreeMap::from([
            ("doc.mrr".to_owned(), stat(mrr)),
            ("abstention.false_rate".to_owned(), stat(false_rate)),
            ("latency.answer_ms.p50".to_owned(), stat(999.0)),
            ("leaks".to_owned(), stat(0.0)),
        ]);
        RunResult {
            set: "s".into(),
            target: "in-process".into(),
            settings: BTreeMap::new(),
            corpus: None,
            modes: vec!["hybrid".into()],
            cases: Vec::new(),
            summary: BTreeMap::from([("hybrid".to_owned(), BTreeMap::from([("all".to_owned(), all)]))]),
        }
    }

    #[test]
    fn drops_beyond_tolerance_fail_and_gains_are_reported() {
        let baseline = Baseline::from_run(&run(0.80, 0.10), &BTreeMap::new());
        assert!(!baseline.modes["hybrid"].contains_key("latency.answer_ms.p50"));
        assert!(check(&run(0.78, 0.12), &baseline, &BTreeMap::new()).passed());
        let worse = check(&run(0.70, 0.10), &baseline, &BTreeMap::new());
        assert!(!worse.passed() && worse.failures[0].contains("doc.mrr"), "{worse:?}");
        let more_abstention = check(&run(0.80, 0.20), &baseline, &BTreeMap::new());
        assert!(more_abstention.failures[0].contains("abstention.false_rate"));
        let better = check(&run(0.95, 0.0), &baseline, &BTreeMap::new());
        assert!(better.passed() && better.improvements.len() == 2);
        let strict = BTreeMap::from([("doc.mrr".to_owned(), 0.0)]);
        assert!(!check(&run(0.79, 0.10), &baseline, &strict).passed());
    }

    #[test]
    fn a_missing_mode_fails() {
        let baseline = Baseline::from_run(&run(0.8, 0.1), &BTreeMap::new());
        let mut result = run(0.8, 0.1);
        result.summary.clear();
        assert!(check(&result, &baseline, &BTreeMap::new()).failures[0].contains("not run"));
    }
}
