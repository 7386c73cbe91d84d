//! Kill -9 an ingest at several points, rerun, and check both indexes hold exactly the
//! chunks of a clean ingest: no duplicate, no orphan.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::{assert_success, lore};

fn write_corpus(root: &Path, documents: usize) {
    let words = [
        "invoice",
        "ledger",
        "turbine",
        "harbor",
        "quarterly",
        "onboarding",
        "failover",
        "glacier",
        "payroll",
        "compliance",
        "firmware",
        "warehouse",
        "forklift",
        "sensor",
        "gripper",
        "calibration",
        "torque",
        "audit",
    ];
    std::fs::create_dir_all(root).unwrap();
    for d in 0..documents {
        let mut text = format!("# Document {d}\n\n");
        for section in 0..4 {
            text.push_str(&format!("## Section {section}\n\n"));
            for s in 0..12 {
                let w = |i: usize| words[(d * 7 + section * 5 + s * 3 + i) % words.len()];
                text.push_str(&format!("The {} {} of unit {d}-{section}-{s} needs a {} review. ", w(0), w(1), w(2)));
            }
            text.push_str("\n\n");
        }
        std::fs::write(root.join(format!("doc-{d:03}.md")), text).unwrap();
    }
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("lore.toml");
    std::fs::write(&path, "[ingest]\ncommit_every_documents = 4\n").unwrap();
    path
}

fn chunk_ids(data: &Path) -> Vec<String> {
    lore_core::catalog::Catalog::open(&data.join("catalog.sqlite")).unwrap().chunk_ids().unwrap()
}

#[test]
fn killed_ingest_recovers_to_consistent_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus, 60);
    let config = config(tmp.path());
    let corpus_arg = corpus.to_str().unwrap();
    let base = ["--config", config.to_str().unwrap()];

    // Reference: a clean, uninterrupted ingest.
    let clean = tmp.path().join("clean");
    let out = lore(&clean, &[&base[..], &["ingest", corpus_arg, "--acl", "everyone"]].concat());
    assert_success(&out);

    let crashed = tmp.path().join("crashed");
    let mut kills = 0;
    for delay_ms in [700, 1500, 2600, 4000] {
        let mut child = crate::lore_command()
            .arg("--data-dir")
            .arg(&crashed)
            .args(base)
            .args(["ingest", corpus_arg, "--acl", "everyone"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "ingest finished too fast to be interrupted ({kills} kills)");

    let out = lore(&crashed, &[&base[..], &["ingest", corpus_arg, "--acl", "everyone"]].concat());
    assert_success(&out);
    let check = lore(&crashed, &[&base[..], &["status", "--check"]].concat());
    assert_success(&check);
    assert!(String::from_utf8_lossy(&check.stdout).contains("consistency:   ok"));
    assert_eq!(chunk_ids(&crashed), chunk_ids(&clean), "recovered index differs from a clean ingest");
}
