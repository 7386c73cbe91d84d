//! Does the knowledge base answer this question? A small logistic model over evidence that
//! retrieval already has (dense and BM25 scores, whether the engines agree) and evidence from
//! the sentences of the best passages (how much of the question's weighted terms a sentence
//! holds, its embedding similarity to the question, whether it holds the quantity, date or
//! name the question asks for). The same model scores each sentence on its own, which is how
//! extractive answers pick their sentences.
//!
//! The weights and the operating point come from `lore eval calibrate` (committed in
//! `answerability.json`, built into the binary; `retrieval.answerability_model` replaces it).

use std::collections::HashSet;
use std::path::Path;

use lore_core::index::analyze;
use serde::{Deserialize, Serialize};

use crate::answer;
use crate::retrieval::{HybridResults, Passage, Retriever};

/// Passages whose sentences are candidates for evidence and extraction.
pub const SENTENCE_PASSAGES: usize = 5;
/// Candidate sentences embedded per question (the lexically best of the passages' sentences).
pub const MAX_CANDIDATES: usize = 24;
/// How far below the best sentence's relevance a sentence from another passage may be and
/// still join an extractive answer.
pub const NEW_SOURCE_MARGIN: f64 = 0.15;
/// Words of a sentence that are embedded (longer sentences are cut).
const EMBEDDED_WORDS: usize = 64;

/// Feature names, in the order of [`Features::values`] and of the model's weights.
pub const FEATURE_NAMES: [&str; 11] = [
    "dense_top",
    "dense_margin_2",
    "dense_margin_5",
    "bm25_top_per_idf",
    "engines_agree",
    "passage_coverage",
    "sentence_coverage",
    "sentence_similarity",
    "question_terms_log",
    "asked_type_missing",
    "asked_type_present",
];

/// The evidence of one question, or of one of its sentences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    pub dense_top: f64,
    pub dense_margin_2: f64,
    pub dense_margin_5: f64,
    pub bm25_top_per_idf: f64,
    pub engines_agree: f64,
    pub passage_coverage: f64,
    pub sentence_coverage: f64,
    pub sentence_similarity: f64,
    pub question_terms_log: f64,
    pub asked_type_missing: f64,
    pub asked_type_present: f64,
}

impl Features {
    pub fn values(&self) -> [f64; 11] {
        [
            self.dense_top,
            self.dense_margin_2,
            self.dense_margin_5,
            self.bm25_top_per_idf,
            self.engines_agree,
            self.passage_coverage,
            self.sentence_coverage,
            self.sentence_similarity,
            self.question_terms_log,
            self.asked_type_missing,
            self.asked_type_present,
        ]
    }
}

/// A logistic regression over standardised [`Features`], with its operating point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnswerabilityModel {
    /// Must equal [`FEATURE_NAMES`]: a model fitted on other features is refused.
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    pub weights: Vec<f64>,
    pub bias: f64,
    /// Answer when the probability is at least this; abstain otherwise.
    pub threshold: f64,
    /// How the model was made: command, sets, split, sizes, held-out results.
    #[serde(default)]
    pub provenance: serde_json::Value,
}

const BUILT_IN: &str = include_str!("answerability.json");

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("answerability model {path}: {message}")]
    Invalid { path: String, message: String },
}

impl AnswerabilityModel {
    /// The model built into Lore.
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN, "built-in").expect("the built-in answerability model is valid")
    }

    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let invalid = |message: String| ModelError::Invalid { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, origin: &str) -> Result<Self, ModelError> {
        let invalid = |message: String| ModelError::Invalid { path: origin.to_owned(), message };
        let model: AnswerabilityModel = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if model.features != FEATURE_NAMES {
            return Err(invalid(format!(
                "fitted on features {:?}, this build computes {FEATURE_NAMES:?}; run `lore eval calibrate` again",
                model.features
            )));
        }
        let n = FEATURE_NAMES.len();
        if model.mean.len() != n || model.scale.len() != n || model.weights.len() != n {
            return Err(invalid(format!("mean, scale and weights need {n} values each")));
        }
        if !(0.0..=1.0).contains(&model.threshold) {
            return Err(invalid(format!("threshold {} is not a probability", model.threshold)));
        }
        Ok(model)
    }

    /// Probability that the knowledge base answers the question, given the evidence.
    pub fn probability(&self, features: &Features) -> f64 {
        let z: f64 = features
            .values()
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.weights)
            .map(|(((x, m), s), w)| w * (x - m) / s.max(1e-9))
            .sum::<f64>()
            + self.bias;
        1.0 / (1.0 + (-z).exp())
    }
}

