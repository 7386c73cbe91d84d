//! Importers: public question-set formats turned into cases (and, where the set brings its own
//! passages, into documents to ingest), so that sets nobody here wrote run as they are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::error::EvalError;
use crate::set::{Case, Format, ImportedDoc, Relevant, SetManifest, read_jsonl};

pub struct Imported {
    pub cases: Vec<Case>,
    /// Documents to write out and ingest; `None` when the manifest names folders instead.
    pub documents: Option<Vec<ImportedDoc>>,
}

pub fn import(manifest: &SetManifest) -> Result<Imported, EvalError> {
    let mut imported = match manifest.format {
        Format::Lore => {
            let mut cases = Vec::new();
            for path in &manifest.questions {
                cases.extend(read_jsonl(path)?);
            }
            Imported { cases, documents: None }
        }
        Format::QaCitations => {
            let mut cases = Vec::new();
            for path in &manifest.questions {
                cases.extend(qa_citations(path)?);
            }
            Imported { cases, documents: None }
        }
        Format::Squad => {
            let (mut cases, mut documents) = (Vec::new(), Vec::new());
            for path in &manifest.questions {
                let (c, d) = squad(path)?;
                cases.extend(c);
                documents.extend(d);
            }
            Imported { cases, documents: Some(documents) }
        }
        Format::Beir => {
            let folder = &manifest.questions[0];
            let (cases, documents) = beir(folder, manifest.split.as_deref().unwrap_or("test"))?;
            Imported { cases, documents: Some(documents) }
        }
        Format::Clapnq => {
            let corpus = manifest.corpus.as_deref().ok_or_else(|| EvalError::Set {
                path: manifest.questions[0].clone(),
                message: "the clapnq format needs `corpus` = the passage JSONL".into(),
            })?;
            let (cases, documents) = clapnq(&manifest.questions, corpus)?;
            Imported { cases, documents: Some(documents) }
        }
    };
    if let Some(lang) = &manifest.lang {
        for case in &mut imported.cases {
            case.lang.get_or_insert_with(|| lang.clone());
        }
    }
    let mut ids = HashSet::new();
    if let Some(duplicate) = imported.cases.iter().find(|c| !ids.insert(c.id.as_str())) {
        return Err(EvalError::Set {
            path: manifest.questions[0].clone(),
            message: format!("duplicate question id {:?}", duplicate.id),
        });
    }
    Ok(imported)
}

fn read(path: &Path) -> Result<String, EvalError> {
    std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))
}

fn bad_line(path: &Path, line: usize, message: impl Into<String>) -> EvalError {
    EvalError::Case { path: path.to_owned(), line, message: message.into() }
}

/// A document id as a file name: letters, digits, `-` and `_` kept, the rest `_`.
pub fn file_name_for(id: &str) -> String {
    let stem: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{stem}.md")
}

/// Citations written `[file.ext#page=N]` (or `[file.ext]`) in an answer, and the answer
/// without them.
pub fn split_citations(text: &str) -> (String, Vec<Relevant>) {
    let mut clean = String::with_capacity(text.len());
    let mut citations = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else { break };
        let inside = &rest[open + 1..open + close];
        let looks_like_file = inside.contains("#page=")
            || inside
                .rsplit_once('.')
                .is_some_and(|(_, ext)| (2..=5).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric()));
        clean.push_str(&rest[..open]);
        match Relevant::parse(inside).ok().filter(|_| looks_like_file) {
            Some(relevant) => {
                if !citations.contains(&relevant) {
                    citations.push(relevant);
                }
            }
            None => clean.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    clean.push_str(rest);
    (clean.split_whitespace().collect::<Vec<_>>().join(" "), citations)
}

/// `{"question": ..., "truth": "... [file.pdf#page=N]"}` per line (the Azure search-openai-demo
/// ground-truth format; `answer` is accepted for `truth`). A line without a citation is an
/// error: it cannot be scored.
pub fn qa_citations(path: &Path) -> Result<Vec<Case>, EvalError> {
    #[derive(Deserialize)]
    struct Line {
        question: String,
        #[serde(alias = "answer")]
        truth: String,
        #[serde(default)]
        id: Option<String>,
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut cases = Vec::new();
    for (i, line) in read(path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| bad_line(path, i + 1, e.to_string()))?;
        let (answer, relevant) = split_citations(&parsed.truth);
        if relevant.is_empty() {
            return Err(bad_line(path, i + 1, "the answer cites no [file#page=N] source"));
        }
        cases.push(Case {
            id: parsed.id.unwrap_or_else(|| format!("{stem}-{:03}", i + 1)),
            question: parsed.question,
            asker: Default::default(),
            reference_answer: vec![answer],
            relevant,
            answerable: true,
            must_not_cite: Vec::new(),
            lang: None,
            tags: Vec::new(),
        });
    }
    Ok(cases)
}

