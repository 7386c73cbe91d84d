//! Reports: a terminal summary, a Markdown report with per-question rows, the per-question
//! table committed next to the baseline, and the full detail of one case.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::metrics::Stat;
use crate::runner::{CaseResult, RunResult};

/// The metrics shown, in order (those never measured in a run are left out).
const SHOWN: [&str; 28] = [
    "cases",
    "doc.recall@1",
    "doc.recall@3",
    "doc.recall@5",
    "doc.recall@10",
    "doc.precision@5",
    "doc.mrr",
    "doc.ndcg@10",
    "page.recall@1",
    "page.recall@5",
    "page.mrr",
    "page.ndcg@10",
    "answer.f1",
    "answer.exact_match",
    "answer.similarity",
    "abstention.accuracy",
    "abstention.false_rate",
    "citation.precision",
    "citation.recall",
    "groundedness",
    "judge.faithfulness",
    "judge.relevance",
    "leaks",
    "latency.retrieval_ms.p50",
    "latency.retrieval_ms.p95",
    "latency.generation_ms.p95",
    "latency.answer_ms.p50",
    "latency.answer_ms.p95",
];

/// Columns of the per-group breakdown.
const BREAKDOWN: [&str; 8] = [
    "cases",
    "doc.recall@5",
    "doc.mrr",
    "answer.f1",
    "abstention.accuracy",
    "abstention.false_rate",
    "citation.precision",
    "leaks",
];

fn cell(stat: Option<&Stat>, metric: &str) -> String {
    match stat {
        None => "–".into(),
        Some(s) if metric == "cases" => s.n.to_string(),
        Some(s) if metric == "leaks" => format!("{}", s.sum as u64),
        Some(s) if metric.starts_with("latency.") => format!("{:.1}", s.mean),
        Some(s) => format!("{:.3}", s.mean),
    }
}

fn stat<'a>(result: &'a RunResult, mode: &str, group: &str, metric: &str) -> Option<&'a Stat> {
    result.summary.get(mode)?.get(group)?.get(metric)
}

/// Rows of metrics, one column per mode.
fn comparison_rows(result: &RunResult) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for metric in SHOWN {
        if result.modes.iter().all(|m| stat(result, m, "all", metric).is_none()) {
            continue;
        }
        let mut row = vec![metric.to_owned()];
        row.extend(result.modes.iter().map(|m| cell(stat(result, m, "all", metric), metric)));
        rows.push(row);
    }
    rows
}

fn breakdown_rows(result: &RunResult, mode: &str) -> Vec<Vec<String>> {
    let Some(groups) = result.summary.get(mode) else { return Vec::new() };
    groups
        .keys()
        .map(|group| {
            let mut row = vec![group.clone()];
            row.extend(BREAKDOWN.iter().map(|m| cell(stat(result, mode, group, m), m)));
            row
        })
        .collect()
}

fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header) + "\n";
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let escape = |c: &String| c.replace('|', "\\|").replace('\n', " ");
    let mut out = format!("| {} |\n", header.iter().map(escape).collect::<Vec<_>>().join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.iter().map(escape).collect::<Vec<_>>().join(" | ")));
    }
    out
}

fn header(first: &str, rest: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    std::iter::once(first.to_owned()).chain(rest.into_iter().map(Into::into)).collect()
}

/// The terminal summary: modes side by side, then the first mode by language and tag.
pub fn terminal(result: &RunResult) -> String {
    let mut out = format!("set {} ({})\n", result.set, result.target);
    if let Some(corpus) = &result.corpus {
        let _ = writeln!(
            out,
            "corpus: {} documents, {} chunks ({}), {}",
            corpus.documents,
            corpus.chunks,
            if corpus.cached { "cached".to_owned() } else { format!("ingested in {:.1}s", corpus.ingest_seconds) },
            corpus.data_dir.display()
        );
    }
    out.push('\n');
    out.push_str(&text_table(&header("metric", result.modes.clone()), &comparison_rows(result)));
    if let Some(mode) = result.modes.first() {
        let _ = writeln!(out, "\n{mode}, by language and tag:");
        out.push_str(&text_table(&header("group", BREAKDOWN), &breakdown_rows(result, mode)));
    }
    out
}