/// A sentence of a retrieved passage with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct ScoredSentence {
    /// Index into the passages.
    pub passage: usize,
    pub text: String,
    pub coverage: f64,
    pub similarity: f64,
    pub holds_asked_type: Option<bool>,
    /// The model's probability with this sentence as the evidence.
    pub answerability: f64,
}

impl ScoredSentence {
    /// How well the sentence matches the question: the share of its weighted terms it holds
    /// plus its embedding similarity (the ranking that picks the question's best sentence).
    pub fn relevance(&self) -> f64 {
        self.coverage + self.similarity
    }

    /// The order of an extractive answer: relevance, and [`TYPE_MATCH_BONUS`] for holding the
    /// kind of value the question asks for (an amount for "how much", a command for "what
    /// command").
    pub fn extraction_rank(&self) -> f64 {
        self.relevance() + if self.holds_asked_type == Some(true) { TYPE_MATCH_BONUS } else { 0.0 }
    }
}

/// What holding the asked kind of value adds to a sentence's rank in an extractive answer.
pub const TYPE_MATCH_BONUS: f64 = 0.25;

/// Everything the answer pipeline knows about whether and how the question is answered.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// The question's features (with its best sentence).
    pub features: Features,
    pub answerability: f64,
    pub threshold: f64,
    /// Candidate sentences, best ranked for extraction first.
    pub sentences: Vec<ScoredSentence>,
}

impl Evidence {
    pub fn answerable(&self) -> bool {
        self.answerability >= self.threshold
    }

    /// Up to `max` sentences that pass the answerability bar on their own, most relevant
    /// first, leaving out near-repeats of a sentence already chosen. A sentence from a passage
    /// not cited yet must also come within [`NEW_SOURCE_MARGIN`] of the best one's relevance:
    /// every extra source is a citation the reader has to check.
    pub fn answering_sentences(&self, max: usize) -> Vec<&ScoredSentence> {
        let mut chosen: Vec<&ScoredSentence> = Vec::new();
        let mut chosen_words: Vec<HashSet<String>> = Vec::new();
        let best =
            self.sentences.iter().filter(|s| s.answerability >= self.threshold).map(ScoredSentence::extraction_rank);
        let best = best.fold(f64::MIN, f64::max);
        for sentence in self.sentences.iter().filter(|s| s.answerability >= self.threshold) {
            if chosen.len() == max {
                break;
            }
            let new_source = !chosen.iter().any(|c| c.passage == sentence.passage);
            if !chosen.is_empty() && new_source && sentence.extraction_rank() < best - NEW_SOURCE_MARGIN {
                continue;
            }
            let words = word_set(&sentence.text);
            if chosen_words.iter().any(|w| overlap(w, &words) >= 0.8) {
                continue;
            }
            chosen.push(sentence);
            chosen_words.push(words);
        }
        chosen
    }
}

fn word_set(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Share of the smaller set's words that the other set holds.
fn overlap(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let smaller = a.len().min(b.len()).max(1);
    a.intersection(b).count() as f64 / smaller as f64
}

/// The kind of value a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskedType {
    Quantity,
    Date,
    Name,
    Command,
}

