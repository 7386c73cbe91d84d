//! `lore keys`: API keys in the data folder's database. The key store is a database table,
//! so this works while `lore serve` runs.

use std::process::ExitCode;

use lore_core::config::Config;
use lore_core::keys::{KeyStore, NewKey};
use lore_core::role::Role;

use super::{audit_cli, operator};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints the secret once (stdout) and its id.
    #[command(alias = "new")]
    Create {
        #[arg(long)]
        name: String,
        /// employee, agent, knowledge_manager or admin (default: agent; employee with --public).
        #[arg(long)]
        role: Option<String>,
        /// The user id the key acts as (required, except with --public: a public key acts for
        /// anonymous visitors, never as a user).
        #[arg(long, required_unless_present = "public")]
        user: Option<String>,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// The key's department (adds `dept:<d>`; a knowledge manager key manages it).
        #[arg(long)]
        department: Option<String>,
        /// A key for a public page: reads documents shared with `everyone` only.
        #[arg(long)]
        public: bool,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

pub async fn run(command: KeysCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let store = KeyStore::open_in(&config.open_database()?)?;
    match command {
        KeysCommand::Create { name, role, user, groups, department, public, expires_in_days } => {
            let role = role.unwrap_or_else(|| if public { "employee" } else { "agent" }.to_owned());
            let user = user.unwrap_or_else(|| lore_core::keys::PUBLIC_USER.to_owned());
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("unknown role {role:?}: employee, agent, knowledge_manager or admin"))?;
            let expires_at = expires_in_days.map(|d| lore_core::db::now() + i64::from(d) * 86_400);
            let (key, info) = store.create(&NewKey {
                name,
                role,
                user,
                groups,
                department,
                public,
                expires_at,
                created_by: operator(),
            })?;
            audit_cli(
                config,
                "key.create",
                &info.id,
                serde_json::json!({ "name": info.name, "role": info.role, "principals": info.principals, "public": info.public }),
            )?;
            eprintln!(
                "created key {} ({}) for {} as {}; the secret is shown once:",
                info.id,
                info.name,
                info.user,
                role.as_str()
            );
            println!("{key}");
        }
        KeysCommand::List { json } => {
            let keys = store.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                    println!(
                        "{}  {:<20} {:<17} {:<24} {state:<8} last used {}  expires {}",
                        k.id,
                        k.name,
                        k.role.as_str(),
                        k.user,
                        k.last_used_at.as_deref().unwrap_or("never"),
                        k.expires_at.as_deref().unwrap_or("never")
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let info = store.revoke(&id)?.ok_or_else(|| anyhow::anyhow!("no key with id {id:?}"))?;
            audit_cli(config, "key.revoke", &id, serde_json::json!({ "name": info.name }))?;
            println!("revoked {} ({})", info.id, info.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
