//! BM25 keyword index in Tantivy, with per-language analyzers (English and Spanish stemming)
//! and the ACL principals indexed as raw tokens so the permission filter runs inside the
//! query, never after it.

use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, TokenStream,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

use super::sparse::{OTHER_LANGUAGE_WEIGHT, TITLE_BOOST};
use crate::acl::AccessScope;
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::types::{Chunk, ScoredChunkId};

/// What the keyword index stores for one chunk.
pub struct KeywordEntry<'a> {
    pub chunk: &'a Chunk,
    pub acl: &'a [String],
}

#[derive(Clone, Copy)]
struct Fields {
    chunk_id: Field,
    doc_id: Field,
    acl: Field,
    lang: Field,
    title: [Field; 2],
    body: [Field; 2],
}

pub struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    writer: Option<Mutex<IndexWriter>>,
    fields: Fields,
}

fn analyzer_name(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "lore_en",
        Lang::Es => "lore_es",
    }
}

fn lang_slot(lang: Lang) -> usize {
    match lang {
        Lang::En => 0,
        Lang::Es => 1,
    }
}

fn build_schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let chunk_id = builder.add_text_field("chunk_id", STRING | STORED);
    let doc_id = builder.add_text_field("doc_id", STRING | STORED);
    let acl = builder.add_text_field("acl", STRING | STORED);
    let lang = builder.add_text_field("lang", STRING | STORED);
    let text = |lang: Lang| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analyzer_name(lang))
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
    };
    let title =
        [builder.add_text_field("title_en", text(Lang::En)), builder.add_text_field("title_es", text(Lang::Es))];
    let body = [builder.add_text_field("body_en", text(Lang::En)), builder.add_text_field("body_es", text(Lang::Es))];
    (builder.build(), Fields { chunk_id, doc_id, acl, lang, title, body })
}

/// The analyzer of a language's text fields: words split on non-alphanumerics, long ones
/// dropped, lowercased, accents folded, stemmed. The sparse BM25 encoder for a Qdrant server
/// uses the same, so both keyword paths see the same terms.
pub(crate) fn text_analyzer(lang: Lang) -> TextAnalyzer {
    let stemmer = match lang {
        Lang::En => Language::English,
        Lang::Es => Language::Spanish,
    };
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(Stemmer::new(stemmer))
        .build()
}

fn register_analyzers(index: &Index) {
    for lang in Lang::ALL {
        index.tokenizers().register(analyzer_name(lang), text_analyzer(lang));
    }
}

