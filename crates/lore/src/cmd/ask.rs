//! `lore ask`: answer a question through the same pipeline as `/v1/chat`.

use std::process::ExitCode;
use std::sync::Arc;

use lore_core::config::Config;
use lore_core::embed::Embedder;

use super::Caller;

#[derive(clap::Args)]
pub struct AskArgs {
    question: String,
    #[command(flatten)]
    caller: Caller,
    /// Print the full JSON response.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: AskArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let AskArgs { question, caller, json } = args;
    let scope = caller.scope("lore ask --as")?;
    let embedder = Arc::new(Embedder::load(&config.embedding)?);
    let retriever = Arc::new(lore_chat::Retriever::open(config, embedder).await?);
    let conversations = lore_chat::conversations::Conversations::open_in(&config.open_database()?)?;
    let engine = lore_chat::ChatEngine::new(retriever, conversations, &config.chat)?;
    let answer = engine.ask(lore_chat::Question::new(&caller.user, &scope, &question)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}\n", answer.answer);
        for c in &answer.citations {
            let page = c.page.map(|p| format!(", page {p}")).unwrap_or_default();
            let heading = c.heading.as_ref().map(|h| format!(" — {h}")).unwrap_or_default();
            println!("[{}] {} ({}{page}){heading}", c.marker, c.title, c.source_path);
        }
    }
    Ok(ExitCode::SUCCESS)
}