fn first_rank(c: &CaseResult) -> String {
    match (&c.doc, c.answerable) {
        (Some(doc), _) => doc.first_relevant.map_or("–".into(), |r| r.to_string()),
        (None, false) => "n/a".into(),
        (None, true) => "–".into(),
    }
}

fn opt(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.2}"))
}

/// One row per case, the first mode in full and the others' first relevant rank and answer
/// kind. Deterministic (no timings), so committed copies show regressions as diffs.
pub fn questions_table(result: &RunResult) -> String {
    let Some(primary) = result.modes.first() else { return String::new() };
    let mut by_case: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for c in &result.cases {
        if !by_case.contains_key(c.id.as_str()) {
            order.push(&c.id);
        }
        by_case.entry(&c.id).or_default().push(c);
    }
    let mut columns: Vec<String> =
        ["id", "lang", "tags", "asker", "answerable", "relevant"].iter().map(|s| s.to_string()).collect();
    for mode in &result.modes {
        columns.push(format!("{mode} rank"));
        columns.push(format!("{mode} answer"));
    }
    columns.extend(["F1", "cit P", "cit R", "grounded", "cited", "leaks"].iter().map(|s| s.to_string()));
    let mut rows = Vec::new();
    for id in order {
        let runs = &by_case[id];
        let Some(main) = runs.iter().find(|c| &c.mode == primary).or(runs.first()) else { continue };
        let mut row = vec![
            main.id.clone(),
            main.lang.clone(),
            main.tags.join(","),
            main.asker.clone(),
            if main.answerable { "yes".into() } else { "no".into() },
            main.relevant.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(" "),
        ];
        for mode in &result.modes {
            match runs.iter().find(|c| &c.mode == mode) {
                Some(c) => {
                    row.push(if mode == crate::runner::MODEL_ONLY { "n/a".into() } else { first_rank(c) });
                    row.push(c.kind.clone());
                }
                None => row.extend(["–".into(), "–".into()]),
            }
        }
        let cited: Vec<String> = main
            .citations
            .iter()
            .map(|c| match c.page {
                Some(p) => format!("{}#page={p}", c.source_path),
                None => c.source_path.clone(),
            })
            .collect();
        row.extend([
            opt(main.f1),
            opt(main.citation_precision),
            opt(main.citation_recall),
            opt(main.groundedness),
            cited.join(" "),
            main.leaks.len().to_string(),
        ]);
        rows.push(row);
    }
    let mut out = format!(
        "# {}: per-question results\n\nGenerated by `lore eval --update-baseline`; rank = rank of the first relevant document \
         among the retrieved passages' documents (– not retrieved, n/a for unanswerable questions). Answer columns: `extracted`, `generated` or `no_answer`. \
         F1, citation precision/recall, groundedness and citations are for {primary}.\n\n",
        result.set
    );
    out.push_str(&markdown_table(&columns, &rows));
    out
}

/// The Markdown report: settings, the comparison, the breakdowns and every case.
pub fn markdown(result: &RunResult) -> String {
    let mut out = format!("# lore eval: {}\n\nTarget: {}\n\n", result.set, result.target);
    for (key, value) in &result.settings {
        let _ = writeln!(out, "- {key}: {value}");
    }
    if let Some(corpus) = &result.corpus {
        let _ = writeln!(
            out,
            "- corpus: {} documents, {} chunks, hash {}",
            corpus.documents,
            corpus.chunks,
            &corpus.hash[..16]
        );
        for failure in &corpus.failures {
            let _ = writeln!(out, "- not ingested: {failure}");
        }
    }
    out.push_str("\n## Modes side by side\n\n");
    out.push_str(&markdown_table(&header("metric", result.modes.clone()), &comparison_rows(result)));
    for mode in &result.modes {
        let _ = write!(out, "\n## {mode} by language and tag\n\n");
        out.push_str(&markdown_table(&header("group", BREAKDOWN), &breakdown_rows(result, mode)));
    }
    let leaks: Vec<&CaseResult> = result.cases.iter().filter(|c| !c.leaks.is_empty()).collect();
    if !leaks.is_empty() {
        out.push_str("\n## Leaks\n\n");
        for c in leaks {
            for leak in &c.leaks {
                let _ = writeln!(
                    out,
                    "- {} ({}) as {}: {} {} — {}",
                    c.id, c.mode, c.asker, leak.kind, leak.location, leak.reason
                );
            }
        }
    }
    out.push_str("\n## Questions\n\n");
    let table = questions_table(result);
    out.push_str(table.split_once("\n\n").map_or(table.as_str(), |(_, rest)| rest));
    out
}

