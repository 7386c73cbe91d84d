//! Dense vectors in Qdrant: in-process (qdrant-edge, the embedded default) or a Qdrant
//! server/cluster (qdrant-client). Both keep the chunk's ACL principals and document id in
//! the payload, with keyword payload indexes on both, and filter by ACL inside the engine.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::sparse::{SPARSE_VECTOR, SparseVector};
use crate::acl::AccessScope;
use crate::error::{Error, Result};
use crate::types::ScoredChunkId;

/// One point: a chunk's vector and the payload the filters need.
#[derive(Debug, Clone)]
pub struct VectorPoint {
    pub chunk_id: String,
    pub doc_id: String,
    pub acl: Vec<String>,
    pub lang: String,
    pub vector: Vec<f32>,
    /// The chunk's BM25 terms ([`super::sparse`]), stored on a Qdrant server only (the
    /// embedded mode keeps them in Tantivy).
    pub sparse: Option<SparseVector>,
}

/// A Qdrant server collection's layout: shards spread points over nodes, replicas keep
/// copies (`[vector_store] shards`, `replication_factor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLayout {
    pub shards: u32,
    pub replication_factor: u32,
}

impl Default for ServerLayout {
    fn default() -> Self {
        ServerLayout { shards: 1, replication_factor: 1 }
    }
}

/// The vector index backends. A plain enum: two backends, one set of conformance tests.
pub enum VectorIndex {
    Embedded(EdgeIndex),
    Server(ServerIndex),
}

pub const ACL_FIELD: &str = "acl";
pub const DOC_ID_FIELD: &str = "doc_id";
pub const CHUNK_ID_FIELD: &str = "chunk_id";

/// A nearest-neighbour query with its permission filter, as the backends run it: `principals`
/// (any of them in a point's ACL) and `within` (document ids), `None` meaning no restriction.
struct FilteredQuery {
    vector: QueryVector,
    principals: Option<Vec<String>>,
    within: Option<Vec<String>>,
    limit: usize,
}

enum QueryVector {
    Dense(Vec<f32>),
    Sparse(SparseVector),
}

/// Calls the same method of either backend: qdrant-edge's off the async executor (its calls
/// block), the server's directly.
macro_rules! on_backend {
    ($index:expr, $method:ident($($arg:expr),*)) => {
        match $index {
            VectorIndex::Embedded(edge) => {
                let edge = edge.clone();
                blocking(move || edge.$method($($arg),*)).await
            }
            VectorIndex::Server(server) => server.$method($($arg),*).await,
        }
    };
}

impl VectorIndex {
    pub fn open_embedded(dir: &Path, dimension: usize) -> Result<Self> {
        Ok(VectorIndex::Embedded(EdgeIndex::open(dir, dimension)?))
    }

    pub async fn open_server(
        url: &str,
        collection: &str,
        api_key: Option<&str>,
        dimension: usize,
        layout: ServerLayout,
    ) -> Result<Self> {
        Ok(VectorIndex::Server(ServerIndex::open(url, collection, api_key, dimension, layout).await?))
    }

    pub async fn upsert(&self, points: Vec<VectorPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        on_backend!(self, upsert(points))
    }

    pub async fn delete_documents(&self, doc_ids: Vec<String>) -> Result<()> {
        if doc_ids.is_empty() {
            return Ok(());
        }
        on_backend!(self, delete_documents(doc_ids))
    }

    /// Sets the ACL of every point of a document: a payload update, no vectors rewritten.
    pub async fn set_document_acl(&self, doc_id: String, acl: Vec<String>) -> Result<()> {
        on_backend!(self, set_document_acl(doc_id, acl))
    }

    /// Nearest chunks to `vector` among those `scope` may read.
    pub async fn search(&self, vector: Vec<f32>, scope: &AccessScope, limit: usize) -> Result<Vec<ScoredChunkId>> {
        self.filtered_search(QueryVector::Dense(vector), scope, limit).await
    }

    /// The chunks with the best BM25 scores for `query`'s terms among those `scope` may read,
    /// on a Qdrant server (the sparse vectors with the `idf` modifier). The embedded backend
    /// keeps its keyword index in Tantivy and refuses.
    pub async fn keyword_search(
        &self,
        query: SparseVector,
        scope: &AccessScope,
        limit: usize,
    ) -> Result<Vec<ScoredChunkId>> {
        self.filtered_search(QueryVector::Sparse(query), scope, limit).await
    }

