//! `lore eval calibrate`: fits the answerability model on the labelled questions of
//! development sets and picks its operating point.
//!
//! Every case is asked once (hybrid retrieval) and its evidence recorded; each set is split by
//! a hash of its case ids into a training part and a held-out part that is never trained on.
//! A logistic regression over the standardised features is fitted on the training parts (each
//! set weighing the same, however many questions it has), the threshold is the highest whose
//! false-abstention rate on the training parts stays within the target, and the report shows,
//! per set and on its held-out part only, abstention accuracy and false abstention across
//! thresholds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use lore_chat::answerability::{AnswerabilityModel, FEATURE_NAMES, Features};
use lore_core::config::{Config, RetrievalMode};

use crate::error::EvalError;
use crate::runner::{self, CaseResult, RunOptions, RunResult};
use crate::set::EvalSet;

#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// Development set manifests with answerable and unanswerable questions.
    #[arg(required = true)]
    pub sets: Vec<PathBuf>,
    /// Where the fitted model goes (it is built into Lore from there).
    #[arg(long, default_value = "crates/lore-chat/src/answerability.json")]
    pub model: PathBuf,
    /// The report: per set, thresholds against abstention on the held-out split.
    #[arg(long, default_value = "eval/answerability.md")]
    pub report: PathBuf,
    /// Share of each set held out (never trained on).
    #[arg(long, default_value_t = 0.3)]
    pub holdout: f64,
    /// Highest false-abstention rate (answerable questions refused) on the training split.
    #[arg(long, default_value_t = 0.05)]
    pub max_false_abstention: f64,
    /// L2 penalty of the regression; by default chosen by 5-fold cross-validation on the
    /// training split among 0.001, 0.01, 0.1, 1 and 10 (weighted log-loss).
    #[arg(long)]
    pub l2: Option<f64>,
    /// Leave out questions with this tag (for example `cross-lingual`: with an English-only
    /// embedding model a Spanish question over English documents has no evidence to weigh, so
    /// such questions would only teach the model that Spanish questions are answerable).
    #[arg(long = "exclude-tag")]
    pub exclude_tags: Vec<String>,
    /// Use the evidence recorded in `<dir>/<set>.json` (a hybrid `lore eval` run) instead of
    /// asking every question again.
    #[arg(long)]
    pub from_results: Option<PathBuf>,
    /// Where ingested corpora are cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// One labelled question.
#[derive(Debug, Clone)]
pub struct Example {
    pub set: String,
    pub id: String,
    pub features: Features,
    pub answerable: bool,
    pub held_out: bool,
}

/// FNV-1a: a hash that stays the same across Rust versions, so the splits (here, of
/// `categories` and of `verified`) do too.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Whether a case belongs to the held-out split.
pub fn is_held_out(set: &str, id: &str, share: f64) -> bool {
    (fnv1a(&format!("{set}/{id}")) % 10_000) as f64 / 10_000.0 < share
}

pub fn examples(result: &RunResult, share: f64, exclude_tags: &[String]) -> Vec<Example> {
    result
        .cases
        .iter()
        .filter(|c| c.mode == RetrievalMode::Hybrid.as_str())
        .filter(|c| !c.tags.iter().any(|t| exclude_tags.contains(t)))
        .filter_map(|c: &CaseResult| {
            Some(Example {
                set: result.set.clone(),
                id: c.id.clone(),
                features: c.features?,
                answerable: c.answerable,
                held_out: is_held_out(&result.set, &c.id, share),
            })
        })
        .collect()
}

