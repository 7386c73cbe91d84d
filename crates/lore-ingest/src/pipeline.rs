//! The ingest pipeline: walk sources → read, parse, resolve ACL, chunk (producer thread) →
//! embed in batches (blocking pool) → write both indexes and the catalog under the journal.
//!
//! Re-ingesting an unchanged document does nothing (fingerprint over its bytes, sidecar,
//! ACL default and the chunking/model settings); a changed one replaces its chunks in both
//! indexes; with `sync`, documents whose files disappeared are removed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use lore_core::acl::Acl;
use lore_core::catalog::{Catalog, StoredVector, Upsert, embed_key};
use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_core::index::{Indexes, KeywordEntry, VectorPoint, check_model};
use lore_core::lang::Lang;
use lore_core::types::{Chunk, Collection, DocumentRecord, sha256_hex};

use crate::chunker::{ChunkContext, Chunker};
use crate::error::{FileError, FileErrorKind, IngestError};
use crate::loaders::Format;
use crate::sandbox::Parser;
use crate::source::{DocumentMeta, SIDECAR_SUFFIX, Source, read_sidecar};

#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Remove documents of the ingested sources whose files no longer exist.
    pub sync: bool,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

/// Time spent per stage, summed over the run (stages overlap in wall-clock time).
#[derive(Debug, Clone, Default)]
pub struct StageTimings {
    pub parse: Duration,
    pub chunk: Duration,
    pub embed: Duration,
    pub index: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub scanned: usize,
    pub unchanged: usize,
    pub indexed: usize,
    pub deleted: usize,
    pub chunks: usize,
    /// Chunk texts sent to the embedding model.
    pub embedded: usize,
    /// Chunks whose embedding was reused (same text, same model: already in the catalog or
    /// earlier in the run), not computed again.
    pub reused: usize,
    /// Files of unsupported types met while walking a folder (images, scripts, ...).
    pub skipped: Vec<PathBuf>,
    pub failures: Vec<FileError>,
    /// Documents whose interrupted ingest was rolled back at start.
    pub recovered: usize,
    pub timings: StageTimings,
    pub elapsed: Duration,
}

impl IngestReport {
    pub fn summary_line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "ingest: {} scanned, {} indexed, {} unchanged, {} deleted, {} failed, {} skipped (unsupported type); \
             {} chunks in {:.1}s ({:.1} chunks/s; {} embedded, {} reused)",
            self.scanned,
            self.indexed,
            self.unchanged,
            self.deleted,
            self.failures.len(),
            self.skipped.len(),
            self.chunks,
            secs,
            self.chunks as f64 / secs,
            self.embedded,
            self.reused
        )
    }
}

pub struct Ingestor {
    config: Config,
    embedder: Arc<Embedder>,
    catalog: Catalog,
    indexes: Arc<Indexes>,
    chunker: Arc<Chunker>,
    parser: Arc<Parser>,
    recovered: usize,
}

/// A document ready to embed.
struct Prepared {
    record: DocumentRecord,
    chunks: Vec<Chunk>,
}

enum Item {
    Prepared(Box<Prepared>),
    Unchanged,
    Skipped(PathBuf),
    Failed(FileError),
}

impl Ingestor {
    /// Loads the model, opens the catalog and both indexes for writing, checks that the
    /// index was built with this model, and rolls back any interrupted ingest.
    pub async fn open(config: Config, embedder: Arc<Embedder>) -> Result<Self, IngestError> {
        let indexes = Arc::new(Indexes::open(&config, true).await?);
        Self::with_indexes(config, embedder, indexes).await
    }

    /// An ingestor writing through indexes the caller already opened for writing (the server
    /// shares one set between its readers and this, the only writer).
    pub async fn with_indexes(
        config: Config,
        embedder: Arc<Embedder>,
        indexes: Arc<Indexes>,
    ) -> Result<Self, IngestError> {
        let catalog = Catalog::open_in(&config.open_database()?)?;
        Self::with_catalog(config, embedder, indexes, catalog).await
    }