    async fn filtered_search(
        &self,
        vector: QueryVector,
        scope: &AccessScope,
        limit: usize,
    ) -> Result<Vec<ScoredChunkId>> {
        let Some((principals, within)) = restriction(scope, limit) else { return Ok(Vec::new()) };
        on_backend!(self, search(FilteredQuery { vector, principals, within, limit }))
    }

    /// Both rankings fused by a Qdrant server in one Query API request: a dense and a BM25
    /// prefetch of `limit` each, the permission filter inside each, reciprocal rank fusion.
    /// `k` and `weights` (`[bm25, dense]`; a ranking of weight 0 is left out) are Lore's:
    /// `Σ w / (k + rank)`, ranks from 1. Qdrant counts positions from 0, so it is given
    /// `k + 1`, which makes unit weights score exactly as Lore does; other weights differ
    /// (Qdrant divides the rank by the weight instead of multiplying the score). `None` on the
    /// embedded backend, which has no server to fuse.
    pub async fn fused_search(
        &self,
        vector: Vec<f32>,
        terms: Option<SparseVector>,
        scope: &AccessScope,
        limit: usize,
        k: f32,
        weights: [f32; 2],
    ) -> Result<Option<Vec<ScoredChunkId>>> {
        let VectorIndex::Server(server) = self else { return Ok(None) };
        let Some((principals, within)) = restriction(scope, limit) else { return Ok(Some(Vec::new())) };
        let k = (k + 1.0).round().max(1.0) as u32;
        server.fused(vector, terms, principals, within, limit, k, weights).await.map(Some)
    }

    /// BM25's inverse document frequency of each body term (see [`super::sparse::body_term_id`])
    /// over every point of a Qdrant server collection, ACLs aside, as the server's `idf`
    /// modifier computes it.
    pub async fn keyword_idf(&self, term_ids: &[u32]) -> Result<Vec<f32>> {
        match self {
            VectorIndex::Server(server) => server.idf(term_ids).await,
            VectorIndex::Embedded(_) => Err(Error::Vector("the embedded vector index holds no BM25 terms".into())),
        }
    }

    /// Every chunk id with its ACL. Admin tooling only, hence the unrestricted scope.
    pub async fn all_chunks(&self, scope: &AccessScope) -> Result<Vec<(String, Vec<String>)>> {
        if scope.filter_principals().is_some() {
            return Err(Error::Vector("all_chunks needs an unrestricted scope".into()));
        }
        on_backend!(self, all_chunks())
    }

    pub async fn count(&self) -> Result<usize> {
        on_backend!(self, count())
    }

    /// Makes every update so far durable. qdrant-edge buffers its write-ahead log in the
    /// process: without this, a `kill -9` right after `upsert` returned can lose the points.
    /// Callers flush before they record the write elsewhere (the catalog commit).
    pub async fn flush(&self) -> Result<()> {
        match self {
            VectorIndex::Embedded(edge) => {
                let edge = edge.clone();
                blocking(move || {
                    // `EdgeShard::flush` panics if another thread holds its WAL lock; ingest is
                    // the only writer and flushes between its own updates.
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| edge.shard.flush()))
                        .map_err(|_| Error::Vector("qdrant-edge flush failed: write-ahead log busy".into()))
                })
                .await
            }
            VectorIndex::Server(_) => Ok(()), // every server call waits for the write (`wait: true`)
        }
    }

    /// Builds search structures (HNSW, merged segments). qdrant-edge has no background
    /// optimizer, so ingest calls this at the end of a run; the server optimizes by itself.
    pub async fn optimize(&self) -> Result<()> {
        match self {
            VectorIndex::Embedded(edge) => {
                let edge = edge.clone();
                blocking(move || edge.optimize()).await
            }
            VectorIndex::Server(_) => Ok(()),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            VectorIndex::Embedded(_) => "qdrant-edge (embedded)",
            VectorIndex::Server(_) => "qdrant server",
        }
    }
}

/// The principals and the document ids a search is restricted to (`None`: unrestricted).
type Restriction = (Option<Vec<String>>, Option<Vec<String>>);

