//! `[policy]` in `lore.toml`: what Lore may be used for, which answers a person reviews, and
//! when a verified answer stands in for a generated one.
//!
//! Everything a file can get wrong is caught by [`PolicyConfig::validate`] at startup, naming the
//! rule and the field: a use rule that silently never matches (a misspelt role, a regular
//! expression that does not compile) would look like a working policy while enforcing nothing.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::rules::UsePolicies;

/// The roles a use rule can name: those of `lore-core`'s `Role`, spelt as in its config.
pub const ROLES: [&str; 4] = ["employee", "knowledge_manager", "agent", "admin"];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The approved-use notice shown in the widget and the full page.
    pub notice: Option<Notice>,
    /// `[[policy.rules]]`: questions Lore refuses, checked in this order.
    pub rules: Vec<UseRule>,
    /// `[[policy.review]]`: answers a knowledge manager reviews.
    pub review: Vec<ReviewRule>,
    /// `[policy.verified]`
    pub verified: VerifiedConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notice {
    pub text: String,
    /// Where the full policy lives; `http` or `https` only, since the widget renders it as a link
    /// on pages Lore does not control.
    pub link: Option<String>,
}

/// A use rule: questions matching any of its categories, keywords or patterns are refused with
/// `message` when asked by someone it applies to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UseRule {
    /// Unique among use rules; named in refusals and usage events.
    pub id: String,
    /// Departments the rule applies to; empty means everyone, including people with no
    /// department.
    pub departments: Vec<String>,
    /// Roles the rule applies to (see [`ROLES`]); empty means every role.
    pub roles: Vec<String>,
    /// Question categories (computed by the server) that are prohibited.
    pub categories: Vec<String>,
    /// Words or phrases, matched whole, ignoring case and accents.
    pub keywords: Vec<String>,
    /// Regular expressions (`regex` crate syntax), matched ignoring case.
    pub patterns: Vec<String>,
    /// Shown instead of an answer.
    pub message: String,
    /// Shown instead of `message` to people reading Lore in Spanish.
    pub message_es: Option<String>,
}

/// When a critical answer is reviewed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewMode {
    /// The asker gets the answer at once; a reviewer checks it afterwards and the asker is told
    /// of an edit or a rejection. The default, because it never leaves someone waiting.
    #[default]
    After,
    /// The answer is held until a reviewer approves or edits it.
    Before,
}

impl ReviewMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewMode::After => "after",
            ReviewMode::Before => "before",
        }
    }

    pub fn parse(text: &str) -> Option<ReviewMode> {
        [ReviewMode::After, ReviewMode::Before].into_iter().find(|m| m.as_str() == text)
    }
}

/// A review rule: an answer citing any of `collections`, or to a question in any of `categories`,
/// is critical and goes to the review queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewRule {
    /// Unique among review rules; stored with each review.
    pub id: String,
    pub collections: Vec<String>,
    pub categories: Vec<String>,
    pub mode: ReviewMode,
    /// The department whose knowledge managers review. `None`: the departments of the cited
    /// collections (decided by the server, which knows the collections).
    pub department: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifiedConfig {
    /// The cosine similarity a question needs with one of a verified answer's example questions
    /// to get that answer; [`crate::verified::calibrate`] picks one from labelled pairs. The
    /// default is the one `lore eval verified eval/verified/questions.jsonl` fits for the default
    /// embedding model (all-MiniLM-L6-v2) at a 1 % false-match rate between different questions;
    /// another model needs its own (see `eval/verified/README.md`).
    pub threshold: f32,
    pub enabled: bool,
}

impl Default for VerifiedConfig {
    fn default() -> Self {
        VerifiedConfig { threshold: 0.62, enabled: true }
    }
}

