//! No Docker engine runs here, so the compose file is checked by reading it: the services of
//! the scale-out layout (PostgreSQL, Qdrant, two API replicas, a worker, a reverse proxy), the
//! pinned images, health checks, volumes, roles, and the variables the code reads.

use lore_core::env;
use serde_norway::Value;

use crate::workspace_root;

fn pinned(image: &str, name: &str) {
    let (image_name, tag) = image.split_once(':').unwrap_or_else(|| panic!("{image} has no tag"));
    assert_eq!(image_name, name);
    assert!(tag != "latest" && tag.matches('.').count() >= 1, "unpinned image {image}");
}

#[test]
fn compose_file_runs_replicas_and_a_worker_on_postgresql_and_qdrant() {
    let text = std::fs::read_to_string(workspace_root().join("docker-compose.yml")).unwrap();
    let mut compose: Value = serde_norway::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    let services = &compose["services"];
    let declared = |volume: &str| compose["volumes"].as_mapping().unwrap().contains_key(volume);
    let mounts = |service: &Value, target: &str| {
        service["volumes"].as_sequence().unwrap().iter().any(|v| v.as_str().unwrap().split(':').nth(1) == Some(target))
    };

    let postgres = &services["postgres"];
    pinned(postgres["image"].as_str().unwrap(), "postgres");
    assert!(postgres["image"].as_str().unwrap().starts_with("postgres:15"), "the version the tests run");
    assert!(postgres["healthcheck"]["test"].as_sequence().unwrap().iter().any(|t| t.as_str() == Some("pg_isready")));
    assert!(mounts(postgres, "/var/lib/postgresql/data"));

    let qdrant = &services["qdrant"];
    pinned(qdrant["image"].as_str().unwrap(), "qdrant/qdrant");
    assert!(qdrant["healthcheck"]["test"].is_sequence());
    assert!(mounts(qdrant, "/qdrant/storage"));

    let mut roles = Vec::new();
    for name in ["api-1", "api-2", "worker"] {
        let lore = &services[name];
        assert_eq!(lore["build"].as_str(), Some("."), "{name}");
        for engine in ["postgres", "qdrant"] {
            assert_eq!(lore["depends_on"][engine]["condition"].as_str(), Some("service_healthy"), "{name}");
        }
        let command: Vec<&str> = lore["command"].as_sequence().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(&command[..2], ["serve", "--role"], "{name}");
        roles.push(command[2]);
        let bind = command.iter().position(|c| *c == "--bind").map(|i| command[i + 1]).expect("--bind");
        assert!(bind.starts_with("0.0.0.0:"), "{name} must listen beyond the container's loopback");
        let port = bind.rsplit(':').next().unwrap();
        let health: Vec<&str> =
            lore["healthcheck"]["test"].as_sequence().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert!(health.iter().any(|t| *t == format!("http://127.0.0.1:{port}/readyz")), "{name}: {health:?}");
        let environment = lore["environment"].as_mapping().expect("lore environment");
        for variable in [env::LORE_DATABASE_URL, env::QDRANT_URL, env::LORE_DATA_DIR, env::LORE_QDRANT_COLLECTION] {
            assert!(environment.contains_key(variable), "{name} does not set {variable}");
        }
        let database = environment.get(env::LORE_DATABASE_URL).and_then(Value::as_str).unwrap();
        assert!(database.starts_with("postgres://") && database.contains("@postgres:5432/"), "{database}");
        let url = environment.get(env::QDRANT_URL).and_then(Value::as_str).unwrap();
        assert!(url.starts_with("http://qdrant:6334"), "QDRANT_URL must point at the gRPC port of the qdrant service");
        // Staged uploads: written by an API replica, read by a worker.
        let data_dir = environment.get(env::LORE_DATA_DIR).and_then(Value::as_str).unwrap();
        assert!(mounts(lore, data_dir), "{name} must mount the shared uploads volume at {data_dir}");
    }
    assert_eq!(roles, ["api", "api", "worker"]);

    // The proxy spreads requests over both replicas and waits for them to be healthy.
    let proxy = &services["proxy"];
    pinned(proxy["image"].as_str().unwrap(), "nginx");
    assert!(proxy["healthcheck"]["test"].is_sequence());
    for api in ["api-1", "api-2"] {
        assert_eq!(proxy["depends_on"][api]["condition"].as_str(), Some("service_healthy"));
    }
    let mount = proxy["volumes"][0].as_str().unwrap();
    let nginx = std::fs::read_to_string(workspace_root().join(mount.split(':').next().unwrap())).unwrap();
    for upstream in ["server api-1:8080", "server api-2:8080", "proxy_pass http://lore_api", "proxy_buffering off"] {
        assert!(nginx.contains(upstream), "deploy/nginx.conf lacks {upstream:?}");
    }
    for volume in ["postgres-data", "qdrant-storage", "lore-uploads"] {
        assert!(declared(volume), "volume {volume} not declared");
    }

    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).unwrap();
    for needle in
        ["scripts/setup-models.py", env::ORT_DYLIB_PATH, env::LORE_MODELS_DIR, "cargo build --release", "curl"]
    {
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