    /// [`Ingestor::with_indexes`] with a catalog the caller opened (in the database it
    /// already holds, so a process connects to PostgreSQL once).
    pub async fn with_catalog(
        config: Config,
        embedder: Arc<Embedder>,
        indexes: Arc<Indexes>,
        mut catalog: Catalog,
    ) -> Result<Self, IngestError> {
        check_model(&catalog, embedder.info(), &config)?;
        let recovered = indexes.recover(&mut catalog).await?.len();
        let reapplied = indexes.recover_acl_changes(&mut catalog).await?;
        if reapplied > 0 {
            tracing::warn!(documents = reapplied, "re-applied interrupted ACL changes");
        }
        let chunker = Arc::new(Chunker::new(embedder.tokenizer().clone(), &config.chunking)?);
        let parser = Arc::new(Parser::new(&config.ingest.parser)?);
        Ok(Ingestor { config, embedder, catalog, indexes, chunker, parser, recovered })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn indexes(&self) -> &Arc<Indexes> {
        &self.indexes
    }

    fn settings(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            crate::EXTRACTION_VERSION,
            self.embedder.info().fingerprint,
            self.config.chunking.min_tokens,
            self.config.chunking.max_tokens,
            self.config.chunking.overlap_tokens
        )
    }

    /// The part of the pipeline that needs no writer (parse, chunk, embed), to run for an
    /// upload before taking the writer.
    pub fn preparer(&self) -> UploadPreparer {
        UploadPreparer {
            settings: self.settings(),
            max_bytes: self.config.ingest.max_file_bytes,
            chunker: self.chunker.clone(),
            parser: self.parser.clone(),
            embedder: self.embedder.clone(),
        }
    }

    /// Ingests one uploaded file into a collection as document `document_id` (new or
    /// replaced), all under this writer. A file that cannot be ingested is reported, not
    /// raised: the job fails with the reason and nothing else changes. (The server prepares
    /// with [`UploadPreparer`] outside its writer and calls [`Ingestor::write_upload`].)
    pub async fn ingest_upload(&mut self, upload: Upload<'_>) -> Result<UploadOutcome, IngestError> {
        let known = self.catalog.document(upload.document_id)?.map(|d| d.fingerprint);
        let preparer = self.preparer();
        let catalog = &self.catalog;
        let prepared = preparer
            .prepare(&upload, known, Arc::new(AtomicBool::new(false)), |keys| catalog.stored_vectors(keys))
            .await?;
        match prepared {
            PreparedUpload::Ready(ready) => {
                let chunks = self.write_upload(*ready, upload.metadata).await?;
                Ok(UploadOutcome::Indexed { chunks })
            }
            PreparedUpload::Unchanged => {
                self.catalog.set_metadata(upload.document_id, upload.metadata)?;
                Ok(UploadOutcome::Unchanged)
            }
            PreparedUpload::Rejected(kind) => Ok(UploadOutcome::Rejected(kind)),
        }
    }

    /// Writes a prepared upload to both indexes and the catalog; returns its chunk count.
    pub async fn write_upload(
        &mut self,
        ready: ReadyUpload,
        metadata: &serde_json::Value,
    ) -> Result<usize, IngestError> {
        let ReadyUpload { mut prepared, vectors } = ready;
        prepared.record.metadata = metadata.clone();
        let chunks = prepared.chunks.len();
        self.write_embedded(vec![prepared], vectors, &mut IngestReport::default()).await?;
        Ok(chunks)
    }

    /// Removes documents from both indexes and the catalog, under the journal.
    pub async fn delete_documents(&mut self, doc_ids: &[String]) -> Result<(), IngestError> {
        if doc_ids.is_empty() {
            return Ok(());
        }
        self.catalog.journal_begin(doc_ids)?;
        self.indexes.delete_documents(doc_ids).await?;
        self.catalog.journal_commit(&[], doc_ids)?;
        Ok(())
    }