impl PolicyConfig {
    /// Checks values a file could get wrong, naming the rule and the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(notice) = &self.notice {
            notice.validate()?;
        }
        // Compiling is the only complete check of a pattern; the rules are compiled again when
        // the server builds its policies.
        UsePolicies::new(&self.rules)?;
        let mut ids = HashSet::new();
        for (index, rule) in self.review.iter().enumerate() {
            let name = rule_name("policy.review", index, &rule.id);
            if rule.id.trim().is_empty() {
                return Err(format!("{name}: id must not be empty"));
            }
            if !ids.insert(rule.id.as_str()) {
                return Err(format!("{name}: the id is used by an earlier review rule"));
            }
            if rule.collections.is_empty() && rule.categories.is_empty() {
                return Err(format!("{name}: needs at least one of collections or categories"));
            }
            non_blank(&name, "collections", &rule.collections)?;
            non_blank(&name, "categories", &rule.categories)?;
            if rule.department.as_deref().is_some_and(|d| d.trim().is_empty()) {
                return Err(format!("{name}: department must not be empty (leave it out to use the collections')"));
            }
        }
        let threshold = self.verified.threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(format!("policy.verified.threshold must be above 0 and at most 1, not {threshold}"));
        }
        Ok(())
    }
}

impl Notice {
    fn validate(&self) -> Result<(), String> {
        if self.text.trim().is_empty() {
            return Err("policy.notice.text must not be empty".into());
        }
        if let Some(link) = &self.link {
            let lower = link.to_ascii_lowercase();
            let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
            if rest.is_none_or(|rest| rest.is_empty() || rest.starts_with('/'))
                || link.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!("policy.notice.link must be an http:// or https:// address, not {link:?}"));
            }
        }
        Ok(())
    }
}

/// The checks of use rules short of compiling their patterns: unique non-empty ids, a message,
/// something to match, and roles that exist.
pub(crate) fn check_use_rules(rules: &[UseRule]) -> Result<(), String> {
    let mut ids = HashSet::new();
    for (index, rule) in rules.iter().enumerate() {
        let name = rule_name("policy.rules", index, &rule.id);
        if rule.id.trim().is_empty() {
            return Err(format!("{name}: id must not be empty"));
        }
        if !ids.insert(rule.id.as_str()) {
            return Err(format!("{name}: the id is used by an earlier rule"));
        }
        if rule.message.trim().is_empty() {
            return Err(format!("{name}: message must not be empty"));
        }
        if rule.message_es.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(format!("{name}: message_es must not be empty (leave it out to use message)"));
        }
        if rule.categories.is_empty() && rule.keywords.is_empty() && rule.patterns.is_empty() {
            return Err(format!("{name}: needs at least one of categories, keywords or patterns"));
        }
        non_blank(&name, "departments", &rule.departments)?;
        non_blank(&name, "categories", &rule.categories)?;
        non_blank(&name, "keywords", &rule.keywords)?;
        non_blank(&name, "patterns", &rule.patterns)?;
        if let Some(role) = rule.roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
            return Err(format!("{name}: unknown role {role:?} (roles are {})", ROLES.join(", ")));
        }
    }
    Ok(())
}

/// `policy.rules "hr-pay"` when the rule has an id, else its position.
fn rule_name(section: &str, index: usize, id: &str) -> String {
    if id.trim().is_empty() { format!("{section}[{index}]") } else { format!("{section} {id:?}") }
}