/// Fits a logistic regression by Newton's method on standardised features; `weights` per
/// example. Returns the model with threshold 0.5 (set it after).
#[allow(clippy::needless_range_loop)] // feature indices run over several parallel vectors
pub fn fit(examples: &[&Example], weights: &[f64], l2: f64) -> AnswerabilityModel {
    let n = FEATURE_NAMES.len();
    let rows: Vec<[f64; 11]> = examples.iter().map(|e| e.features.values()).collect();
    let total: f64 = weights.iter().sum::<f64>().max(1e-12);
    let mut mean = vec![0.0; n];
    let mut scale = vec![0.0; n];
    for (row, w) in rows.iter().zip(weights) {
        for j in 0..n {
            mean[j] += w * row[j] / total;
        }
    }
    for (row, w) in rows.iter().zip(weights) {
        for j in 0..n {
            scale[j] += w * (row[j] - mean[j]).powi(2) / total;
        }
    }
    // A constant feature (a language no set has) gets scale 1 and, under the penalty, weight 0.
    let scale: Vec<f64> = scale.into_iter().map(|v| if v > 1e-12 { v.sqrt() } else { 1.0 }).collect();
    let x: Vec<Vec<f64>> = rows.iter().map(|r| (0..n).map(|j| (r[j] - mean[j]) / scale[j]).collect()).collect();
    let y: Vec<f64> = examples.iter().map(|e| if e.answerable { 1.0 } else { 0.0 }).collect();
    let mut beta = vec![0.0; n];
    let mut bias = 0.0;
    // Newton's method: the problem is small (a dozen features) and convex.
    for _ in 0..50 {
        let mut gradient = vec![0.0; n + 1];
        let mut hessian = vec![vec![0.0; n + 1]; n + 1];
        for ((xi, yi), w) in x.iter().zip(&y).zip(weights) {
            let z = bias + xi.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>();
            let p = 1.0 / (1.0 + (-z).exp());
            let w = w / total;
            let augmented: Vec<f64> = std::iter::once(1.0).chain(xi.iter().copied()).collect();
            for a in 0..=n {
                gradient[a] += w * (p - yi) * augmented[a];
                for b in 0..=n {
                    hessian[a][b] += w * p * (1.0 - p) * augmented[a] * augmented[b];
                }
            }
        }
        for j in 0..n {
            gradient[j + 1] += l2 * beta[j];
            hessian[j + 1][j + 1] += l2;
        }
        hessian[0][0] += 1e-9;
        let Some(step) = solve(hessian, gradient) else { break };
        bias -= step[0];
        for j in 0..n {
            beta[j] -= step[j + 1];
        }
        if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-9 {
            break;
        }
    }
    AnswerabilityModel {
        features: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        mean,
        scale,
        weights: beta,
        bias,
        threshold: 0.5,
        provenance: serde_json::Value::Null,
    }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
#[allow(clippy::needless_range_loop)] // row and column indices read as the textbook algorithm
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-15 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let factor = a[row][col] / a[col][col];
            for k in col..n {
                a[row][k] -= factor * a[col][k];
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let sum: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - sum) / a[row][row];
    }
    Some(x)
}

/// Weighted log-loss of `model` on `examples`.
fn log_loss(examples: &[&Example], weights: &[f64], model: &AnswerabilityModel) -> f64 {
    let total: f64 = weights.iter().sum::<f64>().max(1e-12);
    examples
        .iter()
        .zip(weights)
        .map(|(e, w)| {
            let p = model.probability(&e.features).clamp(1e-9, 1.0 - 1e-9);
            -w * if e.answerable { p.ln() } else { (1.0 - p).ln() }
        })
        .sum::<f64>()
        / total
}

/// The L2 penalty with the lowest 5-fold cross-validated log-loss on `training` (folds by a
/// hash of the case id, so they are stable).
pub fn choose_l2(training: &[&Example]) -> (f64, Vec<(f64, f64)>) {
    const CANDIDATES: [f64; 5] = [0.001, 0.01, 0.1, 1.0, 10.0];
    let fold = |e: &Example| fnv1a(&format!("fold/{}/{}", e.set, e.id)) % 5;
    let mut losses = Vec::new();
    for l2 in CANDIDATES {
        let mut loss = 0.0;
        for k in 0..5 {
            let fit_on: Vec<&Example> = training.iter().copied().filter(|e| fold(e) != k).collect();
            let test_on: Vec<&Example> = training.iter().copied().filter(|e| fold(e) == k).collect();
            let model = fit(&fit_on, &set_weights(&fit_on), l2);
            loss += log_loss(&test_on, &set_weights(&test_on), &model) / 5.0;
        }
        losses.push((l2, loss));
    }
    let best = losses.iter().min_by(|a, b| a.1.total_cmp(&b.1)).map_or(0.01, |(l2, _)| *l2);
    (best, losses)
}

/// Per-example weights: every set weighs the same in total.
fn set_weights(examples: &[&Example]) -> Vec<f64> {
    let mut counts = std::collections::HashMap::new();
    for e in examples {
        *counts.entry(e.set.as_str()).or_insert(0usize) += 1;
    }
    examples.iter().map(|e| 1.0 / counts[e.set.as_str()] as f64).collect()
}

