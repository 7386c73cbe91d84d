//! Language detection and the languages the keyword index has analyzers for.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Es];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" | "eng" | "english" => Some(Lang::En),
            "es" | "spa" | "spanish" | "español" => Some(Lang::Es),
            _ => None,
        }
    }

    /// Detects English or Spanish; anything else (or too little text) falls back to English,
    /// whose analyzer is the least surprising for unknown languages.
    pub fn detect(text: &str) -> Lang {
        let sample: String = text.chars().take(4000).collect();
        // Short texts (queries) are where statistical detection fails most; a vote of common
        // function words decides when it is clear.
        let (english, spanish) = function_word_votes(&sample);
        if english >= 2 && english > spanish * 2 {
            return Lang::En;
        }
        if spanish >= 2 && spanish > english * 2 {
            return Lang::Es;
        }
        if english == 0 && sample.chars().any(|c| "ñáéíóú¿¡".contains(c.to_lowercase().next().unwrap_or(c))) {
            return Lang::Es;
        }
        let Some(info) = whatlang::detect(&sample) else { return Lang::En };
        match info.lang() {
            whatlang::Lang::Spa => Lang::Es,
            // Short texts are often misdetected as a neighbour of Spanish.
            whatlang::Lang::Por | whatlang::Lang::Ita | whatlang::Lang::Cat if spanish_markers(&sample) => Lang::Es,
            _ => Lang::En,
        }
    }
}

const ENGLISH_WORDS: [&str; 24] = [
    "the", "a", "an", "to", "of", "and", "is", "are", "do", "does", "i", "can", "what", "how", "my", "for", "in", "on",
    "with", "who", "when", "where", "away", "get",
];
const SPANISH_WORDS: [&str; 24] = [
    "el", "la", "los", "las", "de", "del", "y", "es", "son", "que", "qué", "en", "por", "para", "con", "un", "una",
    "cómo", "cuál", "cuántos", "cuántas", "puedo", "mi", "se",
];

fn function_word_votes(text: &str) -> (usize, usize) {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(400).collect();
    let english = words.iter().filter(|w| ENGLISH_WORDS.contains(w)).count();
    let spanish = words.iter().filter(|w| SPANISH_WORDS.contains(w)).count();
    (english, spanish)
}

fn spanish_markers(text: &str) -> bool {
    let lower = text.to_lowercase();
    ["¿", "ñ", " el ", " los ", " las ", " qué ", " cuántos ", " cómo ", " para "]
        .iter()
        .filter(|m| lower.contains(*m))
        .count()
        >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_english_and_spanish() {
        assert_eq!(Lang::detect("How many vacation days do employees get per year?"), Lang::En);
        assert_eq!(Lang::detect("¿Cuántos días de vacaciones tienen los empleados al año?"), Lang::Es);
        assert_eq!(Lang::detect(""), Lang::En);
        assert_eq!(Lang::detect("Can I fly business class to a customer 5 hours away?"), Lang::En);
        assert_eq!(Lang::detect("política de teletrabajo"), Lang::Es);
    }
}
