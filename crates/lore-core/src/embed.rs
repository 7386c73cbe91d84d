//! The embedding model: a fastembed user-defined ONNX model run by ONNX Runtime, loaded
//! dynamically from a library path we check ourselves first (`ort` panics on a bad path).
//!
//! Sharing: `TextEmbedding::embed` takes `&mut self`, so one session sits behind a mutex.
//! ONNX Runtime already spreads one call over all cores (intra-op threads), so callers gain
//! throughput by batching many texts into one call, not by running sessions side by side.
//! Ingest batches chunks; concurrent queries queue on the mutex.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use fastembed::{
    InitOptionsUserDefined, Pooling as FastembedPooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};

use crate::config::{EmbeddingConfig, Pooling};
use crate::error::{Error, Result};

/// Identity of the model that produced a set of vectors; stored with the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: String,
    pub dimension: usize,
    /// `name`, dimension, pooling and a prefix of the ONNX file's sha256.
    pub fingerprint: String,
}

pub struct Embedder {
    session: Mutex<TextEmbedding>,
    tokenizer: tokenizers::Tokenizer,
    info: ModelInfo,
    config: EmbeddingConfig,
}

const TOKENIZER_FILES: [&str; 4] =
    ["tokenizer.json", "config.json", "special_tokens_map.json", "tokenizer_config.json"];

static ORT_ENVIRONMENT: OnceLock<ort::environment::Environment> = OnceLock::new();
static ORT_LOADING: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime from `library` once per process, failing with a clear message
/// instead of `ort`'s panic when the file is missing or not a compatible library.
///
/// The path is checked on every call; the library itself can be loaded only once per process,
/// so later calls share the first environment.
pub fn init_onnxruntime(library: &Path) -> Result<ort::environment::Environment> {
    if !library.is_file() {
        return Err(Error::ModelSetup(format!(
            "ONNX Runtime library not found at {} (set ORT_DYLIB_PATH or embedding.onnxruntime_library; \
             `python3 scripts/setup-models.py` installs it from the PyPI wheel)",
            library.display()
        )));
    }
    if let Some(environment) = ORT_ENVIRONMENT.get() {
        return Ok(environment.clone());
    }
    let _loading = ORT_LOADING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(environment) = ORT_ENVIRONMENT.get() {
        return Ok(environment.clone());
    }
    let absolute = library.canonicalize().map_err(|e| Error::io(library, e))?;
    let loaded = std::panic::catch_unwind(|| ort::init_from(&absolute).map(|b| b.with_name("lore").build()));
    let environment = match loaded {
        Ok(Ok(Ok(environment))) => environment,
        Ok(Ok(Err(e))) => {
            return Err(Error::ModelSetup(format!("ONNX Runtime at {} failed to start: {e}", absolute.display())));
        }
        Ok(Err(e)) => {
            return Err(Error::ModelSetup(format!("could not load ONNX Runtime from {}: {e}", absolute.display())));
        }
        Err(_) => return Err(Error::ModelSetup(format!("loading ONNX Runtime from {} panicked", absolute.display()))),
    };
    Ok(ORT_ENVIRONMENT.get_or_init(|| environment).clone())
}

fn read_model_file(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| {
        Error::ModelSetup(format!(
            "cannot read {} ({e}); run `python3 scripts/setup-models.py` or point embedding.model_dir at a model folder",
            path.display()
        ))
    })
}

/// The model's tokenizer with truncation and padding switched off, as needed to size chunks.
/// (The packaged `tokenizer.json` truncates at 128 tokens and pads to a fixed length.)
pub fn load_sizing_tokenizer(model_dir: &Path) -> Result<tokenizers::Tokenizer> {
    let bytes = read_model_file(model_dir, "tokenizer.json")?;
    let mut tokenizer = tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| Error::ModelSetup(format!("{}: {e}", model_dir.join("tokenizer.json").display())))?;
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).map_err(|e| Error::ModelSetup(format!("cannot disable truncation: {e}")))?;
    Ok(tokenizer)
}