impl KeywordIndex {
    /// Opens (or creates) the index in `dir`. With `writable`, takes Tantivy's writer lock:
    /// one writing process per data folder.
    pub fn open(dir: &Path, writable: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (schema, fields) = build_schema();
        let directory =
            tantivy::directory::MmapDirectory::open(dir).map_err(|e| Error::Keyword(tantivy::TantivyError::from(e)))?;
        let index = Index::open_or_create(directory, schema)?;
        register_analyzers(&index);
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let writer = if writable { Some(Mutex::new(index.writer(64 * 1024 * 1024)?)) } else { None };
        Ok(KeywordIndex { index, reader, writer, fields })
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>> {
        let writer = self.writer.as_ref().ok_or_else(|| {
            Error::Keyword(tantivy::TantivyError::InvalidArgument("keyword index opened read-only".into()))
        })?;
        Ok(writer.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stages deletion of every chunk of these documents (visible after [`commit`](Self::commit)).
    pub fn delete_documents(&self, doc_ids: &[String]) -> Result<()> {
        let writer = self.writer()?;
        for id in doc_ids {
            writer.delete_term(Term::from_field_text(self.fields.doc_id, id));
        }
        Ok(())
    }

    /// Stages chunks (visible after [`commit`](Self::commit)).
    pub fn add(&self, entries: &[KeywordEntry<'_>]) -> Result<()> {
        let writer = self.writer()?;
        let f = self.fields;
        for entry in entries {
            let chunk = entry.chunk;
            let slot = lang_slot(chunk.lang);
            let mut document = doc!(
                f.chunk_id => chunk.id.as_str(),
                f.doc_id => chunk.doc_id.as_str(),
                f.lang => chunk.lang.code(),
                f.title[slot] => chunk.title.as_str(),
                f.body[slot] => chunk.text.as_str(),
            );
            for heading in &chunk.heading_path {
                document.add_text(f.title[slot], heading);
            }
            for principal in entry.acl {
                document.add_text(f.acl, principal);
            }
            writer.add_document(document)?;
        }
        Ok(())
    }

    /// Commits staged deletions and additions atomically and makes them searchable.
    pub fn commit(&self) -> Result<()> {
        self.writer()?.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Picks up commits made by another handle or process.
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    fn acl_filter(&self, scope: &AccessScope) -> Option<Box<dyn Query>> {
        let principals = scope.filter_principals()?;
        let clauses: Vec<(Occur, Box<dyn Query>)> = principals
            .iter()
            .map(|p| {
                let term = Term::from_field_text(self.fields.acl, p);
                (Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>)
            })
            .collect();
        let filter: Box<dyn Query> =
            if clauses.is_empty() { Box::new(EmptyQuery) } else { Box::new(BooleanQuery::new(clauses)) };
        Some(Box::new(ConstScoreQuery::new(filter, 0.0)))
    }

    /// BM25 search over title and body in both languages, filtered by `scope` inside the
    /// query. `query_lang` boosts the fields analyzed for the query's language.
    ///
    /// The user's text never reaches Tantivy's query-parser syntax: see
    /// [`text_query`](Self::text_query). A query with no searchable word finds nothing.
    /// (Issue 12: through `QueryParser`, an excluded phrase such as `vacation -"carry over"`
    /// tripped an assertion in Tantivy's phrase scorer, and a few hundred nested `(`
    /// overflowed the parser's stack and aborted the process.)
    pub fn search(
        &self,
        query: &str,
        query_lang: Lang,
        scope: &AccessScope,
        limit: usize,
    ) -> Result<Vec<ScoredChunkId>> {
        match self.text_query(query, query_lang)? {
            Some(text_query) => self.execute(text_query, scope, limit),
            None => Ok(Vec::new()),
        }
    }

    /// The scoring part of a search, built from analysed terms only.
    ///
    /// The text is split into words on whitespace; each word goes through the analyzer of
    /// each of the four text fields, exactly as document text does at indexing time. One
    /// token gives a [`TermQuery`], several tokens (`e-mail`, `3.5`) a [`PhraseQuery`] at the
    /// tokens' positions, none gives nothing. These are the queries `QueryParser` builds for
    /// a bare word, with the same field boosts (`sparse::TITLE_BOOST` for the title, 1 for the
    /// body; 1.0 for the query's language and 0.6 for the other), so ordinary questions rank
    /// as they did with the parser. Every clause is `Should`: there are no operators, fields, ranges, phrases,
    /// exclusions, wildcards or boosts a user can spell, so characters like `-`, `"`, `:`,
    /// `*`, `AND` or `(` are just text the analyzers drop or keep. Returns `None` when no
    /// word yields a token.
    fn text_query(&self, query: &str, query_lang: Lang) -> Result<Option<Box<dyn Query>>> {
        let f = self.fields;
        let mut analyzers = Vec::with_capacity(Lang::ALL.len());
        for lang in Lang::ALL {
            let analyzer = self.analyzer(lang)?;
            let weight = if lang == query_lang { 1.0 } else { OTHER_LANGUAGE_WEIGHT };
            let slot = lang_slot(lang);
            analyzers.push((analyzer, [(f.title[slot], TITLE_BOOST * weight), (f.body[slot], weight)]));
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut tokens: Vec<(usize, String)> = Vec::new();
        // A word the question repeats counts once, so repeating a word cannot skew the
        // ranking. (The parser counted repeats, except that it dropped the word after a
        // lowercase "to", which it read as a range keyword; on the sample set's BM25 runs this
        // rule reproduces its results exactly.)
        let mut seen: std::collections::HashSet<(usize, Vec<(usize, String)>)> = std::collections::HashSet::new();
        for word in query.split_whitespace() {
            for (slot, (analyzer, fields)) in analyzers.iter_mut().enumerate() {
                tokens.clear();
                analyzer.token_stream(word).process(&mut |token| tokens.push((token.position, token.text.clone())));
                if tokens.is_empty() || !seen.insert((slot, tokens.clone())) {
                    continue;
                }
                for &(field, boost) in fields.iter() {
                    let query: Box<dyn Query> = match tokens.as_slice() {
                        [] => continue,
                        [(_, text)] => {
                            Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::WithFreqs))
                        }
                        several => Box::new(PhraseQuery::new_with_offset(
                            several
                                .iter()
                                .map(|(position, text)| (*position, Term::from_field_text(field, text)))
                                .collect(),
                        )),
                    };
                    clauses.push((Occur::Should, Box::new(BoostQuery::new(query, boost))));
                }
            }
        }
        Ok(if clauses.is_empty() { None } else { Some(Box::new(BooleanQuery::new(clauses))) })
    }

    /// Runs `text_query` as a required clause next to the ACL filter and the document
    /// restriction (both required, non-scoring) and resolves the hits to chunk ids.
    fn execute(&self, text_query: Box<dyn Query>, scope: &AccessScope, limit: usize) -> Result<Vec<ScoredChunkId>> {
        if limit == 0 {
            // TopDocs panics on a zero limit.
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut clauses = vec![(Occur::Must, text_query)];
        if let Some(filter) = self.acl_filter(scope) {
            clauses.push((Occur::Must, filter));
        }
        if let Some(doc_ids) = scope.document_restriction() {
            let terms = doc_ids.iter().map(|id| Term::from_field_text(f.doc_id, id));
            let within: Box<dyn Query> = Box::new(tantivy::query::TermSetQuery::new(terms));
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(within, 0.0))));
        }
        let query: Box<dyn Query> = Box::new(BooleanQuery::new(clauses));
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut results = Vec::with_capacity(hits.len());
        for (score, address) in hits {
            let stored: TantivyDocument = searcher.doc(address)?;
            let text_of = |field| stored.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            results.push(ScoredChunkId { chunk_id: text_of(f.chunk_id), doc_id: text_of(f.doc_id), score });
        }
        Ok(results)
    }

    fn analyzer(&self, lang: Lang) -> Result<TextAnalyzer> {
        let name = analyzer_name(lang);
        self.index.tokenizers().get(name).ok_or_else(|| {
            Error::Keyword(tantivy::TantivyError::InvalidArgument(format!("analyzer {name} is not registered")))
        })
    }

    /// BM25's inverse document frequency of each analysed term in the chunk bodies of
    /// `lang`, over every chunk in the index (as BM25 itself counts, ACLs aside):
    /// `ln(1 + (n - df + 0.5) / (df + 0.5))`.
    pub fn idf(&self, terms: &[String], lang: Lang) -> Result<Vec<f32>> {
        let searcher = self.reader.searcher();
        let n = searcher.num_docs() as f32;
        let field = self.fields.body[lang_slot(lang)];
        terms
            .iter()
            .map(|t| {
                let df = searcher.doc_freq(&Term::from_field_text(field, t))? as f32;
                Ok((1.0 + (n - df + 0.5) / (df + 0.5)).ln())
            })
            .collect()
    }

    /// Every chunk id with its ACL (admin tooling: consistency checks and tests).
    pub fn all_chunks(&self, scope: &AccessScope) -> Result<Vec<(String, Vec<String>)>> {
        if scope.filter_principals().is_some() {
            return Err(Error::Keyword(tantivy::TantivyError::InvalidArgument(
                "all_chunks needs an unrestricted scope".into(),
            )));
        }
        let searcher = self.reader.searcher();
        let mut out = Vec::new();
        for segment in searcher.segment_readers() {
            let store = segment.get_store_reader(64).map_err(|e| Error::Keyword(tantivy::TantivyError::from(e)))?;
            let alive = segment.alive_bitset();
            for doc_id in 0..segment.max_doc() {
                if alive.is_some_and(|bits| !bits.is_alive(doc_id)) {
                    continue;
                }
                let stored: TantivyDocument = store.get(doc_id)?;
                let chunk_id = stored.get_first(self.fields.chunk_id).and_then(|v| v.as_str()).unwrap_or_default();
                let acl = stored.get_all(self.fields.acl).filter_map(|v| v.as_str().map(str::to_owned)).collect();
                out.push((chunk_id.to_owned(), acl));
            }
        }
        Ok(out)
    }

    pub fn num_chunks(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tantivy::query::QueryParser;

    use super::*;
    use crate::acl::{Principal, PrincipalSet};

    /// A small bilingual index; every chunk is readable by `everyone` except the payroll one.
    fn fixture() -> (tempfile::TempDir, KeywordIndex) {
        let dir = tempfile::tempdir().unwrap();
        let index = KeywordIndex::open(dir.path(), true).unwrap();
        let docs: [(&str, Lang, &str, &str, &[&str]); 8] = [
            (
                "vacation",
                Lang::En,
                "Vacation policy",
                "Employees get 25 vacation days a year. Unused days carry over to the next year, up to 5 days.",
                &["everyone"],
            ),
            (
                "expenses",
                Lang::En,
                "Travel expenses",
                "Submit travel expenses within 30 days. The per-diem is 3.5% higher abroad; e-mail receipts to finance.",
                &["everyone"],
            ),
            (
                "email",
                Lang::En,
                "E-mail and calendar",
                "How do I set up my e-mail on a new phone? Use the company app and your SSO password.",
                &["everyone"],
            ),
            (
                "payroll",
                Lang::En,
                "Payroll calendar",
                "Salaries are paid on the 25th. Vacation days that carry over are paid out in March.",
                &["group:hr"],
            ),
            (
                "vacaciones",
                Lang::Es,
                "Política de vacaciones",
                "Los empleados tienen 25 días de vacaciones al año. Los días no usados se pueden traspasar al año siguiente.",
                &["everyone"],
            ),
            (
                "gastos",
                Lang::Es,
                "Gastos de viaje",
                "Envía los gastos de viaje en 30 días por correo electrónico (e-mail) a finanzas.",
                &["everyone"],
            ),
            (
                "onboarding",
                Lang::En,
                "Onboarding checklist",
                "New hires: laptop, badge, SSO account, benefits enrollment; ask your manager what's next.",
                &["everyone"],
            ),
            (
                "remote",
                Lang::En,
                "Remote work",
                "You can work remotely 2 days a week. Version 3.5 of the VPN client is required.",
                &["everyone"],
            ),
        ];
        let chunks: Vec<(Chunk, Vec<String>)> = docs
            .iter()
            .flat_map(|(doc_id, lang, title, text, acl)| {
                // Two chunks per document so that scores vary within a document too.
                let halves = text.split_inclusive(". ").collect::<Vec<_>>();
                halves
                    .into_iter()
                    .enumerate()
                    .map(|(ordinal, part)| {
                        let chunk = Chunk {
                            id: Chunk::make_id(doc_id, ordinal, part),
                            doc_id: (*doc_id).to_owned(),
                            ordinal,
                            title: (*title).to_owned(),
                            heading_path: vec![(*title).to_owned()],
                            page: None,
                            char_start: 0,
                            char_end: part.len(),
                            lang: *lang,
                            text: part.to_owned(),
                            content_hash: String::new(),
                        };
                        (chunk, acl.iter().map(|p| (*p).to_owned()).collect())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let entries: Vec<KeywordEntry<'_>> =
            chunks.iter().map(|(chunk, acl)| KeywordEntry { chunk, acl: acl.as_slice() }).collect();
        index.add(&entries).unwrap();
        index.commit().unwrap();
        (dir, index)
    }

    fn everyone() -> AccessScope {
        AccessScope::impersonate_for_operator(PrincipalSet::from_principals([Principal::everyone()]), "keyword tests")
    }

    /// Issue 12, item 6: an excluded phrase used to panic inside Tantivy's query parser.
    #[test]
    fn excluded_phrase_does_not_panic() {
        let (_dir, index) = fixture();
        for query in [r#"vacation -"carry over""#, r#"-"carry over""#, r#"vacation -"carry over" days"#] {
            for lang in Lang::ALL {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    index.search(query, lang, &everyone(), 10)
                }));
                let hits = result.unwrap_or_else(|_| panic!("search panicked for {query:?}"));
                hits.unwrap_or_else(|e| panic!("search failed for {query:?}: {e}"));
            }
        }
    }

    /// What `search` did before issue 12: the same filters around `QueryParser::parse_query_lenient`.
    fn search_with_query_parser(
        index: &KeywordIndex,
        query: &str,
        query_lang: Lang,
        scope: &AccessScope,
        limit: usize,
    ) -> Vec<ScoredChunkId> {
        let f = index.fields;
        let mut parser = QueryParser::for_index(&index.index, vec![f.title[0], f.body[0], f.title[1], f.body[1]]);
        for lang in Lang::ALL {
            let weight = if lang == query_lang { 1.0 } else { OTHER_LANGUAGE_WEIGHT };
            parser.set_field_boost(f.title[lang_slot(lang)], TITLE_BOOST * weight);
            parser.set_field_boost(f.body[lang_slot(lang)], weight);
        }
        let (text_query, _errors) = parser.parse_query_lenient(query);
        index.execute(text_query, scope, limit).unwrap()
    }

    fn by_chunk(hits: &[ScoredChunkId]) -> BTreeMap<&str, f32> {
        hits.iter().map(|hit| (hit.chunk_id.as_str(), hit.score)).collect()
    }

    fn scopes() -> Vec<(&'static str, AccessScope)> {
        let hr = PrincipalSet::from_principals([Principal::everyone(), Principal::group("hr").unwrap()]);
        vec![
            ("everyone", everyone()),
            ("hr", AccessScope::impersonate_for_operator(hr, "keyword tests")),
            ("unrestricted", AccessScope::unrestricted_for_admin_tooling("keyword tests")),
            ("within", everyone().within_documents(vec!["vacation".into(), "gastos".into(), "remote".into()])),
            ("nobody", AccessScope::impersonate_for_operator(PrincipalSet::from_principals([]), "keyword tests")),
        ]
    }

    /// The analysed-terms query ranks plain questions exactly as `QueryParser` did: same
    /// chunks, same scores (within 1e-4), for every scope kind and both query languages.
    ///
    /// The one difference on ordinary input is a question made only of two or more
    /// punctuation "words" (`? ?`, `, , ,`): see `punctuation_only_questions_find_nothing`.
    #[test]
    fn plain_questions_rank_as_with_query_parser() {
        let (_dir, index) = fixture();
        let questions = [
            "vacation",
            "vacation days",
            "How many vacation days do I get?",
            "Do unused days carry over to next year?",
            "carry over",
            "travel expenses, receipts",
            "How do I set up e-mail on my phone?",
            "e-mail",
            "per-diem abroad",
            "Is version 3.5 of the VPN required?",
            "3.5",
            "25 days",
            "remote work 2 days a week",
            "payroll calendar March",
            "vacaciones",
            "¿Cuántos días de vacaciones tengo al año?",
            "gastos de viaje por correo electrónico",
            "política de vacaciones",
            "onboarding checklist, laptop and badge",
            "salaries or vacation, not expenses",
            "new hires SSO account",
            "Vacation Policy",
            "VACATION",
            "days?",
            "?",
            "a",
            "the of and",
            "x",
            "finance e-mail 30 days 3.5% higher",
            "what's the vacation policy?",
            "I'm new, what's next?",
            "employees' vacation days",
            "is it 'carry over' or 'carry-over'?",
            "vacation ?",
            "? vacation ?",
        ];
        let mut compared = 0;
        for question in questions {
            for lang in Lang::ALL {
                for (scope_name, scope) in scopes() {
                    let new = index.search(question, lang, &scope, 100).unwrap();
                    let old = search_with_query_parser(&index, question, lang, &scope, 100);
                    let (new_map, old_map) = (by_chunk(&new), by_chunk(&old));
                    let context = format!("{question:?} lang={lang:?} scope={scope_name}\n new={new:?}\n old={old:?}");
                    assert_eq!(new_map.keys().collect::<Vec<_>>(), old_map.keys().collect::<Vec<_>>(), "{context}");
                    for (chunk, score) in &new_map {
                        assert!((score - old_map[chunk]).abs() < 1e-4, "{context}");
                    }
                    for pair in new.windows(2) {
                        assert!(pair[0].score >= pair[1].score, "{context}");
                    }
                    compared += new.len();
                }
            }
        }
        assert!(compared > 100, "the questions should find something ({compared} hits compared)");
    }

    /// The documented difference from `QueryParser` on ordinary input. With two or more
    /// words that all analyse to nothing, the parser's query is a clause of empty clauses,
    /// which it considers "all negative" and turns into `AllQuery`: every chunk the caller
    /// may read, all with the same score (feeding arbitrary chunks into fusion). Now nothing remains, so
    /// nothing is found. (A single such word gave `EmptyQuery` in both.)
    #[test]
    fn punctuation_only_questions_find_nothing() {
        let (_dir, index) = fixture();
        for question in ["? ?", ", , ,", "?? !", "- -", "¿ ?"] {
            for (scope_name, scope) in scopes() {
                let new = index.search(question, Lang::En, &scope, 100).unwrap();
                assert!(new.is_empty(), "{question:?} {scope_name}: {new:?}");
                let old = search_with_query_parser(&index, question, Lang::En, &scope, 100);
                let everything = index.execute(Box::new(tantivy::query::AllQuery), &scope, 100).unwrap();
                assert_eq!(by_chunk(&old).keys().collect::<Vec<_>>(), by_chunk(&everything).keys().collect::<Vec<_>>());
                assert!(old.iter().all(|hit| hit.score == old[0].score), "no ranking signal: {old:?}");
            }
        }
    }

    /// The words go through the same analyzers as documents: case, accents and stemming are
    /// folded, several tokens become a phrase, and what analyses to nothing finds nothing.
    #[test]
    fn words_are_analysed_like_documents() {
        let (_dir, index) = fixture();
        let docs = |query: &str| -> Vec<String> {
            let mut docs: Vec<String> =
                index.search(query, Lang::En, &everyone(), 100).unwrap().into_iter().map(|h| h.doc_id).collect();
            docs.sort();
            docs.dedup();
            docs
        };
        assert_eq!(docs("VACACIÓN"), ["vacaciones"]);
        assert_eq!(docs("Policies"), ["vacation"]);
        // "carry-over" is the phrase "carry over": the payroll chunk matches but is hidden by its ACL.
        assert_eq!(docs("carry-over"), ["vacation"]);
        assert_eq!(docs("over-carry"), Vec::<String>::new());
        for nothing in ["", "   ", "\t\n", "?!", "-", "\"\"", "()", "*", "~^:"] {
            assert!(index.search(nothing, Lang::En, &everyone(), 10).unwrap().is_empty(), "{nothing:?}");
        }
        // Operators are text: `-` excludes nothing, `AND` is the word "and".
        assert!(docs(r#"vacation -"carry over""#).contains(&"vacation".to_owned()));
        assert_eq!(docs("title_en:vacation"), Vec::<String>::new(), "field syntax is one word, not a field");
        assert_eq!(docs("expenses^100"), Vec::<String>::new(), "\"expenses 100\" is not in any document");
        assert!(index.search("vacation", Lang::En, &everyone(), 0).unwrap().is_empty());
    }

    #[rustfmt::skip]
    const HOSTILE: &[&str] = &[
        "+", "-", "&&", "||", "!", "(", ")", "{", "}", "[", "]", "^", "\"", "~", "*", "?", ":", "\\", "/",
        "AND", "OR", "NOT", "IN", "TO", "'", "`", "*:*", "title_en:", "body_es:", "lang:", "[a TO z]",
        "{* TO *}", "^2", "~3", "^-1", "^1e40", "-\"carry over\"", "\"e-mail\"", "'carry over'", "IN [a b]",
        "+vacation", "-vacation", "vacation", "carry", "over", "e-mail", "3.5", "-5", "per-diem", "días",
        "vacaciones", "Política", "niño", "acción", "año", "¿", "¡", "日本語", "中文检索", "한국어", "😀",
        "👩\u{200d}👩\u{200d}👧", "🇪🇸", "مرحبا", "שלום", "e\u{301}", "n\u{303}", "\u{0}", "\u{7}", "\u{1b}[31m",
        "\u{200b}", "\u{feff}", "\u{202e}", "\u{2028}", "\r\n", "\t", "\u{a0}", "\u{3000}", "\u{fffd}",
        "\u{10ffff}", "ß", "ﬁ", "İ", "Ǆ", "ⅷ", "٣",
    ];

    /// A random string built from query syntax, unicode oddities and very long words.
    fn hostile_string(rng: &mut StdRng) -> String {
        if rng.random_bool(0.03) {
            return String::new();
        }
        let mut out = String::new();
        for _ in 0..rng.random_range(1..24) {
            match rng.random_range(0..10) {
                0 => {
                    let len = rng.random_range(30..3000);
                    let pool = ['a', 'é', '-', '9', '.', '日', '"', '('];
                    let c = pool[rng.random_range(0..pool.len())];
                    out.extend(std::iter::repeat_n(c, len));
                }
                1 => {
                    let len = rng.random_range(1..40);
                    out.extend((0..len).map(|_| rng.random::<char>()));
                }
                2 => out.extend(std::iter::repeat_n('(', rng.random_range(1..500))),
                _ => out.push_str(HOSTILE[rng.random_range(0..HOSTILE.len())]),
            }
            if rng.random_bool(0.6) {
                out.push(' ');
            }
        }
        out
    }

    /// Property: no input makes search fail or panic, whatever the scope or language.
    #[test]
    fn random_hostile_queries_never_fail() {
        const SEED: u64 = 0x1055_0012_0006;
        const CASES: u64 = 2_500;
        let (_dir, index) = fixture();
        let scopes = scopes();
        let mut found = 0;
        for case in 0..CASES {
            let seed = SEED + case;
            let query = hostile_string(&mut StdRng::seed_from_u64(seed));
            let lang = Lang::ALL[(case % 2) as usize];
            let (scope_name, scope) = &scopes[(case / 2) as usize % scopes.len()];
            let outcome = catch_unwind(AssertUnwindSafe(|| index.search(&query, lang, scope, 10)));
            match outcome {
                Ok(Ok(hits)) => found += usize::from(!hits.is_empty()),
                Ok(Err(e)) => panic!("seed {seed} ({lang:?}, {scope_name}): search failed: {e}\ninput: {query:?}"),
                Err(_) => panic!("seed {seed} ({lang:?}, {scope_name}): search panicked\ninput: {query:?}"),
            }
        }
        assert!(found > 100, "the generator should also produce queries that match ({found})");
    }

    #[test]
    fn repeated_words_count_once() {
        let (_dir, index) = fixture();
        let once = index.search("vacation days", Lang::En, &everyone(), 10).unwrap();
        let repeated = index.search("vacation vacation Vacation days days", Lang::En, &everyone(), 10).unwrap();
        let scores = |hits: &[ScoredChunkId]| hits.iter().map(|h| (h.chunk_id.clone(), h.score)).collect::<Vec<_>>();
        assert!(!once.is_empty());
        assert_eq!(scores(&once), scores(&repeated));
    }
}
