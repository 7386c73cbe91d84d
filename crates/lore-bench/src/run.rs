//! `lore-bench suite`: every measurement in one run, one report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lore_core::config::Config;
use lore_core::embed::Embedder;
use serde_json::{Value, json};

use crate::corpus::{self, Mix};
use crate::server::{self, ProviderTiming, Server};
use crate::suite::{self, Keys};

#[derive(clap::Args)]
pub struct SuiteArgs {
    /// The `lore` binary to serve with (build it with `cargo build --release -p lore`).
    #[arg(long, default_value = "target/release/lore")]
    lore: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    shared: PathBuf,
    /// Where the corpora's data folders are built and kept between runs.
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Where the report goes (`suite.json`, `suite.md`).
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Replicas of all the real text in the large corpus (5: about 100k chunks).
    #[arg(long, default_value_t = 5)]
    replicas: usize,
    /// Search requests per share and concurrency level.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Timed requests of each question mix (distinct, Zipf) on the large corpus; the Zipf mix
    /// sends as many again first to warm the query cache.
    #[arg(long, default_value_t = 4000)]
    mix_requests: usize,
    /// Requests of the mixed load test.
    #[arg(long, default_value_t = 10_000)]
    load_requests: usize,
    /// Streamed chats timed one at a time for the chat overhead.
    #[arg(long, default_value_t = 50)]
    chats: usize,
    /// Documents uploaded in the upload storm.
    #[arg(long, default_value_t = 300)]
    storm_documents: usize,
    /// Skip the ingest-versus-raw-ONNX-Runtime runs (about 20 minutes on 2 cores).
    #[arg(long)]
    skip_ingest: bool,
    /// Only the upload storm (report in `storm.json` and `storm.md`).
    #[arg(long)]
    storm_only: bool,
    /// Only the 12k-chunk corpus (chat and load then run on it): a quick check of the suite.
    #[arg(long)]
    small_only: bool,
}

