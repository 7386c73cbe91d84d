//! Runs a set: every case is asked as its asker in each retrieval mode, through the same
//! retriever and chat engine the server uses, and scored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lore_chat::answerability::Features;
use lore_chat::conversations::Conversations;
use lore_chat::{ChatEngine, Retriever};
use lore_core::acl::{AccessScope, PrincipalSet};
use lore_core::catalog::Catalog;
use lore_core::config::{Config, RetrievalMode};
use lore_core::embed::Embedder;
use lore_core::index::Indexes;
use lore_core::lang::Lang;
use serde::{Deserialize, Serialize};

use crate::corpus::{self, PreparedCorpus};
use crate::error::EvalError;
use crate::judge::{JudgeScores, ModelScoring};
use crate::metrics::{Accumulator, RankMetrics, Stat, rank_metrics};
use crate::set::{Case, EvalSet, Relevant};
use crate::text;

/// The label of the comparison without retrieval (only with a model provider).
pub const MODEL_ONLY: &str = "model-only";
/// Share of a sentence's tokens a cited passage must contain for the sentence to count as
/// supported (groundedness).
pub const SUPPORT_THRESHOLD: f64 = 0.7;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub modes: Vec<RetrievalMode>,
    /// Run this case alone, with full detail.
    pub only: Option<String>,
    /// Passages retrieved for the ranking metrics (documents are ranked by their best passage).
    pub passages: usize,
    pub cache_root: PathBuf,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            modes: RetrievalMode::ALL.to_vec(),
            only: None,
            passages: 20,
            cache_root: corpus::default_cache_root(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrievedPassage {
    pub rank: usize,
    pub score: f32,
    pub document_id: String,
    pub source: String,
    pub path: String,
    pub page: Option<u32>,
    pub headings: Vec<String>,
    pub chunk_id: String,
    pub bm25_rank: Option<usize>,
    pub dense_rank: Option<usize>,
    /// The chunk text (cut to 200 characters except in `--only` runs).
    pub text: String,
}

impl RetrievedPassage {
    pub fn location(&self) -> String {
        match self.page {
            Some(page) => format!("{}/{}#page={page}", self.source, self.path),
            None => format!("{}/{}", self.source, self.path),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CitedSource {
    pub marker: usize,
    pub document_id: String,
    /// `source/path` of the document.
    pub source_path: String,
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub chunk_id: String,
    pub snippet: String,
}

impl CitedSource {
    fn split_path(&self) -> (&str, &str) {
        self.source_path.split_once('/').unwrap_or(("", &self.source_path))
    }
}

/// A citation or retrieved passage the asker must not see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leak {
    /// `citation` or `passage`.
    pub kind: String,
    pub location: String,
    pub reason: String,
}

/// The answer half of a case, as the engine (or server) gave it.
#[derive(Debug, Clone)]
pub struct Answered {
    pub kind: String,
    pub text: String,
    pub citations: Vec<CitedSource>,
    /// Full texts of the cited chunks by marker (snippets when only those are known).
    pub cited_texts: HashMap<usize, String>,
    pub retrieval_ms: Option<f64>,
    pub generation_ms: f64,
    pub answer_ms: f64,
}

/// Everything `--only` shows beyond the scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detail {
    pub system_prompt: Option<String>,
    pub user_prompt: Option<String>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub mode: String,
    pub question: String,
    pub lang: String,
    pub tags: Vec<String>,
    pub asker: String,
    pub answerable: bool,
    pub relevant: Vec<Relevant>,
    pub retrieved: Vec<RetrievedPassage>,
    pub doc: Option<RankMetrics>,
    pub page: Option<RankMetrics>,
    pub kind: String,
    pub answer: String,
    pub citations: Vec<CitedSource>,
    pub abstained: bool,
    pub f1: Option<f64>,
    pub exact_match: Option<f64>,
    pub similarity: Option<f64>,
    pub citation_precision: Option<f64>,
    pub citation_recall: Option<f64>,
    pub groundedness: Option<f64>,
    pub judge: Option<JudgeScores>,
    pub judge_error: Option<String>,
    pub leaks: Vec<Leak>,
    pub retrieval_ms: Option<f64>,
    pub generation_ms: f64,
    pub answer_ms: f64,
    /// The answerability model's probability, and the evidence it weighed (in-process runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answerability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
}

/// mode → group (`all`, `lang:es`, `tag:permission`) → metric → value.
pub type Summary = BTreeMap<String, BTreeMap<String, BTreeMap<String, Stat>>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub set: String,
    /// `in-process`, or the server URL.
    pub target: String,
    pub settings: BTreeMap<String, String>,
    pub corpus: Option<PreparedCorpus>,
    pub modes: Vec<String>,
    pub cases: Vec<CaseResult>,
    pub summary: Summary,
}

/// Scores cases: ACLs and chunk texts from the catalog (when local), answer similarity with
/// the embedding model, the judge when a provider is configured.
pub struct Scorer<'a> {
    pub catalog: Option<&'a Catalog>,
    pub embedder: Option<&'a Embedder>,
    pub model: Option<&'a ModelScoring>,
    acl_cache: std::cell::RefCell<HashMap<String, Option<Vec<String>>>>,
}