/// What a search for `scope` is restricted to: the principals (any of them in a point's ACL)
/// and the document ids, `None` for no restriction. `None` overall when nothing can match: an
/// empty principal set or document restriction (deny by default), or a zero limit.
fn restriction(scope: &AccessScope, limit: usize) -> Option<Restriction> {
    let principals = scope.filter_principals();
    let within = scope.document_restriction().map(<[String]>::to_vec);
    let nothing = principals.as_ref().is_some_and(Vec::is_empty) || within.as_ref().is_some_and(Vec::is_empty);
    (!nothing && limit > 0).then_some((principals, within))
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Vector(format!("vector index task failed: {e}")))?
}

/// The payload filter of a search: the ACL, and the document restriction when there is one.
fn search_filter_json(principals: Option<&[String]>, within: Option<&[String]>) -> Option<serde_json::Value> {
    let mut must = Vec::new();
    if let Some(principals) = principals {
        must.push(json!({ "key": ACL_FIELD, "match": { "any": principals } }));
    }
    if let Some(doc_ids) = within {
        must.push(json!({ "key": DOC_ID_FIELD, "match": { "any": doc_ids } }));
    }
    (!must.is_empty()).then(|| json!({ "must": must }))
}

// ---------------------------------------------------------------------------------------
// Embedded: qdrant-edge

#[derive(Clone)]
pub struct EdgeIndex {
    shard: Arc<qdrant_edge::EdgeShard>,
}

fn edge_error(e: impl std::fmt::Display) -> Error {
    Error::Vector(format!("qdrant-edge: {e}"))
}

