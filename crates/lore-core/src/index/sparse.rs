//! BM25 as sparse vectors, for the keyword half of search on a Qdrant server.
//!
//! The embedded mode keeps Tantivy. On a server the keyword index has to be shared by every
//! replica, so each chunk's point carries a second, sparse vector (`bm25`) next to its dense
//! one, and Qdrant scores it. The terms come from the same analyzers as Tantivy's fields
//! (English and Spanish stemming, accents folded), and the vector reproduces Tantivy's
//! scoring, field by field:
//!
//! * Each of Tantivy's four text fields (title and body, per language) is a namespace of term
//!   ids: a term id is a 32-bit hash of (field, term), so a term's document frequency is
//!   counted per field, as Tantivy counts it.
//! * A document's value for a term is BM25's term-frequency part,
//!   `tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))`, with Tantivy's `k1 = 1.2`, `b = 0.75`.
//! * The collection's `idf` modifier makes Qdrant multiply by
//!   `ln(1 + (N − df + 0.5)/(df + 0.5))` at query time, over the points of the collection:
//!   the same formula as Tantivy's, kept current by the server as documents come and go.
//! * A query's value for a term is the field's boost (title 1, body 1; 0.6 of that for the
//!   language the query is not in), the boosts the Tantivy query uses.
//!
//! What differs from Tantivy, and why it is small (measured in issue 18's note): `avg_len` is
//! a constant per field rather than the corpus's running mean (a document's vector cannot
//! change when others arrive); Tantivy quantizes field lengths to one byte; a word the
//! analyzer splits into several tokens (`e-mail`, `3.5`) is a phrase in Tantivy and separate
//! terms here; two terms whose 32-bit ids collide share a document frequency.

use std::collections::HashMap;

use tantivy::tokenizer::TokenStream;

use crate::lang::Lang;
use crate::types::Chunk;

/// The name of the sparse vector in the Qdrant collection.
pub const SPARSE_VECTOR: &str = "bm25";

/// Tantivy's BM25 constants.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// Mean lengths in analysed tokens of a chunk's title field (title and headings) and body,
/// per language, which BM25 normalizes field lengths by. Tantivy takes them from the corpus as
/// it stands; a sparse vector is weighted once, when written, so a collection records the
/// averages of its first large batch (or of the whole corpus, for `lore migrate`) and weights
/// every chunk with them (see `Indexes::settle_keyword_averages`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AverageLengths {
    pub title: [f32; 2],
    pub body: [f32; 2],
}

impl Default for AverageLengths {
    /// Near the mean over the development corpora (chunks of 120 to 200 model tokens) of each
    /// corpus's average: English titles 3.5 to 13.5 tokens (mean 8.2), bodies 66 to 103 (mean
    /// 86), over ClapNQ, Contoso HR, the document families, the Sourcegraph handbook and the
    /// samples; Spanish titles 1.8 to 12.1 (mean 5.6), bodies 62 to 79 (mean 68), over SQuAD-es,
    /// the samples and ClapNQ. A corpus statistic, not fitted to any metric; issue 18's note
    /// measures what the difference from a corpus's own average costs.
    fn default() -> Self {
        AverageLengths { title: [8.0, 6.0], body: [90.0, 70.0] }
    }
}

/// Chunks of a language needed to measure its averages; below, the defaults stand.
const MEASURE_MIN_CHUNKS: usize = 200;

impl AverageLengths {
    /// The averages of `chunks`, per language; a language with fewer than 200 chunks keeps
    /// the default. `None` when no language has enough.
    pub fn measure<'a>(chunks: impl IntoIterator<Item = &'a Chunk>) -> Option<AverageLengths> {
        let mut sums = [[0usize; 3]; 2];
        for chunk in chunks {
            let title = analyze(&chunk.title, chunk.lang).len()
                + chunk.heading_path.iter().map(|h| analyze(h, chunk.lang).len()).sum::<usize>();
            let sum = &mut sums[slot(chunk.lang)];
            sum[0] += 1;
            sum[1] += title;
            sum[2] += analyze(&chunk.text, chunk.lang).len();
        }
        let mut averages = AverageLengths::default();
        let mut measured = false;
        for (slot, [n, title, body]) in sums.into_iter().enumerate() {
            if n >= MEASURE_MIN_CHUNKS {
                averages.title[slot] = (title as f32 / n as f32).max(1.0);
                averages.body[slot] = (body as f32 / n as f32).max(1.0);
                measured = true;
            }
        }
        measured.then_some(averages)
    }
}

