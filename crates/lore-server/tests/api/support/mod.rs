//! What every API test shares, once per test binary: the embedding model, the sample corpus
//! (ingested once into a template data folder that servers start from a copy of), a server
//! starter on a runtime of its own, and HTTP client helpers.

pub mod client;
pub mod fixtures;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use lore_chat::conversations::Conversations;
use lore_chat::{ChatEngine, Retriever};
use lore_core::acl::{AccessScope, PrincipalSet};
use lore_core::config::{Config, ParserConfig};
use lore_core::embed::Embedder;
use lore_ingest::{IngestOptions, Ingestor, Source, SourceConfig};
use lore_server::AppState;

/// The embedding model, loaded once for the whole binary.
pub fn embedder() -> Arc<Embedder> {
    static EMBEDDER: OnceLock<Arc<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            Arc::new(Embedder::load(&Config::default().embedding).expect("run `python3 scripts/setup-models.py`"))
        })
        .clone()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A configuration for a data folder. Test files are trusted, so they are parsed in process;
/// the isolated parser has its own tests in the `lore` binary's suite, which can spawn it.
pub fn config_in(data_dir: PathBuf) -> Config {
    let mut config = Config { data_dir, ..Default::default() };
    config.ingest.parser = ParserConfig::in_process();
    config
}

/// The sources of `ingest/samples.toml`.
pub fn sample_sources() -> Vec<Source> {
    SourceConfig::load(&workspace_root().join("ingest/samples.toml")).unwrap().sources
}

/// The runtime fixtures run on: servers, identity providers and model providers started here
/// outlive the test that started them (each test has a runtime of its own).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

/// Runs the future `make` returns on the fixtures' runtime, from a thread of its own so that it
/// can be called inside a test's runtime too (the future itself need not be `Send`). Tasks it
/// spawns keep running.
pub fn block_on<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || runtime().block_on(make())).join().unwrap()
}

/// A data folder holding the sample corpus, ingested once for the binary; servers copy it.
fn samples_template() -> &'static Path {
    static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let config = config_in(dir.path().join("data"));
            block_on(move || async move {
                let mut ingestor = Ingestor::open(config, embedder()).await.unwrap();
                let report = ingestor.ingest(&sample_sources(), &IngestOptions::default()).await.unwrap();
                assert!(report.failures.is_empty(), "{:?}", report.failures);
            });
            dir
        })
        .path()
}

/// Fills `data_dir` with a copy of the ingested sample corpus.
pub fn copy_samples(data_dir: &Path) {
    copy_dir(&samples_template().join("data"), data_dir);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the sample corpus, for tests that use the retriever and the chat engine
/// directly; it holds the retriever.
struct SampleCopy {
    retriever: Arc<Retriever>,
    indexes: Arc<lore_core::index::Indexes>,
    config: Config,
    dir: tempfile::TempDir,
}

fn sample_copy() -> &'static SampleCopy {
    static COPY: OnceLock<SampleCopy> = OnceLock::new();
    COPY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path().join("data"));
        copy_samples(&config.data_dir);
        let opened = config.clone();
        let indexes =
            block_on(move || async move { Arc::new(lore_core::index::Indexes::open(&opened, false).await.unwrap()) });
        let retriever = Arc::new(Retriever::with_indexes(&config, embedder(), indexes.clone()).unwrap());
        SampleCopy { retriever, indexes, config, dir }
    })
}

/// A retriever over a copy of the sample corpus.
pub fn sample_retriever() -> Arc<Retriever> {
    sample_copy().retriever.clone()
}

/// A retriever over the same copy that keeps no query or sentence vectors: every question is
/// embedded, and its candidate sentences too (what a first question costs).
pub fn uncached_sample_retriever() -> Arc<Retriever> {
    let copy = sample_copy();
    let mut config = copy.config.clone();
    config.embedding.query_cache_size = 0;
    Arc::new(Retriever::with_indexes(&config, embedder(), copy.indexes.clone()).unwrap())
}

/// The database of [`sample_retriever`]'s corpus (for conversations).
pub fn sample_catalog() -> PathBuf {
    sample_copy().dir.path().join("data/catalog.sqlite")
}

/// A chat engine without a model (extractive answers) over [`sample_retriever`].
pub fn sample_engine() -> &'static ChatEngine {
    static ENGINE: OnceLock<ChatEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let conversations = Conversations::open(&sample_catalog()).unwrap();
        ChatEngine::new(sample_retriever(), conversations, &Config::default().chat).unwrap()
    })
}

/// The scope of `user` in `groups`, impersonated as `lore search --as` does.
pub fn scope_of(user: &str, groups: &[String]) -> AccessScope {
    AccessScope::impersonate_for_operator(PrincipalSet::for_user(user, groups, &[]).unwrap(), "test")
}

/// How to start a test server: its configuration, whether it starts from the sample corpus,
/// and more sources to ingest before it opens.
pub struct Setup {
    pub config: Config,
    samples: bool,
    sources: Vec<Source>,
    data: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        let data = tempfile::tempdir().unwrap();
        Setup { config: config_in(data.path().join("data")), samples: false, sources: Vec::new(), data }
    }

    /// Starts from a copy of the ingested sample corpus.
    pub fn with_samples(mut self) -> Setup {
        self.samples = true;
        self
    }

    /// A folder of the setup's own temporary directory, for test documents.
    pub fn folder(&self, name: &str) -> PathBuf {
        let path = self.data.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Ingests `path` as collection `name` before the server opens.
    pub fn source(mut self, name: &str, path: PathBuf, acl: &[&str], department: Option<&str>) -> Setup {
        let default_acl = (!acl.is_empty()).then(|| acl.iter().map(|a| a.to_string()).collect());
        self.sources.push(Source { name: name.into(), path, default_acl, department: department.map(str::to_owned) });
        self
    }

    /// Opens the state and serves it on 127.0.0.1:0 on the fixtures' runtime, for as long as
    /// the returned server lives (fixtures keep theirs for the whole binary).
    pub fn start(self) -> TestServer {
        let Setup { config, samples, sources, data } = self;
        if samples {
            copy_samples(&config.data_dir);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, state, serving) = block_on(move || async move {
            if !sources.is_empty() {
                let mut ingestor = Ingestor::open(config.clone(), embedder()).await.unwrap();
                let report = ingestor.ingest(&sources, &IngestOptions::default()).await.unwrap();
                assert!(report.failures.is_empty(), "{:?}", report.failures);
            }
            let state = AppState::open(config, embedder()).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let serving = tokio::spawn(lore_server::http::serve(listener, state.clone(), async {
                let _ = stopped.await;
            }));
            (addr, state, serving)
        });
        TestServer { addr, state, stop: Some(stop), serving: Some(serving), _data: data }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _data: tempfile::TempDir,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Document ids by path in collection `source`.
    pub fn documents_of(&self, source: &str) -> std::collections::HashMap<String, String> {
        self.state.catalog().documents_of_source(source).unwrap().into_iter().map(|d| (d.path, d.id)).collect()
    }
}

impl Drop for TestServer {
    /// Stops serving before the data folder goes away (the vector index flushes on drop).
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = block_on(move || serving);
        }
    }
}
