//! Conformance tests for the index backends, written once against the shared API and run
//! on every backend: embedded qdrant-edge always, a Qdrant server when QDRANT_URL is set.

mod embed;

use lore_core::acl::{AccessScope, Principal, PrincipalSet};
use lore_core::index::sparse::{body_term_id, document_vector, query_vector};
use lore_core::index::{KeywordEntry, KeywordIndex, ServerLayout, VectorIndex, VectorPoint, analyze};
use lore_core::lang::Lang;
use lore_core::types::Chunk;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PRINCIPALS: [&str; 8] =
    ["everyone", "group:hr", "group:sales", "group:eng", "dept:legal", "user:ann", "user:bob", "group:ops"];

struct Corpus {
    points: Vec<VectorPoint>,
    chunks: Vec<Chunk>,
}

fn random_corpus(rng: &mut StdRng, documents: usize, chunks_per_doc: usize, dimension: usize) -> Corpus {
    let mut points = Vec::new();
    let mut chunks = Vec::new();
    for d in 0..documents {
        let doc_id = format!("doc-{d}");
        // ACLs never include `everyone` here so that filtering has something to exclude.
        let mut acl: Vec<String> =
            PRINCIPALS[1..].iter().filter(|_| rng.random_bool(0.25)).map(|p| p.to_string()).collect();
        if acl.is_empty() {
            acl.push(PRINCIPALS[1 + rng.random_range(0..PRINCIPALS.len() - 1)].to_string());
        }
        for c in 0..chunks_per_doc {
            let text = format!("shared topic words about policy number {} and item {c}", d % 7);
            let chunk = Chunk {
                id: Chunk::make_id(&doc_id, c, &format!("{d}-{c}")),
                doc_id: doc_id.clone(),
                ordinal: c,
                title: format!("Document {d}"),
                heading_path: vec![],
                page: None,
                char_start: 0,
                char_end: text.len(),
                lang: Lang::En,
                text,
                content_hash: String::new(),
            };
            let vector: Vec<f32> = (0..dimension).map(|_| rng.random_range(-1.0..1.0)).collect();
            points.push(VectorPoint {
                chunk_id: chunk.id.clone(),
                doc_id: doc_id.clone(),
                acl: acl.clone(),
                lang: "en".into(),
                vector,
                sparse: None,
            });
            chunks.push(chunk);
        }
    }
    Corpus { points, chunks }
}

fn random_caller(rng: &mut StdRng) -> PrincipalSet {
    PrincipalSet::from_principals(
        PRINCIPALS.iter().filter(|_| rng.random_bool(0.3)).map(|p| p.parse::<Principal>().unwrap()),
    )
}