/// Abstention accuracy (unanswerable refused) and false abstention (answerable refused) at
/// `threshold`, weighted; `None` where the split has no such question.
fn rates(
    examples: &[&Example],
    weights: &[f64],
    model: &AnswerabilityModel,
    threshold: f64,
) -> (Option<f64>, Option<f64>) {
    let (mut refused_unanswerable, mut unanswerable, mut refused_answerable, mut answerable) = (0.0, 0.0, 0.0, 0.0);
    for (e, w) in examples.iter().zip(weights) {
        let refused = model.probability(&e.features) < threshold;
        if e.answerable {
            answerable += w;
            if refused {
                refused_answerable += w;
            }
        } else {
            unanswerable += w;
            if refused {
                refused_unanswerable += w;
            }
        }
    }
    (
        (unanswerable > 0.0).then(|| refused_unanswerable / unanswerable),
        (answerable > 0.0).then(|| refused_answerable / answerable),
    )
}

/// The highest threshold whose false abstention stays within `target`.
fn operating_point(examples: &[&Example], weights: &[f64], model: &AnswerabilityModel, target: f64) -> f64 {
    let mut best = 0.0;
    for step in 0..=1000 {
        let threshold = f64::from(step) / 1000.0;
        match rates(examples, weights, model, threshold).1 {
            Some(false_rate) if false_rate <= target => best = threshold,
            _ => break,
        }
    }
    best
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.1} %", v * 100.0))
}

async fn collect(args: &CalibrateArgs, config: &Config) -> Result<Vec<Example>, EvalError> {
    let mut all = Vec::new();
    for path in &args.sets {
        let set = EvalSet::load(path)?;
        let result = match &args.from_results {
            Some(dir) => {
                let saved = dir.join(format!("{}.json", set.name));
                let text = std::fs::read_to_string(&saved).map_err(|e| EvalError::io(&saved, e))?;
                serde_json::from_str::<RunResult>(&text)?
            }
            None => {
                let options = RunOptions {
                    modes: vec![RetrievalMode::Hybrid],
                    cache_root: args.cache_dir.clone().unwrap_or_else(crate::corpus::default_cache_root),
                    ..RunOptions::default()
                };
                runner::run_in_process(&set, config, &options).await?
            }
        };
        let examples = examples(&result, args.holdout, &args.exclude_tags);
        if examples.is_empty() {
            return Err(EvalError::Set {
                path: path.clone(),
                message: "no hybrid case with recorded evidence (run it in process, hybrid mode)".into(),
            });
        }
        eprintln!("lore eval calibrate: {} — {} questions", set.name, examples.len());
        all.extend(examples);
    }
    Ok(all)
}