impl<'a> Scorer<'a> {
    pub fn new(catalog: Option<&'a Catalog>, embedder: Option<&'a Embedder>, model: Option<&'a ModelScoring>) -> Self {
        Scorer { catalog, embedder, model, acl_cache: Default::default() }
    }

    fn acl_of(&self, document_id: &str) -> Result<Option<Vec<String>>, EvalError> {
        let Some(catalog) = self.catalog else { return Ok(None) };
        if let Some(acl) = self.acl_cache.borrow().get(document_id) {
            return Ok(acl.clone());
        }
        let acl = catalog.document(document_id)?.map(|d| d.acl.to_strings());
        self.acl_cache.borrow_mut().insert(document_id.to_owned(), acl.clone());
        Ok(acl)
    }

    fn leak(
        &self,
        case: &Case,
        principals: &PrincipalSet,
        kind: &str,
        document_id: &str,
        (source, path, page): (&str, &str, Option<u32>),
    ) -> Result<Option<Leak>, EvalError> {
        let location = match page {
            Some(p) => format!("{source}/{path}#page={p}"),
            None => format!("{source}/{path}"),
        };
        if let Some(forbidden) = case.must_not_cite.iter().find(|r| r.matches(source, path, page, &[])) {
            return Ok(Some(Leak { kind: kind.into(), location, reason: format!("must_not_cite {forbidden}") }));
        }
        if let Some(acl) = self.acl_of(document_id)? {
            let allowed = principals.to_strings();
            if !acl.iter().any(|a| allowed.contains(a)) {
                return Ok(Some(Leak { kind: kind.into(), location, reason: format!("document ACL {acl:?}") }));
            }
        }
        Ok(None)
    }

    fn similarity(&self, answer: &str, references: &[String]) -> Result<Option<f64>, EvalError> {
        let Some(embedder) = self.embedder else { return Ok(None) };
        let mut texts = vec![answer.to_owned()];
        texts.extend(references.iter().cloned());
        let vectors = embedder.embed_passages(&texts)?;
        let best = vectors[1..]
            .iter()
            .map(|r| r.iter().zip(&vectors[0]).map(|(a, b)| f64::from(a * b)).sum::<f64>())
            .fold(f64::MIN, f64::max);
        Ok(Some(best.clamp(-1.0, 1.0)))
    }

