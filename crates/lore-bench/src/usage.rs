//! `lore-bench analytics`: generated usage events in a fresh store, then every analytics
//! grouping over 30 and 90 days, timed. `lore-bench metering`: what recording a usage event
//! costs in-process, and `/v1/search` latency of a real `lore serve` with metering on and
//! off, alternating rounds so drift hits both alike.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use lore_usage::analytics::{self, GroupBy, RoiPeriod, RoiQuery, UsageQuery};
use lore_usage::store::{Recorder, UsageStore};
use serde_json::json;

use crate::server::{self, Server};
use crate::suite;

#[derive(clap::Args)]
pub struct AnalyticsArgs {
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Days the events spread over, ending now.
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Timed runs of each query.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

pub fn analytics(args: AnalyticsArgs) -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    let store = UsageStore::open(&folder.path().join("usage.sqlite"))?;
    let end_ms = lore_usage::now_ms();
    // In time order, as a recorder writes them.
    let mut events: Vec<_> = lore_usage::synthetic::events(args.events, 15, args.days, end_ms).collect();
    events.sort_by_key(|e| e.time_ms);
    let started = Instant::now();
    for batch in events.chunks(10_000) {
        store.write_batch(batch)?;
    }
    drop(events);
    let write_s = started.elapsed().as_secs_f64();
    eprintln!("wrote {} events in {write_s:.1} s", args.events);

    let mut rows = Vec::new();
    let departments = Some(vec!["engineering".to_owned()]);
    for days in [30, args.days] {
        let from_ms = end_ms - days * lore_usage::DAY_SECS * 1000;
        for group_by in GroupBy::ALL {
            for (scope, departments) in [("admin", None), ("manager", departments.clone())] {
                let query = UsageQuery { from_ms, to_ms: end_ms, group_by, departments };
                let (times, groups) = timed(args.runs, || analytics::usage(&store, &query).map(|r| r.len()))?;
                rows.push(json!({"query": "usage", "days": days, "group_by": group_by.as_str(), "scope": scope, "groups": groups, "median_ms": times[times.len() / 2], "max_ms": times[times.len() - 1]}));
            }
        }
        let query = RoiQuery { from_ms, to_ms: end_ms, period: RoiPeriod::Month, departments: None };
        let config = lore_usage::RoiConfig::default();
        let (times, groups) = timed(args.runs, || analytics::roi(&store, &query, &config).map(|r| r.len()))?;
        rows.push(json!({"query": "roi", "days": days, "group_by": "department×month", "scope": "admin", "groups": groups, "median_ms": times[times.len() / 2], "max_ms": times[times.len() - 1]}));
    }
    let mut md = format!(
        "# Analytics over {} generated usage events\n\n{} days, {} runs per query, written in {write_s:.1} s \
         ({:.0} events/s through `write_batch` in batches of 10,000).\n\n\
         | query | window | group by | scope | groups | median ms | max ms |\n|---|---|---|---|---|---|---|\n",
        args.events,
        args.days,
        args.runs,
        args.events as f64 / write_s
    );
    for row in &rows {
        let _ = writeln!(
            md,
            "| {} | {} d | {} | {} | {} | {:.1} | {:.1} |",
            row["query"].as_str().unwrap_or_default(),
            row["days"],
            row["group_by"].as_str().unwrap_or_default(),
            row["scope"].as_str().unwrap_or_default(),
            row["groups"],
            row["median_ms"].as_f64().unwrap_or_default(),
            row["max_ms"].as_f64().unwrap_or_default()
        );
    }
    print!("{md}");
    write_report(
        &args.out,
        "analytics",
        &json!({"events": args.events, "days": args.days, "write_s": write_s, "rows": rows}),
        &md,
    )
}

/// Runs `query` `runs` times; sorted times (ms) and what the last run returned.
fn timed<T>(runs: usize, mut query: impl FnMut() -> lore_usage::Result<T>) -> anyhow::Result<(Vec<f64>, T)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        last = Some(query()?);
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times, last.context("no run")?))
}

