//! Bad setup and bad input end with a clear message and a non-zero exit, never a panic.

use crate::{lore, workspace_root};

#[test]
fn a_file_that_is_not_onnxruntime_is_reported_not_panicked_on() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_library = workspace_root().join("README.md");
    let output = crate::lore_command()
        .env("ORT_DYLIB_PATH", &not_a_library)
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["search", "anything", "--as", "ann"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("could not load ONNX Runtime") && stderr.contains("README.md"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn ingest_of_a_missing_path_or_bad_config_names_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let output = lore(tmp.path(), &["ingest", "/nonexistent/folder"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/folder does not exist"));

    let config = tmp.path().join("sources.toml");
    std::fs::write(&config, "[[source]]\nname = \"x\"\npath = \"missing\"\ndefault_acl = [\"evryone\"]\n").unwrap();
    let output = lore(tmp.path(), &["ingest", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sources.toml") && stderr.contains("evryone"), "{stderr}");
}

#[test]
fn failed_files_make_ingest_exit_1_and_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("good.md"), "# Good\n\nThe cafeteria opens at eight.\n").unwrap();
    std::fs::write(docs.join("bad.md"), b"\x00\x01binary").unwrap();
    let output = lore(&tmp.path().join("data"), &["ingest", docs.to_str().unwrap(), "--acl", "everyone"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.md: not a text file (binary content)"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 indexed"));
}
