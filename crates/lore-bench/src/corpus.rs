//! Benchmark corpora built from `../shared/data`: real text only, with ACLs that give a
//! query a known permitted share.
//!
//! Every document gets a bucket `b` in 0..100 (from a hash of its replica and path) and the
//! ACL `group:bNN`, `group:tD` (D = b mod 10) and `group:all`. A caller holding `group:b07`
//! may read about 1 % of the documents, one holding `group:t7` about 10 %, one holding
//! `group:all` all of them; the exact chunk shares are counted from the catalog.
//!
//! Beyond the real text there is (about 20k chunks), the corpus repeats it in replicas: the
//! same files under another source name, each document with its own bucket. A repeated text
//! is embedded once (the catalog keeps each chunk's vector), so the 100k-chunk corpus costs
//! the embedding time of its unique text.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lore_core::catalog::Catalog;
use lore_core::types::sha256_hex;
use lore_ingest::Source;

/// The seed of the Zipf question stream, so runs compare.
pub const ZIPF_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// `requests` indexes into `n` questions drawn with probability ∝ 1/rank (Zipf, s = 1), ranks
/// in a fixed shuffled order (a deterministic xorshift from `seed`, so runs compare): how a
/// company's questions repeat, a few very often and most rarely.
pub fn zipf_draws(n: usize, requests: usize, seed: u64) -> Vec<usize> {
    assert!(n > 0, "no questions to draw from");
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let total: f64 = (1..=n).map(|rank| 1.0 / rank as f64).sum();
    let mut cumulative = Vec::with_capacity(n);
    let mut sum = 0.0;
    for rank in 1..=n {
        sum += 1.0 / rank as f64 / total;
        cumulative.push(sum);
    }
    (0..requests)
        .map(|_| {
            let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
            order[cumulative.partition_point(|c| *c < u).min(n - 1)]
        })
        .collect()
}

/// The hit rate of the server's query cache (`lore_core::embed::QueryCache` of `capacity`)
/// over the questions `draws` picks, after the cache has seen `warm` questions.
pub fn cache_hit_rate(questions: &[String], draws: &[usize], warm: &[usize], capacity: usize) -> f64 {
    let mut cache = lore_core::embed::QueryCache::new(capacity);
    let ask = |cache: &mut lore_core::embed::QueryCache, i: usize| {
        if cache.get(&questions[i]).is_none() {
            cache.put(&questions[i], Vec::new());
        }
    };
    for &i in warm {
        ask(&mut cache, i);
    }
    let before = cache.hits;
    for &i in draws {
        ask(&mut cache, i);
    }
    (cache.hits - before) as f64 / draws.len().max(1) as f64
}

/// The permitted shares a search is measured at: (label, the caller's one principal).
pub const SHARES: [(&str, &str); 3] = [("1%", "group:b07"), ("10%", "group:t7"), ("100%", "group:all")];

/// Which text goes into each replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// The Sourcegraph handbook alone (884 Markdown files, about 12k chunks).
    Handbook,
    /// Every Markdown and PDF corpus: the handbook, the real PDFs, the Contoso HR PDFs, the
    /// ClapNQ passages and the Spanish SQuAD paragraphs (about 20k chunks).
    All,
}

fn bucket(replica: usize, relative: &str) -> u32 {
    let hash = sha256_hex(format!("r{replica}/{relative}").as_bytes());
    u32::from_str_radix(&hash[..8], 16).expect("hex") % 100
}

fn sidecar(replica: usize, relative: &str) -> String {
    let b = bucket(replica, relative);
    format!("acl = [\"group:b{b:02}\", \"group:t{}\", \"group:all\"]\n", b % 10)
}

/// Writes the replicas' files (copies, with ACL sidecars) under `staging` and returns one
/// source per replica. Replica 0 of `All` holds replica 0 of `Handbook` at the same paths, so
/// a `Handbook` data folder extended with `All` keeps its documents.
pub fn stage(shared: &Path, mix: Mix, replicas: usize, staging: &Path) -> anyhow::Result<Vec<Source>> {
    let handbook = shared.join("corpora/sourcegraph-handbook/content");
    anyhow::ensure!(
        handbook.is_dir(),
        "{} is missing: the benchmark corpora are built from ../shared/data (pass --shared)",
        handbook.display()
    );
    let mut sources = Vec::new();
    for replica in 0..replicas {
        let root = staging.join(format!("r{replica}"));
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        copy_tree(&handbook, "handbook", &["md"], &mut files)?;
        if mix == Mix::All {
            copy_tree(&shared.join("corpora/pdfs"), "pdfs", &["pdf"], &mut files)?;
            copy_tree(&shared.join("bench/contoso-hr-azure-demo/data"), "contoso", &["pdf"], &mut files)?;
            clapnq_passages(&shared.join("bench/clapnq-dev/derived_passages_from_dev.jsonl"), &mut files)?;
            squad_articles(&shared.join("bench/squad-es-v2-dev-small/dev-v2.0-es_small.json"), &mut files)?;
        }
        for (relative, bytes) in files {
            let path = root.join(&relative);
            std::fs::create_dir_all(path.parent().expect("has a parent"))?;
            std::fs::write(&path, bytes)?;
            let mut sidecar_path = path.into_os_string();
            sidecar_path.push(lore_ingest::source::SIDECAR_SUFFIX);
            std::fs::write(PathBuf::from(sidecar_path), sidecar(replica, &relative))?;
        }
        sources.push(Source { name: format!("r{replica}"), path: root, default_acl: None, department: None });
    }
    Ok(sources)
}