impl Embedder {
    pub fn load(config: &EmbeddingConfig) -> Result<Self> {
        let environment = init_onnxruntime(&config.onnxruntime_library)?;
        let dir = &config.model_dir;
        let onnx = read_model_file(dir, "model.onnx")?;
        let [tokenizer_file, config_file, special_tokens_map_file, tokenizer_config_file] =
            TOKENIZER_FILES.map(|name| read_model_file(dir, name));
        let files = TokenizerFiles {
            tokenizer_file: tokenizer_file?,
            config_file: config_file?,
            special_tokens_map_file: special_tokens_map_file?,
            tokenizer_config_file: tokenizer_config_file?,
        };
        let fingerprint = format!(
            "{}/{}d/{:?}/{}",
            config.name,
            config.dimension,
            config.pooling,
            &crate::types::sha256_hex(&onnx)[..16]
        )
        .to_lowercase();
        let pooling = match config.pooling {
            Pooling::Mean => FastembedPooling::Mean,
            Pooling::Cls => FastembedPooling::Cls,
        };
        let model = UserDefinedEmbeddingModel::new(onnx, files).with_pooling(pooling);
        let spin = if config.spin_wait { "1" } else { "0" };
        let mut options = InitOptionsUserDefined::new()
            .with_environment(environment)
            .with_max_length(config.max_length)
            .with_session_config("session.intra_op.allow_spinning", spin)
            .with_session_config("session.inter_op.allow_spinning", spin);
        if let Some(threads) = config.threads {
            options = options.with_intra_threads(threads);
        }
        let session = TextEmbedding::try_new_from_user_defined(model, options)
            .map_err(|e| Error::ModelSetup(format!("cannot load model from {}: {e}", dir.display())))?;
        let embedder = Embedder {
            session: Mutex::new(session),
            tokenizer: load_sizing_tokenizer(dir)?,
            info: ModelInfo { name: config.name.clone(), dimension: config.dimension, fingerprint },
            config: config.clone(),
        };
        let probe = embedder.embed_raw(&["dimension probe"])?;
        if probe[0].len() != config.dimension {
            return Err(Error::ModelSetup(format!(
                "model in {} produces {}-dimensional vectors, configuration says {}",
                dir.display(),
                probe[0].len(),
                config.dimension
            )));
        }
        Ok(embedder)
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Tokenizer without truncation or padding, for sizing chunks.
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    pub fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    /// Embeds document passages (with the model's passage prefix); L2-normalised vectors.
    pub fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if self.config.passage_prefix.is_empty() {
            self.embed_raw(texts)
        } else {
            let prefixed: Vec<String> = texts.iter().map(|t| format!("{}{t}", self.config.passage_prefix)).collect();
            self.embed_raw(&prefixed)
        }
    }

    /// Embeds a search query (with the model's query prefix).
    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let text = format!("{}{query}", self.config.query_prefix);
        Ok(self.embed_raw(&[text])?.remove(0))
    }

    /// Embeds several search queries in one model call.
    pub fn embed_queries(&self, queries: &[String]) -> Result<Vec<Vec<f32>>> {
        let texts: Vec<String> = queries.iter().map(|q| format!("{}{q}", self.config.query_prefix)).collect();
        self.embed_raw(&texts)
    }

    fn embed_raw<S: AsRef<str> + Send + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        session.embed(texts, Some(self.config.batch_size)).map_err(|e| Error::Embedding(e.to_string()))
    }
}

/// Coalesces concurrent query embeddings into one model call. A dedicated thread takes the
/// first waiting query and every other query already queued (up to `max_batch`) and embeds
/// them together; while that runs, new queries queue up for the next call. A lone query is
/// embedded at once, so nothing waits for a batch to fill: batching only happens under load,
/// where one call for n short texts costs far less than n calls.
pub struct QueryBatcher {
    sender: std::sync::mpsc::Sender<QueryRequest>,
    cache: std::sync::Mutex<QueryCache>,
}

/// Recent query vectors by their text (whitespace collapsed), least recently used evicted. A
/// query's vector depends on its text and the model only, never on who asks, so one cache
/// serves every user; it lives beside one model's batcher, so a model change starts it empty.
/// Repeated questions (the same few dozen make up much of a help desk's traffic) and the
/// second embedding of one question (a policy check, then retrieval) cost a lookup.
pub struct QueryCache {
    capacity: usize,
    entries: std::collections::HashMap<String, (Vec<f32>, u64)>,
    clock: u64,
    pub hits: u64,
    pub misses: u64,
}