impl EdgeIndex {
    pub fn open(dir: &Path, dimension: usize) -> Result<Self> {
        use qdrant_edge::{
            Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder, FieldIndexOperations, JsonPath,
            PayloadFieldSchema, PayloadSchemaType, UpdateOperation,
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let existing = dir.join("edge_config.json").exists();
        let config = EdgeConfigBuilder::new()
            .vector("", EdgeVectorParamsBuilder::new(dimension, Distance::Cosine).build())
            .on_disk_payload(false)
            .build();
        let in_use = |e: qdrant_edge::OperationError| {
            let message = e.to_string();
            if message.contains("WouldBlock") {
                Error::Vector(format!(
                    "the embedded vector index in {} is open in another Lore process (only one process can use an \
                     embedded data folder at a time: stop `lore serve` or use a Qdrant server)",
                    dir.display()
                ))
            } else {
                edge_error(message)
            }
        };
        let shard = if existing {
            EdgeShard::load(dir, None).map_err(in_use)?
        } else {
            EdgeShard::new(dir, config).map_err(in_use)?
        };
        let stored_dimension = shard.config().vectors.get("").map(|v| v.size);
        if stored_dimension != Some(dimension) {
            return Err(Error::Vector(format!(
                "vector index in {} holds {stored_dimension:?}-dimensional vectors, model produces {dimension}",
                dir.display()
            )));
        }
        // Created on every open when missing, so a crash right after creating the shard
        // cannot leave it without the indexes the filters rely on.
        let indexed: Vec<String> = shard.info().payload_schema.keys().map(|k| k.to_string()).collect();
        for field in [ACL_FIELD, DOC_ID_FIELD] {
            if !indexed.iter().any(|f| f == field) {
                shard
                    .update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(
                        qdrant_edge::CreateIndex {
                            field_name: field
                                .parse::<JsonPath>()
                                .map_err(|()| Error::Vector(format!("invalid payload path {field:?}")))?,
                            field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                        },
                    )))
                    .map_err(edge_error)?;
            }
        }
        Ok(EdgeIndex { shard: Arc::new(shard) })
    }

    fn upsert(&self, points: Vec<VectorPoint>) -> Result<()> {
        use qdrant_edge::{
            Payload, PointInsertOperations, PointOperations, PointStructPersisted, UpdateOperation,
            VectorStructPersisted,
        };
        let mut persisted = Vec::with_capacity(points.len());
        for p in points {
            let id = parse_point_id(&p.chunk_id)?;
            let payload = json!({
                CHUNK_ID_FIELD: p.chunk_id, DOC_ID_FIELD: p.doc_id, ACL_FIELD: p.acl, "lang": p.lang,
            });
            let serde_json::Value::Object(map) = payload else { unreachable!("payload is an object") };
            persisted.push(PointStructPersisted {
                id,
                vector: VectorStructPersisted::Single(p.vector),
                payload: Some(Payload(map)),
            });
        }
        self.shard
            .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(
                persisted,
            ))))
            .map_err(edge_error)
    }

    fn delete_documents(&self, doc_ids: Vec<String>) -> Result<()> {
        use qdrant_edge::{Filter, PointOperations, UpdateOperation};
        let filter: Filter =
            serde_json::from_value(json!({ "must": [ { "key": DOC_ID_FIELD, "match": { "any": doc_ids } } ] }))
                .map_err(edge_error)?;
        self.shard
            .update(UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter)))
            .map_err(edge_error)
    }

    fn set_document_acl(&self, doc_id: String, acl: Vec<String>) -> Result<()> {
        use qdrant_edge::{Filter, Payload, PayloadOps, SetPayloadOp, UpdateOperation};
        let filter: Filter =
            serde_json::from_value(json!({ "must": [ { "key": DOC_ID_FIELD, "match": { "value": doc_id } } ] }))
                .map_err(edge_error)?;
        let serde_json::Value::Object(payload) = json!({ ACL_FIELD: acl }) else {
            unreachable!("payload is an object")
        };
        self.shard
            .update(UpdateOperation::PayloadOperation(PayloadOps::SetPayload(SetPayloadOp {
                payload: Payload(payload),
                points: None,
                filter: Some(filter),
                key: None,
            })))
            .map_err(edge_error)
    }

    fn search(&self, query: FilteredQuery) -> Result<Vec<ScoredChunkId>> {
        let FilteredQuery { vector, principals, within, limit } = query;
        let QueryVector::Dense(vector) = vector else {
            return Err(Error::Vector("the embedded vector index has no BM25 terms (Tantivy keeps them)".into()));
        };
        use qdrant_edge::{
            Filter, NamedQuery, QueryEnum, QueryRequest, ScoringQuery, WithPayloadInterface, WithVector,
        };
        let filter = match search_filter_json(principals.as_deref(), within.as_deref()) {
            Some(json) => Some(serde_json::from_value::<Filter>(json).map_err(edge_error)?),
            None => None,
        };
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::default_dense(vector)))),
            filter,
            score_threshold: None,
            limit,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let points = self.shard.query(request).map_err(edge_error)?;
        Ok(points
            .into_iter()
            .map(|p| {
                let payload = p.payload.map(|p| p.0).unwrap_or_default();
                ScoredChunkId {
                    chunk_id: payload_str(&payload, CHUNK_ID_FIELD),
                    doc_id: payload_str(&payload, DOC_ID_FIELD),
                    score: p.score,
                }
            })
            .collect())
    }

    fn all_chunks(&self) -> Result<Vec<(String, Vec<String>)>> {
        use qdrant_edge::{ScrollRequest, WithPayloadInterface, WithVector};
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let request = ScrollRequest {
                offset,
                limit: Some(1000),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(false),
                order_by: None,
            };
            let (records, next) = self.shard.scroll(request).map_err(edge_error)?;
            for record in records {
                let payload = record.payload.map(|p| p.0).unwrap_or_default();
                let acl = payload
                    .get(ACL_FIELD)
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                out.push((payload_str(&payload, CHUNK_ID_FIELD), acl));
            }
            match next {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    fn count(&self) -> Result<usize> {
        self.shard.count(qdrant_edge::CountRequest { filter: None, exact: true }).map_err(edge_error)
    }

    fn optimize(&self) -> Result<()> {
        self.shard.optimize().map(|_| ()).map_err(edge_error)
    }
}

fn parse_point_id(chunk_id: &str) -> Result<qdrant_edge::PointId> {
    let uuid = uuid::Uuid::parse_str(chunk_id).map_err(|e| Error::Vector(format!("chunk id {chunk_id:?}: {e}")))?;
    Ok(qdrant_edge::PointId::Uuid(uuid))
}

fn payload_str(payload: &serde_json::Map<String, serde_json::Value>, key: &str) -> String {
    payload.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------------------
// Server: qdrant-client over gRPC

pub struct ServerIndex {
    client: qdrant_client::Qdrant,
    collection: String,
}

fn server_error(e: impl std::fmt::Display) -> Error {
    Error::Vector(format!("qdrant server: {e}"))
}

impl ServerIndex {
    pub async fn open(
        url: &str,
        collection: &str,
        api_key: Option<&str>,
        dimension: usize,
        layout: ServerLayout,
    ) -> Result<Self> {
        use qdrant_client::qdrant::{
            CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, Distance, FieldType, Modifier,
            SparseVectorParamsBuilder, SparseVectorsConfigBuilder, VectorParamsBuilder,
        };
        // The client's own version check prints to standard output (where `lore serve` prints
        // its address); Lore checks the version itself below.
        let mut builder = qdrant_client::Qdrant::from_url(url).skip_compatibility_check();
        if let Some(key) = api_key {
            builder = builder.api_key(key.to_owned());
        }
        let client = builder.build().map_err(server_error)?;
        let version = client
            .health_check()
            .await
            .map_err(|e| Error::Vector(format!("qdrant server at {url} does not answer: {e}")))?
            .version;
        check_server_version(&version)?;
        tracing::debug!(%version, url, collection, "qdrant server");
        if !client.collection_exists(collection).await.map_err(server_error)? {
            let mut sparse = SparseVectorsConfigBuilder::default();
            sparse.add_named_vector_params(SPARSE_VECTOR, SparseVectorParamsBuilder::default().modifier(Modifier::Idf));
            let created = client
                .create_collection(
                    CreateCollectionBuilder::new(collection)
                        .vectors_config(VectorParamsBuilder::new(dimension as u64, Distance::Cosine))
                        .sparse_vectors_config(sparse)
                        .shard_number(layout.shards)
                        .replication_factor(layout.replication_factor),
                )
                .await;
            // Two processes starting together both see no collection; the second create fails.
            if let Err(e) = created
                && !client.collection_exists(collection).await.map_err(server_error)?
            {
                return Err(server_error(e));
            }
            // ACL filters run on every query: a keyword index on both filtered fields. (Not a
            // tenant index: a chunk's ACL names several principals, so no single value
            // partitions the points.)
            for field in [ACL_FIELD, DOC_ID_FIELD] {
                client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(collection, field, FieldType::Keyword).wait(true),
                    )
                    .await
                    .map_err(server_error)?;
            }
        }
        let info = client.collection_info(collection).await.map_err(server_error)?;
        let has_sparse = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .and_then(|p| p.sparse_vectors_config)
            .is_some_and(|s| s.map.contains_key(SPARSE_VECTOR));
        if !has_sparse {
            return Err(Error::Vector(format!(
                "Qdrant collection {collection:?} has no {SPARSE_VECTOR:?} sparse vector for keyword search (an older \
                 layout): use another collection name, or delete it and run `lore migrate` or `lore ingest` again"
            )));
        }
        Ok(ServerIndex { client, collection: collection.to_owned() })
    }

    async fn upsert(&self, points: Vec<VectorPoint>) -> Result<()> {
        use qdrant_client::qdrant::{NamedVectors, PointStruct, UpsertPointsBuilder, Vector};
        let points: Vec<PointStruct> = points
            .into_iter()
            .map(|p| {
                use qdrant_client::qdrant::Value;
                let payload = qdrant_client::Payload::from(HashMap::from([
                    (CHUNK_ID_FIELD, Value::from(p.chunk_id.clone())),
                    (DOC_ID_FIELD, Value::from(p.doc_id)),
                    (ACL_FIELD, Value::from(p.acl)),
                    ("lang", Value::from(p.lang)),
                ]));
                let mut vectors = NamedVectors::default().add_vector("", p.vector);
                if let Some(sparse) = p.sparse.filter(|s| !s.is_empty()) {
                    vectors = vectors.add_vector(SPARSE_VECTOR, Vector::new_sparse(sparse.indices, sparse.values));
                }
                PointStruct::new(p.chunk_id, vectors, payload)
            })
            .collect();
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.collection, points).wait(true))
            .await
            .map_err(server_error)?;
        Ok(())
    }

    async fn delete_documents(&self, doc_ids: Vec<String>) -> Result<()> {
        use qdrant_client::qdrant::{Condition, DeletePointsBuilder, Filter};
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(Filter::must([Condition::matches(DOC_ID_FIELD, doc_ids)]))
                    .wait(true),
            )
            .await
            .map_err(server_error)?;
        Ok(())
    }

    async fn set_document_acl(&self, doc_id: String, acl: Vec<String>) -> Result<()> {
        use qdrant_client::qdrant::{Condition, Filter, SetPayloadPointsBuilder, Value};
        let payload = qdrant_client::Payload::from(HashMap::from([(ACL_FIELD, Value::from(acl))]));
        self.client
            .set_payload(
                SetPayloadPointsBuilder::new(&self.collection, payload)
                    .points_selector(Filter::must([Condition::matches(DOC_ID_FIELD, doc_id)]))
                    .wait(true),
            )
            .await
            .map_err(server_error)?;
        Ok(())
    }

    async fn search(&self, query: FilteredQuery) -> Result<Vec<ScoredChunkId>> {
        use qdrant_client::qdrant::{Query, QueryPointsBuilder, VectorInput};
        let FilteredQuery { vector, principals, within, limit } = query;
        let request = QueryPointsBuilder::new(&self.collection).limit(limit as u64).with_payload(true);
        let mut request = match vector {
            QueryVector::Dense(vector) => request.query(vector),
            QueryVector::Sparse(sparse) => request
                .query(Query::new_nearest(VectorInput::new_sparse(sparse.indices, sparse.values)))
                .using(SPARSE_VECTOR),
        };
        if let Some(filter) = server_filter(principals, within) {
            request = request.filter(filter);
        }
        Ok(scored(self.client.query(request).await.map_err(server_error)?))
    }

    #[allow(clippy::too_many_arguments)]
    async fn fused(
        &self,
        vector: Vec<f32>,
        terms: Option<SparseVector>,
        principals: Option<Vec<String>>,
        within: Option<Vec<String>>,
        limit: usize,
        k: u32,
        weights: [f32; 2],
    ) -> Result<Vec<ScoredChunkId>> {
        use qdrant_client::qdrant::{PrefetchQueryBuilder, Query, QueryPointsBuilder, RrfBuilder, VectorInput};
        let filter = server_filter(principals, within);
        // Every prefetch carries the permission filter: a ranking fused from unfiltered ones
        // could rank chunks the caller may not read.
        let prefetch = |builder: PrefetchQueryBuilder| match &filter {
            Some(filter) => builder.limit(limit as u64).filter(filter.clone()),
            None => builder.limit(limit as u64),
        };
        let mut request = QueryPointsBuilder::new(&self.collection).limit(limit as u64).with_payload(true);
        let mut used = Vec::new();
        if let Some(terms) = terms.filter(|t| !t.is_empty() && weights[0] > 0.0) {
            let sparse = Query::new_nearest(VectorInput::new_sparse(terms.indices, terms.values));
            request =
                request.add_prefetch(prefetch(PrefetchQueryBuilder::default().query(sparse).using(SPARSE_VECTOR)));
            used.push(weights[0]);
        }
        if weights[1] > 0.0 {
            request = request.add_prefetch(prefetch(PrefetchQueryBuilder::default().query(Query::new_nearest(vector))));
            used.push(weights[1]);
        }
        if used.is_empty() {
            return Ok(Vec::new());
        }
        let request = request.query(Query::new_rrf(RrfBuilder::with_k(k).weights(used)));
        Ok(scored(self.client.query(request).await.map_err(server_error)?))
    }

    /// The IDF of each term, read back from the server: a one-term query with weight 1 scores
    /// its best point `idf × value`, and that point's stored value divides it out. A term no
    /// point holds has `df = 0`. One batched request for all terms.
    async fn idf(&self, term_ids: &[u32]) -> Result<Vec<f32>> {
        use qdrant_client::qdrant::{
            Query, QueryBatchPointsBuilder, QueryPointsBuilder, VectorInput, VectorsSelector, vector_output,
        };
        if term_ids.is_empty() {
            return Ok(Vec::new());
        }
        let queries = term_ids
            .iter()
            .map(|&id| {
                QueryPointsBuilder::new(&self.collection)
                    .query(Query::new_nearest(VectorInput::new_sparse(vec![id], vec![1.0])))
                    .using(SPARSE_VECTOR)
                    .limit(1)
                    .with_vectors(VectorsSelector { names: vec![SPARSE_VECTOR.to_owned()] })
                    .build()
            })
            .collect::<Vec<_>>();
        let response = self
            .client
            .query_batch(QueryBatchPointsBuilder::new(&self.collection, queries))
            .await
            .map_err(server_error)?;
        // A term no point holds (df = 0) needs the number of points; counted once, only then.
        let mut unseen = None;
        let mut out = Vec::with_capacity(term_ids.len());
        for (&id, batch) in term_ids.iter().zip(response.result) {
            let Some(point) = batch.result.into_iter().next() else {
                if unseen.is_none() {
                    let n = self.count_approx().await? as f32;
                    unseen = Some(((n + 0.5) / 0.5 + 1.0).ln());
                }
                out.extend(unseen);
                continue;
            };
            let stored = point
                .vectors
                .and_then(|v| match v.vectors_options {
                    Some(qdrant_client::qdrant::vectors_output::VectorsOptions::Vectors(named)) => {
                        named.vectors.get(SPARSE_VECTOR).cloned()
                    }
                    _ => None,
                })
                .and_then(|output| match output.vector {
                    Some(vector_output::Vector::Sparse(sparse)) => {
                        sparse.indices.iter().position(|&i| i == id).map(|p| sparse.values[p])
                    }
                    _ => None,
                });
            match stored {
                Some(value) if value > 0.0 => out.push(point.score / value),
                _ => {
                    return Err(Error::Vector(format!(
                        "qdrant server: no stored weight for term {id} in the best point"
                    )));
                }
            }
        }
        Ok(out)
    }

    async fn count_approx(&self) -> Result<usize> {
        use qdrant_client::qdrant::CountPointsBuilder;
        let response =
            self.client.count(CountPointsBuilder::new(&self.collection).exact(false)).await.map_err(server_error)?;
        Ok(response.result.map(|r| r.count as usize).unwrap_or(0))
    }

    async fn all_chunks(&self) -> Result<Vec<(String, Vec<String>)>> {
        use qdrant_client::qdrant::ScrollPointsBuilder;
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection).limit(1000).with_payload(true);
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let response = self.client.scroll(request).await.map_err(server_error)?;
            for point in response.result {
                let acl = point
                    .payload
                    .get(ACL_FIELD)
                    .and_then(|v| v.as_list())
                    .map(|list| list.iter().filter_map(|v| v.as_str().cloned()).collect())
                    .unwrap_or_default();
                out.push((server_payload_str(&point.payload, CHUNK_ID_FIELD), acl));
            }
            match response.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    async fn count(&self) -> Result<usize> {
        use qdrant_client::qdrant::CountPointsBuilder;
        let response =
            self.client.count(CountPointsBuilder::new(&self.collection).exact(true)).await.map_err(server_error)?;
        Ok(response.result.map(|r| r.count as usize).unwrap_or(0))
    }
}

