//! `lore eval` through the binary: one case in full detail, the gate's exit code, and a clear
//! error for a set whose data is missing.

use crate::workspace_root;

fn lore_eval(args: &[&str]) -> std::process::Output {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lore-eval-cache");
    let out = tempfile::tempdir().unwrap();
    crate::lore_command()
        .current_dir(workspace_root())
        .env("LORE_EVAL_CACHE", cache)
        .arg("eval")
        .args(args)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run lore eval")
}

#[test]
fn eval_runs_one_case_in_detail_and_gates_the_sample_set() {
    let output = lore_eval(&["eval/sets/samples.toml", "--only", "salary-l1-as-hr", "--modes", "hybrid"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("-- retrieved") && stdout.contains("samples/hr/salary-bands.md"), "{stdout}");
    assert!(stdout.contains("Question: What is the salary range for an Engineer I (L1)?"), "{stdout}");

    let output = lore_eval(&["eval/sets/samples.toml", "--gate"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("gate samples: passed"), "{stdout}");
}

#[test]
fn eval_names_missing_data() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("gone.toml");
    std::fs::write(&manifest, "name = \"gone\"\nformat = \"squad\"\nquestions = \"nowhere.json\"\n").unwrap();
    let output = lore_eval(&[manifest.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nowhere.json") && stderr.contains("is missing"), "{stderr}");
}

/// `lore eval --server`: the sample set against a running `lore serve` holding the sample
/// corpus, each case asked with a token minted for its asker.
#[test]
fn eval_runs_against_a_running_server() {
    use std::io::BufRead;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let samples = workspace_root().join("ingest/samples.toml");
    crate::assert_success(&crate::lore(dir, &["ingest", samples.to_str().unwrap()]));
    let created = crate::lore(dir, &["keys", "create", "--name", "eval", "--role", "admin", "--user", "eval"]);
    crate::assert_success(&created);
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let mut server = crate::lore_command()
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().trim_start_matches("lore: listening on ").to_owned();
    let out = tempfile::tempdir().unwrap();
    let output = crate::lore_command()
        .current_dir(workspace_root())
        .args(["eval", "eval/sets/samples.toml", "--server", &url, "--api-key", &key, "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("samples.json")).unwrap()).unwrap();
    assert_eq!(result["target"], url.as_str());
    let cases = result["cases"].as_array().unwrap();
    let questions = std::fs::read_to_string(workspace_root().join("eval/sets/samples.jsonl")).unwrap();
    let set_size = questions.lines().filter(|l| l.trim_start().starts_with('{')).count();
    assert_eq!(cases.len(), set_size, "every case ran over HTTP");
    assert!(cases.iter().all(|c| c["leaks"].as_array().unwrap().is_empty()), "no leak over HTTP");
    // The permission pair: the HR asker is answered from the salary bands, the sales asker is not.
    let case = |id: &str| cases.iter().find(|c| c["id"] == id).unwrap().clone();
    let cited = |c: &serde_json::Value| c["citations"].to_string();
    assert!(cited(&case("salary-l1-as-hr")).contains("salary-bands.md"), "{}", case("salary-l1-as-hr"));
    assert!(!cited(&case("salary-l1-as-sales")).contains("salary-bands.md"), "{}", case("salary-l1-as-sales"));
}
