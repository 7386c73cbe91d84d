//! Prompt templates from `prompts/`: a version line, `---`, then a body with `{{placeholders}}`.

use std::path::Path;

use lore_core::Error;

#[derive(Debug, Clone)]
pub struct Template {
    pub name: &'static str,
    pub version: String,
    body: String,
}

#[derive(Debug, Clone)]
pub struct Prompts {
    pub system: Template,
    pub answer: Template,
    pub condense: Template,
}

const BUILT_IN: [(&str, &str); 3] = [
    ("system", include_str!("../../../prompts/system.md")),
    ("answer", include_str!("../../../prompts/answer.md")),
    ("condense", include_str!("../../../prompts/condense.md")),
];

impl Template {
    pub fn parse(name: &'static str, text: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("prompt template {name}: {why}"));
        let (header, body) = text.split_once("\n---\n").ok_or_else(|| bad("expected a `version:` line, then `---`"))?;
        let version =
            header.trim().strip_prefix("version:").ok_or_else(|| bad("first line must be `version: <id>`"))?;
        let version = version.trim();
        if version.is_empty() {
            return Err(bad("empty version"));
        }
        Ok(Template { name, version: version.to_owned(), body: body.to_owned() })
    }

    /// Replaces every `{{key}}`; a placeholder without a value is an error, so a template
    /// and its caller cannot drift apart silently.
    pub fn render(&self, values: &[(&str, &str)]) -> Result<String, Error> {
        let mut out = String::with_capacity(self.body.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| Error::Config(format!("prompt template {}: unclosed `{{{{`", self.name)))?;
            let key = after[..end].trim();
            let value =
                values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or_else(|| {
                    Error::Config(format!("prompt template {}: no value for {{{{{key}}}}}", self.name))
                })?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out.trim().to_owned())
    }
}

impl Prompts {
    /// The compiled-in templates, or those of `dir` when given.
    pub fn load(dir: Option<&Path>) -> Result<Self, Error> {
        let mut templates = Vec::new();
        for (name, built_in) in BUILT_IN {
            let text = match dir {
                Some(dir) => {
                    let path = dir.join(format!("{name}.md"));
                    std::fs::read_to_string(&path).map_err(|e| Error::io(path, e))?
                }
                None => built_in.to_owned(),
            };
            templates.push(Template::parse(name, &text)?);
        }
        let [system, answer, condense] = <[Template; 3]>::try_from(templates).expect("three templates");
        Ok(Prompts { system, answer, condense })
    }

    /// The version ids of the templates an answer used.
    pub fn answer_version(&self) -> String {
        format!("{}+{}", self.system.version, self.answer.version)
    }
}
