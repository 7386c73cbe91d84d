//! Use rules compiled once, so that checking a question costs a few regex searches over the
//! question and one folded copy of it.
//!
//! Keywords are matched on a folded copy of both sides (compatibility decomposition, combining
//! marks dropped, lower case) because people type Spanish without accents and in capitals as
//! often as with them: "NOMINA" is the same word as "nómina". They match whole words only, so
//! "pay" does not refuse a question about "payroll", and a phrase matches across any run of
//! whitespace. Patterns are the escape hatch for everything else and run on the question as
//! typed, ignoring case, because an administrator writing a regular expression expects it to
//! see the text itself.

use regex::{Regex, RegexBuilder};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::config::{UseRule, check_use_rules};

/// Who is asking, as far as use rules care.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub role: &'a str,
    pub departments: &'a [String],
}

/// A question refused by a use rule: what to show instead of an answer, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The rule's id.
    pub rule: String,
    pub message: String,
    /// The Spanish message, when the rule has one; the server picks by the reader's language.
    pub message_es: Option<String>,
    pub matched: Matched,
}

/// What in the question met the rule, as configured (the category, the keyword as written, the
/// pattern's source), for the usage event and the administrator's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Matched {
    Category(String),
    Keyword(String),
    Pattern(String),
}

#[derive(Debug, Default)]
pub struct UsePolicies {
    rules: Vec<CompiledRule>,
}

#[derive(Debug)]
struct CompiledRule {
    id: String,
    departments: Vec<String>,
    roles: Vec<String>,
    categories: Vec<String>,
    /// Each keyword as configured, with its regex over folded text.
    keywords: Vec<(String, Regex)>,
    patterns: Vec<Regex>,
    message: String,
    message_es: Option<String>,
}