/// Everything about one case (`--only`): retrieved chunks, prompt, answer, citations, scores.
pub fn detail(result: &RunResult) -> String {
    let mut out = String::new();
    for c in &result.cases {
        let _ = writeln!(out, "=== {} [{}] as {}\nQ: {}", c.id, c.mode, c.asker, c.question);
        let relevant: Vec<String> = c.relevant.iter().map(|r| r.to_string()).collect();
        let _ = writeln!(out, "relevant: {}  answerable: {}", relevant.join(" "), c.answerable);
        let _ = writeln!(out, "\n-- retrieved ({} passages)", c.retrieved.len());
        for p in &c.retrieved {
            let _ = writeln!(
                out,
                "{:>2}. [{:.4}] {} (bm25 {}, dense {}) {}\n    {}",
                p.rank,
                p.score,
                p.location(),
                p.bm25_rank.map_or("–".into(), |r| r.to_string()),
                p.dense_rank.map_or("–".into(), |r| r.to_string()),
                p.headings.join(" > "),
                p.text.replace('\n', " ")
            );
        }
        if let Some(detail) = &c.detail {
            let _ = writeln!(out, "\n-- prompt ({})", detail.note);
            if let Some(system) = &detail.system_prompt {
                let _ = writeln!(out, "[system]\n{system}");
            }
            if let Some(user) = &detail.user_prompt {
                let _ = writeln!(out, "[user]\n{user}");
            }
        }
        let _ = writeln!(out, "\n-- answer ({})\n{}", c.kind, c.answer);
        for cit in &c.citations {
            let page = cit.page.map(|p| format!("#page={p}")).unwrap_or_default();
            let _ =
                writeln!(out, "[{}] {}{page} {}", cit.marker, cit.source_path, cit.heading.as_deref().unwrap_or(""));
        }
        let _ = writeln!(out, "\n-- scores");
        if let Some(doc) = &c.doc {
            let _ = writeln!(
                out,
                "doc: first relevant {:?}, recall {:?}, MRR {:.3}, nDCG@10 {:.3}",
                doc.first_relevant, doc.recall, doc.mrr, doc.ndcg_at_10
            );
        }
        if let Some(page) = &c.page {
            let _ = writeln!(
                out,
                "page: first relevant {:?}, recall {:?}, MRR {:.3}",
                page.first_relevant, page.recall, page.mrr
            );
        }
        let _ = writeln!(
            out,
            "abstained {}; F1 {}; EM {}; similarity {}; citation P {} R {}; groundedness {}; judge {:?}{}",
            c.abstained,
            opt(c.f1),
            opt(c.exact_match),
            opt(c.similarity),
            opt(c.citation_precision),
            opt(c.citation_recall),
            opt(c.groundedness),
            c.judge,
            c.judge_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
        );
        for leak in &c.leaks {
            let _ = writeln!(out, "LEAK: {} {} ({})", leak.kind, leak.location, leak.reason);
        }
        let _ = writeln!(
            out,
            "latency: retrieval {} ms, generation {:.1} ms, answer {:.1} ms\n",
            c.retrieval_ms.map_or("–".into(), |v| format!("{v:.1}")),
            c.generation_ms,
            c.answer_ms
        );
    }
    out
}