fn copy_tree(dir: &Path, prefix: &str, extensions: &[&str], out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    anyhow::ensure!(dir.is_dir(), "{} is missing", dir.display());
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e)) {
                let relative = path.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
                out.push((format!("{prefix}/{relative}"), std::fs::read(&path)?));
            }
        }
    }
    Ok(())
}

fn clapnq_passages(path: &Path, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let passage: serde_json::Value = serde_json::from_str(line)?;
        let id = passage["_id"].as_str().context("clapnq passage without _id")?;
        let body =
            format!("# {}\n\n{}\n", passage["title"].as_str().unwrap_or(id), passage["text"].as_str().unwrap_or(""));
        out.push((format!("clapnq/{id}.md"), body.into_bytes()));
    }
    Ok(())
}

fn squad_articles(path: &Path, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let squad: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)?;
    for (i, article) in squad["data"].as_array().context("SQuAD without data")?.iter().enumerate() {
        let title = article["title"].as_str().unwrap_or("Artículo").replace('_', " ");
        let mut body = format!("# {title}\n\n");
        for paragraph in article["paragraphs"].as_array().into_iter().flatten() {
            body.push_str(paragraph["context"].as_str().unwrap_or(""));
            body.push_str("\n\n");
        }
        out.push((format!("squad-es/{i:03}.md"), body.into_bytes()));
    }
    Ok(())
}

/// Real questions from the shared question sets (English and Spanish), for search load: every
/// request of a run asks a different question unless the run is longer than the list.
pub fn questions(shared: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let jsonl = [
        ("bench/contoso-hr-azure-demo/evals/ground_truth.jsonl", "question"),
        ("bench/clapnq-dev/annotated_data/dev/clapnq_dev_answerable.jsonl", "input"),
        ("bench/clapnq-dev/annotated_data/dev/clapnq_dev_unanswerable.jsonl", "input"),
    ];
    for (file, field) in jsonl {
        let path = shared.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(line)?;
            out.extend(value[field].as_str().map(str::to_owned));
        }
    }
    let squad_path = shared.join("bench/squad-es-v2-dev-small/dev-v2.0-es_small.json");
    let squad: serde_json::Value = serde_json::from_slice(&std::fs::read(&squad_path)?)?;
    for article in squad["data"].as_array().into_iter().flatten() {
        for paragraph in article["paragraphs"].as_array().into_iter().flatten() {
            for qa in paragraph["qas"].as_array().into_iter().flatten() {
                out.extend(qa["question"].as_str().map(str::to_owned));
            }
        }
    }
    // Interleave the sets (a fixed shuffle), so any prefix mixes languages and topics.
    let mut keyed: Vec<(String, String)> = out.into_iter().map(|q| (sha256_hex(q.as_bytes()), q)).collect();
    keyed.sort();
    keyed.dedup_by(|a, b| a.1 == b.1);
    Ok(keyed.into_iter().map(|(_, q)| q).collect())
}

/// Chunks a caller holding `principal` may read, out of all.
pub fn permitted_chunks(catalog_path: &Path, principal: &str) -> anyhow::Result<(usize, usize)> {
    let conn = rusqlite::Connection::open_with_flags(catalog_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let total: i64 = conn.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?;
    let permitted: i64 = conn.query_row(
        "SELECT COUNT(*) FROM chunks JOIN documents d ON d.id = chunks.doc_id \
         WHERE EXISTS (SELECT 1 FROM json_each(d.acl) WHERE json_each.value = ?1)",
        [principal],
        |r| r.get(0),
    )?;
    Ok((permitted as usize, total as usize))
}

/// Builds (or extends) a benchmark data folder: stages the replicas next to it and ingests
/// them with the real pipeline. Rerunning with the same arguments changes nothing.
pub async fn build(
    config: &lore_core::config::Config,
    embedder: std::sync::Arc<lore_core::embed::Embedder>,
    shared: &Path,
    mix: Mix,
    replicas: usize,
) -> anyhow::Result<lore_ingest::IngestReport> {
    let staging = tempfile::tempdir_in(config.data_dir.parent().unwrap_or(Path::new(".")))?;
    let sources = stage(shared, mix, replicas, staging.path())?;
    let mut ingestor = lore_ingest::Ingestor::open(config.clone(), embedder).await?;
    let report = ingestor.ingest(&sources, &lore_ingest::IngestOptions { sync: false, progress: true }).await?;
    ingestor.optimize().await?;
    Ok(report)
}

/// Chunks in a data folder's catalog.
pub fn chunk_count(config: &lore_core::config::Config) -> anyhow::Result<usize> {
    Ok(Catalog::open_in(&config.open_database()?)?.counts()?.1)
}