impl UsePolicies {
    /// Checks and compiles `rules`, keeping their order. Errors name the rule.
    pub fn new(rules: &[UseRule]) -> Result<Self, String> {
        check_use_rules(rules)?;
        let rules = rules
            .iter()
            .map(|rule| {
                let keywords = rule
                    .keywords
                    .iter()
                    .map(|keyword| {
                        keyword_regex(keyword)
                            .map(|regex| (keyword.clone(), regex))
                            .map_err(|e| format!("policy.rules {:?}: keyword {keyword:?}: {e}", rule.id))
                    })
                    .collect::<Result<_, _>>()?;
                let patterns = rule
                    .patterns
                    .iter()
                    .map(|pattern| {
                        RegexBuilder::new(pattern).case_insensitive(true).build().map_err(|e| {
                            format!("policy.rules {:?}: pattern {pattern:?} does not compile: {e}", rule.id)
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(CompiledRule {
                    id: rule.id.clone(),
                    departments: rule.departments.clone(),
                    roles: rule.roles.clone(),
                    categories: rule.categories.clone(),
                    keywords,
                    patterns,
                    message: rule.message.clone(),
                    message_es: rule.message_es.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(UsePolicies { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule names categories: only then is it worth computing the question's.
    pub fn needs_category(&self) -> bool {
        self.rules.iter().any(|rule| !rule.categories.is_empty())
    }

    /// First rule (in config order) that applies to the asker and matches the question. Within a
    /// rule, categories are tried first, then keywords, then patterns.
    pub fn check(&self, asker: &Asker<'_>, question: &str, category: Option<&str>) -> Option<Refusal> {
        let mut folded: Option<String> = None;
        self.rules.iter().filter(|rule| rule.applies_to(asker)).find_map(|rule| {
            let matched = category
                .and_then(|category| rule.categories.iter().find(|c| *c == category))
                .map(|c| Matched::Category(c.clone()))
                .or_else(|| {
                    if rule.keywords.is_empty() {
                        return None;
                    }
                    let folded = folded.get_or_insert_with(|| fold(question));
                    rule.keywords
                        .iter()
                        .find(|(_, regex)| regex.is_match(folded))
                        .map(|(keyword, _)| Matched::Keyword(keyword.clone()))
                })
                .or_else(|| {
                    rule.patterns
                        .iter()
                        .find(|pattern| pattern.is_match(question))
                        .map(|pattern| Matched::Pattern(pattern.as_str().to_owned()))
                })?;
            Some(Refusal {
                rule: rule.id.clone(),
                message: rule.message.clone(),
                message_es: rule.message_es.clone(),
                matched,
            })
        })
    }
}

impl CompiledRule {
    fn applies_to(&self, asker: &Asker<'_>) -> bool {
        (self.departments.is_empty() || self.departments.iter().any(|d| asker.departments.contains(d)))
            && (self.roles.is_empty() || self.roles.iter().any(|r| r == asker.role))
    }
}

/// Compatibility decomposition, then without combining marks, in lower case: "NÓMINA", "nómina"
/// and "nomina" (composed or not) all fold to "nomina"; full-width letters and ligatures fold to
/// their plain forms.
fn fold(text: &str) -> String {
    text.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// The keyword folded, its words separated by any whitespace, with a word boundary at each end
/// that starts or ends with a word character (a keyword such as "c++" cannot have one after it).
fn keyword_regex(keyword: &str) -> Result<Regex, String> {
    let folded = fold(keyword);
    let words: Vec<&str> = folded.split_whitespace().collect();
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        return Err("must contain more than whitespace".into());
    };
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut source = String::new();
    if is_word(first.chars().next()) {
        source.push_str(r"\b");
    }
    source.push_str(&words.iter().map(|w| regex::escape(w)).collect::<Vec<_>>().join(r"\s+"));
    if is_word(last.chars().next_back()) {
        source.push_str(r"\b");
    }
    Regex::new(&source).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str) -> UseRule {
        UseRule { id: id.into(), message: format!("refused by {id}"), ..UseRule::default() }
    }

    fn keywords(id: &str, keywords: &[&str]) -> UseRule {
        UseRule { keywords: keywords.iter().map(|k| k.to_string()).collect(), ..rule(id) }
    }

    fn policies(rules: &[UseRule]) -> UsePolicies {
        UsePolicies::new(rules).expect("rules compile")
    }

    const NOBODY: &[String] = &[];

    fn employee(departments: &[String]) -> Asker<'_> {
        Asker { role: "employee", departments }
    }

    fn refused_by(policies: &UsePolicies, question: &str) -> Option<Matched> {
        policies.check(&employee(NOBODY), question, None).map(|r| r.matched)
    }

    #[test]
    fn no_rules_refuse_nothing() {
        let policies = UsePolicies::default();
        assert!(policies.is_empty() && !policies.needs_category());
        assert_eq!(policies.check(&employee(NOBODY), "anything at all", Some("hr")), None);
    }

    #[test]
    fn keywords_ignore_case_and_accents_on_both_sides() {
        let policies = policies(&[keywords("pay", &["nómina"]), keywords("ceo", &["Nuñez"])]);
        for question in ["¿Cuál es mi NOMINA?", "mi nómina de marzo", "mi nomina", "mi no\u{301}mina", "NÓMINA"] {
            assert_eq!(refused_by(&policies, question), Some(Matched::Keyword("nómina".into())), "{question}");
        }
        assert_eq!(refused_by(&policies, "where is NUNEZ's office"), Some(Matched::Keyword("Nuñez".into())));
        assert_eq!(refused_by(&policies, "nominal value of a bond"), None);
    }

    #[test]
    fn keywords_match_whole_words_and_phrases_across_whitespace() {
        let policies = policies(&[keywords("pay", &["pay", "salary of"])]);
        assert_eq!(refused_by(&policies, "how is payroll run?"), None);
        assert_eq!(refused_by(&policies, "what is the prepay limit"), None);
        assert_eq!(refused_by(&policies, "when do we get pay rises?"), Some(Matched::Keyword("pay".into())));
        assert_eq!(refused_by(&policies, "Pay."), Some(Matched::Keyword("pay".into())));
        assert_eq!(
            refused_by(&policies, "the SALARY\n\t  of Ana"),
            Some(Matched::Keyword("salary of".into())),
            "a phrase spans any whitespace"
        );
        assert_eq!(refused_by(&policies, "salaryof"), None);
        assert_eq!(refused_by(&policies, "the salary offered"), None);
    }

    #[test]
    fn a_keyword_ending_in_punctuation_still_matches() {
        let policies = policies(&[keywords("lang", &["C++"])]);
        assert_eq!(refused_by(&policies, "is c++ allowed"), Some(Matched::Keyword("C++".into())));
        assert_eq!(refused_by(&policies, "abc++"), None);
    }

    #[test]
    fn patterns_ignore_case_and_run_on_the_question_as_typed() {
        let policies = policies(&[UseRule { patterns: vec![r"\bssn\s*\d{3}".into(), "née".into()], ..rule("ids") }]);
        assert_eq!(refused_by(&policies, "SSN 123-45"), Some(Matched::Pattern(r"\bssn\s*\d{3}".into())));
        assert_eq!(refused_by(&policies, "Smith NÉE Jones"), Some(Matched::Pattern("née".into())));
        assert_eq!(refused_by(&policies, "Smith nee Jones"), None, "patterns are not accent-folded");
    }

    #[test]
    fn categories_match_only_when_given() {
        let policies = policies(&[UseRule { categories: vec!["medical".into()], ..rule("health") }]);
        assert!(policies.needs_category());
        let asker = employee(NOBODY);
        let refusal = policies.check(&asker, "my diagnosis", Some("medical")).expect("refused");
        assert_eq!(refusal.rule, "health");
        assert_eq!(refusal.matched, Matched::Category("medical".into()));
        assert_eq!(refusal.message, "refused by health");
        assert_eq!(policies.check(&asker, "my diagnosis", Some("benefits")), None);
        assert_eq!(policies.check(&asker, "my diagnosis", None), None);
    }

    #[test]
    fn rules_are_scoped_by_department_and_role() {
        let scoped = UseRule {
            departments: vec!["sales".into(), "support".into()],
            roles: vec!["employee".into(), "agent".into()],
            ..keywords("scoped", &["pricing"])
        };
        let policies = policies(&[scoped]);
        let sales = ["finance".to_string(), "sales".to_string()];
        let hr = ["hr".to_string()];
        let check = |role, departments| policies.check(&Asker { role, departments }, "pricing sheet", None).is_some();
        assert!(check("employee", &sales[..]));
        assert!(check("agent", &sales[..]));
        assert!(!check("admin", &sales[..]), "role not listed");
        assert!(!check("employee", &hr[..]), "department not listed");
        assert!(!check("employee", NOBODY), "no department is not every department");
    }

    #[test]
    fn an_unscoped_rule_applies_to_people_without_a_department() {
        let policies = policies(&[keywords("all", &["pricing"])]);
        assert!(policies.check(&Asker { role: "admin", departments: NOBODY }, "pricing", None).is_some());
    }

    #[test]
    fn the_first_matching_rule_in_config_order_wins() {
        let policies = policies(&[
            UseRule { departments: vec!["hr".into()], ..keywords("hr-only", &["salary"]) },
            keywords("first", &["salary"]),
            keywords("second", &["salary"]),
        ]);
        let refusal = policies.check(&employee(NOBODY), "salary bands", None).expect("refused");
        assert_eq!(refusal.rule, "first");
        let hr = vec!["hr".to_string()];
        assert_eq!(policies.check(&employee(&hr), "salary bands", None).map(|r| r.rule), Some("hr-only".into()));
    }

    #[test]
    fn within_a_rule_a_category_is_reported_before_a_keyword() {
        let policies = policies(&[UseRule {
            categories: vec!["pay".into()],
            patterns: vec!["salar".into()],
            message_es: Some("no".into()),
            ..keywords("pay", &["salary"])
        }]);
        let refusal = policies.check(&employee(NOBODY), "salary", Some("pay")).expect("refused");
        assert_eq!(refusal.matched, Matched::Category("pay".into()));
        assert_eq!(refusal.message_es.as_deref(), Some("no"));
        let refusal = policies.check(&employee(NOBODY), "salary", None).expect("refused");
        assert_eq!(refusal.matched, Matched::Keyword("salary".into()));
        let refusal = policies.check(&employee(NOBODY), "salaries", None).expect("refused");
        assert_eq!(refusal.matched, Matched::Pattern("salar".into()));
    }

    #[test]
    fn a_bad_regex_is_an_error_naming_the_rule() {
        let error =
            UsePolicies::new(&[keywords("ok", &["x"]), UseRule { patterns: vec!["[a-".into()], ..rule("bad") }])
                .expect_err("does not compile");
        assert!(error.contains("\"bad\"") && error.contains("[a-"), "{error}");
    }

    #[test]
    fn matched_serializes_in_snake_case() {
        let json = serde_json::to_value(Matched::Keyword("pay".into())).expect("serializes");
        assert_eq!(json, serde_json::json!({ "keyword": "pay" }));
    }
}
