//! Importers of public formats, on small fixtures in the formats' own layouts.

use lore_eval::set::CorpusSpec;
use lore_eval::{EvalError, EvalSet};

use crate::fixture;

fn manifest(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("set.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn documents(set: &EvalSet) -> Vec<(String, String, Vec<String>)> {
    match &set.corpus {
        CorpusSpec::Imported { documents, .. } => {
            documents.iter().map(|d| (d.file.clone(), d.title.clone(), d.linked_cases.clone())).collect()
        }
        CorpusSpec::Sources(_) => panic!("expected an imported corpus"),
    }
}

#[test]
fn beir_queries_with_positive_judgements_become_cases() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        &format!(
            "name = \"b\"\nformat = \"beir\"\nquestions = {:?}\ndefault_acl = [\"everyone\"]\n",
            fixture("beir").display().to_string()
        ),
    );
    let set = EvalSet::load(&path).unwrap();
    let ids: Vec<&str> = set.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["q1", "q2"], "q3 has no judgement");
    let relevant: Vec<String> = set.cases[1].relevant.iter().map(|r| r.to_string()).collect();
    assert_eq!(relevant, ["d_3.md"], "a zero score is not relevant");
    assert!(set.cases.iter().all(|c| c.answerable));
    let docs = documents(&set);
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0], ("d1.md".into(), "Vacation".into(), vec!["q1".into()]));
}

#[test]
fn squad_paragraphs_are_documents_and_impossible_questions_unanswerable() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        &format!(
            "name = \"s\"\nformat = \"squad\"\nquestions = {:?}\ndefault_acl = [\"everyone\"]\nlang = \"es\"\n",
            fixture("squad.json").display().to_string()
        ),
    );
    let mut set = EvalSet::load(&path).unwrap();
    assert_eq!(set.cases.len(), 3);
    let q1 = set.case("q1").unwrap();
    assert_eq!(q1.reference_answer, ["Francia", "en Francia"]);
    assert_eq!(q1.relevant[0].to_string(), "000-000.md");
    assert_eq!(q1.lang.as_deref(), Some("es"));
    let q2 = set.case("q2").unwrap();
    assert!(!q2.answerable && q2.relevant.is_empty() && q2.reference_answer.is_empty());
    assert_eq!(documents(&set)[0].2, ["q1", "q2"], "the impossible question keeps its paragraph");
    // A slice keeps the kept cases' paragraphs and the asked-for number of others.
    set.apply_subset(Some(1), Some(0));
    assert_eq!(set.cases.len(), 1);
    assert_eq!(documents(&set).len(), 1);
}

#[test]
fn qa_lines_cite_pages() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("pdfs");
    std::fs::create_dir(&corpus).unwrap();
    let path = manifest(
        dir.path(),
        &format!(
            "name = \"c\"\nformat = \"qa-citations\"\nquestions = {:?}\ncorpus = \"pdfs\"\ndefault_acl = [\"everyone\"]\n",
            fixture("qa-citations.jsonl").display().to_string()
        ),
    );
    let set = EvalSet::load(&path).unwrap();
    assert_eq!(set.cases[0].id, "qa-citations-001");
    assert_eq!(set.cases[0].relevant[0].page, Some(7));
    assert_eq!(set.cases[0].reference_answer, ["Balance billing protection through the Northwind Standard plan."]);
    let pages: Vec<Option<u32>> = set.cases[1].relevant.iter().map(|r| r.page).collect();
    assert_eq!(pages, [Some(1), Some(2)]);
    assert!(matches!(&set.corpus, CorpusSpec::Sources(s) if s[0].default_acl == Some(vec!["everyone".into()])));
}

#[test]
fn missing_data_and_missing_acls_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), "name = \"x\"\nformat = \"squad\"\nquestions = \"../nowhere/dev.json\"\n");
    let err = EvalSet::load(&path).unwrap_err();
    assert!(matches!(err, EvalError::DataMissing { .. }), "{err}");
    assert!(err.to_string().contains("nowhere/dev.json"), "{err}");
    let path = manifest(
        dir.path(),
        &format!("name = \"x\"\nformat = \"squad\"\nquestions = {:?}\n", fixture("squad.json").display().to_string()),
    );
    let err = EvalSet::load(&path).unwrap_err().to_string();
    assert!(err.contains("default_acl"), "{err}");
}
