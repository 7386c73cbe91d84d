//! Golden sets: the JSONL case format, `relevant` references, and the TOML manifest that ties
//! questions to the corpus (and its ACLs) they are asked over.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::import;

/// Who asks: becomes the principals `user:<user>`, `group:<g>`, `dept:<d>` and `everyone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asker {
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub departments: Vec<String>,
    /// Informational (`employee`, `agent`, ...): retrieval depends on principals only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Default for Asker {
    fn default() -> Self {
        Asker { user: "eval@lore.invalid".into(), groups: Vec::new(), departments: Vec::new(), role: None }
    }
}

impl Asker {
    pub fn principals(&self) -> Result<lore_core::acl::PrincipalSet, lore_core::Error> {
        lore_core::acl::PrincipalSet::for_user(&self.user, &self.groups, &self.departments)
    }

    /// `user [groups]`, for tables.
    pub fn label(&self) -> String {
        let mut extra: Vec<String> = self.groups.iter().map(|g| format!("group:{g}")).collect();
        extra.extend(self.departments.iter().map(|d| format!("dept:{d}")));
        if extra.is_empty() { self.user.clone() } else { format!("{} [{}]", self.user, extra.join(",")) }
    }
}

/// A document (or one page or section of it) that answers a question, written
/// `path`, `path#page=N` or `path#Heading`. `path` is relative to the source folder and may
/// start with the source name (`samples/hr/salary-bands.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relevant {
    pub path: String,
    pub page: Option<u32>,
    pub heading: Option<String>,
}

impl Relevant {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_start_matches('[').trim_end_matches(']').trim();
        let (path, fragment) = match text.split_once('#') {
            Some((path, fragment)) => (path.trim(), Some(fragment.trim())),
            None => (text, None),
        };
        if path.is_empty() {
            return Err(format!("{text:?}: empty document path"));
        }
        let mut relevant = Relevant { path: path.trim_start_matches("./").to_owned(), page: None, heading: None };
        match fragment {
            None | Some("") => {}
            Some(fragment) => match fragment.strip_prefix("page=") {
                Some(page) => {
                    let page = page.parse::<u32>().map_err(|_| format!("{text:?}: page must be a positive number"))?;
                    if page == 0 {
                        return Err(format!("{text:?}: pages start at 1"));
                    }
                    relevant.page = Some(page);
                }
                None => relevant.heading = Some(fragment.to_owned()),
            },
        }
        Ok(relevant)
    }

    /// Whether a document `source/path` is the one this reference names.
    pub fn matches_document(&self, source: &str, path: &str) -> bool {
        let full = format!("{source}/{path}");
        self.path == path || self.path == full || full.ends_with(&format!("/{}", self.path))
    }

    /// Whether a passage (document, page, heading path) is what this reference names.
    pub fn matches(&self, source: &str, path: &str, page: Option<u32>, headings: &[String]) -> bool {
        self.matches_document(source, path)
            && self.page.is_none_or(|p| page == Some(p))
            && self.heading.as_ref().is_none_or(|h| headings.iter().any(|x| x.eq_ignore_ascii_case(h)))
    }
}

impl std::fmt::Display for Relevant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path)?;
        if let Some(page) = self.page {
            write!(f, "#page={page}")?;
        }
        if let Some(heading) = &self.heading {
            write!(f, "#{heading}")?;
        }
        Ok(())
    }
}

impl Serialize for Relevant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Relevant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Relevant::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One question of a golden set (one line of the JSONL format; see `eval/README.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub asker: Asker,
    /// One reference answer, or several acceptable ones (token F1 takes the best).
    #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub reference_answer: Vec<String>,
    #[serde(default)]
    pub relevant: Vec<Relevant>,
    #[serde(default = "yes")]
    pub answerable: bool,
    /// Documents this asker must never see cited or retrieved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_not_cite: Vec<Relevant>,
    /// `en` or `es`; detected from the question when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `lore_core::types::one_or_many`, absent meaning an empty list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(lore_core::types::one_or_many(d)?.unwrap_or_default())
}

impl Case {
    pub fn lang(&self) -> lore_core::lang::Lang {
        self.lang
            .as_deref()
            .and_then(lore_core::lang::Lang::from_code)
            .unwrap_or_else(|| lore_core::lang::Lang::detect(&self.question))
    }

    fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("empty id".into());
        }
        if self.question.trim().is_empty() {
            return Err(format!("case {}: empty question", self.id));
        }
        if self.answerable && self.relevant.is_empty() {
            return Err(format!("case {}: an answerable case needs `relevant` documents", self.id));
        }
        if let Some(lang) = &self.lang
            && lore_core::lang::Lang::from_code(lang).is_none()
        {
            return Err(format!("case {}: unknown lang {lang:?} (en or es)", self.id));
        }
        self.asker.principals().map_err(|e| format!("case {}: asker: {e}", self.id))?;
        Ok(())
    }
}

/// Reads the Lore JSONL format: one case per line, blank lines and `//` comments skipped.
pub fn read_jsonl(path: &Path) -> Result<Vec<Case>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut cases: Vec<Case> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let bad = |message: String| EvalError::Case { path: path.to_owned(), line: i + 1, message };
        let case: Case = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        case.validate().map_err(bad)?;
        if cases.iter().any(|c| c.id == case.id) {
            return Err(bad(format!("duplicate id {:?}", case.id)));
        }
        cases.push(case);
    }
    Ok(cases)
}