    /// Gives a document a new ACL (and optionally metadata) in both indexes and the catalog
    /// without re-embedding. Journaled: a crash midway is completed on the next open.
    pub async fn set_acl(
        &mut self,
        doc_id: &str,
        acl: &Acl,
        metadata: Option<&serde_json::Value>,
    ) -> Result<(), IngestError> {
        let chunks = self.catalog.chunks_of_document(doc_id)?;
        self.catalog.begin_acl_change(doc_id, acl)?;
        self.indexes.set_document_acl(doc_id, &chunks, &acl.to_strings()).await?;
        self.catalog.commit_acl_change(doc_id, acl, metadata)?;
        // The document no longer is what its source bytes say: the next upload or ingest of
        // those bytes is an update that re-applies their ACL, never "unchanged".
        self.catalog.mark_edited(doc_id)?;
        Ok(())
    }

    /// Builds search structures after a run of writes (qdrant-edge has no background optimizer).
    pub async fn optimize(&mut self) -> Result<(), IngestError> {
        Ok(self.indexes.vector.optimize().await?)
    }

    pub async fn ingest(&mut self, sources: &[Source], options: &IngestOptions) -> Result<IngestReport, IngestError> {
        let started = Instant::now();
        let mut report = IngestReport { recovered: std::mem::take(&mut self.recovered), ..Default::default() };
        let mut known: HashMap<String, String> = HashMap::new();
        for source in sources {
            for doc in self.catalog.documents_of_source(&source.name)? {
                known.insert(doc.id, doc.fingerprint);
            }
        }
        for source in sources {
            self.catalog.upsert_collection(&source.collection()?)?;
        }
        let settings = self.settings();
        let files: Vec<(Source, PathBuf, bool)> = sources.iter().flat_map(list_files).collect();
        report.scanned = files.iter().filter(|(_, _, supported)| *supported).count();
        let seen: HashSet<String> =
            files.iter().map(|(source, path, _)| source.document_id(&relative_path(source, path))).collect();

        let progress = progress_bar(options.progress, files.len() as u64);
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<(Item, StageTimings)>(64);
        let producer = {
            let chunker = self.chunker.clone();
            let parser = self.parser.clone();
            let max_bytes = self.config.ingest.max_file_bytes;
            std::thread::spawn(move || {
                for (source, path, supported) in files {
                    let mut timings = StageTimings::default();
                    let item = if supported {
                        let relative = relative_path(&source, &path);
                        let target = Target { doc_id: source.document_id(&relative), relative };
                        let known = known.get(&target.doc_id).cloned();
                        let context = PrepareContext {
                            settings: &settings,
                            max_bytes,
                            chunker: &chunker,
                            parser: &parser,
                            cancel: None,
                        };
                        let overrides = Overrides::default();
                        prepare(&source, &path, target, &overrides, known.as_deref(), &context, &mut timings)
                    } else {
                        Item::Skipped(path)
                    };
                    if sender.blocking_send((item, timings)).is_err() {
                        return;
                    }
                }
            })
        };

        let mut batch: Vec<Prepared> = Vec::new();
        let mut batch_chunks = 0;
        let chunk_batch = self.embedder.batch_size() * 8;
        while let Some((item, timings)) = receiver.recv().await {
            report.timings.parse += timings.parse;
            report.timings.chunk += timings.chunk;
            progress.inc(1);
            match item {
                Item::Prepared(prepared) => {
                    batch_chunks += prepared.chunks.len();
                    batch.push(*prepared);
                    if batch_chunks >= chunk_batch || batch.len() >= self.config.ingest.commit_every_documents {
                        self.write_batch(std::mem::take(&mut batch), &mut report).await?;
                        batch_chunks = 0;
                        let rate = report.chunks as f64 / started.elapsed().as_secs_f64().max(1e-9);
                        progress.set_message(format!(
                            "{} docs, {} chunks, {rate:.0} chunks/s",
                            report.indexed, report.chunks
                        ));
                    }
                }
                Item::Unchanged => report.unchanged += 1,
                Item::Skipped(path) => report.skipped.push(path),
                Item::Failed(error) => {
                    progress.suspend(
                        || tracing::warn!(file = %error.path.display(), reason = %error.kind, "file not ingested"),
                    );
                    report.failures.push(error);
                }
            }
        }
        producer.join().map_err(|_| IngestError::Other("ingest reader thread panicked".into()))?;
        self.write_batch(batch, &mut report).await?;

        if options.sync {
            let mut gone = Vec::new();
            for source in sources {
                for doc in self.catalog.documents_of_source(&source.name)? {
                    if !seen.contains(&doc.id) {
                        gone.push(doc.id);
                    }
                }
            }
            if !gone.is_empty() {
                let started = Instant::now();
                self.catalog.journal_begin(&gone)?;
                self.indexes.delete_documents(&gone).await?;
                self.catalog.journal_commit(&[], &gone)?;
                report.deleted = gone.len();
                report.timings.index += started.elapsed();
            }
        }
        if report.indexed > 0 || report.deleted > 0 {
            let started = Instant::now();
            self.indexes.vector.optimize().await?;
            report.timings.index += started.elapsed();
        }
        progress.finish_and_clear();
        report.elapsed = started.elapsed();
        Ok(report)
    }