    /// Scores one case in one mode.
    pub async fn score(
        &self,
        case: &Case,
        mode: &str,
        retrieved: Vec<RetrievedPassage>,
        answered: Answered,
    ) -> Result<CaseResult, EvalError> {
        let lang = case.lang();
        let principals = case.asker.principals()?;
        let (doc, page) = if case.answerable && !case.relevant.is_empty() {
            ranking(&case.relevant, &retrieved)
        } else {
            (None, None)
        };
        let abstained = answered.kind == "no_answer";
        let mut leaks = Vec::new();
        for p in &retrieved {
            if let Some(leak) = self.leak(case, &principals, "passage", &p.document_id, (&p.source, &p.path, p.page))? {
                leaks.push(leak);
            }
        }
        for c in &answered.citations {
            let (source, path) = c.split_path();
            if let Some(leak) = self.leak(case, &principals, "citation", &c.document_id, (source, path, c.page))? {
                leaks.push(leak);
            }
        }
        let label = lore_chat::answer::extracted_label(Lang::detect(&answered.text));
        let label = if answered.kind == "extracted" { Some(label) } else { None };
        let body = text::answer_body(&answered.text, label);
        let scored_answer = case.answerable && !case.reference_answer.is_empty();
        let (f1, exact_match, similarity) = match (scored_answer, abstained) {
            (false, _) => (None, None, None),
            (true, true) => (Some(0.0), Some(0.0), self.embedder.map(|_| 0.0)),
            (true, false) => (
                Some(text::token_f1(&body, &case.reference_answer, lang)),
                Some(text::exact_match(&body, &case.reference_answer, lang)),
                self.similarity(&body, &case.reference_answer)?,
            ),
        };
        let (citation_precision, citation_recall) = if case.answerable && !case.relevant.is_empty() {
            let matches = |c: &CitedSource, r: &Relevant| {
                let (source, path) = c.split_path();
                r.matches(source, path, c.page, c.heading.as_slice())
            };
            let precise = answered.citations.iter().filter(|c| case.relevant.iter().any(|r| matches(c, r))).count();
            let recalled = case.relevant.iter().filter(|r| answered.citations.iter().any(|c| matches(c, r))).count();
            (
                (!answered.citations.is_empty()).then(|| precise as f64 / answered.citations.len() as f64),
                Some(recalled as f64 / case.relevant.len() as f64),
            )
        } else {
            (None, None)
        };
        let groundedness = if abstained || answered.cited_texts.is_empty() {
            None
        } else {
            let sentences = text::answer_sentences(&body_with_markers(&answered.text, label));
            let supported = sentences
                .iter()
                .filter(|(sentence, markers)| {
                    let mut texts: Vec<&String> = markers.iter().filter_map(|m| answered.cited_texts.get(m)).collect();
                    if texts.is_empty() {
                        texts = answered.cited_texts.values().collect();
                    }
                    texts.iter().any(|t| text::supported_by(sentence, t, lang, SUPPORT_THRESHOLD))
                })
                .count();
            (!sentences.is_empty()).then(|| supported as f64 / sentences.len() as f64)
        };
        let (mut judge, mut judge_error) = (None, None);
        if let Some(model) = self.model
            && !abstained
            && mode != MODEL_ONLY
        {
            let mut markers: Vec<&usize> = answered.cited_texts.keys().collect();
            markers.sort();
            let context: Vec<String> =
                markers.iter().map(|m| format!("[{m}] {}", answered.cited_texts[m].trim())).collect();
            match model.judge(&case.question, &context.join("\n\n"), &answered.text).await {
                Ok(scores) => judge = Some(scores),
                Err(error) => judge_error = Some(error.to_string()),
            }
        }
        Ok(CaseResult {
            id: case.id.clone(),
            mode: mode.to_owned(),
            question: case.question.clone(),
            lang: lang.code().into(),
            tags: case.tags.clone(),
            asker: case.asker.label(),
            answerable: case.answerable,
            relevant: case.relevant.clone(),
            retrieved,
            doc,
            page,
            kind: answered.kind,
            answer: answered.text,
            citations: answered.citations,
            abstained,
            f1,
            exact_match,
            similarity,
            citation_precision,
            citation_recall,
            groundedness,
            judge,
            judge_error,
            leaks,
            retrieval_ms: answered.retrieval_ms,
            generation_ms: answered.generation_ms,
            answer_ms: answered.answer_ms,
            answerability: None,
            features: None,
            detail: None,
        })
    }
}

/// The answer without the extracted-answer label, markers kept (groundedness needs them).
fn body_with_markers(answer: &str, label: Option<&str>) -> String {
    match label {
        Some(label) => answer.strip_prefix(label).unwrap_or(answer).trim().to_owned(),
        None => answer.trim().to_owned(),
    }
}

/// Document-level and (where the set names pages) page-level ranking metrics.
pub fn ranking(relevant: &[Relevant], retrieved: &[RetrievedPassage]) -> (Option<RankMetrics>, Option<RankMetrics>) {
    let mut relevant_docs: Vec<&Relevant> = Vec::new();
    for r in relevant {
        if !relevant_docs.iter().any(|d| d.path == r.path) {
            relevant_docs.push(r);
        }
    }
    let mut doc_units: Vec<(&str, &str)> = Vec::new();
    for p in retrieved {
        if !doc_units.contains(&(p.source.as_str(), p.path.as_str())) {
            doc_units.push((&p.source, &p.path));
        }
    }
    let doc_ranked: Vec<Option<usize>> = doc_units
        .iter()
        .map(|(source, path)| relevant_docs.iter().position(|r| r.matches_document(source, path)))
        .collect();
    let doc = rank_metrics(&doc_ranked, relevant_docs.len());
    let pages: Vec<&Relevant> = relevant.iter().filter(|r| r.page.is_some()).collect();
    let page = (!pages.is_empty()).then(|| {
        let mut units: Vec<(&str, &str, Option<u32>)> = Vec::new();
        for p in retrieved {
            let unit = (p.source.as_str(), p.path.as_str(), p.page);
            if !units.contains(&unit) {
                units.push(unit);
            }
        }
        let ranked: Vec<Option<usize>> = units
            .iter()
            .map(|(source, path, page)| pages.iter().position(|r| r.matches(source, path, *page, &[])))
            .collect();
        rank_metrics(&ranked, pages.len())
    });
    (Some(doc), page)
}

