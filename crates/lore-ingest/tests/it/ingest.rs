use std::path::Path;

use lore_core::catalog::Catalog;
use lore_ingest::{FileErrorKind, IngestOptions, IngestReport, Ingestor, Source, SourceConfig};

use crate::support::{config_in, embedder, fixture, workspace_root};

async fn ingest(dir: &Path, sources: &[Source], sync: bool) -> IngestReport {
    let mut ingestor = Ingestor::open(config_in(dir), embedder()).await.unwrap();
    let report = ingestor.ingest(sources, &IngestOptions { sync, progress: false }).await.unwrap();
    let problems = ingestor.indexes().check_consistency(ingestor.catalog()).await.unwrap().problems();
    assert!(problems.is_empty(), "indexes disagree after ingest: {problems:?}");
    report
}

fn chunk_ids(dir: &Path) -> Vec<String> {
    Catalog::open(&config_in(dir).catalog_path()).unwrap().chunk_ids().unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn sample_corpus_ingests_once_and_reingest_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let sources = SourceConfig::load(&workspace_root().join("ingest/samples.toml")).unwrap().sources;
    let first = ingest(tmp.path(), &sources, false).await;
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    assert_eq!(first.indexed, first.scanned);
    assert!(first.scanned >= 12 && first.chunks > first.scanned, "{first:?}");
    let ids = chunk_ids(tmp.path());

    let second = ingest(tmp.path(), &sources, false).await;
    assert_eq!((second.indexed, second.unchanged, second.chunks), (0, first.scanned, 0));
    assert_eq!(chunk_ids(tmp.path()), ids, "re-ingest changed chunk ids");
}

#[tokio::test]
async fn documents_without_a_resolvable_acl_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("docs");
    write(&root.join("hr.md"), "---\nacl: [\"group:hr\"]\n---\n# Bonus\n\nThe bonus pool is 8 percent of salary.\n");
    write(&root.join("open.txt"), "The cafeteria opens at eight in the morning.\n");
    write(&root.join("open.txt.meta.toml"), "acl = [\"everyone\"]\n");
    write(&root.join("orphan.md"), "# Orphan\n\nNobody said who may read this document.\n");
    write(&root.join("typo.md"), "---\nacl: [\"grup:hr\"]\n---\nA principal with a typo.\n");
    let source = Source { name: "docs".into(), path: root, default_acl: None, department: None };
    let report = ingest(tmp.path(), &[source], false).await;
    assert_eq!(report.indexed, 2);
    let reasons: Vec<(String, FileErrorKind)> = report
        .failures
        .iter()
        .map(|f| (f.path.file_name().unwrap().to_string_lossy().into_owned(), f.kind.clone()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.contains(&("orphan.md".into(), FileErrorKind::NoAcl)), "{reasons:?}");
    assert!(reasons.iter().any(|(name, kind)| name == "typo.md" && matches!(kind, FileErrorKind::InvalidAcl(_))));
}

#[tokio::test]
async fn changed_documents_are_replaced_and_vanished_ones_removed_with_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("wiki");
    write(&root.join("a.md"), "# Alpha\n\nThe alpha service restarts nightly at two.\n");
    write(&root.join("b.md"), "# Beta\n\nThe beta cluster lives in Frankfurt.\n");
    write(&root.join("c.md"), "# Gamma\n\nThe gamma report is due on Fridays.\n");
    // Collection `wiki`, after the folder's name.
    let source = Source::ad_hoc(&root, Some(vec!["everyone".into()]));
    let first = ingest(tmp.path(), std::slice::from_ref(&source), false).await;
    assert_eq!(first.indexed, 3);
    let before = Catalog::open(&config_in(tmp.path()).catalog_path()).unwrap();
    let b_id = source.document_id("b.md");
    let old_b_chunks = before.chunks_of_document(&b_id).unwrap();
    drop(before);

    write(&root.join("b.md"), "# Beta\n\nThe beta cluster moved to Dublin in March.\n");
    std::fs::remove_file(root.join("c.md")).unwrap();
    let without_sync = ingest(tmp.path(), std::slice::from_ref(&source), false).await;
    assert_eq!((without_sync.indexed, without_sync.unchanged, without_sync.deleted), (1, 1, 0));

    let with_sync = ingest(tmp.path(), std::slice::from_ref(&source), true).await;
    assert_eq!((with_sync.indexed, with_sync.unchanged, with_sync.deleted), (0, 2, 1));

    let catalog = Catalog::open(&config_in(tmp.path()).catalog_path()).unwrap();
    assert!(catalog.document(&source.document_id("c.md")).unwrap().is_none());
    let new_b_chunks = catalog.chunks_of_document(&b_id).unwrap();
    assert!(new_b_chunks.iter().all(|c| c.text.contains("Dublin")));
    assert!(old_b_chunks.iter().all(|old| new_b_chunks.iter().all(|new| new.id != old.id)));
    assert_eq!(catalog.counts().unwrap().0, 2);
}