/// The payload filter of a server query: the ACL, and the document restriction when there is
/// one; `None` when nothing is restricted.
fn server_filter(
    principals: Option<Vec<String>>,
    within: Option<Vec<String>>,
) -> Option<qdrant_client::qdrant::Filter> {
    use qdrant_client::qdrant::{Condition, Filter};
    let mut conditions = Vec::new();
    if let Some(principals) = principals {
        conditions.push(Condition::matches(ACL_FIELD, principals));
    }
    if let Some(doc_ids) = within {
        conditions.push(Condition::matches(DOC_ID_FIELD, doc_ids));
    }
    (!conditions.is_empty()).then(|| Filter::must(conditions))
}

/// The hits of a server query, as chunk ids with their scores.
fn scored(response: qdrant_client::qdrant::QueryResponse) -> Vec<ScoredChunkId> {
    response
        .result
        .into_iter()
        .map(|p| ScoredChunkId {
            chunk_id: server_payload_str(&p.payload, CHUNK_ID_FIELD),
            doc_id: server_payload_str(&p.payload, DOC_ID_FIELD),
            score: p.score,
        })
        .collect()
}

/// Keyword search needs sparse vectors with the `idf` modifier (Qdrant 1.10) and weighted
/// fusion inputs; Lore is tested against 1.18.
fn check_server_version(version: &str) -> Result<()> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().flatten(), parts.next().flatten());
    match (major, minor) {
        (Some(major), Some(minor)) if (major, minor) < (1, 10) => Err(Error::Vector(format!(
            "qdrant server {version} is too old: keyword search needs sparse vectors with the idf modifier (1.10 or \
             later; Lore is tested against 1.18)"
        ))),
        _ => Ok(()),
    }
}

fn server_payload_str(payload: &HashMap<String, qdrant_client::qdrant::Value>, key: &str) -> String {
    payload.get(key).and_then(|v| v.as_str()).cloned().unwrap_or_default()
}