/// The metric values one case contributes.
pub fn metric_values(r: &CaseResult) -> Vec<(String, f64)> {
    let mut out = vec![("cases".to_owned(), 1.0), ("leaks".to_owned(), r.leaks.len() as f64)];
    if let Some(doc) = &r.doc {
        out.extend(doc.named("doc"));
    }
    if let Some(page) = &r.page {
        out.extend(page.named("page"));
    }
    let optional = [
        ("answer.f1", r.f1),
        ("answer.exact_match", r.exact_match),
        ("answer.similarity", r.similarity),
        ("citation.precision", r.citation_precision),
        ("citation.recall", r.citation_recall),
        ("groundedness", r.groundedness),
        ("judge.faithfulness", r.judge.map(|j| j.faithfulness)),
        ("judge.relevance", r.judge.map(|j| j.relevance)),
        ("latency.retrieval_ms", r.retrieval_ms),
    ];
    out.extend(optional.into_iter().filter_map(|(name, value)| value.map(|v| (name.to_owned(), v))));
    let abstained = if r.abstained { 1.0 } else { 0.0 };
    if r.answerable {
        out.push(("abstention.false_rate".into(), abstained));
    } else {
        out.push(("abstention.accuracy".into(), abstained));
    }
    out.push(("latency.generation_ms".into(), r.generation_ms));
    out.push(("latency.answer_ms".into(), r.answer_ms));
    out
}

/// Means per mode, overall and by language and tag.
pub fn summarize(cases: &[CaseResult]) -> Summary {
    let mut groups: BTreeMap<String, BTreeMap<String, Accumulator>> = BTreeMap::new();
    for r in cases {
        let mut names = vec!["all".to_owned(), format!("lang:{}", r.lang)];
        names.extend(r.tags.iter().map(|t| format!("tag:{t}")));
        let values = metric_values(r);
        let by_group = groups.entry(r.mode.clone()).or_default();
        for group in names {
            let acc = by_group.entry(group).or_default();
            for (name, value) in &values {
                acc.add(name.clone(), *value);
            }
        }
    }
    groups.into_iter().map(|(mode, g)| (mode, g.into_iter().map(|(k, acc)| (k, acc.finish())).collect())).collect()
}

fn settings(config: &Config, model: &str, answerability_threshold: f64) -> BTreeMap<String, String> {
    let r = &config.retrieval;
    let c = &config.chunking;
    BTreeMap::from([
        ("embedding.model".into(), model.to_owned()),
        ("chunking".into(), format!("min {} max {} overlap {}", c.min_tokens, c.max_tokens, c.overlap_tokens)),
        (
            "retrieval".into(),
            format!(
                "candidates {} rrf_k {} bm25_weight {} dense_weight {} other_language_dense_weight {} document_weight {} max_chunks_per_document {}",
                r.candidates,
                r.rrf_k,
                r.bm25_weight,
                r.dense_weight,
                r.other_language_dense_weight,
                r.document_weight,
                r.max_chunks_per_document
            ),
        ),
        ("chat.context_passages".into(), config.chat.context_passages.to_string()),
        (
            "answerability".into(),
            format!(
                "model {} threshold {answerability_threshold}",
                r.answerability_model.as_ref().map_or("built-in".into(), |p| p.display().to_string())
            ),
        ),
        ("chat.providers".into(), config.chat.providers.iter().map(|p| p.name.clone()).collect::<Vec<_>>().join(",")),
    ])
}

fn passages_of(results: &lore_chat::HybridResults, full_text: bool) -> Vec<RetrievedPassage> {
    results
        .passages
        .iter()
        .map(|p| RetrievedPassage {
            rank: p.rank,
            score: p.score,
            document_id: p.document.id.clone(),
            source: p.document.source.clone(),
            path: p.document.path.clone(),
            page: p.chunk.page,
            headings: p.chunk.heading_path.clone(),
            chunk_id: p.chunk.id.clone(),
            bm25_rank: p.bm25_rank,
            dense_rank: p.dense_rank,
            text: if full_text { p.chunk.text.clone() } else { p.chunk.text.chars().take(200).collect() },
        })
        .collect()
}

