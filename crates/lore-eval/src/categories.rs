//! `lore eval categories <config.toml> <labelled.jsonl>`: how well questions get their
//! category by the nearest example question. The floor under which a question is `other` is
//! fitted on one half of the labelled questions (chosen by a hash of their ids) and accuracy
//! is reported on the other half, with the real embedding model and the query prefix the
//! server uses.

use std::fmt::Write as _;
use std::path::PathBuf;

use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_usage::UsageConfig;
use lore_usage::categories::{self, Categories, Evaluation, Rule};
use serde::Deserialize;

use crate::error::EvalError;

#[derive(Debug, Clone, clap::Args)]
pub struct CategoriesArgs {
    /// A TOML file with a `[usage]` table holding `categories` (as in `lore.toml`).
    pub config: PathBuf,
    /// One JSON object per line: `id`, `question`, `category` (`other` for none), `lang`.
    pub labelled: PathBuf,
    /// Also write the report here (Markdown).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Deserialize)]
struct File {
    usage: UsageConfig,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    question: String,
    category: String,
    #[serde(default)]
    lang: Option<String>,
}

pub fn run(args: &CategoriesArgs, config: &Config) -> Result<String, EvalError> {
    let text = std::fs::read_to_string(&args.config).map_err(|e| EvalError::io(&args.config, e))?;
    let invalid = |message: String| EvalError::Set { path: args.config.clone(), message };
    let file: File = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let usage = file.usage;
    usage.validate().map_err(invalid)?;
    let text = std::fs::read_to_string(&args.labelled).map_err(|e| EvalError::io(&args.labelled, e))?;
    let mut cases = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |message: String| EvalError::Case { path: args.labelled.clone(), line: n + 1, message };
        let case: Case = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let known = case.category == categories::OTHER || usage.categories.iter().any(|c| c.name == case.category);
        if !known {
            return Err(bad(format!("category {:?} is not configured in {}", case.category, args.config.display())));
        }
        cases.push(case);
    }
    let embedder = Embedder::load(&config.embedding)?;
    let examples: Vec<String> = Categories::examples(&usage.categories).into_iter().map(str::to_owned).collect();
    let example_vectors = embedder.embed_queries(&examples)?;
    let questions: Vec<String> = cases.iter().map(|c| c.question.clone()).collect();
    let vectors = embedder.embed_queries(&questions)?;
    let categories = Categories::new(&usage.categories, example_vectors, usage.category_floor)
        .map_err(|e| invalid(e.to_string()))?;
    let labelled: Vec<(Vec<f32>, String)> = vectors.into_iter().zip(cases.iter().map(|c| c.category.clone())).collect();
    let (fit, held_out): (Vec<_>, Vec<_>) =
        labelled.iter().cloned().zip(&cases).partition(|(_, c)| !in_report_half(&c.id));
    let fit: Vec<(Vec<f32>, String)> = fit.into_iter().map(|(case, _)| case).collect();
    let held_out_langs: Vec<Option<String>> = held_out.iter().map(|(_, c)| c.lang.clone()).collect();
    let held_out: Vec<(Vec<f32>, String)> = held_out.into_iter().map(|(case, _)| case).collect();
    // Each rule gets its own floor on the fit half; the rule that does best there is reported
    // on the held-out half (the held-out questions choose nothing).
    let mut candidates = Vec::new();
    for rule in Rule::ALL {
        let with_rule = categories.clone().with_rule(rule);
        let floor = categories::fit_floor(&with_rule, &fit);
        let fitted = with_rule.with_floor(floor);
        let accuracy = categories::evaluate(&fitted, &fit).accuracy;
        candidates.push((rule, floor, accuracy, fitted));
    }
    let best = candidates.iter().map(|c| c.2).fold(f64::MIN, f64::max);
    let (rule, floor, _, fitted) = candidates.iter().find(|c| c.2 == best).expect("two rules were tried");
    let (rule, floor) = (*rule, *floor);
    let report = evaluate_parts(fitted, &fit, &held_out, &held_out_langs);
    let mut out = String::new();
    let _ = writeln!(out, "# Question categories\n");
    let _ = writeln!(
        out,
        "Model `{}`; {} categories with {} example questions ({}); {} labelled questions ({}).\n",
        config.embedding.name,
        usage.categories.len(),
        examples.len(),
        args.config.display(),
        cases.len(),
        args.labelled.display()
    );
    let _ = writeln!(out, "Fit on {} questions (half, by a hash of the id); on that half:\n", fit.len());
    out.push_str("| rule | fitted floor | accuracy on the fit half |\n|---|---|---|\n");
    for (candidate, candidate_floor, accuracy, _) in &candidates {
        let _ = writeln!(out, "| {} | {candidate_floor:.2} | {accuracy:.3} |", candidate.as_str());
    }
    let _ = writeln!(
        out,
        "\nChosen: **`category_rule = \"{}\"`, `category_floor = {floor:.2}`** (configured: {}, {:.2}).\n",
        rule.as_str(),
        usage.category_rule.as_str(),
        usage.category_floor
    );
    out.push_str(&report);
    if let Some(path) = &args.report {
        std::fs::write(path, &out).map_err(|e| EvalError::io(path, e))?;
    }
    Ok(out)
}

/// The reporting half: an FNV-1a hash of the id, odd.
fn in_report_half(id: &str) -> bool {
    crate::calibrate::fnv1a(id) % 2 == 1
}

fn evaluate_parts(
    categories: &Categories,
    fit: &[(Vec<f32>, String)],
    held_out: &[(Vec<f32>, String)],
    held_out_langs: &[Option<String>],
) -> String {
    let mut out = String::new();
    let line = |name: &str, e: &Evaluation| format!("| {name} | {} | {} | {:.3} |\n", e.cases, e.correct, e.accuracy);
    out.push_str("| questions | cases | correct | accuracy |\n|---|---|---|---|\n");
    let reported = categories::evaluate(categories, held_out);
    out.push_str(&line("held out (reported)", &reported));
    for lang in ["en", "es"] {
        let part: Vec<(Vec<f32>, String)> = held_out
            .iter()
            .zip(held_out_langs)
            .filter(|(_, l)| l.as_deref() == Some(lang))
            .map(|(case, _)| case.clone())
            .collect();
        if !part.is_empty() {
            out.push_str(&line(&format!("held out, {lang}"), &categories::evaluate(categories, &part)));
        }
    }
    out.push_str(&line("fit half (floor chosen here)", &categories::evaluate(categories, fit)));
    out.push_str(
        "\nHeld out, per expected category (correct / total):\n\n| category | correct | total |\n|---|---|---|\n",
    );
    for (name, (correct, total)) in &reported.per_category {
        let _ = writeln!(out, "| {name} | {correct} | {total} |");
    }
    if !reported.confusions.is_empty() {
        out.push_str("\nHeld-out confusions (expected → got):\n\n");
        for (expected, got, n) in &reported.confusions {
            let _ = writeln!(out, "- {expected} → {got}: {n}");
        }
    }
    out
}
