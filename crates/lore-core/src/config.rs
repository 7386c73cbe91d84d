//! Layered configuration: built-in defaults, then a TOML file, then environment variables
//! (see [`crate::env`]). Relative paths in a file are resolved against the file's folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::env;
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::role::{Role, RoleMap};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Catalog (SQLite) and embedded indexes live here.
    pub data_dir: PathBuf,
    /// `[database]`: where catalog, keys, jobs, audit, conversations and the other stores live.
    pub database: DatabaseConfig,
    pub embedding: EmbeddingConfig,
    pub chunking: ChunkingConfig,
    pub vector_store: VectorStoreConfig,
    pub ingest: IngestConfig,
    pub retrieval: RetrievalConfig,
    pub server: ServerConfig,
    pub chat: ChatConfig,
    pub auth: AuthConfig,
    /// Metering, prices, question categories, knowledge gaps and return on investment.
    pub usage: lore_usage::UsageConfig,
    pub rate_limits: lore_usage::RateLimitConfig,
    pub telemetry: TelemetryConfig,
    /// Use policies, human review, verified answers and the approved-use notice.
    pub policy: lore_policy::config::PolicyConfig,
    /// How long conversations and staged uploads are kept (usage events: `[usage]`).
    pub retention: RetentionConfig,
    /// `[[webhooks]]`: endpoints told about events, signed.
    pub webhooks: Vec<WebhookConfig>,
    /// `[[connectors]]`: sources synced into collections (web sites, help centres, wikis).
    pub connectors: Vec<lore_connectors::ConnectorConfig>,
}

/// `[database]`: the application database. Without `url`, the embedded SQLite file
/// `<data_dir>/catalog.sqlite`; with one, a PostgreSQL database that several `lore serve`
/// processes share (scale-out). Put the password in `LORE_DATABASE_URL` rather than a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:5432/database`.
    pub url: Option<String>,
}

impl DatabaseConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        match &self.url {
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => Err(format!(
                "database.url: expected a PostgreSQL URL (postgres://user:password@host:5432/database), got {:?}",
                url.split('@').next_back().unwrap_or_default()
            )),
            _ => Ok(()),
        }
    }
}

/// Events a webhook can subscribe to.
pub const WEBHOOK_EVENTS: [&str; 5] =
    ["document.indexed", "document.failed", "feedback.negative", "budget.threshold", "review.needed"];

/// `[[webhooks]]`: an endpoint told about `events`, each delivery signed with a secret kept out
/// of config files: in the environment variable `secret_env`, or in the file `secret_file` (a
/// mounted secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub id: String,
    pub url: String,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub events: Vec<String>,
    /// Attempts before a delivery is given up (default 8).
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
    /// The first retry's delay; doubles each time up to an hour (default 1,000 ms).
    #[serde(default = "default_webhook_backoff_ms")]
    pub initial_backoff_ms: u64,
}

impl WebhookConfig {
    /// The signing secret, read now; a missing one is an error naming where it was looked for.
    pub fn secret(&self) -> Result<Vec<u8>> {
        let name = format!("webhooks {:?}", self.id);
        let secret = match (&self.secret_env, &self.secret_file) {
            (Some(variable), _) => std::env::var(variable).map_err(|_| {
                Error::Config(format!("{name}: environment variable {variable} (secret_env) is not set"))
            })?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("{name}: secret_file {}: {e}", path.display())))?,
            (None, None) => return Err(Error::Config(format!("{name}: no signing secret"))),
        };
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(Error::Config(format!("{name}: the signing secret is empty")));
        }
        Ok(secret.as_bytes().to_vec())
    }
}

fn default_webhook_attempts() -> u32 {
    8
}
fn default_webhook_backoff_ms() -> u64 {
    1000
}