/// The vector-index contract, for any backend.
async fn vector_conformance(index: &VectorIndex, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let corpus = random_corpus(&mut rng, 40, 5, 16);
    index.upsert(corpus.points.clone()).await.unwrap();
    index.upsert(corpus.points[..10].to_vec()).await.unwrap(); // upsert is idempotent
    assert_eq!(index.count().await.unwrap(), corpus.points.len());

    for _ in 0..200 {
        let caller = random_caller(&mut rng);
        let scope = AccessScope::impersonate_for_operator(caller.clone(), "conformance test");
        let k = rng.random_range(1..12);
        let query: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0..1.0)).collect();
        let hits = index.search(query, &scope, k).await.unwrap();
        let permitted: Vec<&VectorPoint> = corpus.points.iter().filter(|p| scope.permits(&p.acl)).collect();
        for hit in &hits {
            let point = corpus.points.iter().find(|p| p.chunk_id == hit.chunk_id).expect("known chunk");
            assert!(scope.permits(&point.acl), "chunk with ACL {:?} returned to {caller:?}", point.acl);
            assert_eq!(point.doc_id, hit.doc_id);
        }
        assert_eq!(hits.len(), k.min(permitted.len()), "top-k not filled with permitted chunks");
    }

    let denied = AccessScope::impersonate_for_operator(PrincipalSet::from_principals([]), "conformance test");
    assert!(index.search(vec![0.5; 16], &denied, 10).await.unwrap().is_empty());

    index.delete_documents(vec!["doc-0".into(), "doc-1".into()]).await.unwrap();
    assert_eq!(index.count().await.unwrap(), corpus.points.len() - 10);
    index.optimize().await.unwrap();
    let all = index.all_chunks(&AccessScope::unrestricted_for_admin_tooling("test")).await.unwrap();
    assert_eq!(all.len(), corpus.points.len() - 10);
    assert!(
        index
            .all_chunks(&AccessScope::impersonate_for_operator(random_caller(&mut rng), "conformance test"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn embedded_vector_index_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let index = VectorIndex::open_embedded(dir.path(), 16).unwrap();
    vector_conformance(&index, 7).await;
    drop(index);
    // Reopening keeps the data and refuses another dimension.
    let reopened = VectorIndex::open_embedded(dir.path(), 16).unwrap();
    assert_eq!(reopened.count().await.unwrap(), 190);
    drop(reopened);
    assert!(VectorIndex::open_embedded(dir.path(), 32).is_err());
}

#[tokio::test]
async fn server_vector_index_conforms() {
    let Some(url) = lore_core::env::var(lore_core::env::QDRANT_URL) else {
        eprintln!(
            "SKIP server_vector_index_conforms: set QDRANT_URL (e.g. http://127.0.0.1:6334) to run against a Qdrant server"
        );
        return;
    };
    let collection = format!("lore_conformance_{}", std::process::id());
    let index = VectorIndex::open_server(&url, &collection, None, 16, ServerLayout::default()).await.unwrap();
    vector_conformance(&index, 7).await;
    let admin = qdrant_client::Qdrant::from_url(&url).skip_compatibility_check().build().unwrap();
    admin.delete_collection(&collection).await.unwrap();
}

const WORDS: [&str; 24] = [
    "vacation",
    "expenses",
    "laptop",
    "badge",
    "payroll",
    "travel",
    "receipts",
    "manager",
    "holiday",
    "policy",
    "remote",
    "office",
    "training",
    "benefits",
    "insurance",
    "pension",
    "parking",
    "security",
    "password",
    "printer",
    "contract",
    "overtime",
    "leave",
    "salary",
];

/// Text with a skewed word distribution, so terms have very different document frequencies.
fn random_text(rng: &mut StdRng) -> String {
    let len = rng.random_range(5..60);
    (0..len)
        .map(|_| WORDS[(rng.random_range(0.0f64..1.0).powi(2) * WORDS.len() as f64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The keyword contract on a Qdrant server: BM25 terms as sparse vectors with the `idf`
/// modifier, the ACL filter inside the query. Compared with Tantivy on the same chunks: the
/// same chunks match, top-k is filled with permitted chunks only, the best chunk agrees, and
/// the IDF read back from the server is Tantivy's.
#[tokio::test]
async fn server_keyword_search_conforms() {
    let Some(url) = lore_core::env::var(lore_core::env::QDRANT_URL) else {
        eprintln!("SKIP server_keyword_search_conforms: set QDRANT_URL (e.g. http://127.0.0.1:6334) to run it");
        return;
    };
    let collection = format!("lore_keyword_conformance_{}", std::process::id());
    let index = VectorIndex::open_server(&url, &collection, None, 16, ServerLayout::default()).await.unwrap();
    let mut rng = StdRng::seed_from_u64(23);
    let mut corpus = random_corpus(&mut rng, 80, 3, 16);
    for (chunk, point) in corpus.chunks.iter_mut().zip(&mut corpus.points) {
        chunk.text = random_text(&mut rng);
        point.sparse = Some(document_vector(chunk));
    }
    index.upsert(corpus.points.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tantivy = KeywordIndex::open(dir.path(), true).unwrap();
    let entries: Vec<KeywordEntry<'_>> =
        corpus.chunks.iter().zip(&corpus.points).map(|(chunk, p)| KeywordEntry { chunk, acl: &p.acl }).collect();
    tantivy.add(&entries).unwrap();
    tantivy.commit().unwrap();

    let (mut compared, mut same_best) = (0, 0);
    for _ in 0..200 {
        let scope = AccessScope::impersonate_for_operator(random_caller(&mut rng), "conformance test");
        let words = rng.random_range(1..4);
        let question: Vec<&str> = (0..words).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect();
        let question = question.join(" ");
        let k = rng.random_range(1..15);
        let hits = index.keyword_search(query_vector(&question, Lang::En).unwrap(), &scope, k).await.unwrap();
        let expected = tantivy.search(&question, Lang::En, &scope, 10_000).unwrap();
        assert_eq!(hits.len(), k.min(expected.len()), "{question:?}: top-k not filled with matching permitted chunks");
        for hit in &hits {
            let point = corpus.points.iter().find(|p| p.chunk_id == hit.chunk_id).expect("known chunk");
            assert!(scope.permits(&point.acl), "chunk with ACL {:?} returned for {question:?}", point.acl);
            assert!(
                expected.iter().any(|e| e.chunk_id == hit.chunk_id),
                "{question:?}: a chunk Tantivy does not match"
            );
        }
        if let (Some(hit), Some(best)) = (hits.first(), expected.first()) {
            compared += 1;
            // Ties and near-ties may order differently; the best score must be near the best.
            let tantivy_score_of_hit = expected.iter().find(|e| e.chunk_id == hit.chunk_id).unwrap().score;
            same_best += usize::from(hit.chunk_id == best.chunk_id || tantivy_score_of_hit >= 0.95 * best.score);
        }
    }
    assert!(compared > 100, "the questions should match ({compared})");
    assert!(same_best * 100 >= compared * 90, "best chunk agrees with Tantivy in {same_best} of {compared} questions");

    // Server-side fusion (one Query API request, the ACL filter in each prefetch) scores
    // exactly as Lore's reciprocal rank fusion of the two rankings fetched separately.
    for _ in 0..100 {
        let scope = AccessScope::impersonate_for_operator(random_caller(&mut rng), "conformance test");
        let question = WORDS[rng.random_range(0..WORDS.len())];
        let vector: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0..1.0)).collect();
        let limit = rng.random_range(1..30);
        let terms = query_vector(question, Lang::En).unwrap();
        let fused = index
            .fused_search(vector.clone(), Some(terms.clone()), &scope, limit, 60.0, [1.0, 1.0])
            .await
            .unwrap()
            .unwrap();
        let bm25 = index.keyword_search(terms, &scope, limit).await.unwrap();
        let dense = index.search(vector, &scope, limit).await.unwrap();
        let mut local: std::collections::HashMap<&str, f32> = std::collections::HashMap::new();
        for list in [&bm25, &dense] {
            for (rank, hit) in list.iter().enumerate() {
                *local.entry(hit.chunk_id.as_str()).or_default() += 1.0 / (60.0 + (rank + 1) as f32);
            }
        }
        assert_eq!(fused.len(), limit.min(local.len()), "{question:?}");
        for hit in &fused {
            let point = corpus.points.iter().find(|p| p.chunk_id == hit.chunk_id).expect("known chunk");
            assert!(scope.permits(&point.acl), "fused search returned ACL {:?}", point.acl);
            assert!((local[hit.chunk_id.as_str()] - hit.score).abs() < 1e-6, "{question:?}: {hit:?} vs {local:?}");
        }
        assert!(fused.windows(2).all(|w| w[0].score >= w[1].score));
    }
    let embedded = VectorIndex::open_embedded(dir.path().join("edge").as_path(), 16).unwrap();
    let nobody = AccessScope::impersonate_for_operator(PrincipalSet::from_principals([]), "conformance test");
    assert!(embedded.fused_search(vec![0.0; 16], None, &nobody, 5, 60.0, [1.0, 1.0]).await.unwrap().is_none());

    let terms: Vec<String> = WORDS.iter().flat_map(|w| analyze(w, Lang::En)).chain(["unseenword".to_owned()]).collect();
    let ids: Vec<u32> = terms.iter().map(|t| body_term_id(Lang::En, t)).collect();
    let server = index.keyword_idf(&ids).await.unwrap();
    let local = tantivy.idf(&terms, Lang::En).unwrap();
    for ((term, s), l) in terms.iter().zip(&server).zip(&local) {
        assert!((s - l).abs() < 1e-3 * l.max(1.0), "idf of {term:?}: server {s}, tantivy {l}");
    }
    let admin = qdrant_client::Qdrant::from_url(&url).skip_compatibility_check().build().unwrap();
    admin.delete_collection(&collection).await.unwrap();
}

#[test]
fn keyword_index_filters_inside_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let index = KeywordIndex::open(dir.path(), true).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let corpus = random_corpus(&mut rng, 60, 3, 2);
    let entries: Vec<KeywordEntry<'_>> =
        corpus.chunks.iter().zip(&corpus.points).map(|(chunk, p)| KeywordEntry { chunk, acl: &p.acl }).collect();
    index.add(&entries).unwrap();
    index.commit().unwrap();
    for _ in 0..300 {
        let scope = AccessScope::impersonate_for_operator(random_caller(&mut rng), "conformance test");
        let k = rng.random_range(1..20);
        let hits = index.search("policy topic", Lang::En, &scope, k).unwrap();
        let permitted = corpus.points.iter().filter(|p| scope.permits(&p.acl)).count();
        for hit in &hits {
            let point = corpus.points.iter().find(|p| p.chunk_id == hit.chunk_id).unwrap();
            assert!(scope.permits(&point.acl));
        }
        assert_eq!(hits.len(), k.min(permitted));
    }
    index.delete_documents(&["doc-3".into()]).unwrap();
    index.commit().unwrap();
    assert_eq!(index.num_chunks() as usize, corpus.chunks.len() - 3);
}