    async fn write_batch(&mut self, batch: Vec<Prepared>, report: &mut IngestReport) -> Result<(), IngestError> {
        if batch.is_empty() {
            return Ok(());
        }
        let embed_started = Instant::now();
        let catalog = &self.catalog;
        let embedded = match embed_or_reuse(&self.embedder, &batch, |keys| catalog.stored_vectors(keys), None).await {
            Ok(embedded) => embedded,
            Err(Embedding::Failed(error)) => return Err(error),
            Err(Embedding::Cancelled) => unreachable!("nothing cancels a batch without a flag"),
        };
        report.embedded += embedded.embedded;
        report.reused += embedded.reused;
        report.timings.embed += embed_started.elapsed();
        self.write_embedded(batch, embedded.vectors, report).await
    }

    /// Writes documents whose chunks are embedded (one vector per chunk, in order).
    async fn write_embedded(
        &mut self,
        batch: Vec<Prepared>,
        embeddings: Vec<StoredVector>,
        report: &mut IngestReport,
    ) -> Result<(), IngestError> {
        let index_started = Instant::now();
        let doc_ids: Vec<String> = batch.iter().map(|p| p.record.id.clone()).collect();
        let acls: Vec<Vec<String>> = batch.iter().map(|p| p.record.acl.to_strings()).collect();
        let mut points = Vec::with_capacity(embeddings.len());
        let mut stored = embeddings.iter();
        for (prepared, acl) in batch.iter().zip(&acls) {
            for chunk in &prepared.chunks {
                points.push(VectorPoint {
                    chunk_id: chunk.id.clone(),
                    doc_id: chunk.doc_id.clone(),
                    acl: acl.clone(),
                    lang: chunk.lang.code().to_owned(),
                    vector: stored.next().expect("one vector per chunk").vector.clone(),
                    sparse: None,
                });
            }
        }
        let entries: Vec<KeywordEntry<'_>> = batch
            .iter()
            .zip(&acls)
            .flat_map(|(p, acl)| p.chunks.iter().map(move |chunk| KeywordEntry { chunk, acl }))
            .collect();

        self.indexes.settle_keyword_averages(&self.catalog, batch.iter().flat_map(|p| p.chunks.iter()))?;
        // Journal first: after a crash anywhere below, recovery removes these documents
        // from both indexes and the catalog, and the next run ingests them again.
        self.catalog.journal_begin(&doc_ids)?;
        self.indexes.replace_documents(&doc_ids, &entries, points).await?;
        let mut embeddings = embeddings.into_iter();
        let mut upserts: Vec<Upsert> = batch
            .into_iter()
            .map(|p| {
                let embeddings = embeddings.by_ref().take(p.chunks.len()).collect();
                Upsert { record: p.record, chunks: p.chunks, embeddings }
            })
            .collect();
        // Metadata set through the API survives a re-ingest of a changed source file.
        for Upsert { record, .. } in &mut upserts {
            if record.metadata.is_null() {
                record.metadata = match self.catalog.document(&record.id)? {
                    Some(existing) => existing.metadata,
                    None => serde_json::Value::Object(Default::default()),
                };
            }
        }
        self.catalog.journal_commit(&upserts, &[])?;
        report.timings.index += index_started.elapsed();
        report.indexed += upserts.len();
        report.chunks += upserts.iter().map(|u| u.chunks.len()).sum::<usize>();
        Ok(())
    }
}

