//! The DLP detectors against the labelled corpus (`fixtures/dlp.jsonl`, EN and ES: true positives in
//! realistic sentences, near-misses with wrong check digits, and text with nothing to find), with
//! the precision and recall targets of the data protection issue, and the redactor's round trip.
//!
//! Run one case alone: `DLP_CASE=042 cargo test -p lore-policy --test dlp -- --nocapture`.

use std::collections::BTreeMap;

use lore_policy::dlp::{Kind, Redactor, find};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    id: String,
    lang: String,
    text: String,
    expected: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    kind: String,
    value: String,
}

#[derive(Default)]
struct Tally {
    true_positives: usize,
    false_positives: usize,
    false_negatives: usize,
}

impl Tally {
    /// A kind with nothing found has made no false claim: precision 1.
    fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }
}

fn ratio(hits: usize, all: usize) -> f64 {
    if all == 0 { 1.0 } else { hits as f64 / all as f64 }
}

fn corpus() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dlp.jsonl");
    let text = std::fs::read_to_string(path).expect("read the DLP corpus");
    let only = std::env::var("DLP_CASE").ok();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str::<Case>(line).unwrap_or_else(|e| panic!("bad corpus line {line}: {e}")))
        .filter(|case| only.as_deref().is_none_or(|id| id == case.id))
        .collect()
}

#[test]
fn precision_and_recall_per_kind_meet_the_targets() {
    let cases = corpus();
    let mut tallies: BTreeMap<Kind, Tally> = Kind::ALL.iter().map(|&kind| (kind, Tally::default())).collect();
    let mut misses = Vec::new();
    for case in &cases {
        assert!(matches!(case.lang.as_str(), "en" | "es"), "case {}: unknown lang {}", case.id, case.lang);
        let mut expected: Vec<(&str, &str)> =
            case.expected.iter().map(|e| (e.kind.as_str(), e.value.as_str())).collect();
        for e in &case.expected {
            assert!(Kind::ALL.iter().any(|k| k.as_str() == e.kind), "case {}: unknown kind {}", case.id, e.kind);
        }
        for finding in find(&case.text) {
            let value = &case.text[finding.start..finding.end];
            let tally = tallies.entry(finding.kind).or_default();
            match expected.iter().position(|&(kind, v)| kind == finding.kind.as_str() && v == value) {
                Some(i) => {
                    expected.swap_remove(i);
                    tally.true_positives += 1;
                }
                None => {
                    tally.false_positives += 1;
                    misses.push(format!("case {}: unexpected {} {value:?}", case.id, finding.kind.as_str()));
                }
            }
        }
        for (kind, value) in expected {
            if let Some(&kind) = Kind::ALL.iter().find(|k| k.as_str() == kind) {
                tallies.entry(kind).or_default().false_negatives += 1;
            }
            misses.push(format!("case {}: missed {kind} {value:?}", case.id));
        }
    }

    eprintln!("{} cases", cases.len());
    eprintln!("| kind    |  tp |  fp |  fn | precision | recall |");
    eprintln!("|---------|----:|----:|----:|----------:|-------:|");
    for (kind, t) in &tallies {
        eprintln!(
            "| {:<7} | {:>3} | {:>3} | {:>3} | {:>9.3} | {:>6.3} |",
            kind.as_str(),
            t.true_positives,
            t.false_positives,
            t.false_negatives,
            t.precision(),
            t.recall()
        );
    }
    for miss in &misses {
        eprintln!("{miss}");
    }
    let failing: Vec<&str> = tallies
        .iter()
        .filter(|(_, t)| t.precision() < 0.98 || t.recall() < 0.95)
        .map(|(kind, _)| kind.as_str())
        .collect();
    assert!(failing.is_empty(), "below precision 0.98 or recall 0.95: {failing:?}");
}

#[test]
fn the_corpus_has_enough_positives_of_every_kind() {
    if std::env::var("DLP_CASE").is_ok() {
        return;
    }
    let cases = corpus();
    assert!(cases.len() >= 200, "{} cases", cases.len());
    for kind in Kind::ALL {
        let positives = cases.iter().flat_map(|c| &c.expected).filter(|e| e.kind == kind.as_str()).count();
        assert!(positives >= 12, "{} has {positives} positives", kind.as_str());
    }
    let empty = cases.iter().filter(|c| c.expected.is_empty()).count();
    assert!(empty >= 60, "{empty} cases without findings (near-misses and plain text)");
}

#[test]
fn the_same_value_gets_the_same_placeholder_across_texts() {
    let mut redactor = Redactor::new();
    let question = redactor.redact("Is ana@example.com on call? Her phone is 612 345 678.");
    let passage = redactor.redact("On-call rota: ana@example.com (612 345 678), luis@example.com.");
    assert_eq!(question, "Is [EMAIL_1] on call? Her phone is [PHONE_1].");
    assert_eq!(passage, "On-call rota: [EMAIL_1] ([PHONE_1]), [EMAIL_2].");
    assert_eq!(redactor.counts(), BTreeMap::from([(Kind::Email, 2), (Kind::Phone, 1)]));
    assert!(!redactor.is_empty());
}

#[test]
fn restore_puts_values_back_and_leaves_invented_placeholders() {
    let mut redactor = Redactor::new();
    let sent = redactor.redact("Refund to ES91 2100 0418 4502 0005 1332 for ana@example.com, please.");
    assert_eq!(sent, "Refund to [IBAN_1] for [EMAIL_1], please.");
    let answer = "I will send [EMAIL_1] the refund to [IBAN_1]; cc [EMAIL_9] and [PHONE_1].";
    assert_eq!(
        redactor.restore(answer),
        "I will send ana@example.com the refund to ES91 2100 0418 4502 0005 1332; cc [EMAIL_9] and [PHONE_1]."
    );
}

#[test]
fn text_without_findings_passes_unchanged() {
    let mut redactor = Redactor::new();
    let text = "Invoice INV-2024-000123 of 2024-03-15, order 4111111111111112, agent v1.2.3.4.";
    assert_eq!(redactor.redact(text), text);
    assert!(redactor.is_empty());
    assert!(redactor.counts().is_empty());
    assert_eq!(redactor.restore("see [EMAIL_1]"), "see [EMAIL_1]");
}