/// Fits, picks the operating point, writes the model and the report; returns the report.
pub async fn run(args: CalibrateArgs, config: &Config) -> Result<String, EvalError> {
    let examples = collect(&args, config).await?;
    let training: Vec<&Example> = examples.iter().filter(|e| !e.held_out).collect();
    let weights = set_weights(&training);
    let (l2, cross_validation) = match args.l2 {
        Some(l2) => (l2, Vec::new()),
        None => choose_l2(&training),
    };
    let mut model = fit(&training, &weights, l2);
    model.threshold = operating_point(&training, &weights, &model, args.max_false_abstention);
    let sets: Vec<String> = {
        let mut names: Vec<String> = examples.iter().map(|e| e.set.clone()).collect();
        names.dedup();
        names
    };
    let mut report = String::new();
    let command = format!(
        "lore eval calibrate {} --holdout {} --max-false-abstention {}{}{}",
        args.sets.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
        args.holdout,
        args.max_false_abstention,
        args.l2.map(|l2| format!(" --l2 {l2}")).unwrap_or_default(),
        args.exclude_tags.iter().map(|t| format!(" --exclude-tag {t}")).collect::<String>()
    );
    let _ = writeln!(report, "# Answerability: calibration\n");
    let _ = writeln!(report, "Written by `{command}`.\n");
    let _ = writeln!(
        report,
        "Operating point: **{:.3}** (the highest threshold with false abstention ≤ {:.0} % on the training split, every set weighing the same).\n",
        model.threshold,
        args.max_false_abstention * 100.0
    );
    if !cross_validation.is_empty() {
        let tried: Vec<String> = cross_validation.iter().map(|(l2, loss)| format!("{l2}: {loss:.4}")).collect();
        let _ = writeln!(
            report,
            "L2 penalty **{l2}**, chosen by 5-fold cross-validation on the training split (log-loss per penalty: {}).\n",
            tried.join(", ")
        );
    }
    let _ = writeln!(report, "| feature | weight (standardised) | mean | scale |\n|---|---|---|---|");
    for (i, name) in FEATURE_NAMES.iter().enumerate() {
        let _ =
            writeln!(report, "| {name} | {:+.3} | {:.3} | {:.3} |", model.weights[i], model.mean[i], model.scale[i]);
    }
    let _ = writeln!(report, "| (bias) | {:+.3} | | |\n", model.bias);
    let mut held_out_summary = serde_json::Map::new();
    let _ = writeln!(report, "## Held-out split, per set\n");
    let _ = writeln!(
        report,
        "Abstention accuracy: unanswerable questions answered with the no-answer reply. False abstention: answerable questions refused. Only held-out questions (never trained on) count.\n"
    );
    for name in &sets {
        let held: Vec<&Example> = examples.iter().filter(|e| &e.set == name && e.held_out).collect();
        let ones = vec![1.0; held.len()];
        let (answerable, unanswerable) =
            (held.iter().filter(|e| e.answerable).count(), held.iter().filter(|e| !e.answerable).count());
        let _ = writeln!(
            report,
            "### {name}: {} held out ({answerable} answerable, {unanswerable} not), {} trained on\n",
            held.len(),
            examples.iter().filter(|e| &e.set == name && !e.held_out).count()
        );
        let _ = writeln!(report, "| threshold | abstention accuracy | false abstention |\n|---|---|---|");
        let mut thresholds: Vec<f64> = (1..20).map(|i| f64::from(i) * 0.05).collect();
        thresholds.push(model.threshold);
        thresholds.sort_by(f64::total_cmp);
        for t in thresholds {
            let (accuracy, false_rate) = rates(&held, &ones, &model, t);
            let mark = if (t - model.threshold).abs() < 1e-12 { " **(operating point)**" } else { "" };
            let _ = writeln!(report, "| {t:.3}{mark} | {} | {} |", percent(accuracy), percent(false_rate));
        }
        let (accuracy, false_rate) = rates(&held, &ones, &model, model.threshold);
        held_out_summary.insert(
            name.clone(),
            serde_json::json!({ "questions": held.len(), "abstention_accuracy": accuracy, "false_abstention": false_rate }),
        );
        let _ = writeln!(report);
    }
    model.provenance = serde_json::json!({
        "command": command,
        "sets": sets,
        "split": format!("held out: FNV-1a of \"<set>/<case id>\" mod 10000 < {} × 10000", args.holdout),
        "trained_on": training.len(),
        "l2": l2,
        "held_out": examples.len() - training.len(),
        "held_out_at_operating_point": held_out_summary,
    });
    write_file(&args.model, &(serde_json::to_string_pretty(&model)? + "\n"))?;
    write_file(&args.report, &report)?;
    Ok(report)
}

fn write_file(path: &Path, text: &str) -> Result<(), EvalError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| EvalError::io(parent, e))?;
    }
    std::fs::write(path, text).map_err(|e| EvalError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(x: f64, answerable: bool) -> Example {
        Example {
            set: "s".into(),
            id: format!("{x}"),
            features: Features { dense_top: x, sentence_coverage: x * 0.5, ..Features::default() },
            answerable,
            held_out: false,
        }
    }

    #[test]
    fn the_fit_separates_what_the_evidence_separates_and_the_threshold_keeps_its_promise() {
        let mut data = Vec::new();
        for i in 0..200 {
            let x = f64::from(i) / 200.0;
            // Answerable above 0.5, with some noise near the border.
            data.push(example(x, x > 0.5 || (i % 7 == 0 && x > 0.4)));
        }
        let refs: Vec<&Example> = data.iter().collect();
        let weights = set_weights(&refs);
        let model = fit(&refs, &weights, 0.01);
        assert!(model.weights[0] > 0.0, "{:?}", model.weights);
        let high = model.probability(&example(0.9, true).features);
        let low = model.probability(&example(0.1, false).features);
        assert!(high > 0.9 && low < 0.1, "{high} {low}");
        let threshold = operating_point(&refs, &weights, &model, 0.05);
        let (accuracy, false_rate) = rates(&refs, &weights, &model, threshold);
        assert!(false_rate.unwrap() <= 0.05);
        assert!(accuracy.unwrap() > 0.8, "{accuracy:?}");
    }

    #[test]
    fn the_split_is_stable_and_near_its_share() {
        let held = (0..10_000).filter(|i| is_held_out("clapnq", &i.to_string(), 0.3)).count();
        assert!((2_800..3_200).contains(&held), "{held}");
        assert_eq!(is_held_out("a", "b", 0.3), is_held_out("a", "b", 0.3));
    }
}