/// SQuAD v1.1/v2.0: each paragraph is a document titled by its article; questions with
/// `is_impossible` are unanswerable (their paragraph is kept with them as a hard negative).
pub fn squad(path: &Path) -> Result<(Vec<Case>, Vec<ImportedDoc>), EvalError> {
    #[derive(Deserialize)]
    struct File {
        data: Vec<Article>,
    }
    #[derive(Deserialize)]
    struct Article {
        title: String,
        paragraphs: Vec<Paragraph>,
    }
    #[derive(Deserialize)]
    struct Paragraph {
        context: String,
        qas: Vec<Qa>,
    }
    #[derive(Deserialize)]
    struct Qa {
        id: String,
        question: String,
        #[serde(default)]
        answers: Vec<Answer>,
        #[serde(default)]
        is_impossible: bool,
    }
    #[derive(Deserialize)]
    struct Answer {
        text: String,
    }
    let file: File = serde_json::from_str(&read(path)?)
        .map_err(|e| EvalError::Set { path: path.to_owned(), message: format!("not SQuAD JSON: {e}") })?;
    let (mut cases, mut documents) = (Vec::new(), Vec::new());
    for (a, article) in file.data.iter().enumerate() {
        for (p, paragraph) in article.paragraphs.iter().enumerate() {
            let name = format!("{a:03}-{p:03}.md");
            for qa in &paragraph.qas {
                let mut answers: Vec<String> = Vec::new();
                for answer in &qa.answers {
                    if !answers.contains(&answer.text) {
                        answers.push(answer.text.clone());
                    }
                }
                let answerable = !qa.is_impossible && !answers.is_empty();
                cases.push(Case {
                    id: qa.id.clone(),
                    question: qa.question.clone(),
                    asker: Default::default(),
                    reference_answer: if answerable { answers } else { Vec::new() },
                    relevant: if answerable {
                        vec![Relevant { path: name.clone(), page: None, heading: None }]
                    } else {
                        Vec::new()
                    },
                    answerable,
                    must_not_cite: Vec::new(),
                    lang: None,
                    tags: vec![if answerable { "answerable" } else { "unanswerable" }.into()],
                });
            }
            documents.push(ImportedDoc {
                file: name,
                title: article.title.replace('_', " "),
                text: paragraph.context.clone(),
                linked_cases: paragraph.qas.iter().map(|q| q.id.clone()).collect(),
            });
        }
    }
    Ok((cases, documents))
}

#[derive(Deserialize)]
struct PassageLine {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
    #[serde(default)]
    from_question: Option<String>,
}

fn read_passages(path: &Path) -> Result<Vec<PassageLine>, EvalError> {
    let mut out = Vec::new();
    for (i, line) in read(path)?.lines().enumerate() {
        if !line.trim().is_empty() {
            out.push(serde_json::from_str(line).map_err(|e| bad_line(path, i + 1, e.to_string()))?);
        }
    }
    Ok(out)
}

/// BEIR: `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`) and
/// `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`, with a header). Queries without a
/// positive judgement are left out; every kept query is answerable.
pub fn beir(folder: &Path, split: &str) -> Result<(Vec<Case>, Vec<ImportedDoc>), EvalError> {
    #[derive(Deserialize)]
    struct Query {
        #[serde(rename = "_id")]
        id: String,
        text: String,
    }
    let corpus = read_passages(&folder.join("corpus.jsonl"))?;
    let queries_path = folder.join("queries.jsonl");
    let mut queries = Vec::new();
    for (i, line) in read(&queries_path)?.lines().enumerate() {
        if !line.trim().is_empty() {
            let q: Query = serde_json::from_str(line).map_err(|e| bad_line(&queries_path, i + 1, e.to_string()))?;
            queries.push(q);
        }
    }
    let qrels_path = folder.join("qrels").join(format!("{split}.tsv"));
    let mut qrels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, line) in read(&qrels_path)?.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if line.trim().is_empty() || (i == 0 && fields.first().is_some_and(|f| f.contains("query"))) {
            continue;
        }
        let [query, doc, score] = fields[..] else {
            return Err(bad_line(&qrels_path, i + 1, "expected query-id, corpus-id, score"));
        };
        let score: f64 = score.parse().map_err(|_| bad_line(&qrels_path, i + 1, format!("score {score:?}")))?;
        if score > 0.0 {
            qrels.entry(query.to_owned()).or_default().push(doc.to_owned());
        }
    }
    let known: HashSet<&str> = corpus.iter().map(|d| d.id.as_str()).collect();
    let mut linked: HashMap<String, Vec<String>> = HashMap::new();
    let mut cases = Vec::new();
    for query in queries {
        let Some(docs) = qrels.get(&query.id) else { continue };
        if let Some(unknown) = docs.iter().find(|d| !known.contains(d.as_str())) {
            return Err(EvalError::Set {
                path: qrels_path.clone(),
                message: format!("query {}: corpus has no document {unknown:?}", query.id),
            });
        }
        for doc in docs {
            linked.entry(doc.clone()).or_default().push(query.id.clone());
        }
        cases.push(Case {
            id: query.id,
            question: query.text,
            asker: Default::default(),
            reference_answer: Vec::new(),
            relevant: docs.iter().map(|d| Relevant { path: file_name_for(d), page: None, heading: None }).collect(),
            answerable: true,
            must_not_cite: Vec::new(),
            lang: None,
            tags: Vec::new(),
        });
    }
    let documents = corpus
        .into_iter()
        .map(|d| ImportedDoc {
            file: file_name_for(&d.id),
            linked_cases: linked.remove(&d.id).unwrap_or_default(),
            title: d.title,
            text: d.text,
        })
        .collect();
    Ok((cases, documents))
}

