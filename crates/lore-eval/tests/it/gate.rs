//! The CI gate: the sample set (with its permission pairs) and a slice of ClapNQ against their
//! committed baselines, with the real model and indexes.

use std::collections::BTreeMap;

use lore_eval::EvalSet;
use lore_eval::gate::{self, Baseline};

use crate::{case, config, options, run, workspace_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_set_passes_its_gate_and_permissions_hold() {
    let set = EvalSet::load(&workspace_root().join("eval/sets/samples.toml")).unwrap();
    let result = run(&set, &config(), &options()).await;
    assert_eq!(result.modes, ["hybrid", "bm25", "dense"]);

    // The same question, asked with and without access, gets different answers; the restricted
    // document is never retrieved or cited for the outsider.
    let hr = case(&result, "salary-l1-as-hr", "hybrid");
    assert!(hr.citations.iter().any(|c| c.source_path == "samples/hr/salary-bands.md"), "{hr:#?}");
    assert!(hr.answer.contains("95,000"), "{}", hr.answer);
    for mode in ["hybrid", "bm25", "dense"] {
        let sales = case(&result, "salary-l1-as-sales", mode);
        assert!(!sales.answer.contains("95,000"), "{}", sales.answer);
        assert!(sales.retrieved.iter().all(|p| !p.path.starts_with("hr/")), "{mode}: {:?}", sales.retrieved);
    }
    assert!(result.cases.iter().all(|c| c.leaks.is_empty()));

    // Abstention is the calibrated model's decision on the recorded evidence, and that
    // evidence is what `lore eval calibrate` fits on.
    let model = lore_chat::answerability::AnswerabilityModel::built_in();
    for c in result.cases.iter().filter(|c| c.mode == "hybrid") {
        let probability = model.probability(c.features.as_ref().expect("in-process runs record evidence"));
        assert!((probability - c.answerability.unwrap()).abs() < 1e-9, "{}", c.id);
        assert_eq!(c.abstained, probability < model.threshold, "{}: p = {probability}", c.id);
    }
    let examples = lore_eval::calibrate::examples(&result, 0.3, &[]);
    assert_eq!(examples.len(), set.cases.len());
    assert!(examples.iter().any(|e| e.held_out) && examples.iter().any(|e| !e.held_out));

    let baseline_path = set.baseline_path();
    let baseline = Baseline::load(&baseline_path).unwrap();
    let outcome = gate::check(&result, &baseline, &set.manifest.tolerance);
    assert!(outcome.passed(), "gate failed against {}:\n{}", baseline_path.display(), outcome.failures.join("\n"));

    // The gate can fail: a baseline one step better than this run is a regression.
    let mut stricter = Baseline::from_run(&result, &BTreeMap::new());
    *stricter.modes.get_mut("hybrid").unwrap().get_mut("doc.mrr").unwrap() += 0.1;
    let outcome = gate::check(&result, &stricter, &BTreeMap::new());
    assert!(outcome.failures.iter().any(|f| f.contains("hybrid doc.mrr")), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cited_forbidden_document_is_a_leak_and_fails_the_gate() {
    let mut set = EvalSet::load(&workspace_root().join("eval/sets/samples.toml")).unwrap();
    let mut probe = set.case("vacation-days").unwrap().clone();
    probe.id = "leak-probe".into();
    probe.must_not_cite = vec![lore_eval::Relevant::parse("handbook/employee-handbook.md").unwrap()];
    set.cases.push(probe);
    let mut options = options();
    options.only = Some("leak-probe".into());
    options.modes = vec![lore_core::config::RetrievalMode::Hybrid];
    let result = run(&set, &config(), &options).await;
    let probe = case(&result, "leak-probe", "hybrid");
    assert!(
        probe.leaks.iter().any(|l| l.kind == "citation" && l.reason.contains("must_not_cite")),
        "{:?}",
        probe.leaks
    );
    let outcome = gate::check(&result, &Baseline::from_run(&result, &BTreeMap::new()), &BTreeMap::new());
    assert!(outcome.failures.iter().any(|f| f.starts_with("leak: case leak-probe")), "{outcome:?}");
    // --only shows the prompt that would be sent.
    let detail = lore_eval::report::detail(&result);
    assert!(detail.contains("Question: How many days of paid vacation"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clapnq_slice_passes_its_gate() {
    let path = workspace_root().join("eval/sets/clapnq-ci.toml");
    let set = match EvalSet::load(&path) {
        Err(lore_eval::EvalError::DataMissing { path, .. }) => {
            eprintln!("skipped: {} is absent (public data lives in ../shared/data)", path.display());
            return;
        }
        other => other.unwrap(),
    };
    assert_eq!(set.cases.len(), 40);
    let result = run(&set, &config(), &options()).await;
    let baseline = Baseline::load(&set.baseline_path()).unwrap();
    let outcome = gate::check(&result, &baseline, &set.manifest.tolerance);
    assert!(outcome.passed(), "clapnq-ci gate failed:\n{}", outcome.failures.join("\n"));
}
