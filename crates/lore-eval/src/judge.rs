//! Model-based scoring, used only when `chat.providers` is configured: an LLM judge for
//! faithfulness and answer relevance (`prompts/judge.md`), and closed-book answers with no
//! retrieval (`prompts/closed-book.md`) as the "model only" comparison.

use lore_chat::prompts::Template;
use lore_chat::provider::ProviderChain;
use lore_core::config::ChatConfig;
use lore_core::lang::Lang;
use serde::{Deserialize, Serialize};

use crate::error::EvalError;

const JUDGE: &str = include_str!("../../../prompts/judge.md");
const CLOSED_BOOK: &str = include_str!("../../../prompts/closed-book.md");
/// What the closed-book prompt asks the model to reply when it does not know.
pub const NO_ANSWER: &str = "NO_ANSWER";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JudgeScores {
    pub faithfulness: f64,
    pub relevance: f64,
}

pub struct ModelScoring {
    providers: ProviderChain,
    system: String,
    judge: Template,
    closed_book: Template,
}

fn template(name: &'static str, built_in: &str, config: &ChatConfig) -> Result<Template, EvalError> {
    let replacement = config.prompts_dir.as_ref().map(|d| d.join(format!("{name}.md"))).filter(|p| p.is_file());
    let text = match replacement {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| EvalError::io(path, e))?,
        None => built_in.to_owned(),
    };
    Ok(Template::parse(name, &text)?)
}

impl ModelScoring {
    /// `None` when no provider is configured.
    pub fn new(config: &ChatConfig) -> Result<Option<Self>, EvalError> {
        if config.providers.is_empty() {
            return Ok(None);
        }
        let prompts = lore_chat::prompts::Prompts::load(config.prompts_dir.as_deref())?;
        Ok(Some(ModelScoring {
            providers: ProviderChain::new(&config.providers)?,
            system: prompts.system.render(&[("company", &config.company)])?,
            judge: template("judge", JUDGE, config)?,
            closed_book: template("closed-book", CLOSED_BOOK, config)?,
        }))
    }

    pub fn judge_version(&self) -> &str {
        &self.judge.version
    }

    /// Scores an answer against the passages it cites.
    pub async fn judge(&self, question: &str, context: &str, answer: &str) -> Result<JudgeScores, EvalError> {
        let prompt = self.judge.render(&[("question", question), ("context", context), ("answer", answer)])?;
        let completion = self
            .providers
            .complete("You grade answers strictly and reply with JSON only.", &prompt)
            .await
            .map_err(|errors| EvalError::Judge(format!("every provider failed: {errors:?}")))?;
        parse_scores(&completion.text)
    }

    /// The model's answer without retrieval; `None` when it says it does not know.
    pub async fn closed_book(&self, question: &str, lang: Lang) -> Result<(Option<String>, f64), EvalError> {
        let language = match lang {
            Lang::En => "English",
            Lang::Es => "Spanish",
        };
        let prompt = self.closed_book.render(&[("language", language), ("question", question)])?;
        let started = std::time::Instant::now();
        let completion = self
            .providers
            .complete(&self.system, &prompt)
            .await
            .map_err(|errors| EvalError::Judge(format!("closed-book answer: every provider failed: {errors:?}")))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let text = completion.text.trim();
        Ok((if text.starts_with(NO_ANSWER) { None } else { Some(text.to_owned()) }, ms))
    }
}

/// The judge's JSON object (the first `{...}` in the reply); both scores must be in 0..=1.
pub fn parse_scores(reply: &str) -> Result<JudgeScores, EvalError> {
    let start = reply.find('{');
    let end = reply.rfind('}');
    let (Some(start), Some(end)) = (start, end) else {
        return Err(EvalError::Judge(format!("reply has no JSON object: {reply:?}")));
    };
    let scores: JudgeScores = serde_json::from_str(&reply[start..=end])
        .map_err(|e| EvalError::Judge(format!("reply {:?}: {e}", &reply[start..=end])))?;
    for (name, value) in [("faithfulness", scores.faithfulness), ("relevance", scores.relevance)] {
        if !(0.0..=1.0).contains(&value) {
            return Err(EvalError::Judge(format!("{name} {value} is outside 0..1")));
        }
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_replies_are_parsed_strictly() {
        let s = parse_scores("Sure.\n```json\n{\"faithfulness\": 0.5, \"relevance\": 1}\n```").unwrap();
        assert_eq!(s, JudgeScores { faithfulness: 0.5, relevance: 1.0 });
        assert!(parse_scores("no json").is_err());
        assert!(parse_scores("{\"faithfulness\": 4, \"relevance\": 1}").is_err());
        assert!(parse_scores("{\"faithfulness\": 0.4}").is_err());
    }

    #[test]
    fn templates_carry_versions() {
        let config = ChatConfig::default();
        assert!(template("judge", JUDGE, &config).unwrap().version.starts_with("judge-"));
        let closed = template("closed-book", CLOSED_BOOK, &config).unwrap();
        assert!(closed.render(&[("language", "English"), ("question", "Q?")]).unwrap().contains(NO_ANSWER));
    }
}
