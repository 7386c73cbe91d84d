//! `lore collections`: documents live in collections owned by departments.

use std::process::ExitCode;

use lore_core::catalog::Catalog;
use lore_core::config::Config;

use super::audit_cli;

#[derive(clap::Subcommand)]
pub enum CollectionsCommand {
    /// Create a collection owned by a department.
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        department: Option<String>,
        /// ACL of uploads that bring none, e.g. `group:hr,group:managers`.
        #[arg(long, value_delimiter = ',')]
        default_acl: Option<Vec<String>>,
    },
    List,
    /// Delete an empty collection.
    Delete {
        id: String,
    },
}

pub async fn run(command: CollectionsCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::open_in(&config.open_database()?)?;
    match command {
        CollectionsCommand::Create { id, name, department, default_acl } => {
            let default_acl = default_acl.map(|a| lore_core::acl::Acl::parse(&a)).transpose()?;
            if let Some(d) = &department {
                lore_core::acl::Principal::dept(d)?;
            }
            let collection = lore_core::types::Collection {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                department,
                default_acl,
                created_at: String::new(),
            };
            if !catalog.create_collection(&collection)? {
                anyhow::bail!("collection {:?} already exists", collection.id);
            }
            audit_cli(
                config,
                "collection.create",
                &collection.id,
                serde_json::json!({ "department": collection.department }),
            )?;
            println!("created collection {}", collection.id);
        }
        CollectionsCommand::List => {
            for c in catalog.collections()? {
                let acl = c.default_acl.map(|a| a.to_strings().join(",")).unwrap_or_else(|| "-".into());
                println!(
                    "{:<24} department {:<16} default ACL {acl:<30} {} documents",
                    c.id,
                    c.department.as_deref().unwrap_or("-"),
                    catalog.document_count_of_collection(&c.id)?
                );
            }
        }
        CollectionsCommand::Delete { id } => {
            if !catalog.delete_collection(&id)? {
                anyhow::bail!("no collection {id:?}");
            }
            audit_cli(config, "collection.delete", &id, serde_json::json!({}))?;
            println!("deleted collection {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