pub fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.lore.is_file(),
        "{} not found: build it first (cargo build --release -p lore) or pass --lore",
        args.lore.display()
    );
    std::fs::create_dir_all(&args.work)?;
    let mut report = json!({
        "machine": machine(),
        "targets": {
            "ingest_over_raw": ">= 0.95", "search_p95_ms_at_concurrency_1": "<= 25",
            "search_requests_per_s_at_100k_zipf": ">= 200", "search_requests_per_s_at_100k_distinct": ">= 130",
            "chat_to_provider_p95_ms": "<= 25", "peak_rss_mib_at_100k": "<= 1024"
        },
    });
    if !args.skip_ingest {
        let mut rows = Vec::new();
        for folder in ["corpora/sourcegraph-handbook/content", "corpora/pdfs"] {
            eprintln!("ingest benchmark: {folder}");
            rows.push(crate::ingest(&args.shared.join(folder), vec!["everyone".into()], None)?);
        }
        report["ingest"] = Value::Array(rows);
    }

    // The corpora: the handbook (about 12k chunks), then all the real text in replicas.
    let mut config = Config::load(None)?;
    let embedder = Arc::new(Embedder::load(&config.embedding)?);
    let runtime = tokio::runtime::Runtime::new()?;
    let small = args.work.join("c10k");
    let large = args.work.join("c100k");
    let mut built = Vec::new();
    let mut corpora = vec![(&small, Mix::Handbook, 1)];
    if !args.small_only {
        corpora.push((&large, Mix::All, args.replicas));
    }
    let last = corpora.last().expect("a corpus").0.clone();
    for (dir, mix, replicas) in corpora {
        if dir == &large && !large.exists() {
            // Start from the small corpus: its documents are replica 0's handbook.
            copy_dir(&small, &large)?;
        }
        config.data_dir = dir.clone();
        eprintln!("corpus {}: building or checking", dir.display());
        let ingest = runtime.block_on(corpus::build(&config, embedder.clone(), &args.shared, mix, replicas))?;
        eprintln!("{}", ingest.summary_line());
        built.push((dir.clone(), corpus::chunk_count(&config)?, ingest.failures.len()));
    }
    drop(embedder);

    if args.storm_only {
        built.clear();
    }
    let questions = Arc::new(corpus::questions(&args.shared)?);
    eprintln!("{} distinct questions for the query stream", questions.len());
    let provider_timing =
        ProviderTiming { first_token: Duration::from_millis(200), tokens: 20, per_token: Duration::from_millis(10) };
    let results = runtime.block_on(async {
        let provider = provider_timing.start_provider().await;
        let mut offset = 0;
        let mut corpora = Vec::new();
        for (dir, chunks, failures) in &built {
            let mut entry =
                json!({"data_dir": dir.display().to_string(), "chunks": chunks, "failed_documents": failures});
            let keys = Keys::create(&dir.join("catalog.sqlite"))?;
            let config_path =
                server::write_config(&dir.with_extension("toml"), dir, provider.addr(), &config.embedding)?;
            let server = Server::start(&args.lore, &config_path).await?;
            eprintln!("{}: ready in {:.2} s", dir.display(), server.startup.as_secs_f64());
            entry["startup_s"] = json!(server.startup.as_secs_f64());
            entry["rss_after_startup_mib"] = json!(server::resident_mib(&server.status_path())?);
            let mut levels = Vec::new();
            for ((label, principal), (_, key)) in corpus::SHARES.iter().zip(&keys.shares) {
                let (permitted, _) = corpus::permitted_chunks(&dir.join("catalog.sqlite"), principal)?;
                eprintln!("{}: search, {label} share ({permitted} chunks)", dir.display());
                levels.extend(
                    suite::search_levels(
                        &server,
                        key,
                        label,
                        permitted,
                        questions.clone(),
                        &mut offset,
                        &args.concurrency,
                        args.requests,
                    )
                    .await?,
                );
            }
            entry["search"] = serde_json::to_value(&levels)?;
            entry["peak_rss_after_search_mib"] = json!(server.peak_mib()?);
            // On the large corpus: the chats, the load, then the same chats again on a fresh
            // server that asks the model only after the evidence (the server dropped below).
            let server = if dir == &last {
                eprintln!("chat overhead: {} streamed chats", args.chats);
                let chat_questions = &questions[offset..];
                let chats = async |server: &Server| {
                    suite::chat_overhead(
                        server,
                        &provider,
                        provider_timing,
                        &keys.shares[2].1,
                        chat_questions,
                        args.chats,
                    )
                    .await
                };
                let chat = chats(&server).await?;
                offset += chat.requests + chat.abstained;
                entry["chat"] = serde_json::to_value(&chat)?;
                eprintln!("mixed load: {} requests", args.load_requests);
                let load = suite::mixed_load(&server, &keys, "r0", questions.clone(), args.load_requests, 32).await?;
                entry["load"] = serde_json::to_value(&load)?;
                entry["peak_rss_after_load_mib"] = json!(server.peak_mib()?);
                drop(server);
                eprintln!("chat overhead without speculative generation: {} streamed chats", args.chats);
                let sequential = server::write_config_with(
                    &dir.with_extension("sequential.toml"),
                    dir,
                    provider.addr(),
                    &config.embedding,
                    false,
                )?;
                let server = Server::start(&args.lore, &sequential).await?;
                entry["chat_sequential"] = serde_json::to_value(chats(&server).await?)?;
                server
            } else {
                server
            };
            drop(server);
            if dir == &last {
                // The throughput targets' question mixes, on a fresh server (a cold cache).
                let server = Server::start(&args.lore, &config_path).await?;
                let mut unique: Vec<String> = questions.iter().cloned().collect();
                unique.sort();
                unique.dedup();
                let stride = (unique.len() / args.mix_requests.max(1)).max(1);
                let distinct: Vec<usize> = (0..args.mix_requests).map(|i| (i * stride) % unique.len()).collect();
                eprintln!("question mixes: {} distinct, then Zipf", args.mix_requests);
                let mixes = suite::question_mixes(
                    &server,
                    &keys.shares[2].1,
                    &unique,
                    distinct,
                    args.mix_requests,
                    32,
                    config.embedding.query_cache_size,
                )
                .await?;
                entry["mixes"] = serde_json::to_value(&mixes)?;
                entry["peak_rss_after_mixes_mib"] = json!(server.peak_mib()?);
            }
            corpora.push(entry);
        }

        // The upload storm writes, so it runs on a copy of the small corpus.
        let storm_dir = args.work.join("storm");
        if storm_dir.exists() {
            std::fs::remove_dir_all(&storm_dir)?;
        }
        copy_dir(&small, &storm_dir)?;
        let keys = Keys::create(&storm_dir.join("catalog.sqlite"))?;
        let config_path =
            server::write_config(&storm_dir.with_extension("toml"), &storm_dir, provider.addr(), &config.embedding)?;
        let server = Server::start(&args.lore, &config_path).await?;
        eprintln!("upload storm: {} documents", args.storm_documents);
        let storm = suite::upload_storm(&server, &keys, questions.clone(), args.storm_documents, 4, 8).await?;
        anyhow::Ok((corpora, storm))
    })?;
    report["corpora"] = Value::Array(results.0);
    report["upload_storm"] = serde_json::to_value(&results.1)?;

    let markdown = render(&report);
    println!("{markdown}");
    std::fs::create_dir_all(&args.out)?;
    let name = if args.storm_only { "storm" } else { "suite" };
    std::fs::write(args.out.join(format!("{name}.json")), serde_json::to_string_pretty(&report)? + "\n")?;
    std::fs::write(args.out.join(format!("{name}.md")), markdown)?;
    eprintln!("wrote {}/{name}.json and {name}.md", args.out.display());
    Ok(())
}