/// Why embedding stopped.
enum Embedding {
    Failed(IngestError),
    Cancelled,
}

impl From<IngestError> for Embedding {
    fn from(error: IngestError) -> Self {
        Embedding::Failed(error)
    }
}

impl From<lore_core::Error> for Embedding {
    fn from(error: lore_core::Error) -> Self {
        Embedding::Failed(error.into())
    }
}

/// The vectors of a batch, and how many were computed or reused.
struct Embedded {
    vectors: Vec<StoredVector>,
    embedded: usize,
    reused: usize,
}

/// Texts per model call when embedding can be cancelled (an upload): small enough that a
/// cancel takes effect within seconds.
const CANCELLABLE_SLICE: usize = 256;

/// The order in which texts go to the model: fewest tokens first (a stable sort). fastembed
/// pads each model batch to its longest text, so batches of similar lengths spend less of the
/// model's time on padding. `lore-bench ingest` replays this order to measure the padding.
pub fn embedding_order<S: AsRef<str>>(tokenizer: &tokenizers::Tokenizer, texts: &[S]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_cached_key(|&i| embedding_length(tokenizer, texts[i].as_ref()));
    order
}

/// Tokens of `text` for the sizing tokenizer (no special tokens, no truncation).
fn embedding_length(tokenizer: &tokenizers::Tokenizer, text: &str) -> usize {
    match tokenizer.encode_fast(text, false) {
        Ok(encoding) => encoding.len(),
        Err(_) => text.len() / 4,
    }
}

/// One embedding per chunk of the batch, in order. A text already embedded with this model
/// (`stored` finds those the catalog holds, or earlier in the batch) is reused; only the rest
/// go to the model: in one blocking call, or with `cancel` in slices, stopping when it is set.
/// Each call sends its texts shortest first ([`embedding_order`]); vectors are keyed by text.
async fn embed_or_reuse(
    embedder: &Arc<Embedder>,
    batch: &[Prepared],
    stored: impl FnOnce(&[String]) -> lore_core::Result<HashMap<String, Vec<f32>>>,
    cancel: Option<&AtomicBool>,
) -> Result<Embedded, Embedding> {
    let fingerprint = &embedder.info().fingerprint;
    let texts: Vec<String> = batch.iter().flat_map(|p| p.chunks.iter().map(Chunk::embedding_text)).collect();
    let keys: Vec<String> = texts.iter().map(|t| embed_key(fingerprint, t)).collect();
    let mut known = stored(&keys)?;
    let mut missing: Vec<(String, String)> = Vec::new();
    let mut queued = HashSet::new();
    for (key, text) in keys.iter().zip(texts) {
        if !known.contains_key(key) && queued.insert(key.clone()) {
            missing.push((key.clone(), text));
        }
    }
    let mut embedded = 0;
    let slice = if cancel.is_some() { CANCELLABLE_SLICE } else { missing.len().max(1) };
    for part in missing.chunks(slice) {
        if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
            return Err(Embedding::Cancelled);
        }
        let embedder = embedder.clone();
        let mut part = part.to_vec();
        let (new_keys, vectors) = tokio::task::spawn_blocking(move || {
            // Shortest first, as `embedding_order`; tokenizing to sort costs well under 1 % of
            // running the model on the same texts.
            part.sort_by_cached_key(|(_, text)| embedding_length(embedder.tokenizer(), text));
            let (keys, texts): (Vec<String>, Vec<String>) = part.into_iter().unzip();
            embedder.embed_passages(&texts).map(|vectors| (keys, vectors))
        })
        .await
        .map_err(|e| IngestError::Other(format!("embedding task failed: {e}")))?
        .map_err(IngestError::from)?;
        embedded += vectors.len();
        known.extend(new_keys.into_iter().zip(vectors));
    }
    let reused = keys.len() - queued.len();
    let vectors = keys.into_iter().map(|key| StoredVector { vector: known[&key].clone(), key }).collect();
    Ok(Embedded { vectors, embedded, reused })
}

