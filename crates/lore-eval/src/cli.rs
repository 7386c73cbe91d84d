//! `lore eval`: arguments and the run → report → gate sequence (the binary only parses and
//! calls [`run`]).

use std::path::PathBuf;

use clap::Args;
use lore_core::config::{Config, RetrievalMode};

use crate::error::EvalError;
use crate::gate::{self, Baseline};
use crate::report;
use crate::runner::{self, RunOptions, RunResult};
use crate::set::EvalSet;

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// Set manifests (`eval/sets/*.toml`).
    #[arg(required = true)]
    pub sets: Vec<PathBuf>,
    /// Run one case alone and print everything about it.
    #[arg(long)]
    pub only: Option<String>,
    /// Retrieval modes to compare.
    #[arg(long, value_delimiter = ',', default_value = "hybrid,bm25,dense", value_parser = parse_mode)]
    pub modes: Vec<RetrievalMode>,
    /// Passages retrieved per question for the ranking metrics.
    #[arg(long, default_value_t = 20)]
    pub passages: usize,
    /// Keep this many questions (spread evenly over the set) instead of the manifest's subset.
    #[arg(long)]
    pub questions: Option<usize>,
    /// Folder for `<set>.json` and `<set>.md`.
    #[arg(long, default_value = "eval/out")]
    pub out: PathBuf,
    /// Fail (exit 1) when a metric drops beyond its tolerance from the baseline or anything leaks.
    #[arg(long)]
    pub gate: bool,
    /// Write the baseline and the per-question table from this run.
    #[arg(long, conflicts_with = "only")]
    pub update_baseline: bool,
    /// Evaluate a running `lore serve` instead of an in-process copy of the corpus.
    #[arg(long)]
    pub server: Option<String>,
    /// Admin key for `--server` (it mints a short-lived token per asker).
    #[arg(long, env = "LORE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Report, gate or record a baseline from a saved `<set>.json` result instead of running.
    #[arg(long, conflicts_with_all = ["only", "server"])]
    pub from_result: Option<PathBuf>,
    /// Where ingested corpora are cached (default: $LORE_EVAL_CACHE, $XDG_CACHE_HOME/lore-eval).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EvalCommand {
    /// Fit the answerability model on development sets and pick its operating point.
    Calibrate(Box<crate::calibrate::CalibrateArgs>),
    /// Accuracy of question categories (nearest example question) on a labelled set; the
    /// `other` floor is fitted on one half and accuracy reported on the other.
    Categories(crate::categories::CategoriesArgs),
    /// False- and true-match rates of verified answers on labelled intent groups; the threshold
    /// is fitted on half of the groups and measured on the other half.
    Verified(crate::verified::VerifiedArgs),
}

fn parse_mode(text: &str) -> Result<RetrievalMode, String> {
    RetrievalMode::parse(text).ok_or_else(|| format!("unknown mode {text:?}: hybrid, bm25 or dense"))
}

/// Runs one set; returns the result and, with `--gate`, whether it passed.
pub async fn run_set(args: &EvalArgs, config: &Config, path: &std::path::Path) -> Result<(RunResult, bool), EvalError> {
    let mut set = EvalSet::load(path)?;
    if args.questions.is_some() {
        let distractors = set.manifest.subset.distractors;
        set.apply_subset(args.questions, distractors);
    }
    let options = RunOptions {
        modes: args.modes.clone(),
        only: args.only.clone(),
        passages: args.passages,
        cache_root: args.cache_dir.clone().unwrap_or_else(crate::corpus::default_cache_root),
    };
    let result = match (&args.from_result, &args.server) {
        (Some(saved), _) => {
            let text = std::fs::read_to_string(saved).map_err(|e| EvalError::io(saved, e))?;
            let result: RunResult = serde_json::from_str(&text)?;
            if result.set != set.name {
                return Err(EvalError::Set {
                    path: saved.clone(),
                    message: format!("this is a result of set {:?}, not {:?}", result.set, set.name),
                });
            }
            result
        }
        (None, Some(url)) => {
            let key = args.api_key.as_deref().ok_or_else(|| EvalError::Remote {
                url: url.clone(),
                message: "give an admin key with --api-key or LORE_API_KEY".into(),
            })?;
            crate::remote::run_remote(&set, config, url, key, &options).await?
        }
        (None, None) => runner::run_in_process(&set, config, &options).await?,
    };
    if args.only.is_some() {
        println!("{}", report::detail(&result));
        return Ok((result, true));
    }
    println!("{}", report::terminal(&result));
    std::fs::create_dir_all(&args.out).map_err(|e| EvalError::io(&args.out, e))?;
    let json_path = args.out.join(format!("{}.json", set.name));
    std::fs::write(&json_path, serde_json::to_string_pretty(&result)?).map_err(|e| EvalError::io(&json_path, e))?;
    let md_path = args.out.join(format!("{}.md", set.name));
    std::fs::write(&md_path, report::markdown(&result)).map_err(|e| EvalError::io(&md_path, e))?;
    println!("wrote {} and {}", json_path.display(), md_path.display());
    let baseline_path = set.baseline_path();
    if args.update_baseline {
        Baseline::from_run(&result, &set.manifest.tolerance).save(&baseline_path)?;
        let table = baseline_path.with_extension("md");
        std::fs::write(&table, report::questions_table(&result)).map_err(|e| EvalError::io(&table, e))?;
        println!("baseline updated: {} and {}", baseline_path.display(), table.display());
    }
    let mut passed = true;
    if args.gate {
        let baseline = Baseline::load(&baseline_path)?;
        let outcome = gate::check(&result, &baseline, &set.manifest.tolerance);
        for line in &outcome.improvements {
            println!("gate: better: {line}");
        }
        for line in &outcome.failures {
            println!("gate: FAILED: {line}");
        }
        passed = outcome.passed();
        println!("gate {}: {} against {}", set.name, if passed { "passed" } else { "FAILED" }, baseline_path.display());
    }
    Ok((result, passed))
}

/// `lore eval`: every set in turn. Returns whether all gates passed.
pub async fn run(args: EvalArgs, config: &Config) -> Result<bool, EvalError> {
    if let Some(EvalCommand::Categories(categories)) = &args.command {
        println!("{}", crate::categories::run(categories, config)?);
        return Ok(true);
    }
    if let Some(EvalCommand::Verified(verified)) = &args.command {
        println!("{}", crate::verified::run(verified, config)?);
        return Ok(true);
    }
    if let Some(EvalCommand::Calibrate(calibrate)) = args.command {
        let (model, report) = (calibrate.model.clone(), calibrate.report.clone());
        println!("{}", crate::calibrate::run(*calibrate, config).await?);
        println!("wrote {} and {}", model.display(), report.display());
        return Ok(true);
    }
    let mut all_passed = true;
    for path in &args.sets {
        let (_, passed) = run_set(&args, config, path).await?;
        all_passed &= passed;
    }
    Ok(all_passed)
}