/// Queries/s of the embedding model alone at each batch size (one warm-up pass first).
pub fn query_embedding(embedder: &Embedder, questions: &[String], batches: &[usize]) -> anyhow::Result<Value> {
    embedder.embed_queries(&questions[..questions.len().min(32)])?;
    let mut rows = Vec::new();
    for &batch in batches {
        let started = std::time::Instant::now();
        for group in questions.chunks(batch.max(1)) {
            embedder.embed_queries(group)?;
        }
        let secs = started.elapsed().as_secs_f64();
        rows.push(json!({"batch": batch, "queries": questions.len(), "queries_per_s": questions.len() as f64 / secs,
                         "ms_per_call": secs * 1e3 / questions.len().div_ceil(batch.max(1)) as f64}));
    }
    Ok(json!({"machine": machine(), "rows": rows}))
}

pub fn render_query_embedding(result: &Value) -> String {
    let mut out = String::from("| batch | queries | queries/s | ms per call |\n|---|---|---|---|\n");
    for row in result["rows"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row["batch"],
            row["queries"],
            f(&row["queries_per_s"]),
            f(&row["ms_per_call"])
        );
    }
    out
}

/// The CPU flags that decide which ONNX Runtime kernels run, so reports compare across hosts.
const CPU_FLAGS: [&str; 5] = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni"];

/// Threads, CPU model, the [`CPU_FLAGS`] it has, and the date: every report's machine line.
pub(crate) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find(|l| l.starts_with(name)).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
    };
    let all_flags = field("flags").unwrap_or_default();
    let present: Vec<&str> = all_flags.split_whitespace().collect();
    let flags: Vec<&str> = CPU_FLAGS.into_iter().filter(|f| present.contains(f)).collect();
    json!({
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": field("model name"),
        "cpu_flags": flags,
        "date": lore_core::db::rfc3339(lore_core::db::now()),
    })
}

