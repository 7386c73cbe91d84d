//! `lore usage` (the analytics tables in the terminal) and `lore budgets`. Both read and write
//! the data folder's database directly, so they work while `lore serve` runs; a running server
//! picks up budget changes within [`lore_server::usage::BUDGET_RELOAD`].

use std::process::ExitCode;

use lore_core::config::Config;
use lore_usage::analytics::{self, UsageQuery};
use lore_usage::budgets::{BudgetSpec, BudgetStore, Ledger, OnHard, Period, ScopeKind, Unit};
use lore_usage::store::UsageStore;

use super::audit_cli;

#[derive(clap::Args)]
pub struct UsageArgs {
    /// Start (RFC 3339 or YYYY-MM-DD, UTC); default 30 days before `--to`.
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive); default now.
    #[arg(long)]
    to: Option<String>,
    /// department, user, key, category, collection, model, endpoint, day or week.
    #[arg(long, default_value = "day")]
    group_by: String,
    /// Print CSV instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    #[arg(long)]
    json: bool,
}

pub fn run_usage(args: UsageArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let group_by = lore_server::usage::group_by(&args.group_by, "--group-by").map_err(anyhow::Error::msg)?;
    let (from_ms, to_ms) =
        lore_server::usage::report_window(args.from.as_deref(), args.to.as_deref(), ["--from", "--to"])
            .map_err(anyhow::Error::msg)?;
    let store = UsageStore::open_in(&config.open_database()?)?;
    let rows = analytics::usage(&store, &UsageQuery { from_ms, to_ms, group_by, departments: None })?;
    if args.csv {
        print!("{}", analytics::to_csv(&rows));
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let currency = &config.usage.currency;
        println!(
            "{:<28} {:>8} {:>6} {:>7} {:>9} {:>11} {:>10} {:>9} {:>9} {:>5} {:>5}",
            group_by.as_str(),
            "requests",
            "users",
            "chats",
            "abstain",
            "tokens",
            currency,
            "p50 ms",
            "p95 ms",
            "up",
            "down"
        );
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        for row in rows {
            println!(
                "{:<28} {:>8} {:>6} {:>7} {:>9} {:>11} {:>10.4} {:>9} {:>9} {:>5} {:>5}",
                if row.group.is_empty() { "(none)" } else { &row.group },
                row.requests,
                row.active_users,
                row.chats,
                row.abstention_rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                row.prompt_tokens + row.completion_tokens,
                row.cost,
                ms(row.latency_p50_ms),
                ms(row.latency_p95_ms),
                row.thumbs_up,
                row.thumbs_down
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum BudgetsCommand {
    /// Create or replace the budget of a scope, period and unit.
    Set {
        /// department, key or user.
        #[arg(long)]
        scope: String,
        /// The department name, key id or user id.
        #[arg(long)]
        value: String,
        /// day or month (UTC).
        #[arg(long, default_value = "month")]
        period: String,
        /// tokens or cost (in usage.currency).
        #[arg(long, default_value = "cost")]
        unit: String,
        /// Warn from here on (header, event, metric, audit).
        #[arg(long)]
        soft: Option<f64>,
        /// Stop here.
        #[arg(long)]
        hard: Option<f64>,
        /// What the hard limit does: refuse (HTTP 429) or degrade (extracted answers, no model).
        #[arg(long, default_value = "refuse")]
        on_hard: String,
    },
    /// Budgets with what they spent and reserved this period.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a budget by id.
    Delete { id: String },
}

pub fn run_budgets(command: BudgetsCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let database = config.open_database()?;
    let budgets = std::sync::Arc::new(BudgetStore::open_in(&database)?);
    match command {
        BudgetsCommand::Set { scope, value, period, unit, soft, hard, on_hard } => {
            let spec = BudgetSpec {
                scope: parse(
                    &scope,
                    "--scope",
                    &[("department", ScopeKind::Department), ("key", ScopeKind::Key), ("user", ScopeKind::User)],
                )?,
                value,
                period: parse(&period, "--period", &[("day", Period::Day), ("month", Period::Month)])?,
                unit: parse(&unit, "--unit", &[("tokens", Unit::Tokens), ("cost", Unit::Cost)])?,
                soft_limit: soft,
                hard_limit: hard,
                on_hard: parse(&on_hard, "--on-hard", &[("refuse", OnHard::Refuse), ("degrade", OnHard::Degrade)])?,
            };
            spec.validate()?;
            let budget = budgets.set(&spec)?;
            audit_cli(config, "budget.set", &budget.id, serde_json::to_value(&budget)?)?;
            println!("{}", budget.id);
        }
        BudgetsCommand::List { json } => {
            let store = std::sync::Arc::new(UsageStore::open_in(&database)?);
            let statuses = Ledger::new(budgets, store).status(lore_usage::now_ms())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                for s in statuses {
                    let limit = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
                    println!(
                        "{:<40} soft {:>10} hard {:>10} ({:?})  spent {:>12.4}  reserved {:>8.4}  resets {}",
                        s.budget.id,
                        limit(s.budget.soft_limit),
                        limit(s.budget.hard_limit),
                        s.budget.on_hard,
                        s.spent,
                        s.reserved,
                        lore_core::db::rfc3339(s.resets_at_ms / 1000)
                    );
                }
            }
        }
        BudgetsCommand::Delete { id } => {
            anyhow::ensure!(budgets.delete(&id)?, "no budget with id {id:?}");
            audit_cli(config, "budget.delete", &id, serde_json::json!({}))?;
            println!("deleted {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One of a flag's named values, or an error listing them.
fn parse<T: Copy>(text: &str, flag: &str, choices: &[(&str, T)]) -> anyhow::Result<T> {
    choices.iter().find(|(name, _)| *name == text).map(|(_, value)| *value).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        anyhow::anyhow!("{flag} must be one of {}, not {text:?}", names.join(", "))
    })
}