fn slot(lang: Lang) -> usize {
    match lang {
        Lang::En => 0,
        Lang::Es => 1,
    }
}

/// Field boosts of the keyword query, here and in Tantivy's. The title field (a document's
/// title and the chunk's heading path) counts like the body: it is scored on its own, with its
/// own IDF and length, and every chunk of a document repeats it, so a boost lets a title match
/// outrank the passage that answers. A boost of 2 cost BM25 nDCG@10 on every development set
/// but one (contoso-hr 0.928 → 0.888, handbook 0.640 → 0.596; issue 20's note).
pub(crate) const TITLE_BOOST: f32 = 1.0;
/// The other language's analyzer matches its fields at this share of the boosts.
pub(crate) const OTHER_LANGUAGE_WEIGHT: f32 = 0.6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Title,
    Body,
}

/// A sparse vector: term ids (unique) and their weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    fn from_map(map: HashMap<u32, f32>) -> Self {
        let mut pairs: Vec<(u32, f32)> = map.into_iter().collect();
        pairs.sort_unstable_by_key(|(id, _)| *id);
        let (indices, values) = pairs.into_iter().unzip();
        SparseVector { indices, values }
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The weight of `id`, if present.
    pub fn get(&self, id: u32) -> Option<f32> {
        self.indices.iter().position(|&i| i == id).map(|p| self.values[p])
    }
}

/// The terms of `text` in `lang`'s analyzer, in order (what answerability compares).
pub fn analyze(text: &str, lang: Lang) -> Vec<String> {
    let mut terms = Vec::new();
    super::keyword::text_analyzer(lang).token_stream(text).process(&mut |token| terms.push(token.text.clone()));
    terms
}

/// The id of `term` in a field: FNV-1a (32 bits) of the field's tag and the term.
fn term_id(field: Field, lang: Lang, term: &str) -> u32 {
    let tag: [u8; 3] = [
        match field {
            Field::Title => b't',
            Field::Body => b'b',
        },
        match lang {
            Lang::En => b'e',
            Lang::Es => b's',
        },
        b':',
    ];
    let mut hash: u32 = 0x811c_9dc5;
    for byte in tag.iter().chain(term.as_bytes()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The id under which a body term of `lang` is stored: its document frequency is what
/// answerability's IDF counts.
pub fn body_term_id(lang: Lang, term: &str) -> u32 {
    term_id(Field::Body, lang, term)
}

/// BM25's term-frequency part for a field of `len` tokens.
fn tf_norm(tf: f32, len: f32, avg_len: f32) -> f32 {
    tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg_len))
}

/// A chunk's sparse vector: its title field (title and headings) and its body, in the
/// chunk's language.
pub fn document_vector(chunk: &Chunk) -> SparseVector {
    document_vector_with(chunk, &AverageLengths::default())
}

/// [`document_vector`] with given average lengths.
pub fn document_vector_with(chunk: &Chunk, averages: &AverageLengths) -> SparseVector {
    let lang = chunk.lang;
    let mut map = HashMap::new();
    let mut title_terms = analyze(&chunk.title, lang);
    for heading in &chunk.heading_path {
        title_terms.extend(analyze(heading, lang));
    }
    let (avg_title, avg_body) = (averages.title[slot(lang)], averages.body[slot(lang)]);
    for (field, terms, avg_len) in
        [(Field::Title, title_terms, avg_title), (Field::Body, analyze(&chunk.text, lang), avg_body)]
    {
        let len = terms.len() as f32;
        let mut tf: HashMap<String, f32> = HashMap::new();
        for term in terms {
            *tf.entry(term).or_default() += 1.0;
        }
        for (term, tf) in tf {
            let id = term_id(field, lang, &term);
            // A collision within the chunk keeps the larger weight.
            let value = tf_norm(tf, len, avg_len);
            map.entry(id).and_modify(|v: &mut f32| *v = v.max(value)).or_insert(value);
        }
    }
    SparseVector::from_map(map)
}