impl QueryCache {
    pub fn new(capacity: usize) -> Self {
        QueryCache { capacity, entries: std::collections::HashMap::new(), clock: 0, hits: 0, misses: 0 }
    }

    fn key(query: &str) -> String {
        query.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    pub fn get(&mut self, query: &str) -> Option<Vec<f32>> {
        self.clock += 1;
        let clock = self.clock;
        match self.entries.get_mut(&Self::key(query)) {
            Some((vector, used)) => {
                *used = clock;
                self.hits += 1;
                Some(vector.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Keeps `vector`; when full, forgets the least recently used entry (a scan: microseconds
    /// against the milliseconds of the embedding it saves).
    pub fn put(&mut self, query: &str, vector: Vec<f32>) {
        if self.capacity == 0 {
            return;
        }
        let key = Self::key(query);
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&key)
            && let Some(oldest) = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.clock += 1;
        self.entries.insert(key, (vector, self.clock));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

struct QueryRequest {
    text: String,
    reply: tokio::sync::oneshot::Sender<Result<Vec<f32>>>,
}

impl QueryBatcher {
    pub fn new(embedder: std::sync::Arc<Embedder>, max_batch: usize, cache_size: usize) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel::<QueryRequest>();
        std::thread::Builder::new()
            .name("lore-query-embedding".into())
            .spawn(move || {
                // Ends when the last sender (the batcher) is dropped.
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    while batch.len() < max_batch.max(1) {
                        match receiver.try_recv() {
                            Ok(request) => batch.push(request),
                            Err(_) => break,
                        }
                    }
                    let texts: Vec<String> = batch.iter().map(|r| r.text.clone()).collect();
                    match embedder.embed_queries(&texts) {
                        Ok(vectors) => {
                            for (request, vector) in batch.into_iter().zip(vectors) {
                                let _ = request.reply.send(Ok(vector));
                            }
                        }
                        Err(error) => {
                            let message = error.to_string();
                            for request in batch {
                                let _ = request.reply.send(Err(Error::Embedding(message.clone())));
                            }
                        }
                    }
                }
            })
            .expect("spawn the query embedding thread");
        QueryBatcher { sender, cache: std::sync::Mutex::new(QueryCache::new(cache_size)) }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, QueryCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cache hits and misses so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        let cache = self.cache();
        (cache.hits, cache.misses)
    }

    /// The query's vector, embedded together with whatever other queries are waiting.
    pub async fn embed(&self, query: &str) -> Result<Vec<f32>> {
        if let Some(vector) = self.cache().get(query) {
            return Ok(vector);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender
            .send(QueryRequest { text: query.to_owned(), reply })
            .map_err(|_| Error::Embedding("the query embedding thread stopped".into()))?;
        let vector = answer.await.map_err(|_| Error::Embedding("the query embedding thread stopped".into()))??;
        self.cache().put(query, vector.clone());
        Ok(vector)
    }
}

#[cfg(test)]
mod cache_tests {
    use super::QueryCache;

    #[test]
    fn the_least_recently_used_query_goes_and_whitespace_does_not_matter() {
        let mut cache = QueryCache::new(2);
        cache.put("how many  vacation days?", vec![1.0]);
        cache.put("where is the printer?", vec![2.0]);
        assert_eq!(cache.get("how many vacation days?\n"), Some(vec![1.0]), "whitespace is collapsed");
        cache.put("who is on call?", vec![3.0]); // evicts the printer, used least recently
        assert_eq!(cache.get("where is the printer?"), None);
        assert_eq!(cache.get("who is on call?"), Some(vec![3.0]));
        assert_eq!(cache.get("How many vacation days?"), None, "case matters: a model may not be uncased");
        assert_eq!((cache.hits, cache.misses, cache.len()), (2, 2, 2));
        let mut off = QueryCache::new(0);
        off.put("x", vec![1.0]);
        assert!(off.is_empty());
    }
}