/// Parses, chunks and embeds uploads without the writer (see [`Ingestor::preparer`]).
#[derive(Clone)]
pub struct UploadPreparer {
    settings: String,
    max_bytes: u64,
    chunker: Arc<Chunker>,
    parser: Arc<Parser>,
    embedder: Arc<Embedder>,
}

/// An upload parsed, chunked and embedded, ready for [`Ingestor::write_upload`].
pub struct ReadyUpload {
    prepared: Prepared,
    vectors: Vec<StoredVector>,
}

impl ReadyUpload {
    pub fn chunks(&self) -> usize {
        self.prepared.chunks.len()
    }

    pub fn acl(&self) -> &Acl {
        &self.prepared.record.acl
    }

    /// Gives the document another ACL before it is written (an ACL change that arrived
    /// while the file was being prepared wins over the one it was uploaded with).
    pub fn set_acl(&mut self, acl: Acl) {
        self.prepared.record.acl = acl;
    }
}

pub enum PreparedUpload {
    Ready(Box<ReadyUpload>),
    /// Same bytes, ACL and settings as the indexed version.
    Unchanged,
    Rejected(FileErrorKind),
}

impl UploadPreparer {
    /// Parses (in a child process, killed when `cancel` is set), chunks and embeds one
    /// upload. `known_fingerprint` is the indexed version's; `stored` finds embeddings the
    /// catalog already holds.
    pub async fn prepare(
        &self,
        upload: &Upload<'_>,
        known_fingerprint: Option<String>,
        cancel: Arc<AtomicBool>,
        stored: impl FnOnce(&[String]) -> lore_core::Result<HashMap<String, Vec<f32>>>,
    ) -> Result<PreparedUpload, IngestError> {
        let source = Source {
            name: upload.collection.id.clone(),
            path: upload.path.parent().unwrap_or(Path::new(".")).to_owned(),
            default_acl: upload.collection.default_acl.as_ref().map(Acl::to_strings),
            department: upload.collection.department.clone(),
        };
        let target = Target { relative: upload.filename.to_owned(), doc_id: upload.document_id.to_owned() };
        let overrides = Overrides { acl: upload.acl.cloned(), title: upload.title.map(str::to_owned) };
        let (path, this, flag) = (upload.path.to_owned(), self.clone(), cancel.clone());
        let item = tokio::task::spawn_blocking(move || {
            let context = PrepareContext {
                settings: &this.settings,
                max_bytes: this.max_bytes,
                chunker: &this.chunker,
                parser: &this.parser,
                cancel: Some(&flag),
            };
            let mut timings = StageTimings::default();
            prepare(&source, &path, target, &overrides, known_fingerprint.as_deref(), &context, &mut timings)
        })
        .await
        .map_err(|e| IngestError::Other(format!("upload parser task failed: {e}")))?;
        match item {
            Item::Prepared(prepared) => {
                let batch = vec![*prepared];
                let vectors = match embed_or_reuse(&self.embedder, &batch, stored, Some(&cancel)).await {
                    Ok(Embedded { vectors, .. }) => vectors,
                    Err(Embedding::Failed(error)) => return Err(error),
                    Err(Embedding::Cancelled) => return Ok(PreparedUpload::Rejected(FileErrorKind::Cancelled)),
                };
                let prepared = batch.into_iter().next().expect("one document");
                Ok(PreparedUpload::Ready(Box::new(ReadyUpload { prepared, vectors })))
            }
            Item::Unchanged => Ok(PreparedUpload::Unchanged),
            Item::Failed(error) => Ok(PreparedUpload::Rejected(error.kind)),
            Item::Skipped(_) => Ok(PreparedUpload::Rejected(FileErrorKind::UnknownType(upload.filename.to_owned()))),
        }
    }
}

