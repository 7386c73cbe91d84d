//! `lore eval`: golden question sets. The arguments and the run live in `lore_eval::cli`;
//! this maps the gate's verdict to the exit code.

use std::process::ExitCode;

use lore_core::config::Config;
pub use lore_eval::cli::EvalArgs;

pub async fn run(args: EvalArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let passed = lore_eval::cli::run(args, config).await?;
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