/// A question's sparse vector: each word through both languages' analyzers, every field,
/// with Tantivy's boosts. A word the question repeats counts once. `None` when no word
/// yields a term (nothing to search for).
pub fn query_vector(query: &str, query_lang: Lang) -> Option<SparseVector> {
    let mut map: HashMap<u32, f32> = HashMap::new();
    for lang in Lang::ALL {
        let weight = if lang == query_lang { 1.0 } else { OTHER_LANGUAGE_WEIGHT };
        for word in query.split_whitespace() {
            for term in analyze(word, lang) {
                for (field, boost) in [(Field::Title, TITLE_BOOST * weight), (Field::Body, weight)] {
                    map.insert(term_id(field, lang, &term), boost);
                }
            }
        }
    }
    (!map.is_empty()).then(|| SparseVector::from_map(map))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::acl::{AccessScope, Principal, PrincipalSet};
    use crate::index::{KeywordEntry, KeywordIndex};

    fn chunk(doc: &str, lang: Lang, title: &str, text: &str) -> Chunk {
        Chunk {
            id: Chunk::make_id(doc, 0, text),
            doc_id: doc.to_owned(),
            ordinal: 0,
            title: title.to_owned(),
            heading_path: vec![],
            page: None,
            char_start: 0,
            char_end: text.len(),
            lang,
            text: text.to_owned(),
            content_hash: String::new(),
        }
    }

    /// Scores as a Qdrant server computes them with the `idf` modifier: for each query term,
    /// query value × idf over the collection × document value.
    fn qdrant_scores(docs: &[(Chunk, SparseVector)], query: &SparseVector) -> BTreeMap<String, f32> {
        let n = docs.len() as f32;
        let mut scores = BTreeMap::new();
        for (chunk, vector) in docs {
            let mut score = 0.0;
            let mut matched = false;
            for (id, weight) in query.indices.iter().zip(&query.values) {
                if let Some(value) = vector.get(*id) {
                    let df = docs.iter().filter(|(_, v)| v.get(*id).is_some()).count() as f32;
                    score += weight * ((n - df + 0.5) / (df + 0.5) + 1.0).ln() * value;
                    matched = true;
                }
            }
            if matched {
                scores.insert(chunk.id.clone(), score);
            }
        }
        scores
    }

    /// With the corpus's own average lengths, the encoding reproduces Tantivy's BM25 scores on
    /// a bilingual corpus: the same chunks match, with the same scores and the same best chunk.
    #[test]
    fn sparse_bm25_ranks_like_tantivy() {
        let texts = [
            ("vac", Lang::En, "Vacation policy", "Employees get 25 vacation days a year. Unused days carry over."),
            ("exp", Lang::En, "Travel expenses", "Submit travel expenses within 30 days with the receipts."),
            ("mail", Lang::En, "Email setup", "Set up the company email on a new phone with the app."),
            ("pay", Lang::En, "Payroll", "Salaries are paid on the 25th. Vacation days are paid in March."),
            ("vacs", Lang::Es, "Política de vacaciones", "Los empleados tienen 25 días de vacaciones al año."),
            ("gas", Lang::Es, "Gastos de viaje", "Envía los gastos de viaje en 30 días a finanzas."),
            ("rem", Lang::En, "Remote work", "You can work remotely two days a week from home."),
            ("onb", Lang::En, "Onboarding", "New hires get a laptop, a badge and an account on day one."),
        ];
        let chunks: Vec<Chunk> = texts.iter().map(|(d, l, t, x)| chunk(d, *l, t, x)).collect();
        let dir = tempfile::tempdir().unwrap();
        let tantivy = KeywordIndex::open(dir.path(), true).unwrap();
        let acl = vec!["everyone".to_owned()];
        let entries: Vec<KeywordEntry<'_>> = chunks.iter().map(|chunk| KeywordEntry { chunk, acl: &acl }).collect();
        tantivy.add(&entries).unwrap();
        tantivy.commit().unwrap();
        // Tantivy's averages: a field's tokens over every document (those of the other
        // language count as empty).
        let mut averages = AverageLengths { title: [0.0; 2], body: [0.0; 2] };
        for c in &chunks {
            averages.title[slot(c.lang)] += analyze(&c.title, c.lang).len() as f32 / chunks.len() as f32;
            averages.body[slot(c.lang)] += analyze(&c.text, c.lang).len() as f32 / chunks.len() as f32;
        }
        let docs: Vec<(Chunk, SparseVector)> =
            chunks.iter().map(|c| (c.clone(), document_vector_with(c, &averages))).collect();
        let scope =
            AccessScope::impersonate_for_operator(PrincipalSet::from_principals([Principal::everyone()]), "test");
        let questions = [
            "How many vacation days do I get?",
            "travel expenses receipts",
            "email on my phone",
            "when are salaries paid",
            "¿Cuántos días de vacaciones tengo?",
            "gastos de viaje",
            "work from home",
            "laptop for new hires",
            "Vacation",
        ];
        for question in questions {
            let lang = Lang::detect(question);
            let expected = tantivy.search(question, lang, &scope, 100).unwrap();
            let query = query_vector(question, lang).unwrap();
            let got = qdrant_scores(&docs, &query);
            let expected_ids: std::collections::BTreeSet<&String> = expected.iter().map(|h| &h.chunk_id).collect();
            let got_ids: std::collections::BTreeSet<&String> = got.keys().collect();
            assert_eq!(expected_ids, got_ids, "{question:?}");
            let best = got.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(id, _)| id).unwrap();
            assert_eq!(best, &expected[0].chunk_id, "{question:?}: top chunk differs");
            for hit in &expected {
                // Tantivy stores field lengths in a byte (exact for these short fields).
                let relative = (got[&hit.chunk_id] - hit.score).abs() / hit.score;
                assert!(relative < 0.01, "{question:?}: {} vs {} for {}", got[&hit.chunk_id], hit.score, hit.chunk_id);
            }
        }
    }

    #[test]
    fn averages_are_measured_per_language_from_enough_chunks() {
        let en: Vec<Chunk> =
            (0..250).map(|n| chunk(&format!("e{n}"), Lang::En, "Two words", "one two three four")).collect();
        let es: Vec<Chunk> = (0..20).map(|n| chunk(&format!("s{n}"), Lang::Es, "Uno", "uno dos")).collect();
        let measured = AverageLengths::measure(en.iter().chain(&es)).unwrap();
        assert_eq!((measured.title[0], measured.body[0]), (2.0, 4.0));
        let defaults = AverageLengths::default();
        assert_eq!(
            (measured.title[1], measured.body[1]),
            (defaults.title[1], defaults.body[1]),
            "too few Spanish chunks"
        );
        assert!(AverageLengths::measure(&en[..199]).is_none());
    }

    #[test]
    fn queries_without_terms_find_nothing_and_repeats_count_once() {
        for nothing in ["", "  ", "?!", "- -", "¿ ?"] {
            assert!(query_vector(nothing, Lang::En).is_none(), "{nothing:?}");
        }
        assert_eq!(query_vector("vacation days", Lang::En), query_vector("Vacation vacation DAYS days?", Lang::En));
        let query = query_vector("vacation", Lang::En).unwrap();
        let mut sorted = query.indices.clone();
        sorted.dedup();
        assert_eq!(sorted, query.indices, "indices are unique and sorted");
        let (en, es) = (&analyze("vacation", Lang::En)[0], &analyze("vacation", Lang::Es)[0]);
        assert_eq!(query.get(term_id(Field::Title, Lang::En, en)), Some(TITLE_BOOST));
        assert_eq!(query.get(term_id(Field::Body, Lang::En, en)), Some(1.0));
        assert_eq!(query.get(term_id(Field::Body, Lang::Es, es)), Some(0.6));
    }
}
