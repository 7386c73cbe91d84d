//! One module per `lore` command: its arguments and its `run`. `main.rs` only parses and
//! dispatches; what several commands share (the operator's name, the audit record, the
//! `--as` caller) lives here.

use anyhow::Context;
use lore_core::acl::{AccessScope, PrincipalSet};
use lore_core::config::Config;

pub mod ask;
pub mod collections;
pub mod eval;
pub mod ingest;
pub mod keys;
pub mod migrate;
pub mod reembed;
pub mod search;
pub mod serve;
pub mod status;
pub mod sync;
pub mod usage;

/// The operator running the CLI, as the audit log names them.
pub fn operator() -> String {
    format!("cli:{}", lore_core::env::var(lore_core::env::USER).unwrap_or_else(|| "unknown".into()))
}

pub fn audit_cli(config: &Config, action: &str, target: &str, detail: serde_json::Value) -> anyhow::Result<()> {
    lore_core::audit::AuditLog::open_in(&config.open_database()?)?.record(lore_core::audit::Event {
        actor: operator(),
        role: Some("admin".into()),
        auth: "cli".into(),
        action: action.into(),
        target: Some(target.into()),
        outcome: lore_core::audit::Outcome::Ok,
        detail,
        remote: None,
    })?;
    Ok(())
}

/// The user a command acts as (`--as`, `--groups`, `--depts`), without an authenticated
/// request.
#[derive(clap::Args)]
pub struct Caller {
    /// User id of the caller.
    #[arg(long = "as")]
    pub user: String,
    /// Groups of the caller.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Departments of the caller.
    #[arg(long = "depts", value_delimiter = ',')]
    pub departments: Vec<String>,
}

impl Caller {
    /// The caller's scope; `reason` names the command in the impersonation log line.
    pub fn scope(&self, reason: &'static str) -> anyhow::Result<AccessScope> {
        let principals =
            PrincipalSet::for_user(&self.user, &self.groups, &self.departments).context("caller principals")?;
        Ok(AccessScope::impersonate_for_operator(principals, reason))
    }
}