#[derive(clap::Args)]
pub struct MeteringArgs {
    /// The `lore` binary to serve with (build it with `cargo build --release -p lore`).
    #[arg(long, default_value = "target/release/lore")]
    lore: PathBuf,
    /// An ingested data folder to serve (e.g. `lore --data-dir D ingest ingest/samples.toml`).
    #[arg(long)]
    data: PathBuf,
    /// Search requests per mode, level and round.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<usize>,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

pub async fn metering(args: MeteringArgs) -> anyhow::Result<()> {
    // What a request pays on its own path: building and queueing one event.
    let folder = tempfile::tempdir()?;
    let store = Arc::new(UsageStore::open(&folder.path().join("usage.sqlite"))?);
    let recorder = Recorder::start(store, &lore_usage::UsageConfig::default());
    let events: Vec<_> = lore_usage::synthetic::events(100_000, 7, 1, lore_usage::now_ms()).collect();
    let started = Instant::now();
    for event in events {
        recorder.record(event);
    }
    let record_ns = started.elapsed().as_nanos() as f64 / 100_000.0;
    let started = Instant::now();
    recorder.flush();
    let drain_s = started.elapsed().as_secs_f64();
    eprintln!("record(): {record_ns:.0} ns per event; the writer drained 100,000 in {drain_s:.2} s");

    let embedding = lore_core::config::Config::load(None)?.embedding;
    let provider = lore_chat::testing::FakeProvider::scripted("bench", Vec::new()).await;
    let questions: Arc<Vec<String>> = Arc::new(
        [
            "vacation days carry over",
            "minimum password length",
            "business class flights",
            "VPN setup on Linux",
            "onboarding checklist first week",
            "database failover escalation",
            "rollback checkout release",
            "teletrabajo días por semana",
            "niveles de clasificación",
            "expense report deadline",
        ]
        .iter()
        .map(|q| q.to_string())
        .collect(),
    );
    let work = tempfile::tempdir()?;
    let key = suite::Keys::create(&args.data.join("catalog.sqlite"))?.admin;
    let mut results: Vec<serde_json::Value> = Vec::new();
    let mut offset = 0;
    for round in 0..args.rounds {
        for enabled in [true, false] {
            let config = work.path().join(format!("lore-{enabled}.toml"));
            server::write_config(&config, &args.data, provider.addr(), &embedding)?;
            let mut text = std::fs::read_to_string(&config)?;
            text.push_str(&format!("\n[usage]\nenabled = {enabled}\n"));
            std::fs::write(&config, text)?;
            let server = Server::start(&args.lore, &config).await?;
            // Warm up the model and the caches.
            suite::search_levels(&server, &key, "warm-up", 0, questions.clone(), &mut offset, &[4], 100).await?;
            let levels = suite::search_levels(
                &server,
                &key,
                if enabled { "on" } else { "off" },
                0,
                questions.clone(),
                &mut offset,
                &args.concurrency,
                args.requests,
            )
            .await?;
            for level in levels {
                eprintln!(
                    "round {round} metering {}: concurrency {} p50 {:.2} ms p95 {:.2} ms",
                    level.share, level.concurrency, level.summary.p50_ms, level.summary.p95_ms
                );
                results.push(json!({"round": round, "metering": enabled, "level": level}));
            }
            drop(server);
        }
    }
    let mut md = format!(
        "# Metering overhead\n\n`Recorder::record`: {record_ns:.0} ns per event on the request path; the \
         background writer stored 100,000 events in {drain_s:.2} s.\n\n`/v1/search` on a real `lore serve` \
         ({} requests per level, mode and round; rounds alternate on/off):\n\n\
         | concurrency | round | p50 on | p50 off | p95 on | p95 off | p95 on − off |\n|---|---|---|---|---|---|---|\n",
        args.requests
    );
    for &concurrency in &args.concurrency {
        for round in 0..args.rounds {
            let pick = |enabled: bool, field: &str| {
                results
                    .iter()
                    .find(|r| {
                        r["round"] == round && r["metering"] == enabled && r["level"]["concurrency"] == concurrency
                    })
                    .and_then(|r| r["level"][field].as_f64())
                    .unwrap_or(f64::NAN)
            };
            let _ = writeln!(
                md,
                "| {concurrency} | {round} | {:.2} | {:.2} | {:.2} | {:.2} | {:+.2} |",
                pick(true, "p50_ms"),
                pick(false, "p50_ms"),
                pick(true, "p95_ms"),
                pick(false, "p95_ms"),
                pick(true, "p95_ms") - pick(false, "p95_ms")
            );
        }
    }
    print!("{md}");
    write_report(&args.out, "metering", &json!({"record_ns": record_ns, "drain_s": drain_s, "rows": results}), &md)
}

fn write_report(out: &Path, name: &str, json: &serde_json::Value, md: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join(format!("{name}.json")), serde_json::to_string_pretty(json)?)?;
    std::fs::write(out.join(format!("{name}.md")), md)?;
    Ok(())
}
