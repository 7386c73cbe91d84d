//! BM25 keyword index in Tantivy, with per-language analyzers (English and Spanish stemming)
//! and the ACL principals indexed as raw tokens so the permission filter runs inside the
//! query, never after it.

use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, EmptyQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

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

fn register_analyzers(index: &Index) {
    for (lang, stemmer) in [(Lang::En, Language::English), (Lang::Es, Language::Spanish)] {
        let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .filter(Stemmer::new(stemmer))
            .build();
        index.tokenizers().register(analyzer_name(lang), analyzer);
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
    pub fn search(
        &self,
        query: &str,
        query_lang: Lang,
        scope: &AccessScope,
        limit: usize,
    ) -> Result<Vec<ScoredChunkId>> {
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.title[0], f.body[0], f.title[1], f.body[1]]);
        for lang in Lang::ALL {
            let weight = if lang == query_lang { 1.0 } else { 0.6 };
            parser.set_field_boost(f.title[lang_slot(lang)], 2.0 * weight);
            parser.set_field_boost(f.body[lang_slot(lang)], weight);
        }
        let (text_query, _errors) = parser.parse_query_lenient(query);
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
