//! The commands that read the data folder, through the binary: `lore search` and `lore ask`
//! print what the retriever and the chat engine return (their behaviour is tested in
//! lore-server's API suite), and `lore keys create --public` refuses a user.

use serde_json::Value;

use crate::{assert_success, lore, workspace_root};

fn json(data_dir: &std::path::Path, args: &[&str]) -> Value {
    let output = lore(data_dir, args);
    assert_success(&output);
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn search_and_ask_print_filtered_results_and_cited_answers() {
    let data = tempfile::tempdir().unwrap();
    let samples = workspace_root().join("ingest/samples.toml");
    assert_success(&lore(data.path(), &["ingest", samples.to_str().unwrap()]));

    let question = "What is the salary range for an Engineer I (L1)?";
    let as_hr = ["--as", "someone@acme.example", "--groups", "hr", "--json"];
    let results = json(data.path(), &[&["search", question, "-k", "5"][..], &as_hr].concat());
    for retriever in ["bm25", "dense"] {
        let first = &results[retriever][0];
        assert_eq!(first["doc_path"], "samples/hr/salary-bands.md", "{retriever}: {results}");
    }
    let outsider = json(data.path(), &["search", question, "--as", "someone@acme.example", "--json"]);
    assert!(!outsider.to_string().contains("samples/hr/"), "{outsider}");

    let answer = json(data.path(), &[&["ask", question][..], &as_hr].concat());
    assert_eq!(answer["kind"], "extracted", "{answer}");
    assert_eq!(answer["citations"][0]["source_path"], "samples/hr/salary-bands.md", "{answer}");
    assert!(answer["answer"].as_str().unwrap().contains("$95,000"), "{answer}");
    let refused = json(data.path(), &["ask", question, "--as", "someone@acme.example", "--json"]);
    assert_eq!(refused["kind"], "no_answer", "{refused}");

    // The table output names both engines and the query's timings.
    let output = lore(data.path(), &["search", "vacation days", "--as", "someone@acme.example"]);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("== BM25 (") && stdout.contains("== dense (5 hits)"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("query language: en"), "{output:?}");
}

#[test]
fn public_keys_cannot_act_as_a_user() {
    let data = tempfile::tempdir().unwrap();
    let output = lore(
        data.path(),
        &["keys", "create", "--name", "p", "--role", "employee", "--public", "--user", "alice@acme.example"],
    );
    assert!(!output.status.success(), "lore keys create --public --user alice was accepted");
    assert!(String::from_utf8_lossy(&output.stderr).contains("public key"), "{output:?}");
    let output = lore(data.path(), &["keys", "create", "--name", "p", "--public"]);
    assert_success(&output);
    assert!(String::from_utf8_lossy(&output.stdout).trim().starts_with("lore_"));
}

#[test]
fn budgets_and_usage_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let set = ["budgets", "set", "--scope", "department", "--value", "hr", "--period", "month", "--unit", "cost"];
    let output = lore(data.path(), &[&set[..], &["--soft", "80", "--hard", "100", "--on-hard", "degrade"]].concat());
    assert_success(&output);
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(id, "department:hr:month:cost");
    let listed = json(data.path(), &["budgets", "list", "--json"]);
    assert_eq!(listed[0]["budget"]["id"], id, "{listed}");
    assert_eq!((listed[0]["budget"]["hard_limit"].as_f64(), listed[0]["spent"].as_f64()), (Some(100.0), Some(0.0)));
    // A bad value is named, and nothing is stored.
    let output = lore(data.path(), &[&set[..], &["--soft", "120", "--hard", "100"]].concat());
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("soft_limit"), "{output:?}");
    let output = lore(data.path(), &["budgets", "set", "--scope", "team", "--value", "x", "--hard", "1"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("--scope must be one of department, key, user"));
    assert_success(&lore(data.path(), &["budgets", "delete", &id]));
    assert_eq!(json(data.path(), &["budgets", "list", "--json"]), serde_json::json!([]));

    // An empty usage table, and a bad grouping named.
    let output = lore(data.path(), &["usage", "--group-by", "department"]);
    assert_success(&output);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("department"), "{output:?}");
    let output = lore(data.path(), &["usage", "--group-by", "team"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("--group-by must be one of"), "{output:?}");
}