/// The formats a manifest's questions can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Lore's own JSONL (`eval/README.md`).
    Lore,
    /// BEIR: a folder with `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`.
    Beir,
    /// SQuAD v1.1/v2.0 JSON: paragraphs become documents, `is_impossible` unanswerable.
    Squad,
    /// `{"question", "truth"}` lines whose answers cite `[file.pdf#page=N]`.
    QaCitations,
    /// ClapNQ annotated JSONL (answerable and unanswerable files) over a passage corpus.
    Clapnq,
}

/// A smaller, deterministic slice of a large set (for CI).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    /// Keep this many cases, evenly spread over the set (every n-th).
    pub questions: Option<usize>,
    /// For imported corpora: keep only the documents of the kept cases plus this many others
    /// (default: keep every document).
    pub distractors: Option<usize>,
}

/// `eval/sets/<name>.toml`: what to ask and over which corpus. Paths are relative to the
/// manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetManifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub format: Format,
    /// The questions: a file, or (ClapNQ) several, or (BEIR) the dataset folder.
    #[serde(deserialize_with = "paths")]
    pub questions: Vec<PathBuf>,
    /// A source config (folders with their ACLs, as for `lore ingest`).
    pub sources: Option<PathBuf>,
    /// A folder ingested with `default_acl`, or a JSONL passage corpus (`_id`, `title`, `text`).
    pub corpus: Option<PathBuf>,
    pub default_acl: Option<Vec<String>>,
    /// BEIR qrels split (default `test`).
    pub split: Option<String>,
    /// Language of imported questions (`en`, `es`) when the format does not say.
    pub lang: Option<String>,
    #[serde(default)]
    pub subset: Subset,
    /// Per-metric gate tolerances (absolute), overriding the baseline's default.
    #[serde(default)]
    pub tolerance: std::collections::BTreeMap<String, f64>,
    /// Default: `../baselines/<name>.json` next to the manifest's folder.
    pub baseline: Option<PathBuf>,
    /// A department assistant to answer as: a set naming one is the golden set of that variant,
    /// gated against its own baseline.
    pub assistant: Option<AssistantVariant>,
}

/// `assistant = { department = "hr", version = 3, name = "Petra", tone = "…", instructions = "…" }`
/// in a set manifest: the variant as `PUT /v1/assistants/{department}` stores it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantVariant {
    pub department: String,
    #[serde(default = "first_version")]
    pub version: i64,
    pub name: String,
    pub tone: Option<String>,
    pub instructions: Option<String>,
}

fn first_version() -> i64 {
    1
}

impl AssistantVariant {
    pub fn assistant(&self) -> lore_policy::assistants::Assistant {
        lore_policy::assistants::Assistant {
            department: self.department.clone(),
            version: self.version,
            name: self.name.clone(),
            greeting: None,
            greeting_es: None,
            tone: self.tone.clone(),
            instructions: self.instructions.clone(),
            author: "lore eval".into(),
            created_ms: 0,
        }
    }
}

fn paths<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    Ok(one_or_many(d)?.into_iter().map(PathBuf::from).collect())
}

/// A passage corpus document to be written out as a file and ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedDoc {
    /// File name inside the materialised corpus folder (also what `relevant` names).
    pub file: String,
    pub title: String,
    pub text: String,
    /// Cases that are about this document (their gold or hard-negative passage), kept with
    /// them when the set is cut down.
    pub linked_cases: Vec<String>,
}