/// What the question asks for, from its question words (English and Spanish).
pub fn asked_type(question: &str) -> Option<AskedType> {
    let q = format!(" {} ", question.to_lowercase().replace(['¿', '?', ',', '.'], " "));
    let has = |phrases: &[&str]| phrases.iter().any(|p| q.contains(&format!(" {p} ")));
    if has(&[
        "how many",
        "how much",
        "how long",
        "how often",
        "how old",
        "how far",
        "how big",
        "how large",
        "what percentage",
        "what percent",
        "what portion",
        "number of",
        "cuánto",
        "cuánta",
        "cuántos",
        "cuántas",
        "cuanto",
        "cuanta",
        "cuantos",
        "cuantas",
        "qué porcentaje",
        "que porcentaje",
    ]) {
        return Some(AskedType::Quantity);
    }
    if has(&[
        "when",
        "what year",
        "which year",
        "what date",
        "which date",
        "what time",
        "since when",
        "cuándo",
        "cuando",
        "qué año",
        "que año",
        "en qué fecha",
        "qué fecha",
        "en qué año",
        "qué día",
    ]) {
        return Some(AskedType::Date);
    }
    if has(&["what command", "which command", "command to", "qué comando", "que comando", "comando para"]) {
        return Some(AskedType::Command);
    }
    if has(&["who", "whom", "whose", "quién", "quiénes", "quien", "quienes", "cómo se llama", "como se llama"]) {
        return Some(AskedType::Name);
    }
    None
}

const MONTHS: [&str; 24] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
];
const NUMBER_WORDS: [&str; 30] = [
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "twenty",
    "hundred", "thousand", "million", "half", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve",
    "diez", "cien", "mil", "millones", "mitad",
];

/// Whether `sentence` holds a value of the asked kind.
pub fn holds(sentence: &str, kind: AskedType) -> bool {
    let words: Vec<String> =
        sentence.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let has_digit = sentence.chars().any(|c| c.is_ascii_digit());
    match kind {
        AskedType::Quantity => has_digit || words.iter().any(|w| NUMBER_WORDS.contains(&w.as_str())),
        AskedType::Date => {
            words.iter().any(|w| MONTHS.contains(&w.as_str()))
                || words.iter().any(|w| w.len() == 4 && w.chars().all(|c| c.is_ascii_digit()))
                || words
                    .iter()
                    .any(|w| matches!(w.as_str(), "century" | "siglo" | "year" | "años" | "año" | "daily" | "weekly"))
                || has_digit
        }
        AskedType::Command => sentence.contains('`'),
        AskedType::Name => sentence.split_whitespace().skip(1).any(|w| {
            w.chars().next().is_some_and(char::is_uppercase) && w.chars().filter(|c| c.is_alphabetic()).count() > 1
        }),
    }
}

/// Question words, pronouns and auxiliaries (English and Spanish): rare in documents, so their
/// IDF is high, yet they say nothing about the topic ("¿Cuántos días de vacaciones tengo?"
/// asks about "días" and "vacaciones").
const QUESTION_WORDS: [&str; 93] = [
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "many", "much", "long", "often", "does",
    "do", "did", "is", "are", "was", "were", "can", "could", "should", "would", "will", "may", "might", "must", "i",
    "me", "my", "mine", "we", "our", "you", "your", "get", "got", "have", "has", "there", "the", "a", "an", "of", "to",
    "in", "on", "for", "qué", "que", "cuál", "cual", "cuáles", "cuales", "quién", "quien", "quiénes", "cuándo",
    "cuando", "dónde", "donde", "cómo", "como", "por", "cuánto", "cuanto", "cuánta", "cuanta", "cuántos", "cuantos",
    "cuántas", "cuantas", "tengo", "tiene", "tienen", "tenemos", "puedo", "puede", "pueden", "hay", "es", "son",
    "está", "están", "mi", "mis", "yo", "nos", "el", "la", "los", "las",
];

