//! `lore eval` through the binary: one case in full detail, the gate's exit code, and a clear
//! error for a set whose data is missing.

use std::process::Command;

use crate::workspace_root;

fn lore_eval(args: &[&str]) -> std::process::Output {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lore-eval-cache");
    let out = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_lore"))
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
