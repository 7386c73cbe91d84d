//! `lore reembed`: switching embedding models on an existing data folder. The index refuses a
//! different model with a message naming the command; the command converts every chunk in
//! place (resumably) and the index then serves the new model's vectors.

use std::path::{Path, PathBuf};

use lore_core::catalog::{Catalog, embed_key};
use lore_core::config::Config;
use lore_core::embed::Embedder;

use crate::{assert_success, workspace_root};

fn with_model(config: &Path, data_dir: &Path, args: &[&str]) -> std::process::Output {
    crate::lore_command()
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run lore")
}

fn model_config(dir: &Path, name: &str, model_dir: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[embedding]\nname = \"{name}\"\nmodel_dir = {:?}\n", model_dir.display().to_string()),
    )
    .unwrap();
    path
}

#[test]
fn reembed_moves_an_index_to_the_configured_model() {
    let models = lore_core::config::default_models_dir();
    let (packaged, dynamic) = (models.join("all-minilm-l6-v2-int8"), models.join("all-minilm-l6-v2-int8-dyn"));
    if !dynamic.join("model.onnx").is_file() {
        panic!("{} is missing: run python3 scripts/setup-models.py", dynamic.display());
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let old = model_config(work.path(), "minilm-int8", &packaged);
    let new = model_config(work.path(), "minilm-int8-dyn", &dynamic);
    let samples = workspace_root().join("ingest/samples.toml");
    assert_success(&with_model(&old, &data, &["ingest", samples.to_str().unwrap()]));

    // The other model is refused, with the way out.
    let question = "What is the salary range for an Engineer I (L1)?";
    let search = ["search", question, "--as", "someone@acme.example", "--groups", "hr", "--json"];
    let refused = with_model(&new, &data, &search);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("run `lore reembed`"), "{stderr}");
    assert!(stderr.contains("minilm-int8/") && stderr.contains("minilm-int8-dyn/"), "{stderr}");

    let converted = with_model(&new, &data, &["reembed"]);
    assert_success(&converted);
    let stdout = String::from_utf8_lossy(&converted.stdout);
    assert!(stdout.starts_with("re-embedded ") && !stdout.contains("(0 computed"), "{stdout}");

    // Every chunk has a stored vector of the new model (keyed by its fingerprint), close to
    // what the model gives for the text now. Not equal: the dynamically quantized model scales
    // its activations per call, so a text's vector depends slightly on its batch neighbours.
    let mut config = Config { data_dir: data.clone(), ..Default::default() };
    config.embedding.name = "minilm-int8-dyn".into();
    config.embedding.model_dir = dynamic.clone();
    let embedder = Embedder::load(&config.embedding).unwrap();
    let catalog = Catalog::open(&config.catalog_path()).unwrap();
    let chunks = catalog.chunks_by_id(&catalog.chunk_ids().unwrap()).unwrap();
    assert!(chunks.len() > 20, "{} chunks", chunks.len());
    let texts: Vec<String> = chunks.iter().map(|c| c.embedding_text()).collect();
    let expected = embedder.embed_passages(&texts).unwrap();
    let keys: Vec<String> = texts.iter().map(|t| embed_key(&embedder.info().fingerprint, t)).collect();
    let stored = catalog.stored_vectors(&keys).unwrap();
    for (key, want) in keys.iter().zip(&expected) {
        let got = &stored[key];
        let dot: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
        assert!(dot > 0.97, "stored vector differs from the model's (cosine {dot})");
    }
    drop(catalog);

    // Both indexes agree, and search serves the new vectors.
    assert_success(&with_model(&new, &data, &["status", "--check"]));
    let found = with_model(&new, &data, &search);
    assert_success(&found);
    let results: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(results["dense"][0]["doc_path"], "samples/hr/salary-bands.md", "{results}");

    // An interrupted run is named as such, and a rerun finishes it from the stored vectors.
    lore_core::index::begin_reembedding(&Catalog::open(&config.catalog_path()).unwrap(), embedder.info()).unwrap();
    let interrupted = with_model(&new, &data, &search);
    assert!(String::from_utf8_lossy(&interrupted.stderr).contains("interrupted re-embedding"), "{interrupted:?}");
    let resumed = with_model(&new, &data, &["reembed"]);
    assert_success(&resumed);
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("(0 computed"), "{resumed:?}");
    assert_success(&with_model(&new, &data, &search));
    // Nothing left to do.
    let again = with_model(&new, &data, &["reembed"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to do"), "{again:?}");
}