impl WebhookConfig {
    fn validate(&self, seen: &mut Vec<String>) -> std::result::Result<(), String> {
        let name = format!("webhooks {:?}", self.id);
        if self.id.trim().is_empty() {
            return Err("webhooks: every webhook needs an `id`".into());
        }
        if seen.contains(&self.id) {
            return Err(format!("{name}: the id is used twice"));
        }
        seen.push(self.id.clone());
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(format!("{name}: `url` must be an http(s) URL, not {:?}", self.url));
        }
        if self.secret_env.is_some() == self.secret_file.is_some() {
            return Err(format!("{name}: give the signing secret as `secret_env` or `secret_file` (one of them)"));
        }
        if self.events.is_empty() {
            return Err(format!("{name}: `events` is empty; choose from {WEBHOOK_EVENTS:?}"));
        }
        if let Some(unknown) = self.events.iter().find(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
            return Err(format!("{name}: unknown event {unknown:?}; choose from {WEBHOOK_EVENTS:?}"));
        }
        if self.max_attempts == 0 {
            return Err(format!("{name}: `max_attempts` must be at least 1"));
        }
        Ok(())
    }
}

/// `[retention]`: what a background task purges, hourly. Usage events have their own ages in
/// `[usage]` (`retention_days`, `rollup_retention_days`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Conversations not continued for this many days are deleted with their messages; 0 keeps
    /// them.
    pub conversations_days: u32,
    /// Uploads still queued this many days after they were staged are cancelled and their files
    /// removed; 0 keeps them.
    pub staged_uploads_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { conversations_days: 365, staged_uploads_days: 7 }
    }
}

/// `[telemetry]`: OpenTelemetry traces (a span per request and per stage: auth, embed, bm25,
/// dense, fusion, generation; the usage event's ids as attributes), exported over OTLP/HTTP.
/// Off unless an endpoint is set. The exporter's standard `OTEL_*` variables (batch delay,
/// headers, timeout) apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { otlp_endpoint: None, service_name: "lore".into() }
    }
}

/// Sign-in: SSO through the company's OpenID Connect provider, roles from its groups, and the
/// embed tokens Lore mints for the chat widget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Okta, Microsoft Entra ID, Keycloak, Google, ... (see the README for each).
    pub oidc: Option<lore_identity::OidcConfig>,
    /// Identity-provider groups that grant roles above `employee`.
    pub roles: RoleMap,
    /// Lifetime of embed tokens unless the request asks for less (at most 3600).
    pub embed_token_ttl_secs: u64,
    /// `iss` of embed tokens; must differ from the identity provider's issuer.
    pub embed_issuer: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            oidc: None,
            roles: Default::default(),
            embed_token_ttl_secs: 900,
            embed_issuer: "lore-embed".into(),
        }
    }
}

/// Answer generation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Model providers, tried in order: the first is primary, the rest are fallbacks. Empty:
    /// answers are extractive.
    pub providers: Vec<ProviderConfig>,
    /// Largest context given to the model, in embedding-tokenizer tokens.
    pub context_token_budget: usize,
    /// Passages retrieved for an answer (before the token budget cuts).
    pub context_passages: usize,
    /// Folder with replacement prompt templates (default: the compiled-in `prompts/`).
    pub prompts_dir: Option<PathBuf>,
    /// Company name used in the system prompt.
    pub company: String,
    /// Call the model while the evidence is still being weighed, and cancel the call when the
    /// knowledge base turns out not to answer: the provider is asked as soon as retrieval is
    /// done (the evidence takes tens of milliseconds). An abstention then costs its prompt's
    /// tokens (counted, estimated) and its prompt reached the provider; `false` asks only
    /// once the evidence is in.
    pub speculative_generation: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            providers: Vec::new(),
            context_token_budget: 1800,
            context_passages: 8,
            prompts_dir: None,
            company: "the company".into(),
            speculative_generation: true,
        }
    }
}

/// An OpenAI-compatible chat-completions endpoint (OpenAI, Azure OpenAI, vLLM, Ollama,
/// llama.cpp server).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// Base URL up to the API version, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (keys stay out of config files).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: f64,
    /// Retries on transient errors (timeouts, 429, 5xx) before moving to the next provider.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff; doubles on each retry.
    #[serde(default = "default_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// What this provider may receive: `redact` (the default: personal data and secrets become
    /// placeholders), `block` (a prompt holding any is not sent) or `off` (an on-premises model).
    #[serde(default)]
    pub dlp: lore_policy::dlp::Mode,
}

