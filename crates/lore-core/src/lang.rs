//! Language detection and the languages the keyword index has analyzers for.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
        let Some(info) = whatlang::detect(&sample) else { return Lang::En };
        match info.lang() {
            whatlang::Lang::Spa => Lang::Es,
            // Short texts are often misdetected as a neighbour of Spanish.
            whatlang::Lang::Por | whatlang::Lang::Ita | whatlang::Lang::Cat if spanish_markers(&sample) => Lang::Es,
            _ => Lang::En,
        }
    }
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
    }
}