/// Where the documents of a set come from.
#[derive(Debug, Clone)]
pub enum CorpusSpec {
    /// Folders ingested as they are, each with its ACL.
    Sources(Vec<lore_ingest::Source>),
    /// Documents written into a folder of the cache, then ingested with this ACL.
    Imported { documents: Vec<ImportedDoc>, acl: Vec<String> },
}

/// A loaded set: its cases and its corpus.
#[derive(Debug, Clone)]
pub struct EvalSet {
    pub name: String,
    pub manifest_path: PathBuf,
    pub manifest: SetManifest,
    pub cases: Vec<Case>,
    pub corpus: CorpusSpec,
}

impl EvalSet {
    /// Loads a manifest, its questions (through the importer of its format) and its corpus.
    pub fn load(manifest_path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(manifest_path).map_err(|e| EvalError::io(manifest_path, e))?;
        let bad = |message: String| EvalError::Set { path: manifest_path.to_owned(), message };
        let mut manifest: SetManifest = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let base = manifest_path.parent().unwrap_or(Path::new("."));
        let missing = |path: &Path| EvalError::DataMissing { set: manifest.name.clone(), path: path.to_owned() };
        manifest.questions = manifest.questions.iter().map(|p| base.join(p)).collect();
        manifest.sources = manifest.sources.as_ref().map(|p| base.join(p));
        manifest.corpus = manifest.corpus.as_ref().map(|p| base.join(p));
        manifest.baseline = Some(match &manifest.baseline {
            Some(p) => base.join(p),
            None => base.join("../baselines").join(format!("{}.json", manifest.name)),
        });
        if manifest.questions.is_empty() {
            return Err(bad("`questions` names no file".into()));
        }
        for path in manifest.questions.iter().chain(&manifest.corpus).chain(&manifest.sources) {
            if !path.exists() {
                return Err(missing(path));
            }
        }
        let imported = import::import(&manifest)?;
        let acl = || -> Result<Vec<String>, EvalError> {
            let acl = manifest
                .default_acl
                .clone()
                .ok_or_else(|| bad("an imported or folder corpus needs `default_acl` (e.g. [\"everyone\"])".into()))?;
            lore_core::acl::Acl::parse(&acl).map_err(|e| bad(format!("default_acl: {e}")))?;
            Ok(acl)
        };
        let corpus = match (imported.documents, &manifest.sources, &manifest.corpus) {
            (Some(documents), None, _) => CorpusSpec::Imported { documents, acl: acl()? },
            (None, Some(sources), None) => CorpusSpec::Sources(lore_ingest::SourceConfig::load(sources)?.sources),
            (None, None, Some(folder)) if folder.is_dir() => {
                let mut source = lore_ingest::Source::ad_hoc(folder, Some(acl()?));
                source.name = lore_core::types::Collection::slug(&manifest.name);
                CorpusSpec::Sources(vec![source])
            }
            _ => {
                return Err(bad(
                    "give the corpus as exactly one of `sources` (a source config) or `corpus` (a folder, or a \
                     passage JSONL for the clapnq format)"
                        .into(),
                ));
            }
        };
        let mut set = EvalSet {
            name: manifest.name.clone(),
            manifest_path: manifest_path.to_owned(),
            cases: imported.cases,
            corpus,
            manifest,
        };
        if set.cases.is_empty() {
            return Err(bad("the set has no questions".into()));
        }
        set.apply_subset(set.manifest.subset.questions, set.manifest.subset.distractors);
        Ok(set)
    }

    /// Keeps `questions` cases spread evenly over the set and, for an imported corpus when
    /// `distractors` is given, only the documents they need plus that many others (also spread
    /// evenly).
    pub fn apply_subset(&mut self, questions: Option<usize>, distractors: Option<usize>) {
        if let Some(n) = questions.filter(|&n| n > 0 && n < self.cases.len()) {
            self.cases = spread(std::mem::take(&mut self.cases), n);
        }
        if let CorpusSpec::Imported { documents, .. } = &mut self.corpus
            && let Some(distractors) = distractors
        {
            let kept: std::collections::HashSet<&str> = self.cases.iter().map(|c| c.id.as_str()).collect();
            let needed = |d: &ImportedDoc| {
                d.linked_cases.iter().any(|c| kept.contains(c.as_str()))
                    || self.cases.iter().any(|c| c.relevant.iter().any(|r| r.path == d.file))
            };
            let (mut keep, others): (Vec<ImportedDoc>, Vec<ImportedDoc>) =
                std::mem::take(documents).into_iter().partition(needed);
            let extra = distractors.min(others.len());
            if extra > 0 {
                keep.extend(spread(others, extra));
            }
            keep.sort_by(|a, b| a.file.cmp(&b.file));
            *documents = keep;
        }
    }