fn default_timeout_secs() -> f64 {
    60.0
}
fn default_connect_timeout_secs() -> f64 {
    5.0
}
fn default_max_retries() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    250
}

/// Hybrid retrieval: both engines' candidates fused by weighted reciprocal rank.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// Which rankings build the passage list: both fused (`hybrid`), or one engine alone
    /// (`bm25`, `dense`; for comparisons in `lore eval`). The best dense score, the abstention
    /// signal, is computed in every mode.
    pub mode: RetrievalMode,
    /// Candidates each engine returns before fusion.
    pub candidates: usize,
    /// The `k` of reciprocal rank fusion: score = Σ weight / (k + rank).
    pub rrf_k: f32,
    pub bm25_weight: f32,
    pub dense_weight: f32,
    /// At most this many chunks of one document in a result.
    pub max_chunks_per_document: usize,
    /// Chunks whose texts overlap this much (Jaccard over word shingles) count as one.
    pub near_duplicate_threshold: f32,
    /// Document-level evidence: each chunk gains this share of the fused scores of its
    /// document's other candidate chunks (0: chunks rank alone).
    pub document_weight: f32,
    /// Weight of the dense ranking for a query in a language the embedding model was not
    /// trained on (`embedding.languages`); `dense_weight` applies otherwise.
    pub other_language_dense_weight: f32,
    /// An answerability model written by `lore eval calibrate` (JSON), replacing the one built
    /// into Lore.
    pub answerability_model: Option<PathBuf>,
    /// Overrides the model's operating point: an answer needs at least this answerability
    /// (0–1). Higher abstains more often.
    pub min_answerability: Option<f32>,
    /// On a Qdrant server in `hybrid` mode: one Query API request, both rankings fused by the
    /// server (weighted RRF with `rrf_k` and the weights above, the ACL filter inside each
    /// prefetch), instead of two requests fused by Lore. The ranking is the same and retrieval
    /// is a few milliseconds faster, but the per-engine ranks and scores (answerability's
    /// signals) do not come back, so answerable questions are refused far more often (issue
    /// 18's note: contoso-hr's false abstention 6 % → 39 %).
    pub server_fusion: bool,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            mode: RetrievalMode::Hybrid,
            candidates: 40,
            rrf_k: 60.0,
            bm25_weight: 1.0,
            dense_weight: 1.0,
            max_chunks_per_document: 3,
            near_duplicate_threshold: 0.9,
            document_weight: 0.0,
            other_language_dense_weight: 0.0,
            answerability_model: None,
            min_answerability: None,
            server_fusion: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalMode {
    #[default]
    Hybrid,
    Bm25,
    Dense,
}

impl RetrievalMode {
    pub const ALL: [RetrievalMode; 3] = [RetrievalMode::Hybrid, RetrievalMode::Bm25, RetrievalMode::Dense];

    pub fn as_str(self) -> &'static str {
        match self {
            RetrievalMode::Hybrid => "hybrid",
            RetrievalMode::Bm25 => "bm25",
            RetrievalMode::Dense => "dense",
        }
    }

    pub fn parse(text: &str) -> Option<RetrievalMode> {
        RetrievalMode::ALL.into_iter().find(|m| m.as_str() == text.trim().to_ascii_lowercase())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address `lore serve` listens on.
    pub bind: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub api_keys: Vec<ApiKeyConfig>,
    /// Origins of the pages that embed the chat widget (`https://intranet.example.com`); the
    /// API answers cross-origin requests from these only.
    pub cors_origins: Vec<String>,
    /// Sign-in for the full-page chat at `/` (authorization code with PKCE against
    /// `auth.oidc`); without it the page asks for an API key.
    pub web_client_id: Option<String>,
    /// Scopes the full-page chat asks the identity provider for.
    pub web_scopes: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 256 * 1024,
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            web_client_id: None,
            web_scopes: vec!["openid".into(), "profile".into(), "email".into()],
        }
    }
}

