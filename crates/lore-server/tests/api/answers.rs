//! Answers in extractive mode (no model configured): the sample questions get answers
//! citing the right document, and questions the knowledge base cannot answer get the
//! no-answer reply with no citation.

use lore_chat::Question;
use serde_json::Value;

use crate::support::{block_on, sample_engine};

/// Asks as someone in `groups` (comma-separated), as `lore ask --json` does.
fn ask(groups: &str, question: &str) -> Value {
    let groups: Vec<String> = groups.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect();
    let question = question.to_owned();
    block_on(move || async move {
        let scope = crate::support::scope_of("someone@acme.example", &groups);
        let answer = sample_engine().ask(Question::new("someone@acme.example", &scope, &question)).await.unwrap();
        serde_json::to_value(answer).unwrap()
    })
}

fn cited(answer: &Value) -> Vec<String> {
    answer["citations"].as_array().unwrap().iter().map(|c| c["source_path"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn sample_questions_are_answered_with_correct_citations() {
    // (group, question, expected document, a fact the answer must contain)
    let cases = [
        (
            "",
            "How many days of paid vacation do I get, and how many can I carry over to next year?",
            "handbook/employee-handbook.md",
            "25 days",
        ),
        (
            "",
            "What is the minimum password length, and do I have to rotate my password?",
            "policies/security-policy.pdf",
            "14 characters",
        ),
        ("", "Can I fly business class to a customer 5 hours away?", "policies/travel-policy.txt", "economy"),
        ("hr", "What is the salary range for an Engineer I (L1)?", "hr/salary-bands.md", "$95,000"),
        ("sales", "Who must approve a 15% discount on a deal?", "sales/sales-playbook.docx", "approv"),
        (
            "engineering",
            "How long do we wait before the database page escalates to the secondary on-call?",
            "engineering/runbooks/database-failover.md",
            "15 minutes",
        ),
        (
            "engineering",
            "What command rolls back the checkout service to a previous release?",
            "engineering/runbooks/deploy-rollback.html",
            "checkout",
        ),
        (
            "",
            "¿Cuántos días a la semana puedo teletrabajar y cuánto me pagan por ello?",
            "handbook/manual-del-empleado.md",
            "3 días",
        ),
        (
            "",
            "¿Cuáles son los niveles de clasificación de la información?",
            "policies/politica-de-seguridad.pdf",
            "niveles",
        ),
        ("hr", "¿Cuál es la banda salarial de un ingeniero sénior (L3) en España?", "hr/bandas-salariales.md", "€"),
    ];
    for (group, question, expected, fact) in cases {
        let answer = ask(group, question);
        assert_eq!(answer["kind"], "extracted", "{question}: {answer}");
        let documents = cited(&answer);
        assert_eq!(
            documents.first().map(String::as_str),
            Some(format!("samples/{expected}").as_str()),
            "{question}: {answer}"
        );
        let text = answer["answer"].as_str().unwrap();
        assert!(text.contains(fact), "{question}: answer lacks {fact:?}:\n{text}");
        // Every marker in the text points at a citation, and every citation is used.
        let markers = answer["citations"].as_array().unwrap().len();
        for marker in 1..=markers {
            assert!(text.contains(&format!("[{marker}]")), "citation [{marker}] unused in {text}");
        }
        assert!(!text.contains(&format!("[{}]", markers + 1)), "marker without citation in {text}");
        let lang = if question.starts_with('¿') { "es" } else { "en" };
        assert_eq!(answer["lang"], lang, "{question}");
    }
}

#[test]
fn questions_outside_the_knowledge_base_get_no_answer_and_no_citation() {
    for (group, question, reply) in [
        ("", "What is the capital of Mongolia?", "does not cover"),
        ("", "Who won the football world cup in 2010?", "does not cover"),
        ("", "¿Quién ganó el mundial de fútbol de 2010?", "no trata"),
        // Answerable only from HR documents, which this caller may not read.
        ("sales", "What is the salary range for an Engineer I (L1)?", "does not cover"),
    ] {
        let answer = ask(group, question);
        assert_eq!(answer["kind"], "no_answer", "{question}: {answer}");
        assert!(answer["citations"].as_array().unwrap().is_empty(), "{question}: {answer}");
        assert!(answer["answer"].as_str().unwrap().contains(reply), "{question}: {answer}");
    }
}

#[test]
fn a_question_only_restricted_documents_answer_gets_the_same_reply_as_an_absent_topic() {
    // The salary bands are HR-only; severance pay is in no document at all.
    let restricted = ask("sales", "What is the salary range for an Engineer I (L1)?");
    let absent = ask("sales", "How much severance pay do I get if I am laid off?");
    for field in ["kind", "answer", "citations", "lang"] {
        assert_eq!(restricted[field], absent[field], "{field}: {restricted} vs {absent}");
    }
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&restricted), keys(&absent));
}
