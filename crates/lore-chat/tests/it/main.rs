//! Rendered prompts are snapshot-tested: a change in wording shows up as a diff of the files in
//! `tests/snapshots/`. Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p lore-chat`.

mod testing;

use std::path::Path;

use lore_chat::prompts::{Prompts, Template};

fn check_snapshot(name: &str, rendered: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing snapshot {}: run with UPDATE_SNAPSHOTS=1", path.display()));
    assert_eq!(
        rendered, expected,
        "prompt {name} changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and review the diff"
    );
}

#[test]
fn rendered_prompts_match_their_snapshots() {
    let prompts = Prompts::load(None).unwrap();
    check_snapshot("system", &prompts.system.render(&[("company", "Acme Robotics")]).unwrap());
    let context = "[1] (Acme Robotics Employee Handbook, section \"Vacation Policy\")\nEvery full-time employee receives 25 days of paid vacation per calendar year.\n\n[2] (Política de seguridad, page 2)\nToda la información pertenece a uno de cuatro niveles.";
    check_snapshot(
        "answer",
        &prompts
            .answer
            .render(&[("language", "English"), ("context", context), ("question", "How many vacation days do I get?")])
            .unwrap(),
    );
    check_snapshot(
        "condense",
        &prompts
            .condense
            .render(&[("history", "User: How many vacation days do I get?"), ("question", "Can I carry them over?")])
            .unwrap(),
    );
    assert_eq!(prompts.answer_version(), "system-2026-11-26+answer-2026-11-30");
}

#[test]
fn templates_reject_missing_values_and_bad_headers() {
    let template = Template::parse("t", "version: t-1\n---\nHello {{name}} from {{place}}").unwrap();
    assert_eq!(template.render(&[("name", "Ann"), ("place", "Austin")]).unwrap(), "Hello Ann from Austin");
    let err = template.render(&[("name", "Ann")]).unwrap_err().to_string();
    assert!(err.contains("{{place}}"), "{err}");
    assert!(Template::parse("t", "no header here").is_err());
    assert!(Template::parse("t", "version:\n---\nbody").is_err());
}

#[test]
fn a_prompts_folder_replaces_the_built_in_templates() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["system", "answer", "condense"] {
        std::fs::write(
            dir.path().join(format!("{name}.md")),
            format!("version: custom-{name}\n---\n{name} {{{{question}}}}"),
        )
        .unwrap();
    }
    let prompts = Prompts::load(Some(dir.path())).unwrap();
    assert_eq!(prompts.answer_version(), "custom-system+custom-answer");
    std::fs::remove_file(dir.path().join("condense.md")).unwrap();
    assert!(Prompts::load(Some(dir.path())).unwrap_err().to_string().contains("condense.md"));
}

/// Sentences compared with questions come from the retriever's cache when seen before, each
/// in its own place among the new ones.
#[tokio::test]
async fn sentence_vectors_are_cached_in_place() {
    let data = tempfile::tempdir().unwrap();
    let config = lore_core::config::Config { data_dir: data.path().join("data"), ..Default::default() };
    let embedder = std::sync::Arc::new(lore_core::embed::Embedder::load(&config.embedding).unwrap());
    // An empty data folder: the indexes are created, the model recorded.
    let indexes = std::sync::Arc::new(lore_core::index::Indexes::open(&config, false).await.unwrap());
    let retriever = lore_chat::retrieval::Retriever::with_indexes(&config, embedder.clone(), indexes).unwrap();
    let texts = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let first = retriever.embed_texts(texts(&["Vacation is 25 days.", "The VPN uses WireGuard."])).await.unwrap();
    let mixed = retriever
        .embed_texts(texts(&[
            "Parking is free.",
            "The VPN uses WireGuard.",
            "Lunch is at noon.",
            "Vacation is 25 days.",
        ]))
        .await
        .unwrap();
    // Cached vectors come back exactly; new ones are the model's vectors of their own text.
    assert_eq!(mixed[1], first[1]);
    assert_eq!(mixed[3], first[0]);
    let fresh = embedder.embed_passages(&texts(&["Parking is free.", "Lunch is at noon."])).unwrap();
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(cosine(&mixed[0], &fresh[0]) > 0.97 && cosine(&mixed[2], &fresh[1]) > 0.97);
    assert!(cosine(&mixed[0], &fresh[1]) < 0.9, "vectors assigned to the wrong texts");
}