/// An API key: only its sha256 is stored. It acts as `user` with the given groups and
/// departments (the principals `user:<user>`, `group:<g>`, `dept:<d>` and `everyone`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    /// Lowercase hex sha256 of the key (`lore keys new` prints it).
    pub sha256: String,
    pub role: Role,
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub departments: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingConfig {
    /// Human-readable model name recorded in the index with the model file's checksum.
    pub name: String,
    /// Folder with `model.onnx`, `tokenizer.json`, `config.json`, `special_tokens_map.json`
    /// and `tokenizer_config.json` (any sentence-embedding ONNX export works, e.g.
    /// multilingual-e5-small with `query_prefix = "query: "`).
    pub model_dir: PathBuf,
    /// ONNX Runtime shared library, e.g. `libonnxruntime.so.1.31.1` from the PyPI wheel.
    pub onnxruntime_library: PathBuf,
    pub dimension: usize,
    pub pooling: Pooling,
    /// Longest input in model tokens; longer inputs are truncated by the model's tokenizer.
    pub max_length: usize,
    pub query_prefix: String,
    pub passage_prefix: String,
    /// Texts per ONNX Runtime call during ingest.
    pub batch_size: usize,
    /// Most concurrent search queries embedded in one call (1: each query alone).
    pub query_batch_size: usize,
    /// Query vectors kept by their text, least recently used evicted (0: none), and twice as
    /// many vectors of passage sentences compared with questions. A vector depends on the text
    /// and the model only, never on who asks, so the caches are shared by every user.
    pub query_cache_size: usize,
    /// Intra-op threads for ONNX Runtime (default: all cores).
    pub threads: Option<usize>,
    /// Languages the model was trained on (`en`, `es`). For a query in another language the
    /// dense ranking counts less (`retrieval.other_language_dense_weight`) and answerability
    /// weighs its dense scores separately.
    pub languages: Vec<Lang>,
    /// Let ONNX Runtime's worker threads spin while they wait for work. Off by default: the
    /// spinning takes the cores the HTTP server, BM25 and dense search need under load.
    pub spin_wait: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    Mean,
    Cls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkingConfig {
    /// Largest chunk in embedding-model tokens (without the special tokens).
    pub max_tokens: usize,
    /// Smallest chunk the splitter aims for before it may cut at a weaker boundary.
    pub min_tokens: usize,
    pub overlap_tokens: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum VectorStoreConfig {
    /// In-process Qdrant (qdrant-edge) under `data_dir/vectors`.
    #[default]
    Embedded,
    /// A Qdrant server or cluster over gRPC: dense vectors and BM25 terms (sparse vectors)
    /// in one collection, created with `shards` and `replication_factor` when missing.
    Qdrant {
        url: String,
        collection: String,
        api_key: Option<String>,
        #[serde(default = "one")]
        shards: u32,
        #[serde(default = "one")]
        replication_factor: u32,
    },
}

fn one() -> u32 {
    1
}

impl VectorStoreConfig {
    /// This store pointed at the Qdrant server at `url` (`QDRANT_URL`): the file's collection,
    /// shards, replication and API key stay unless `collection` or `api_key` are given; an
    /// embedded store becomes collection `lore_chunks`.
    pub fn with_server(&self, url: String, collection: Option<String>, api_key: Option<String>) -> VectorStoreConfig {
        match self {
            VectorStoreConfig::Qdrant {
                collection: current, api_key: current_key, shards, replication_factor, ..
            } => VectorStoreConfig::Qdrant {
                url,
                collection: collection.unwrap_or_else(|| current.clone()),
                api_key: api_key.or_else(|| current_key.clone()),
                shards: *shards,
                replication_factor: *replication_factor,
            },
            VectorStoreConfig::Embedded => VectorStoreConfig::Qdrant {
                url,
                collection: collection.unwrap_or_else(|| "lore_chunks".into()),
                api_key,
                shards: 1,
                replication_factor: 1,
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Files larger than this are rejected with a per-file error.
    pub max_file_bytes: u64,
    /// Documents per index commit.
    pub commit_every_documents: usize,
    /// How untrusted files are parsed: in a child process with limits, by default.
    pub parser: ParserConfig,
    /// How long an upload job's claim holds without renewal: a worker that dies mid-job has
    /// its job taken over by another worker after this. The worker renews every quarter of it.
    pub job_lease_secs: u64,
}

/// Parsers of untrusted files (PDF, DOCX, HTML, ...) run in a child process, so a file that
/// sends a parser into unbounded recursion, a loop or a memory bomb fails alone, with a
/// reason, and never takes the caller down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParserConfig {
    /// `process` (default): each file is parsed by a child process with the limits below.
    /// `in_process`: parsed on the calling thread, with the same loader limits but no
    /// protection from crashes; only for trusted files (evaluation corpora, tests).
    pub isolation: ParserIsolation,
    /// The program that parses (it must be a Lore binary: it is run as
    /// `<program> __lore-parse <format>`). Default: the running executable.
    pub program: Option<PathBuf>,
    /// Wall-clock limit for parsing one file; the child is killed past it.
    pub timeout_secs: f64,
    /// Address-space limit of the child, in MiB.
    pub memory_mib: u64,
    /// Most text one file may yield, in MiB.
    pub max_output_mib: u64,
    /// PDFs with more pages are refused.
    pub max_pdf_pages: usize,
    /// Largest decompressed entry of a DOCX (zip) archive, in MiB.
    pub max_entry_mib: u64,
    /// Largest decompressed/compressed size ratio of a DOCX entry (zip bombs compress
    /// thousands to one; Word XML about ten to one).
    pub max_compression_ratio: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParserIsolation {
    #[default]
    Process,
    InProcess,
}

impl Default for ParserConfig {
    fn default() -> Self {
        ParserConfig {
            isolation: ParserIsolation::Process,
            program: None,
            timeout_secs: 120.0,
            memory_mib: 2048,
            max_output_mib: 64,
            max_pdf_pages: 5000,
            max_entry_mib: 256,
            max_compression_ratio: 200,
        }
    }
}

impl ParserConfig {
    /// Parsing in a child process run from `program` (tests name the `lore` binary).
    pub fn process(program: impl Into<PathBuf>) -> Self {
        ParserConfig { program: Some(program.into()), ..ParserConfig::default() }
    }

    /// Parsing on the calling thread: trusted files only (see [`ParserIsolation::InProcess`]).
    pub fn in_process() -> Self {
        ParserConfig { isolation: ParserIsolation::InProcess, ..ParserConfig::default() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            database: DatabaseConfig::default(),
            embedding: EmbeddingConfig::default(),
            chunking: ChunkingConfig::default(),
            vector_store: VectorStoreConfig::Embedded,
            ingest: IngestConfig::default(),
            retrieval: RetrievalConfig::default(),
            server: ServerConfig::default(),
            chat: ChatConfig::default(),
            auth: AuthConfig::default(),
            usage: lore_usage::UsageConfig::default(),
            rate_limits: lore_usage::RateLimitConfig::default(),
            telemetry: TelemetryConfig::default(),
            policy: lore_policy::config::PolicyConfig::default(),
            retention: RetentionConfig::default(),
            webhooks: Vec::new(),
            connectors: Vec::new(),
        }
    }
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        let models = default_models_dir();
        EmbeddingConfig {
            // Integer kernels (see scripts/setup-models.py): 1.4× passages/s, 2.4× queries/s
            // against the packaged model, cosine 0.994 (bench/results/model-int8-dyn.md).
            name: "all-MiniLM-L6-v2-int8-dyn".into(),
            model_dir: models.join("all-minilm-l6-v2-int8-dyn"),
            onnxruntime_library: models.join("onnxruntime/libonnxruntime.so.1.31.1"),
            dimension: 384,
            pooling: Pooling::Mean,
            max_length: 256,
            query_prefix: String::new(),
            passage_prefix: String::new(),
            batch_size: 32,
            // Batching queries bought nothing with integer kernels (116 queries/s alone, 101 in
            // batches of 16: bench/results/model-int8-dyn.md) and would make a query's vector
            // depend on the queries beside it; alone, it depends on its text only.
            query_batch_size: 1,
            query_cache_size: 10_000,
            threads: None,
            spin_wait: false,
            languages: vec![Lang::En],
        }
    }
}

impl Default for ChunkingConfig {
    fn default() -> Self {
        ChunkingConfig { max_tokens: 200, min_tokens: 120, overlap_tokens: 0 }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_file_bytes: 50 * 1024 * 1024,
            commit_every_documents: 200,
            parser: ParserConfig::default(),
            job_lease_secs: 60,
        }
    }
}

/// `$LORE_MODELS_DIR`, else the `.models` folder of the workspace this binary was built
/// from when it exists (development and tests), else `.models` in the working directory.
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = env::var(env::LORE_MODELS_DIR) {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.models");
    if workspace.exists() {
        return workspace.canonicalize().unwrap_or(workspace);
    }
    PathBuf::from(".models")
}

impl Config {
    /// Defaults, then `path` (or `$LORE_CONFIG`, or `./lore.toml` if present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let explicit = path.map(Path::to_path_buf).or_else(|| env::var(env::LORE_CONFIG).map(PathBuf::from));
        let file = match explicit {
            Some(path) => Some(path),
            None => Some(PathBuf::from("lore.toml")).filter(|p| p.exists()),
        };
        let mut config = match file {
            Some(path) => Self::from_file(&path)?,
            None => Config::default(),
        };
        config.apply_env();
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        config.embedding.model_dir = base.join(&config.embedding.model_dir);
        config.embedding.onnxruntime_library = base.join(&config.embedding.onnxruntime_library);
        if let Some(dir) = &config.chat.prompts_dir {
            config.chat.prompts_dir = Some(base.join(dir));
        }
        if let Some(program) = &config.ingest.parser.program {
            config.ingest.parser.program = Some(base.join(program));
        }
        Ok(config)
    }

    fn apply_env(&mut self) {
        if let Some(dir) = env::var(env::LORE_DATA_DIR) {
            self.data_dir = dir.into();
        }
        if let Some(lib) = env::var(env::ORT_DYLIB_PATH) {
            self.embedding.onnxruntime_library = lib.into();
        }
        if let Some(url) = env::var(env::LORE_DATABASE_URL) {
            self.database.url = Some(url);
        }
        if let Some(url) = env::var(env::QDRANT_URL) {
            self.vector_store = self.vector_store.with_server(
                url,
                env::var(env::LORE_QDRANT_COLLECTION),
                env::var(env::QDRANT_API_KEY),
            );
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.database.validate().map_err(Error::Config)?;
        self.usage.validate().map_err(Error::Config)?;
        self.policy.validate().map_err(Error::Config)?;
        let mut ids = Vec::new();
        for webhook in &self.webhooks {
            webhook.validate(&mut ids).map_err(Error::Config)?;
        }
        let mut names: Vec<&str> = Vec::new();
        for connector in &self.connectors {
            connector.validate().map_err(Error::Config)?;
            if names.contains(&connector.name.as_str()) {
                return Err(Error::Config(format!("connectors {:?}: the name is used twice", connector.name)));
            }
            names.push(&connector.name);
        }
        let c = &self.chunking;
        if c.max_tokens == 0 || c.min_tokens > c.max_tokens || c.overlap_tokens >= c.max_tokens {
            return Err(Error::Config(format!(
                "chunking: need 0 < min_tokens ({}) <= max_tokens ({}) and overlap_tokens ({}) < max_tokens",
                c.min_tokens, c.max_tokens, c.overlap_tokens
            )));
        }
        if self.ingest.job_lease_secs < 2 {
            return Err(Error::Config(format!(
                "ingest.job_lease_secs ({}) must be at least 2 (the worker renews every quarter of it)",
                self.ingest.job_lease_secs
            )));
        }
        if let VectorStoreConfig::Qdrant { shards, replication_factor, .. } = &self.vector_store
            && (*shards == 0 || *replication_factor == 0)
        {
            return Err(Error::Config(format!(
                "vector_store: shards ({shards}) and replication_factor ({replication_factor}) must be at least 1"
            )));
        }
        if c.max_tokens + 16 > self.embedding.max_length {
            return Err(Error::Config(format!(
                "chunking.max_tokens ({}) leaves no room for headings and special tokens within embedding.max_length ({})",
                c.max_tokens, self.embedding.max_length
            )));
        }
        for origin in &self.server.cors_origins {
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin.matches('/').count() == 2;
            if !valid {
                return Err(Error::Config(format!(
                    "server.cors_origins: {origin:?} is not an origin (scheme://host[:port], no path or trailing slash)"
                )));
            }
        }
        if self.server.web_client_id.is_some() && self.auth.oidc.is_none() {
            return Err(Error::Config("server.web_client_id needs auth.oidc".into()));
        }
        for key in &self.server.api_keys {
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(Error::Config(format!("api key {:?}: sha256 must be 64 lowercase hex digits", key.name)));
            }
            crate::acl::PrincipalSet::for_user(&key.user, &key.groups, &key.departments)
                .map_err(|e| Error::Config(format!("api key {:?}: {e}", key.name)))?;
        }
        if let Some(oidc) = &self.auth.oidc {
            lore_identity::OidcVerifier::new(oidc.clone()).map_err(|e| Error::Config(format!("auth.oidc: {e}")))?;
            if oidc.issuer == self.auth.embed_issuer {
                return Err(Error::Config("auth.embed_issuer must differ from auth.oidc.issuer".into()));
            }
        }
        if self.auth.embed_token_ttl_secs == 0
            || self.auth.embed_token_ttl_secs > lore_identity::embed::MAX_EMBED_TTL_SECS
        {
            return Err(Error::Config(format!(
                "auth.embed_token_ttl_secs must be between 1 and {}",
                lore_identity::embed::MAX_EMBED_TTL_SECS
            )));
        }
        let p = &self.ingest.parser;
        if !p.timeout_secs.is_finite()
            || p.timeout_secs <= 0.0
            || p.memory_mib < 64
            || p.max_output_mib == 0
            || p.max_pdf_pages == 0
        {
            return Err(Error::Config(
                "ingest.parser: timeout_secs must be positive, memory_mib at least 64, max_output_mib and \
                 max_pdf_pages positive"
                    .into(),
            ));
        }
        if p.max_entry_mib == 0 || p.max_compression_ratio == 0 {
            return Err(Error::Config(
                "ingest.parser: max_entry_mib and max_compression_ratio must be positive".into(),
            ));
        }
        let r = &self.retrieval;
        if r.candidates == 0 || r.max_chunks_per_document == 0 || r.rrf_k <= 0.0 {
            return Err(Error::Config(
                "retrieval: candidates, max_chunks_per_document and rrf_k must be positive".into(),
            ));
        }
        if self.embedding.dimension == 0 || self.embedding.batch_size == 0 || self.embedding.query_batch_size == 0 {
            return Err(Error::Config(
                "embedding.dimension, embedding.batch_size and embedding.query_batch_size must be positive".into(),
            ));
        }
        Ok(())
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.data_dir.join("catalog.sqlite")
    }

    /// Where the application database is: `database.url`, else the embedded file.
    pub fn database_location(&self) -> lore_db::Location {
        match &self.database.url {
            Some(url) => lore_db::Location::Postgres(url.clone()),
            None => lore_db::Location::Sqlite(self.catalog_path()),
        }
    }

    /// Opens the application database (on PostgreSQL: connects, so a wrong address or
    /// password fails here).
    pub fn open_database(&self) -> Result<lore_db::Database> {
        Ok(lore_db::Database::open(&self.database_location())?)
    }
    pub fn keyword_dir(&self) -> PathBuf {
        self.data_dir.join("keyword")
    }
    pub fn vector_dir(&self) -> PathBuf {
        self.data_dir.join("vectors")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_the_embedded_file_unless_a_postgresql_url_is_given() {
        let config = Config::default();
        assert_eq!(config.database_location(), lore_db::Location::Sqlite(PathBuf::from("data/catalog.sqlite")));
        let config: Config = toml::from_str("[database]\nurl = \"postgres://lore:pw@db:5432/lore\"\n").unwrap();
        config.validate().unwrap();
        assert_eq!(config.database_location(), lore_db::Location::Postgres("postgres://lore:pw@db:5432/lore".into()));
        let config: Config = toml::from_str("[database]\nurl = \"mysql://lore:secret@db/lore\"\n").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("database.url") && error.contains("db/lore") && !error.contains("secret"), "{error}");
        assert!(toml::from_str::<Config>("[database]\npath = \"x\"\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lore.toml");
        std::fs::write(&path, "data_dir = \"d\"\n[chunking]\nmax_tokens = 150\n").unwrap();
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.data_dir, dir.path().join("d"));
        assert_eq!(config.chunking.max_tokens, 150);
        assert_eq!(config.chunking.min_tokens, 120);

        std::fs::write(&path, "data_dri = \"d\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("data_dri"), "{err}");
    }

    #[test]
    fn vector_store_server_is_selected_by_kind() {
        let config: Config =
            toml::from_str("[vector_store]\nkind = \"qdrant\"\nurl = \"http://127.0.0.1:6334\"\ncollection = \"c\"\n")
                .unwrap();
        assert!(matches!(config.vector_store, VectorStoreConfig::Qdrant { .. }));
    }

    /// `QDRANT_URL` points a configured store at another server without dropping the file's
    /// collection (an environment naming only the URL used to reset it to `lore_chunks`).
    #[test]
    fn qdrant_url_from_the_environment_keeps_the_files_collection() {
        let file: Config = toml::from_str(
            "[vector_store]\nkind = \"qdrant\"\nurl = \"http://a:6334\"\ncollection = \"acme\"\nshards = 3\n",
        )
        .unwrap();
        let moved = file.vector_store.with_server("http://b:6334".into(), None, None);
        assert!(
            matches!(&moved, VectorStoreConfig::Qdrant { url, collection, shards: 3, .. } if url == "http://b:6334" && collection == "acme")
        );
        let renamed = file.vector_store.with_server("http://b:6334".into(), Some("other".into()), None);
        assert!(matches!(&renamed, VectorStoreConfig::Qdrant { collection, .. } if collection == "other"));
        let from_embedded = VectorStoreConfig::Embedded.with_server("http://b:6334".into(), None, Some("k".into()));
        assert!(
            matches!(&from_embedded, VectorStoreConfig::Qdrant { collection, api_key: Some(k), shards: 1, .. } if collection == "lore_chunks" && k == "k")
        );
    }

    #[test]
    fn retrieval_mode_defaults_to_hybrid_and_parses() {
        assert_eq!(Config::default().retrieval.mode, RetrievalMode::Hybrid);
        let config: Config = toml::from_str("[retrieval]\nmode = \"bm25\"\n").unwrap();
        assert_eq!(config.retrieval.mode, RetrievalMode::Bm25);
        assert!(toml::from_str::<Config>("[retrieval]\nmode = \"sparse\"\n").is_err());
        assert_eq!(RetrievalMode::parse("Dense"), Some(RetrievalMode::Dense));
        assert_eq!(RetrievalMode::parse("both"), None);
    }

    #[test]
    fn invalid_chunking_is_rejected() {
        let mut config = Config::default();
        config.chunking.min_tokens = 500;
        assert!(config.validate().is_err());
    }
}