fn non_blank(name: &str, field: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(|v| v.trim().is_empty()) {
        return Err(format!("{name}: {field} must not contain an empty value"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        policy: PolicyConfig,
    }

    fn parse(text: &str) -> Result<PolicyConfig, String> {
        toml::from_str::<File>(text).map(|f| f.policy).map_err(|e| e.to_string())
    }

    fn valid(text: &str) -> PolicyConfig {
        let config = parse(text).expect("parses");
        config.validate().expect("valid");
        config
    }

    fn invalid(text: &str) -> String {
        match parse(text) {
            Ok(config) => config.validate().expect_err("should be invalid"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_full_section_parses_with_its_defaults() {
        let config = valid(
            r#"
            [policy]
            notice = { text = "Lore answers from company documents.", link = "https://intranet.example/ai" }

            [[policy.rules]]
            id = "hr-pay"
            departments = ["sales"]
            keywords = ["salary of", "nómina"]
            message = "Ask HR about pay."
            message_es = "Pregunta a RR. HH."

            [[policy.review]]
            id = "legal"
            collections = ["contracts"]

            [[policy.review]]
            id = "medical"
            categories = ["health"]
            mode = "before"
            department = "hr"

            [policy.verified]
            threshold = 0.85
            "#,
        );
        assert_eq!(config.notice.as_ref().map(|n| n.link.as_deref()), Some(Some("https://intranet.example/ai")));
        assert_eq!(config.rules.len(), 1);
        assert!(config.rules[0].roles.is_empty());
        assert_eq!(config.rules[0].message_es.as_deref(), Some("Pregunta a RR. HH."));
        assert_eq!(config.review[0].mode, ReviewMode::After);
        assert_eq!(config.review[1].mode, ReviewMode::Before);
        assert_eq!(config.review[1].department.as_deref(), Some("hr"));
        assert_eq!(config.verified.threshold, 0.85);
        assert!(config.verified.enabled);
    }

    #[test]
    fn an_absent_section_is_valid_and_empty() {
        let config = valid("[policy]\n");
        assert!(config.notice.is_none() && config.rules.is_empty() && config.review.is_empty());
        assert_eq!(config.verified.threshold, 0.62);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(invalid("[[policy.rules]]\nid = \"a\"\nkeyword = [\"x\"]\nmessage = \"m\"").contains("keyword"));
        assert!(invalid("[policy.verified]\nthreshhold = 0.9").contains("threshhold"));
        assert!(invalid("[[policy.review]]\nid = \"r\"\ncollections = [\"c\"]\nmode = \"later\"").contains("later"));
    }

    #[test]
    fn use_rule_errors_name_the_rule_and_the_field() {
        let base = |extra: &str| format!("[[policy.rules]]\nid = \"hr-pay\"\nmessage = \"no\"\n{extra}");
        let error = invalid(&base(""));
        assert!(error.contains("\"hr-pay\"") && error.contains("categories, keywords or patterns"), "{error}");
        let error = invalid(&base("keywords = [\"pay\"]\nroles = [\"admins\"]"));
        assert!(error.contains("\"hr-pay\"") && error.contains("admins"), "{error}");
        let error = invalid(&base("patterns = [\"(unclosed\"]"));
        assert!(error.contains("\"hr-pay\"") && error.contains("(unclosed"), "{error}");
        let error = invalid(&base("keywords = [\" \"]"));
        assert!(error.contains("keywords"), "{error}");
        let error = invalid("[[policy.rules]]\nid = \"x\"\nkeywords = [\"pay\"]");
        assert!(error.contains("\"x\"") && error.contains("message"), "{error}");
        let error = invalid("[[policy.rules]]\nkeywords = [\"pay\"]\nmessage = \"m\"");
        assert!(error.contains("policy.rules[0]") && error.contains("id"), "{error}");
        let twice = "[[policy.rules]]\nid = \"a\"\nkeywords = [\"x\"]\nmessage = \"m\"\n";
        let error = invalid(&format!("{twice}{twice}"));
        assert!(error.contains("\"a\"") && error.contains("earlier"), "{error}");
    }

    #[test]
    fn review_rule_errors_name_the_rule() {
        let error = invalid("[[policy.review]]\nid = \"legal\"");
        assert!(error.contains("\"legal\"") && error.contains("collections or categories"), "{error}");
        let error = invalid("[[policy.review]]\nid = \"legal\"\ncollections = [\"c\"]\ndepartment = \"\"");
        assert!(error.contains("\"legal\"") && error.contains("department"), "{error}");
        let twice = "[[policy.review]]\nid = \"r\"\ncategories = [\"x\"]\n";
        assert!(invalid(&format!("{twice}{twice}")).contains("earlier"));
    }

    #[test]
    fn the_notice_needs_text_and_a_web_link() {
        assert!(invalid("[policy.notice]\ntext = \" \"").contains("policy.notice.text"));
        for link in ["javascript:alert(1)", "ftp://files.example", "https://", "https:///path", "https://a b"] {
            let error = invalid(&format!("[policy.notice]\ntext = \"t\"\nlink = {link:?}"));
            assert!(error.contains("policy.notice.link"), "{link}: {error}");
        }
        valid("[policy.notice]\ntext = \"t\"\nlink = \"HTTP://intranet/ai-policy\"");
    }

    #[test]
    fn the_threshold_must_be_in_zero_to_one() {
        for threshold in ["0.0", "-0.5", "1.01", "nan"] {
            let error = invalid(&format!("[policy.verified]\nthreshold = {threshold}"));
            assert!(error.contains("policy.verified.threshold"), "{threshold}: {error}");
        }
        valid("[policy.verified]\nthreshold = 1.0\nenabled = false");
    }
}