/// Runs the set in this process: ingests its corpus into the cache (or reuses it), then asks
/// every case in every mode.
pub async fn run_in_process(set: &EvalSet, config: &Config, options: &RunOptions) -> Result<RunResult, EvalError> {
    let cases: Vec<&Case> = match &options.only {
        Some(id) => vec![set.case(id)?],
        None => set.cases.iter().collect(),
    };
    let embedder = Arc::new(Embedder::load(&config.embedding)?);
    let prepared = corpus::prepare(set, config, embedder.clone(), &options.cache_root).await?;
    let mut config = config.clone();
    config.data_dir = prepared.data_dir.clone();
    let indexes = Arc::new(Indexes::open(&config, false).await?);
    let catalog = Catalog::open_in(&config.open_database()?)?;
    let model = ModelScoring::new(&config.chat)?;
    let scorer = Scorer::new(Some(&catalog), Some(&embedder), model.as_ref());
    let mut results = Vec::new();
    let mut modes: Vec<String> = Vec::new();
    let mut threshold = 0.0;
    let assistant = set.manifest.assistant.as_ref().map(|variant| variant.assistant());
    for &mode in &options.modes {
        modes.push(mode.as_str().into());
        let mut mode_config = config.clone();
        mode_config.retrieval.mode = mode;
        let retriever = Arc::new(Retriever::with_indexes(&mode_config, embedder.clone(), indexes.clone())?);
        let engine = ChatEngine::new(retriever.clone(), Conversations::open(Path::new(":memory:"))?, &config.chat)?;
        threshold = engine.answerability().1;
        for (i, case) in cases.iter().enumerate() {
            if options.only.is_none() && i % 50 == 0 && i > 0 {
                eprintln!("lore eval: {} {}/{}", mode.as_str(), i, cases.len());
            }
            let scope = AccessScope::impersonate_for_operator(case.asker.principals()?, "lore eval");
            // One retrieval per case: the engine retrieves `passages` deep, answers from the
            // first `chat.context_passages` and hands back what it retrieved.
            let question = lore_chat::Question {
                retrieve: Some(options.passages),
                assistant: assistant.as_ref(),
                ..lore_chat::Question::new(&case.asker.user, &scope, &case.question)
            };
            let answer = engine.ask(question).await?;
            let trace = answer.trace.as_ref().ok_or_else(|| {
                lore_core::Error::InvalidInput(format!("case {}: the answer came without retrieval", case.id))
            })?;
            let t = &answer.timings.retrieval;
            let retrieval_ms = t.bm25_ms.max(t.embed_ms + t.dense_ms) + t.fusion_ms;
            let chunk_ids: Vec<String> = answer.citations.iter().map(|c| c.chunk_id.clone()).collect();
            let chunks: HashMap<String, String> =
                catalog.chunks_by_id(&chunk_ids)?.into_iter().map(|c| (c.id, c.text)).collect();
            let answered = Answered {
                kind: serde_json::to_value(answer.kind)?.as_str().unwrap_or_default().to_owned(),
                cited_texts: answer
                    .citations
                    .iter()
                    .map(|c| (c.marker, chunks.get(&c.chunk_id).cloned().unwrap_or_else(|| c.snippet.clone())))
                    .collect(),
                citations: answer
                    .citations
                    .iter()
                    .map(|c| CitedSource {
                        marker: c.marker,
                        document_id: c.document_id.clone(),
                        source_path: c.source_path.clone(),
                        page: c.page,
                        heading: c.heading.clone(),
                        chunk_id: c.chunk_id.clone(),
                        snippet: c.snippet.clone(),
                    })
                    .collect(),
                text: answer.answer.clone(),
                retrieval_ms: Some(retrieval_ms),
                generation_ms: answer.timings.generation_ms,
                answer_ms: answer.timings.total_ms,
            };
            let full = options.only.is_some();
            let mut result = scorer.score(case, mode.as_str(), passages_of(&trace.retrieved, full), answered).await?;
            result.answerability = Some(trace.evidence.answerability);
            result.features = Some(trace.evidence.features);
            if full {
                let context: Vec<lore_chat::Passage> =
                    trace.retrieved.passages.iter().take(config.chat.context_passages).cloned().collect();
                let (system, user) = engine.answer_prompt(&case.question, &context)?;
                result.detail = Some(Detail {
                    note: if engine.has_providers() {
                        "the prompt sent to the model provider".into()
                    } else {
                        "no chat.providers configured: the answer is extracted; this prompt would be sent to a model"
                            .into()
                    },
                    system_prompt: Some(system),
                    user_prompt: Some(user),
                });
            }
            results.push(result);
        }
    }
    if let Some(model) = &model {
        modes.push(MODEL_ONLY.into());
        for case in &cases {
            let (answer, ms) = model.closed_book(&case.question, case.lang()).await?;
            let answered = Answered {
                kind: if answer.is_some() { "generated".into() } else { "no_answer".into() },
                text: answer.unwrap_or_default(),
                citations: Vec::new(),
                cited_texts: HashMap::new(),
                retrieval_ms: None,
                generation_ms: ms,
                answer_ms: ms,
            };
            results.push(scorer.score(case, MODEL_ONLY, Vec::new(), answered).await?);
        }
    }
    let summary = summarize(&results);
    Ok(RunResult {
        set: set.name.clone(),
        target: "in-process".into(),
        settings: settings(&config, &embedder.info().fingerprint, threshold),
        corpus: Some(prepared),
        modes,
        cases: results,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(rank: usize, path: &str, page: Option<u32>) -> RetrievedPassage {
        RetrievedPassage {
            rank,
            score: 1.0,
            document_id: path.into(),
            source: "contoso".into(),
            path: path.into(),
            page,
            headings: Vec::new(),
            chunk_id: format!("{path}-{rank}"),
            bm25_rank: None,
            dense_rank: None,
            text: String::new(),
        }
    }

    #[test]
    fn documents_rank_by_their_best_passage_and_pages_separately() {
        let relevant = vec![Relevant::parse("a.pdf#page=3").unwrap(), Relevant::parse("b.pdf#page=1").unwrap()];
        let retrieved = vec![
            passage(1, "a.pdf", Some(2)),
            passage(2, "a.pdf", Some(3)),
            passage(3, "c.pdf", Some(1)),
            passage(4, "b.pdf", Some(1)),
        ];
        let (doc, page) = ranking(&relevant, &retrieved);
        let doc = doc.unwrap();
        // Documents: a (rank 1), c (2), b (3).
        assert_eq!(doc.first_relevant, Some(1));
        assert_eq!(doc.recall, [(1, 0.5), (3, 1.0), (5, 1.0), (10, 1.0)]);
        let page = page.unwrap();
        // Pages: a#2 (1), a#3 (2), c#1 (3), b#1 (4).
        assert_eq!(page.first_relevant, Some(2));
        assert_eq!(page.recall[1], (3, 0.5));
        assert_eq!(page.recall[2], (5, 1.0));
    }

    #[test]
    fn summaries_split_by_language_and_tag() {
        let base = CaseResult {
            id: "a".into(),
            mode: "hybrid".into(),
            question: "q".into(),
            lang: "en".into(),
            tags: vec!["permission".into()],
            asker: "u".into(),
            answerable: false,
            relevant: Vec::new(),
            retrieved: Vec::new(),
            doc: None,
            page: None,
            kind: "no_answer".into(),
            answer: String::new(),
            citations: Vec::new(),
            abstained: true,
            f1: None,
            exact_match: None,
            similarity: None,
            citation_precision: None,
            citation_recall: None,
            groundedness: None,
            judge: None,
            judge_error: None,
            leaks: Vec::new(),
            retrieval_ms: Some(5.0),
            generation_ms: 0.0,
            answer_ms: 6.0,
            answerability: None,
            features: None,
            detail: None,
        };
        let mut other = base.clone();
        other.id = "b".into();
        other.lang = "es".into();
        other.tags = Vec::new();
        other.abstained = false;
        other.leaks.push(Leak { kind: "citation".into(), location: "x".into(), reason: "acl".into() });
        let summary = summarize(&[base, other]);
        let all = &summary["hybrid"]["all"];
        assert_eq!(all["abstention.accuracy"].mean, 0.5);
        assert_eq!(all["leaks"].sum, 1.0);
        assert_eq!(summary["hybrid"]["tag:permission"]["abstention.accuracy"].mean, 1.0);
        assert_eq!(summary["hybrid"]["lang:es"]["cases"].n, 1);
    }
}