#[tokio::test]
async fn bad_files_are_reported_and_the_batch_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mixed");
    std::fs::create_dir_all(&root).unwrap();
    for name in ["corrupt.pdf", "encrypted.pdf", "empty.md", "binary.md", "sample.txt", "quote-operator.pdf"] {
        std::fs::copy(fixture(name), root.join(name)).unwrap();
    }
    std::fs::write(root.join("diagram.png"), b"\x89PNG\r\n").unwrap();
    let source =
        Source { name: "mixed".into(), path: root, default_acl: Some(vec!["everyone".into()]), department: None };
    let report = ingest(tmp.path(), &[source], false).await;
    assert_eq!(report.indexed, 2, "{report:?}");
    assert_eq!(report.skipped.len(), 1);
    let mut failed: Vec<String> =
        report.failures.iter().map(|f| f.to_string().rsplit('/').next().unwrap().to_owned()).collect();
    failed.sort();
    assert_eq!(
        failed,
        [
            "binary.md: not a text file (binary content)".to_owned(),
            "corrupt.pdf: corrupt or unreadable pdf: ".to_owned() + &corrupt_detail(&report),
            "empty.md: file is empty".into(),
            "encrypted.pdf: encrypted PDF (password protected)".into(),
        ]
    );
}

fn corrupt_detail(report: &IngestReport) -> String {
    report
        .failures
        .iter()
        .find_map(|f| match &f.kind {
            FileErrorKind::Corrupt { detail, .. } => Some(detail.clone()),
            _ => None,
        })
        .expect("corrupt.pdf reported as corrupt")
}

#[tokio::test]
async fn an_index_built_with_another_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_in(tmp.path());
    let catalog = Catalog::open(&config.catalog_path()).unwrap();
    catalog.set_meta("embedding_model", "some-other-model/768d/mean/0123").unwrap();
    drop(catalog);
    let err = Ingestor::open(config, embedder()).await.err().expect("model mismatch must be refused");
    assert!(err.to_string().contains("some-other-model"), "{err}");
}

/// A Markdown document of `sections` sections of about 150 words each, section `changed`
/// (if any) reworded.
fn long_document(sections: usize, changed: Option<usize>) -> String {
    let topics = ["payroll", "travel", "laptops", "parking", "holidays", "training", "security", "benefits"];
    let mut text = String::from("# Office handbook\n\n");
    for (i, topic) in topics.iter().cycle().take(sections).enumerate() {
        text.push_str(&format!("## Section {i}: {topic}\n\n"));
        for sentence in 0..10 {
            let verb = if changed == Some(i) { "was rewritten in November" } else { "applies to every office" };
            text.push_str(&format!("Rule {sentence} about {topic} in section {i} {verb} and is reviewed yearly. "));
        }
        text.push_str("\n\n");
    }
    text
}

#[tokio::test]
async fn unchanged_chunk_texts_are_never_embedded_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("wiki");
    // Two files with the same text: the second one's chunks reuse the first one's vectors.
    write(&root.join("a.md"), &long_document(6, None));
    write(&root.join("copy/a.md"), &long_document(6, None));
    // Collection `wiki`, after the folder's name.
    let source = Source::ad_hoc(&root, Some(vec!["everyone".into()]));
    let first = ingest(tmp.path(), std::slice::from_ref(&source), false).await;
    assert_eq!(first.indexed, 2);
    let per_copy = first.chunks / 2;
    assert!(per_copy >= 4, "the document should make several chunks, made {per_copy}");
    assert_eq!((first.embedded, first.reused), (per_copy, per_copy));

    // Editing one section re-embeds only the chunks whose text changed.
    write(&root.join("a.md"), &long_document(6, Some(3)));
    let second = ingest(tmp.path(), std::slice::from_ref(&source), false).await;
    assert_eq!((second.indexed, second.unchanged), (1, 1));
    assert!(
        second.embedded >= 1 && second.embedded <= 2 && second.embedded + second.reused == second.chunks,
        "embedded {} and reused {} of {} chunks",
        second.embedded,
        second.reused,
        second.chunks
    );

    // What is stored (and so reused) is the model's vector of that very text: the nearest of
    // the fresh vectors, and nearly equal to it (the default model quantizes activations per
    // call, so a text's vector varies very slightly with the texts batched beside it).
    let catalog = Catalog::open(&config_in(tmp.path()).catalog_path()).unwrap();
    let embedder = embedder();
    let chunks = catalog.chunks_of_document(&source.document_id("a.md")).unwrap();
    let texts: Vec<String> = chunks.iter().map(|c| c.embedding_text()).collect();
    let keys: Vec<String> =
        texts.iter().map(|t| lore_core::catalog::embed_key(&embedder.info().fingerprint, t)).collect();
    let stored = catalog.stored_vectors(&keys).unwrap();
    let fresh = embedder.embed_passages(&texts).unwrap();
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for (i, key) in keys.iter().enumerate() {
        let kept = &stored[key];
        let own = cosine(kept, &fresh[i]);
        assert!(own > 0.99, "stored vector differs from a fresh one (cosine {own})");
        for (j, other) in fresh.iter().enumerate().filter(|(j, _)| *j != i && texts[*j] != texts[i]) {
            assert!(cosine(kept, other) < own, "chunk {i}'s stored vector is nearer chunk {j}'s text");
        }
    }
}
