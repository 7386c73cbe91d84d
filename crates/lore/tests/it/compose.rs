//! No Docker engine runs here, so the compose file is checked by reading it: the services,
//! the pinned Qdrant image, health checks, volumes, and the variables the code reads.

use lore_core::env;
use serde_norway::Value;

use crate::workspace_root;

#[test]
fn compose_file_names_the_services_and_variables_the_code_expects() {
    let text = std::fs::read_to_string(workspace_root().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_norway::from_str(&text).unwrap();
    let services = &compose["services"];

    let qdrant = &services["qdrant"];
    let image = qdrant["image"].as_str().expect("qdrant image");
    let (name, tag) = image.split_once(':').expect("qdrant image has a tag");
    assert_eq!(name, "qdrant/qdrant");
    assert!(tag.starts_with('v') && tag != "latest" && tag.matches('.').count() == 2, "unpinned image {image}");
    assert!(qdrant["healthcheck"]["test"].is_sequence());
    assert!(qdrant["volumes"][0].as_str().unwrap().ends_with(":/qdrant/storage"));

    let lore = &services["lore"];
    assert_eq!(lore["build"].as_str(), Some("."));
    assert_eq!(lore["depends_on"]["qdrant"]["condition"].as_str(), Some("service_healthy"));
    assert!(lore["healthcheck"]["test"].is_sequence());
    let environment = lore["environment"].as_mapping().expect("lore environment");
    for variable in [env::QDRANT_URL, env::LORE_DATA_DIR, env::LORE_QDRANT_COLLECTION] {
        assert!(environment.contains_key(variable), "compose does not set {variable}");
    }
    let url = environment.get(env::QDRANT_URL).and_then(Value::as_str).unwrap();
    assert!(url.starts_with("http://qdrant:6334"), "QDRANT_URL must point at the gRPC port of the qdrant service");
    let data_dir = environment.get(env::LORE_DATA_DIR).and_then(Value::as_str).unwrap();
    assert!(
        lore["volumes"].as_sequence().unwrap().iter().any(|v| v.as_str().unwrap().ends_with(&format!(":{data_dir}")))
    );
    for volume in ["qdrant-storage", "lore-data"] {
        assert!(compose["volumes"].as_mapping().unwrap().contains_key(volume), "volume {volume} not declared");
    }

    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).unwrap();
    for needle in ["scripts/setup-models.py", env::ORT_DYLIB_PATH, env::LORE_MODELS_DIR, "cargo build --release"] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
    }
}

/// Every TOML example in the README is a valid configuration (so the SSO recipes stay true).
#[test]
fn readme_config_examples_parse_and_validate() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme.split("```toml\n").skip(1).map(|rest| rest.split("```").next().unwrap()).collect();
    assert!(blocks.len() >= 4, "expected the configuration and SSO examples");
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let path = dir.path().join(format!("example-{i}.toml"));
        std::fs::write(&path, block).unwrap();
        let config = lore_core::config::Config::from_file(&path).unwrap_or_else(|e| panic!("{e}\n{block}"));
        config.validate().unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}