/// `Machine: 2 threads, AMD EPYC …; flags avx2 fma (no avx512f, …); <date>`.
pub(crate) fn machine_line(machine: &Value) -> String {
    let has: Vec<&str> = machine["cpu_flags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let missing: Vec<&str> = CPU_FLAGS.into_iter().filter(|f| !has.contains(f)).collect();
    let mut flags = if has.is_empty() { "no ".to_owned() + &CPU_FLAGS.join(", ") } else { has.join(" ") };
    if !has.is_empty() && !missing.is_empty() {
        flags += &format!(" (no {})", missing.join(", "));
    }
    format!(
        "Machine: {} threads, {}; CPU flags {flags}; {}",
        machine["threads"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["date"].as_str().unwrap_or("")
    )
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != "lore.lock" && entry.file_name() != "server.json" {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

pub(crate) fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "–".into(),
    }
}

/// The report as Markdown tables.
pub fn render(r: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Lore benchmark suite\n\n{}\n", machine_line(&r["machine"]));
    if let Some(rows) = r["ingest"].as_array() {
        let _ = writeln!(out, "## Ingest (target: chunks/s ≥ 0.95 × raw ONNX Runtime on the same texts)\n");
        let _ = writeln!(
            out,
            "| corpus | docs | chunks | embedded | s | docs/s | chunks/s | raw ORT texts/s | ingest/raw | parse s | chunk s | embed s | index s |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for row in rows {
            let s = &row["stage_seconds"];
            let name = row["corpus"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .take(2)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("/");
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} | {} |",
                row["documents"],
                row["chunks"],
                row["embedded"],
                f(&row["ingest_seconds"]),
                f(&row["ingest_documents_per_s"]),
                f(&row["ingest_chunks_per_s"]),
                f(&row["raw_onnxruntime"]["texts_per_s"]),
                row["ingest_over_raw"].as_f64().unwrap_or(f64::NAN),
                f(&s["parse"]),
                f(&s["chunk"]),
                f(&s["embed"]),
                f(&s["index"])
            );
        }
        out.push('\n');
    }
    for corpus in r["corpora"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "## Search, {} chunks (target: p95 ≤ 25 ms at concurrency 1)\n", corpus["chunks"]);
        let _ = writeln!(
            out,
            "Startup to ready: {} s; resident after startup {} MiB; peak after search {} MiB{}.\n",
            f(&corpus["startup_s"]),
            f(&corpus["rss_after_startup_mib"]),
            f(&corpus["peak_rss_after_search_mib"]),
            corpus
                .get("peak_rss_after_load_mib")
                .map(|p| format!(", after the load test {} MiB", f(p)))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "| share | permitted chunks | concurrency | p50 ms | p95 ms | p99 ms | req/s | errors | embed ms | bm25 ms | dense ms | fusion ms |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for l in corpus["search"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
                l["share"].as_str().unwrap_or(""),
                l["permitted_chunks"],
                l["concurrency"],
                f(&l["p50_ms"]),
                f(&l["p95_ms"]),
                f(&l["p99_ms"]),
                f(&l["requests_per_s"]),
                l["errors"],
                f(&l["embed_ms"]),
                f(&l["bm25_ms"]),
                f(&l["dense_ms"]),
                l["fusion_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
        out.push('\n');
        if let Some(mixes) = corpus["mixes"].as_array() {
            let _ = writeln!(
                out,
                "### Question mixes, 100 % share, a fresh server (targets: ≥ 200 req/s Zipf, ≥ 130 req/s distinct)\n"
            );
            let _ = writeln!(
                out,
                "| mix | concurrency | query cache hit rate | p50 ms | p95 ms | p99 ms | req/s | errors | embed ms | bm25 ms | dense ms | fusion ms |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
            for m in mixes {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
                    m["mix"].as_str().unwrap_or(""),
                    m["concurrency"],
                    m["cache_hit_rate"].as_f64().unwrap_or(f64::NAN),
                    f(&m["p50_ms"]),
                    f(&m["p95_ms"]),
                    f(&m["p99_ms"]),
                    f(&m["requests_per_s"]),
                    m["errors"],
                    f(&m["embed_ms"]),
                    f(&m["bm25_ms"]),
                    f(&m["dense_ms"]),
                    m["fusion_ms"].as_f64().unwrap_or(f64::NAN)
                );
            }
            out.push('\n');
        }
        if let Some(chat) = corpus.get("chat") {
            let _ = writeln!(
                out,
                "## Chat overhead (fake provider: first token after {} ms, answer done after {} ms; target: to provider p95 ≤ 25 ms)\n",
                f(&chat["provider_first_token_ms"]),
                f(&chat["provider_total_ms"])
            );
            let _ = writeln!(
                out,
                "{} chats timed, the same questions in both rows ({} questions skipped on the way: Lore abstained; with speculative generation it cancelled {} model calls it had started while weighing the evidence). Server columns are the answers' own timings (p50).\n",
                chat["requests"],
                chat["abstained"],
                chat["cancelled"].as_u64().unwrap_or(0)
            );
            let _ = writeln!(
                out,
                "| model asked | chats | to provider p50 | p95 | server: model called | server: evidence weighed | server: weighing | first delta − provider p50 | p95 | end to end − provider p50 | p95 |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
            let runs =
                [("while weighing (default)", Some(chat)), ("after the evidence", corpus.get("chat_sequential"))];
            for (label, chat) in runs {
                let Some(chat) = chat else { continue };
                let _ = writeln!(
                    out,
                    "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    chat["requests"],
                    f(&chat["to_provider_p50_ms"]),
                    f(&chat["to_provider_p95_ms"]),
                    f(&chat["model_called_at_p50_ms"]),
                    f(&chat["weighed_at_p50_ms"]),
                    f(&chat["answerability_p50_ms"]),
                    f(&chat["first_delta_minus_provider_p50_ms"]),
                    f(&chat["first_delta_minus_provider_p95_ms"]),
                    f(&chat["end_to_end_minus_provider_p50_ms"]),
                    f(&chat["end_to_end_minus_provider_p95_ms"])
                );
            }
            out.push('\n');
        }
        if let Some(load) = corpus.get("load") {
            let _ = writeln!(
                out,
                "## Mixed load, {} chunks, concurrency {} (85 % search, 10 % chat, 5 % document list)\n",
                corpus["chunks"], load["concurrency"]
            );
            let _ = writeln!(out, "| kind | requests | errors | p50 ms | p95 ms | p99 ms | req/s |");
            let _ = writeln!(out, "|---|---|---|---|---|---|---|");
            for (name, s) in [
                ("all", load),
                ("search", &load["search"]),
                ("chat", &load["chat"]),
                ("document list", &load["documents"]),
            ] {
                let _ = writeln!(
                    out,
                    "| {name} | {} | {} | {} | {} | {} | {} |",
                    s["requests"],
                    s["errors"],
                    f(&s["p50_ms"]),
                    f(&s["p95_ms"]),
                    f(&s["p99_ms"]),
                    f(&s["requests_per_s"])
                );
            }
            let _ = writeln!(
                out,
                "\nResident memory during the load: first quarter {} MiB, last quarter {} MiB, peak {} MiB.\n",
                f(&load["rss_first_quarter_mib"]),
                f(&load["rss_last_quarter_mib"]),
                f(&load["rss_peak_mib"])
            );
        }
    }
    let s = &r["upload_storm"];
    if !s.is_null() {
        let _ = writeln!(
            out,
            "## Upload storm ({} documents, {} uploads and {} queries at a time)\n",
            s["documents"], s["upload_concurrency"], s["query_concurrency"]
        );
        let _ = writeln!(
            out,
            "| all indexed after s | failed uploads | failed jobs | listed | found by search | queries | query errors | query p50 ms | p95 ms |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(&s["seconds_until_all_indexed"]),
            s["failed_uploads"],
            s["failed_jobs"],
            s["listed"],
            s["found_by_search"],
            s["queries"]["requests"],
            s["queries"]["errors"],
            f(&s["queries"]["p50_ms"]),
            f(&s["queries"]["p95_ms"])
        );
    }
    out
}
