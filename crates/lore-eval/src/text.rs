//! Answer text: language-aware normalisation, token F1 and exact match (SQuAD/MLQA style),
//! answer sentences, and whether a sentence is supported by a passage.

use std::collections::{HashMap, HashSet};

use lore_core::lang::Lang;

const EN_ARTICLES: [&str; 3] = ["a", "an", "the"];
const ES_ARTICLES: [&str; 8] = ["el", "la", "los", "las", "un", "una", "unos", "unas"];

/// Lowercase, punctuation removed (also `¿`, `¡`, quotes, dashes), the language's articles
/// dropped, whitespace collapsed: the tokens F1 and exact match compare.
pub fn normalized_tokens(text: &str, lang: Lang) -> Vec<String> {
    let articles: &[&str] = match lang {
        Lang::En => &EN_ARTICLES,
        Lang::Es => &ES_ARTICLES,
    };
    let lower = text.to_lowercase();
    let cleaned: String =
        lower.chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' }).collect();
    cleaned.split_whitespace().filter(|w| !articles.contains(w)).map(str::to_owned).collect()
}

/// Token F1 between a prediction and the best of several references (0 without references).
pub fn token_f1(prediction: &str, references: &[String], lang: Lang) -> f64 {
    let predicted = normalized_tokens(prediction, lang);
    references.iter().map(|r| f1(&predicted, &normalized_tokens(r, lang))).fold(0.0, f64::max)
}

fn f1(predicted: &[String], reference: &[String]) -> f64 {
    if predicted.is_empty() || reference.is_empty() {
        return if predicted.is_empty() && reference.is_empty() { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for token in reference {
        *counts.entry(token).or_default() += 1;
    }
    let mut common = 0usize;
    for token in predicted {
        if let Some(n) = counts.get_mut(token.as_str())
            && *n > 0
        {
            *n -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / predicted.len() as f64;
    let recall = common as f64 / reference.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// 1 when the normalised prediction equals a normalised reference.
pub fn exact_match(prediction: &str, references: &[String], lang: Lang) -> f64 {
    let predicted = normalized_tokens(prediction, lang);
    if references.iter().any(|r| normalized_tokens(r, lang) == predicted) { 1.0 } else { 0.0 }
}

/// The answer as prose: the "extracted from" label, list markers and citation markers `[n]`
/// removed, so that it can be compared with a reference answer.
pub fn answer_body(answer: &str, label: Option<&str>) -> String {
    let text = match label {
        Some(label) => answer.strip_prefix(label).unwrap_or(answer),
        None => answer,
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches("- ").trim_start_matches("* ");
        if !line.is_empty() {
            out.push(strip_markers(line));
        }
    }
    out.join(" ")
}

/// Removes numeric citation markers like `[1]` or `[2, 3]`.
pub fn strip_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else { break };
        let inside = &rest[open + 1..open + close];
        out.push_str(&rest[..open]);
        let numeric = !inside.trim().is_empty() && inside.split(',').all(|n| n.trim().parse::<usize>().is_ok());
        if !numeric {
            out.push_str(&rest[open..=open + close]);
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sentences of an answer, with the citation markers each one carries. Lines are sentences
/// of their own (extracted answers are lists).
pub fn answer_sentences(answer: &str) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for line in answer.lines() {
        let line = line.trim().trim_start_matches("- ").trim_start_matches("* ");
        let mut current = String::new();
        let chars: Vec<char> = line.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            current.push(c);
            let boundary = matches!(c, '.' | '!' | '?')
                && chars.get(i + 1).is_none_or(|n| n.is_whitespace())
                && chars.get(i + 2).is_none_or(|n| !n.is_lowercase());
            if boundary {
                push_sentence(&mut out, &current);
                current.clear();
            }
        }
        push_sentence(&mut out, &current);
    }
    // A marker written after the full stop belongs to the sentence before it.
    let mut merged: Vec<(String, Vec<usize>)> = Vec::new();
    for (sentence, markers) in out {
        if sentence.is_empty() {
            if let Some(last) = merged.last_mut() {
                last.1.extend(markers);
            }
        } else {
            merged.push((sentence, markers));
        }
    }
    merged
}

fn push_sentence(out: &mut Vec<(String, Vec<usize>)>, raw: &str) {
    let raw = raw.trim();
    if raw.is_empty() {
        return;
    }
    let mut markers = Vec::new();
    let mut rest = raw;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else { break };
        for n in rest[open + 1..open + close].split(',') {
            if let Ok(n) = n.trim().parse::<usize>() {
                markers.push(n);
            }
        }
        rest = &rest[open + close + 1..];
    }
    let text = strip_markers(raw);
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    out.push((if letters >= 3 { text } else { String::new() }, markers));
}

/// Whether at least `threshold` of the sentence's tokens occur in the passage (containment of
/// normalised tokens, numbers included): a sentence copied or closely paraphrased from the
/// passage is supported; one that adds facts is not.
pub fn supported_by(sentence: &str, passage: &str, lang: Lang, threshold: f64) -> bool {
    let tokens = normalized_tokens(sentence, lang);
    if tokens.is_empty() {
        return false;
    }
    let passage: HashSet<String> = normalized_tokens(passage, lang).into_iter().collect();
    let found = tokens.iter().filter(|t| passage.contains(*t)).count();
    found as f64 / tokens.len() as f64 >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_language_aware() {
        assert_eq!(
            normalized_tokens("The 25 days, of paid vacation!", Lang::En),
            ["25", "days", "of", "paid", "vacation"]
        );
        assert_eq!(normalized_tokens("¿Los días de la semana?", Lang::Es), ["días", "de", "semana"]);
        // "la" is an article in Spanish only.
        assert_eq!(normalized_tokens("la paz", Lang::En), ["la", "paz"]);
    }

    #[test]
    fn f1_and_exact_match_take_the_best_reference() {
        let refs = vec!["25 days".to_owned(), "twenty-five days per year".to_owned()];
        assert_eq!(exact_match("The 25 days.", &refs, Lang::En), 1.0);
        assert!((token_f1("25 days of vacation", &refs, Lang::En) - 2.0 * 0.5 * 1.0 / 1.5).abs() < 1e-9);
        assert_eq!(token_f1("nothing relevant", &refs, Lang::En), 0.0);
        assert_eq!(token_f1("anything", &[], Lang::En), 0.0);
        assert_eq!(exact_match("siglos X y XI", &["los siglos X y XI".into()], Lang::Es), 1.0);
    }

    #[test]
    fn answers_lose_labels_and_markers() {
        let answer = "Extracted:\n\n- Employees get 25 days [1].\n- Carry over 5 days [2, 3]";
        assert_eq!(answer_body(answer, Some("Extracted:")), "Employees get 25 days . Carry over 5 days");
        let sentences = answer_sentences("Vacation is 25 days [1]. You may carry over 5 days. [2]\n- A list item [3]");
        assert_eq!(
            sentences,
            [
                ("Vacation is 25 days .".to_owned(), vec![1]),
                ("You may carry over 5 days.".to_owned(), vec![2]),
                ("A list item".to_owned(), vec![3])
            ]
        );
    }

    #[test]
    fn support_is_token_containment() {
        let passage = "Every full-time employee receives 25 days of paid vacation per calendar year.";
        assert!(supported_by("Employees receive 25 days of paid vacation.", passage, Lang::En, 0.7));
        assert!(!supported_by("Employees receive 40 days of sick leave in Spain.", passage, Lang::En, 0.7));
    }
}
