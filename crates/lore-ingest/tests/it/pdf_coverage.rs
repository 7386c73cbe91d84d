//! Extraction completeness on real PDFs, measured against poppler's `pdftotext` as the
//! reference: the share of the reference's distinct words that our extraction also has.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::shared_data;

/// Per-document floor. Reported numbers are in the foundation issue's note.
const MIN_COVERAGE: f64 = 0.97;

/// Known gaps, each with its own floor so it cannot get worse unnoticed.
const KNOWN_GAPS: [(&str, f64); 0] = [];

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 2).map(|w| w.to_lowercase()).collect()
}

fn pdfs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "pdf")).collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn pdf_word_coverage_against_pdftotext() {
    let Some(data) = shared_data() else {
        eprintln!("SKIP pdf_word_coverage_against_pdftotext: ../shared/data not found");
        return;
    };
    if Command::new("pdftotext").arg("-v").output().is_err() {
        panic!("pdftotext not installed: `apt-get install poppler-utils` (.ci/run installs it)");
    }
    let mut pdfs = pdfs_under(&data.join("corpora/pdfs"));
    pdfs.extend(pdfs_under(&data.join("bench/contoso-hr-azure-demo/data")));
    assert!(!pdfs.is_empty());
    let mut failures = Vec::new();
    for pdf in &pdfs {
        let reference = Command::new("pdftotext").args(["-enc", "UTF-8"]).arg(pdf).arg("-").output().unwrap();
        let reference = words(&String::from_utf8_lossy(&reference.stdout));
        if reference.len() < 20 {
            eprintln!("{:>6}  {:>6}  {} (reference has no text layer; skipped)", "-", reference.len(), pdf.display());
            continue;
        }
        let bytes = std::fs::read(pdf).unwrap();
        let ours = match lore_ingest::loaders::load(pdf, &bytes) {
            Ok(doc) => words(&doc.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n")),
            Err(e) => {
                failures.push(format!("{}: {e}", pdf.display()));
                continue;
            }
        };
        let coverage = reference.intersection(&ours).count() as f64 / reference.len() as f64;
        eprintln!("{coverage:>6.3}  {:>6}  {}", reference.len(), pdf.display());
        let name = pdf.file_name().unwrap().to_string_lossy();
        let floor = KNOWN_GAPS.iter().find(|(n, _)| *n == name).map_or(MIN_COVERAGE, |(_, f)| *f);
        if coverage < floor {
            failures.push(format!("{}: coverage {coverage:.3} < {floor}", pdf.display()));
        }
    }
    assert!(failures.is_empty(), "PDF extraction incomplete:\n{}", failures.join("\n"));
}