/// ClapNQ: annotated JSONL files (`id`, `input`, `passages`, `output[].answer`; an empty answer
/// marks an unanswerable question) over a passage corpus JSONL. A corpus passage belongs to the
/// question named in its `from_question`, else to the question whose gold passage has the same
/// text; for an unanswerable question it is the distractor the question was asked about.
pub fn clapnq(
    question_files: &[std::path::PathBuf],
    corpus: &Path,
) -> Result<(Vec<Case>, Vec<ImportedDoc>), EvalError> {
    #[derive(Deserialize)]
    struct Record {
        id: String,
        input: String,
        #[serde(default)]
        passages: Vec<GoldPassage>,
        #[serde(default)]
        output: Vec<Output>,
    }
    #[derive(Deserialize)]
    struct GoldPassage {
        text: String,
    }
    #[derive(Deserialize)]
    struct Output {
        #[serde(default)]
        answer: String,
    }
    let passages = read_passages(corpus)?;
    let by_text: HashMap<String, &str> = passages.iter().map(|p| (p.text.trim().to_owned(), p.id.as_str())).collect();
    let mut documents: Vec<ImportedDoc> = passages
        .iter()
        .map(|p| ImportedDoc {
            file: file_name_for(&p.id),
            title: p.title.clone(),
            text: p.text.clone(),
            linked_cases: p.from_question.iter().cloned().collect(),
        })
        .collect();
    let mut cases = Vec::new();
    for path in question_files {
        for (i, line) in read(path)?.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(line).map_err(|e| bad_line(path, i + 1, e.to_string()))?;
            let answers: Vec<String> =
                record.output.iter().map(|o| o.answer.trim().to_owned()).filter(|a| !a.is_empty()).collect();
            let answerable = !answers.is_empty();
            let mut doc_ids: Vec<&str> = passages
                .iter()
                .filter(|p| p.from_question.as_deref() == Some(record.id.as_str()))
                .map(|p| p.id.as_str())
                .collect();
            if doc_ids.is_empty() {
                doc_ids = record.passages.iter().filter_map(|g| by_text.get(g.text.trim()).copied()).collect();
                for doc in &mut documents {
                    if doc_ids.iter().any(|d| file_name_for(d) == doc.file) {
                        doc.linked_cases.push(record.id.clone());
                    }
                }
            }
            if answerable && doc_ids.is_empty() {
                return Err(bad_line(
                    path,
                    i + 1,
                    format!("question {}: its gold passage is not in {}", record.id, corpus.display()),
                ));
            }
            cases.push(Case {
                id: record.id,
                question: record.input,
                asker: Default::default(),
                reference_answer: answers,
                relevant: if answerable {
                    doc_ids.iter().map(|d| Relevant { path: file_name_for(d), page: None, heading: None }).collect()
                } else {
                    Vec::new()
                },
                answerable,
                must_not_cite: Vec::new(),
                lang: Some("en".into()),
                tags: vec![if answerable { "answerable" } else { "unanswerable" }.into()],
            });
        }
    }
    Ok((cases, documents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_split_from_answers() {
        let (answer, cited) = split_citations(
            "Balance billing is covered [Northwind_Standard_Benefits_Details.pdf#page=7]. See [a link] and [b.pdf][b c.pdf#page=2].",
        );
        assert_eq!(answer, "Balance billing is covered . See [a link] and .");
        let cited: Vec<String> = cited.iter().map(|c| c.to_string()).collect();
        assert_eq!(cited, ["Northwind_Standard_Benefits_Details.pdf#page=7", "b.pdf", "b c.pdf#page=2"]);
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name_for("doc/1:a b"), "doc_1_a_b.md");
        assert_eq!(file_name_for("b728845c1c0c787e"), "b728845c1c0c787e.md");
    }
}