/// A file of a source: where it is, its path inside the collection, and whether a loader
/// supports its type.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub relative: String,
    pub supported: bool,
}

/// The files `ingest` would read from a source (for tools that send them elsewhere, such as
/// `lore ingest` into a running server).
pub fn source_files(source: &Source) -> Vec<SourceFile> {
    list_files(source)
        .into_iter()
        .map(|(source, path, supported)| SourceFile { relative: relative_path(&source, &path), path, supported })
        .collect()
}

/// Files of a source: (source, path, supported type). Hidden entries and sidecars are skipped.
fn list_files(source: &Source) -> Vec<(Source, PathBuf, bool)> {
    if source.path.is_file() {
        return vec![(source.clone(), source.path.clone(), true)];
    }
    let mut files: Vec<(Source, PathBuf, bool)> = walkdir::WalkDir::new(&source.path)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().ends_with(SIDECAR_SUFFIX))
        .map(|e| {
            let supported = Format::from_path(e.path()).is_some();
            (source.clone(), e.into_path(), supported)
        })
        .collect();
    files.sort_by(|a, b| a.1.cmp(&b.1));
    files
}

fn relative_path(source: &Source, path: &Path) -> String {
    let relative = if source.path.is_file() {
        Path::new(path.file_name().unwrap_or_default())
    } else {
        path.strip_prefix(&source.path).unwrap_or(path)
    };
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Where a file goes: its path inside the collection and its document id.
struct Target {
    relative: String,
    doc_id: String,
}

/// What an upload request says about the file, winning over the file's own metadata.
#[derive(Default)]
struct Overrides {
    acl: Option<Acl>,
    title: Option<String>,
}

/// One uploaded file for [`Ingestor::ingest_upload`].
pub struct Upload<'a> {
    pub collection: &'a Collection,
    pub document_id: &'a str,
    /// The staged file; its extension selects the loader.
    pub path: &'a Path,
    /// The document's path inside the collection (the sanitised upload name).
    pub filename: &'a str,
    pub acl: Option<&'a Acl>,
    pub title: Option<&'a str>,
    pub metadata: &'a serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    Indexed {
        chunks: usize,
    },
    /// Same bytes, ACL and settings as the indexed version.
    Unchanged,
    Rejected(FileErrorKind),
}

/// What preparing a file needs besides the file.
struct PrepareContext<'a> {
    settings: &'a str,
    max_bytes: u64,
    chunker: &'a Chunker,
    parser: &'a Parser,
    cancel: Option<&'a AtomicBool>,
}

