//! `lore search`: both indexes as a user, with the ACL filter applied.

use std::process::ExitCode;
use std::sync::Arc;

use lore_core::config::Config;
use lore_core::embed::Embedder;

use super::Caller;

#[derive(clap::Args)]
pub struct SearchArgs {
    query: String,
    #[command(flatten)]
    caller: Caller,
    #[arg(long, short = 'k', default_value_t = 5)]
    limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: SearchArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let SearchArgs { query, caller, limit, json } = args;
    let scope = caller.scope("lore search --as")?;
    let embedder = Arc::new(Embedder::load(&config.embedding)?);
    let retriever = lore_chat::Retriever::open(config, embedder).await?;
    let results = retriever.search(&query, &scope, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for (name, hits) in [("BM25", &results.bm25), ("dense", &results.dense)] {
            println!("== {name} ({} hits)", hits.len());
            for hit in hits {
                let location = match hit.chunk.page {
                    Some(page) => format!("{} p.{page}", hit.doc_path),
                    None => hit.doc_path.clone(),
                };
                let heading = hit.chunk.heading_path.join(" > ");
                let snippet: String = hit.chunk.text.chars().take(160).collect::<String>().replace('\n', " ");
                println!("{:>2}. [{:.3}] {location} | {heading}\n    {snippet}", hit.rank, hit.score);
            }
        }
        eprintln!(
            "query language: {}; embed {:.1} ms, search {:.1} ms",
            results.query_lang.code(),
            results.embed_time.as_secs_f64() * 1e3,
            results.search_time.as_secs_f64() * 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