    pub fn case(&self, id: &str) -> Result<&Case, EvalError> {
        self.cases.iter().find(|c| c.id == id).ok_or_else(|| EvalError::UnknownCase(id.to_owned()))
    }

    pub fn baseline_path(&self) -> PathBuf {
        self.manifest.baseline.clone().expect("set on load")
    }
}

/// `n` items spread evenly over `items` (the first, then every `len/n`-th), in order.
fn spread<T>(items: Vec<T>, n: usize) -> Vec<T> {
    let len = items.len();
    if n >= len {
        return items;
    }
    let picks: std::collections::HashSet<usize> = (0..n).map(|i| i * len / n).collect();
    items.into_iter().enumerate().filter(|(i, _)| picks.contains(i)).map(|(_, x)| x).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevant_references_parse_and_match() {
        let r = Relevant::parse("[employee_handbook.pdf#page=7]").unwrap();
        assert_eq!((r.path.as_str(), r.page, r.heading.as_deref()), ("employee_handbook.pdf", Some(7), None));
        assert!(r.matches("contoso", "employee_handbook.pdf", Some(7), &[]));
        assert!(!r.matches("contoso", "employee_handbook.pdf", Some(8), &[]));
        assert!(!r.matches("contoso", "other.pdf", Some(7), &[]));
        let r = Relevant::parse("samples/hr/salary-bands.md#Engineering").unwrap();
        assert!(r.matches("samples", "hr/salary-bands.md", None, &["Salary bands".into(), "engineering".into()]));
        assert!(!r.matches("samples", "hr/salary-bands.md", None, &["Sales".into()]));
        let r = Relevant::parse("hr/salary-bands.md").unwrap();
        assert!(r.matches_document("samples", "hr/salary-bands.md"));
        assert!(!r.matches_document("samples", "hr/bandas-salariales.md"));
        assert_eq!(r.to_string(), "hr/salary-bands.md");
        assert!(Relevant::parse("x.pdf#page=0").is_err());
        assert!(Relevant::parse("x.pdf#page=two").is_err());
        assert!(Relevant::parse("#page=2").is_err());
    }

    #[test]
    fn a_manifest_names_the_assistant_variant_it_is_the_golden_set_of() {
        let text = "name = \"samples-hr\"\nformat = \"lore\"\nquestions = \"samples.jsonl\"\n\
                    assistant = { department = \"hr\", version = 3, name = \"Petra\", tone = \"warm\" }\n";
        let manifest: SetManifest = toml::from_str(text).unwrap();
        let assistant = manifest.assistant.expect("the variant").assistant();
        assert_eq!(assistant.prompt_id(), "assistant-hr-3");
        assert!(assistant.system_addition().contains("Petra") && assistant.system_addition().contains("warm"));
        let unknown = text.replace("tone", "voice");
        assert!(toml::from_str::<SetManifest>(&unknown).unwrap_err().to_string().contains("voice"));
    }

    #[test]
    fn jsonl_cases_are_validated_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"question\":\"Q?\",\"relevant\":[\"x.md\"],\"tags\":[\"t\"]}\n\n// note\n{\"id\":\"b\",\"question\":\"Q2?\",\"answerable\":false,\"asker\":{\"user\":\"u\",\"groups\":[\"hr\"]},\"reference_answer\":[\"a\",\"b\"]}\n",
        )
        .unwrap();
        let cases = read_jsonl(&path).unwrap();
        assert_eq!(cases.len(), 2);
        assert!(cases[0].answerable);
        assert_eq!(cases[1].reference_answer, ["a", "b"]);
        assert_eq!(cases[1].asker.groups, ["hr"]);
        std::fs::write(&path, "{\"id\":\"a\",\"question\":\"Q?\"}\n").unwrap();
        let err = read_jsonl(&path).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("needs `relevant`"), "{err}");
        std::fs::write(&path, "{\"id\":\"a\",\"question\":\"Q?\",\"answerable\":false,\"colour\":1}\n").unwrap();
        assert!(read_jsonl(&path).unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn spread_picks_evenly() {
        assert_eq!(spread((0..10).collect(), 5), [0, 2, 4, 6, 8]);
        assert_eq!(spread((0..3).collect(), 5), [0, 1, 2]);
    }
}