fn prepare(
    source: &Source,
    path: &Path,
    target: Target,
    overrides: &Overrides,
    known_fingerprint: Option<&str>,
    context: &PrepareContext<'_>,
    timings: &mut StageTimings,
) -> Item {
    let PrepareContext { settings, max_bytes, chunker, parser, cancel } = *context;
    let fail = |kind| Item::Failed(FileError { path: path.to_owned(), kind });
    let started = Instant::now();
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return fail(FileErrorKind::Io(e.to_string())),
    };
    if size > max_bytes {
        return fail(FileErrorKind::TooLarge { size, limit: max_bytes });
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return fail(FileErrorKind::Io(e.to_string())),
    };
    let sidecar = match read_sidecar(path) {
        Ok(sidecar) => sidecar,
        Err(kind) => return fail(kind),
    };
    let Target { relative, doc_id } = target;
    let override_acl = overrides.acl.as_ref().map(|a| a.to_strings().join(",")).unwrap_or_default();
    let fingerprint = {
        let mut material = bytes.clone();
        for part in [
            sidecar.as_ref().map(|(_, raw)| raw.as_slice()).unwrap_or_default(),
            source.default_acl.as_ref().map(|a| a.join(",")).unwrap_or_default().as_bytes(),
            settings.as_bytes(),
            override_acl.as_bytes(),
            overrides.title.as_deref().unwrap_or_default().as_bytes(),
            relative.as_bytes(),
        ] {
            material.push(0x1f);
            material.extend_from_slice(part);
        }
        sha256_hex(&material)
    };
    if known_fingerprint == Some(fingerprint.as_str()) {
        return Item::Unchanged;
    }
    let loaded = match parser.parse(path, &bytes, cancel) {
        Ok(loaded) => loaded,
        Err(kind) => return fail(kind),
    };
    let mut meta: DocumentMeta = match sidecar {
        Some((sidecar_meta, _)) => loaded.meta.clone().overlay(sidecar_meta),
        None => loaded.meta.clone(),
    };
    if let Some(acl) = &overrides.acl {
        meta.acl = Some(acl.to_strings());
    }
    if let Some(title) = &overrides.title {
        meta.title = Some(title.clone());
    }
    let acl = match source.resolve_acl(&meta) {
        Ok(acl) => acl,
        Err(kind) => return fail(kind),
    };
    let title = match &meta.title {
        // Front matter, a sidecar or the uploader named it: that is the title.
        Some(title) if !title.trim().is_empty() => title.trim().to_owned(),
        _ => {
            // Markdown and HTML have headings of their own; the first page of other formats
            // opens with their heading.
            let first_page = (!loaded.markdown).then(|| loaded.sections.first().map(|s| s.text.as_str())).flatten();
            crate::title::choose(loaded.title.as_deref(), first_page, path)
        }
    };
    let lang = match meta.lang.as_deref() {
        Some(code) => match Lang::from_code(code) {
            Some(lang) => lang,
            None => return fail(FileErrorKind::InvalidMetadata(format!("unsupported language {code:?}"))),
        },
        None => {
            let sample: String = loaded.sections.iter().flat_map(|s| s.text.chars()).take(4000).collect();
            Lang::detect(&sample)
        }
    };
    timings.parse += started.elapsed();

    let started = Instant::now();
    let chunks = chunker.chunk(&ChunkContext { doc_id: &doc_id, title: &title, lang }, &loaded);
    timings.chunk += started.elapsed();
    if chunks.is_empty() {
        return fail(FileErrorKind::NoText);
    }
    Item::Prepared(Box::new(Prepared {
        record: DocumentRecord {
            id: doc_id,
            source: source.name.clone(),
            path: relative,
            title,
            fingerprint,
            acl,
            lang,
            format: loaded.format.name().to_owned(),
            size_bytes: size,
            chunk_count: chunks.len(),
            metadata: serde_json::Value::Null,
        },
        chunks,
    }))
}

fn progress_bar(enabled: bool, total: u64) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg} [{elapsed_precise}, {per_sec}]")
            .expect("static template"),
    );
    bar
}