/// The question without its question words.
fn content_words(question: &str) -> String {
    question
        .split_whitespace()
        .filter(|w| {
            let word: String = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
            !QUESTION_WORDS.contains(&word.as_str())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Analysed question terms with their IDF (each term once).
struct QuestionTerms {
    terms: Vec<(String, f64)>,
    total: f64,
}

impl QuestionTerms {
    /// IDF-weighted share of the question's terms found in `terms`.
    fn coverage(&self, terms: &HashSet<String>) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        self.terms.iter().filter(|(t, _)| terms.contains(t)).map(|(_, idf)| idf).sum::<f64>() / self.total
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum()
}

/// Gathers the evidence for `question` from its retrieval results: one IDF lookup and one
/// batched embedding of the best candidate sentences.
pub async fn gather(
    retriever: &Retriever,
    model: &AnswerabilityModel,
    threshold: f64,
    question: &str,
    results: &HybridResults,
) -> lore_core::Result<Evidence> {
    let lang = results.query_lang;
    let mut seen = HashSet::new();
    let question_terms: Vec<String> =
        analyze(&content_words(question), lang).into_iter().filter(|t| seen.insert(t.clone())).collect();
    let idf = retriever.indexes().idf(&question_terms, lang).await?;
    let terms: Vec<(String, f64)> = question_terms.into_iter().zip(idf.into_iter().map(f64::from)).collect();
    let total = terms.iter().map(|(_, idf)| idf).sum();
    let question_terms = QuestionTerms { terms, total };
    let asked = asked_type(question);

    let passages: Vec<&Passage> = results.passages.iter().take(SENTENCE_PASSAGES).collect();
    let mut passage_coverage: f64 = 0.0;
    for passage in passages.iter().take(3) {
        let terms = analyze(&passage.chunk.text, lang).into_iter().collect();
        passage_coverage = passage_coverage.max(question_terms.coverage(&terms));
    }
    // Candidates: every sentence of the passages, the lexically best embedded.
    let mut candidates: Vec<(f64, usize, String)> = Vec::new();
    for (p, passage) in passages.iter().enumerate() {
        for (s, unit) in answer::units(&passage.chunk.text).into_iter().enumerate() {
            // A chunk that starts in the middle of a sentence starts with its lowercase tail.
            if s == 0 && unit.starts_with(char::is_lowercase) {
                continue;
            }
            let coverage = question_terms.coverage(&analyze(&unit, lang).into_iter().collect());
            candidates.push((coverage, p, unit));
        }
    }
    candidates.sort_by(|a, b| (b.0 + 0.05 / (b.1 as f64 + 1.0)).total_cmp(&(a.0 + 0.05 / (a.1 as f64 + 1.0))));
    candidates.truncate(MAX_CANDIDATES);
    let texts: Vec<String> = candidates
        .iter()
        .map(|(_, _, unit)| unit.split_whitespace().take(EMBEDDED_WORDS).collect::<Vec<_>>().join(" "))
        .collect();
    let vectors = if texts.is_empty() { Vec::new() } else { retriever.embed_texts(texts).await? };

    let signals = &results.signals;
    let dense = |i: usize| signals.dense_scores.get(i).or(signals.dense_scores.last()).copied().map_or(0.0, f64::from);
    let base = Features {
        dense_top: dense(0),
        dense_margin_2: dense(0) - dense(1),
        dense_margin_5: dense(0) - dense(4),
        bm25_top_per_idf: signals.bm25_score.map_or(0.0, |s| f64::from(s) / question_terms.total.max(1.0)),
        engines_agree: if signals.engines_agree { 1.0 } else { 0.0 },
        passage_coverage,
        question_terms_log: (1.0 + question_terms.terms.len() as f64).ln(),
        ..Features::default()
    };
    let with_sentence = |coverage: f64, similarity: f64, holds_type: Option<bool>| Features {
        sentence_coverage: coverage,
        sentence_similarity: similarity,
        asked_type_missing: if holds_type == Some(false) { 1.0 } else { 0.0 },
        asked_type_present: if holds_type == Some(true) { 1.0 } else { 0.0 },
        ..base
    };
    let mut sentences: Vec<ScoredSentence> = candidates
        .into_iter()
        .zip(vectors)
        .map(|((coverage, passage, text), vector)| {
            let similarity = dot(&vector, &results.query_vector);
            let holds_asked_type = asked.map(|kind| holds(&text, kind));
            ScoredSentence {
                passage,
                text,
                coverage,
                similarity,
                holds_asked_type,
                answerability: model.probability(&with_sentence(coverage, similarity, holds_asked_type)),
            }
        })
        .collect();
    // The question's best sentence: the most similar and best covering, as fitted.
    sentences.sort_by(|a, b| b.relevance().total_cmp(&a.relevance()));
    let features = sentences.first().map_or(with_sentence(0.0, 0.0, asked.map(|_| false)), |s| {
        with_sentence(s.coverage, s.similarity, s.holds_asked_type)
    });
    sentences.sort_by(|a, b| b.extraction_rank().total_cmp(&a.extraction_rank()));
    let answerability = if results.passages.is_empty() { 0.0 } else { model.probability(&features) };
    Ok(Evidence { features, answerability, threshold, sentences })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_words_name_the_asked_type() {
        assert_eq!(asked_type("How many vacation days do I get?"), Some(AskedType::Quantity));
        assert_eq!(asked_type("¿Cuántos días de vacaciones tengo?"), Some(AskedType::Quantity));
        assert_eq!(asked_type("When is the open enrollment period?"), Some(AskedType::Date));
        assert_eq!(asked_type("¿Cuándo cierra la inscripción?"), Some(AskedType::Date));
        assert_eq!(asked_type("Who approves travel over $5,000?"), Some(AskedType::Name));
        assert_eq!(asked_type("What command rolls back the checkout service?"), Some(AskedType::Command));
        assert_eq!(asked_type("What is the remote work policy?"), None);
    }

    #[test]
    fn question_words_are_not_content() {
        assert_eq!(content_words("¿Cuántos días de vacaciones tengo?"), "días de vacaciones");
        assert_eq!(content_words("How many vacation days do I get?"), "vacation days");
    }

    #[test]
    fn sentences_hold_values_of_a_kind() {
        assert!(holds("Employees get twenty days of leave.", AskedType::Quantity));
        assert!(holds("Enrollment closes on March 31.", AskedType::Date));
        assert!(holds("Requests go to the Finance Director for approval.", AskedType::Name));
        assert!(!holds("Leave is generous and flexible.", AskedType::Quantity));
        assert!(!holds("requests are approved by your manager.", AskedType::Name));
    }

    #[test]
    fn extraction_takes_sentences_that_pass_on_their_own_without_repeats() {
        // Relevance and answerability move together here.
        let sentence = |text: &str, passage: usize, answerability: f64| ScoredSentence {
            passage,
            text: text.into(),
            coverage: answerability,
            similarity: 0.0,
            holds_asked_type: None,
            answerability,
        };
        let evidence = Evidence {
            features: Features::default(),
            answerability: 0.9,
            threshold: 0.5,
            sentences: vec![
                sentence("Employees get 25 days of paid vacation per year.", 0, 0.9),
                sentence("Employees get 25 days of paid vacation each year.", 1, 0.88),
                sentence("Sick leave is separate from vacation days.", 2, 0.85),
                // Within the margin only for a passage already cited.
                sentence("Holidays follow the local calendar of each office.", 3, 0.72),
                sentence("Unused days expire on March 31.", 0, 0.7),
                sentence("The office is closed on public holidays.", 0, 0.4),
            ],
        };
        let chosen: Vec<&str> = evidence.answering_sentences(3).iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            chosen,
            [
                "Employees get 25 days of paid vacation per year.",
                "Sick leave is separate from vacation days.",
                "Unused days expire on March 31."
            ]
        );
        assert_eq!(evidence.answering_sentences(1).len(), 1);
    }

    #[test]
    fn the_built_in_model_loads_and_is_monotone_in_its_evidence() {
        let model = AnswerabilityModel::built_in();
        let weak = Features { dense_top: 0.1, sentence_coverage: 0.1, sentence_similarity: 0.1, ..Features::default() };
        let strong = Features { dense_top: 0.8, sentence_coverage: 0.9, sentence_similarity: 0.8, ..weak };
        assert!(model.probability(&strong) > model.probability(&weak));
    }

    #[test]
    fn a_model_for_other_features_is_refused_with_the_reason() {
        let mut value: serde_json::Value = serde_json::from_str(BUILT_IN).unwrap();
        value["features"][0] = "best_dense".into();
        let error = AnswerabilityModel::parse(&value.to_string(), "m.json").unwrap_err().to_string();
        assert!(error.contains("m.json") && error.contains("lore eval calibrate"), "{error}");
    }
}
