//! `lore eval verified <questions.jsonl>`: where to put the similarity threshold of verified
//! answers, and how often it serves a stored answer to a question that asked something else.
//!
//! The labelled set holds groups of questions with one intent each. Every two questions make a
//! pair, same-intent when they share a group. The threshold is fitted with
//! [`lore_policy::verified::calibrate`] on the pairs of one half of the groups and measured on
//! the other half, split by a hash of the group id: splitting by question would put paraphrases
//! of one intent on both sides, and the held-out half would then grade near-copies of what the
//! fit saw. Pairs that straddle the halves belong to neither. Questions are embedded as the
//! server embeds them: the real model, with its query prefix.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_policy::verified::{self, Calibration};
use serde::Deserialize;

use crate::error::EvalError;

/// Thresholds reported in a table next to the fitted one, so a configured value can be judged
/// without running again.
const FIXED_THRESHOLDS: [f32; 6] = [0.80, 0.85, 0.88, 0.90, 0.92, 0.95];

/// How many of the most similar held-out different-intent pairs the report lists.
const CLOSEST_FALSE_PAIRS: usize = 10;

#[derive(Debug, Clone, clap::Args)]
pub struct VerifiedArgs {
    /// One JSON object per line: `id`, `group` (one intent), `lang`, `question`.
    pub questions: PathBuf,
    /// Largest share of different-intent fit pairs the fitted threshold may let match.
    #[arg(long, default_value_t = 0.01, value_parser = parse_rate)]
    pub max_false_rate: f64,
    /// Also write the report here (Markdown).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) { Ok(rate) } else { Err(format!("a rate is between 0 and 1, not {rate}")) }
}

#[derive(Debug, Clone, Deserialize)]
struct Question {
    id: String,
    group: String,
    lang: String,
    question: String,
}

/// Which half of the groups a pair belongs to; pairs across halves belong to none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    Fit,
    HeldOut,
}

#[derive(Debug, Clone, PartialEq)]
struct Pair {
    /// Indexes into the questions, `a < b`.
    a: usize,
    b: usize,
    similarity: f32,
    same: bool,
    half: Option<Half>,
    /// `en-en`, `es-es`, … or `mixed` when the two languages differ.
    langs: String,
}

/// Pairs at or above a threshold, counted apart for each label.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rates {
    false_pairs: usize,
    false_matches: usize,
    true_pairs: usize,
    true_matches: usize,
}

impl Rates {
    fn of<'a>(pairs: impl IntoIterator<Item = &'a Pair>, threshold: f32) -> Rates {
        let mut rates = Rates { false_pairs: 0, false_matches: 0, true_pairs: 0, true_matches: 0 };
        for pair in pairs {
            let matched = usize::from(pair.similarity >= threshold);
            if pair.same {
                rates.true_pairs += 1;
                rates.true_matches += matched;
            } else {
                rates.false_pairs += 1;
                rates.false_matches += matched;
            }
        }
        rates
    }

    fn false_rate(&self) -> f64 {
        share(self.false_matches, self.false_pairs)
    }

    fn true_rate(&self) -> f64 {
        share(self.true_matches, self.true_pairs)
    }
}

/// What a question gets when every other held-out group is stored as a verified answer with its
/// questions as examples (the question's own group without the question itself), as the server
/// matches: each answer by its best example, and the best answer at or above the threshold is
/// served. Pair rates understate the risk: a question is compared with every stored answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Served {
    questions: usize,
    /// The best answer reaching the threshold is another group's.
    wrong: usize,
    /// It is the question's own group's.
    own: usize,
}

fn share(count: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { count as f64 / of as f64 }
}

pub fn run(args: &VerifiedArgs, config: &Config) -> Result<String, EvalError> {
    let text = std::fs::read_to_string(&args.questions).map_err(|e| EvalError::io(&args.questions, e))?;
    let questions = parse(&text, &args.questions)?;
    let embedder = Embedder::load(&config.embedding)?;
    let texts: Vec<String> = questions.iter().map(|q| q.question.clone()).collect();
    let vectors = embedder.embed_queries(&texts)?;
    let pairs = pairs(&questions, &vectors);
    let in_half = |half: Half| pairs.iter().filter(move |p| p.half == Some(half));
    let fit: Vec<(f32, bool)> = in_half(Half::Fit).map(|p| (p.similarity, p.same)).collect();
    let fitted = verified::calibrate(&fit, args.max_false_rate);
    let held_out: Vec<&Pair> = in_half(Half::HeldOut).collect();
    let held_out_questions: Vec<usize> =
        (0..questions.len()).filter(|&i| half_of(&questions[i].group) == Half::HeldOut).collect();
    let similarities = similarity_matrix(&vectors);
    let served = |lang: Option<&str>, threshold: f32| {
        let asked: Vec<usize> =
            held_out_questions.iter().copied().filter(|&q| lang.is_none_or(|l| questions[q].lang == l)).collect();
        served(&questions, &similarities, &held_out_questions, &asked, threshold)
    };
    let context = Context { args, config, questions: &questions, fitted };
    let out = report(&context, &held_out, &served);
    if let Some(path) = &args.report {
        std::fs::write(path, &out).map_err(|e| EvalError::io(path, e))?;
    }
    Ok(out)
}

fn parse(text: &str, path: &std::path::Path) -> Result<Vec<Question>, EvalError> {
    let mut questions = Vec::new();
    let mut ids = HashSet::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |message: String| EvalError::Case { path: path.to_path_buf(), line: n + 1, message };
        let question: Question = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        for (field, value) in [("id", &question.id), ("group", &question.group), ("lang", &question.lang)] {
            if value.trim().is_empty() {
                return Err(bad(format!("{field} is empty")));
            }
        }
        if question.question.trim().is_empty() {
            return Err(bad("question is empty".into()));
        }
        if !ids.insert(question.id.clone()) {
            return Err(bad(format!("id {:?} appears twice", question.id)));
        }
        questions.push(question);
    }
    if questions.len() < 2 {
        return Err(EvalError::Set { path: path.to_path_buf(), message: "needs at least two questions".into() });
    }
    Ok(questions)
}

/// Every two questions, labelled same-intent when they share a group.
fn pairs(questions: &[Question], vectors: &[Vec<f32>]) -> Vec<Pair> {
    let halves: Vec<Half> = questions.iter().map(|q| half_of(&q.group)).collect();
    let mut pairs = Vec::with_capacity(questions.len() * questions.len().saturating_sub(1) / 2);
    for a in 0..questions.len() {
        for b in a + 1..questions.len() {
            let (qa, qb) = (&questions[a], &questions[b]);
            pairs.push(Pair {
                a,
                b,
                similarity: cosine(&vectors[a], &vectors[b]),
                same: qa.group == qb.group,
                half: (halves[a] == halves[b]).then_some(halves[a]),
                langs: if qa.lang == qb.lang { format!("{0}-{0}", qa.lang) } else { "mixed".into() },
            });
        }
    }
    pairs
}

/// The held-out half: an FNV-1a hash of the group id, odd.
fn half_of(group: &str) -> Half {
    if crate::calibrate::fnv1a(group) % 2 == 1 { Half::HeldOut } else { Half::Fit }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    let norms = (dot(a, a) * dot(b, b)).sqrt();
    if norms > 0.0 { dot(a, b) / norms } else { 0.0 }
}

fn similarity_matrix(vectors: &[Vec<f32>]) -> Vec<Vec<f32>> {
    vectors.iter().map(|a| vectors.iter().map(|b| cosine(a, b)).collect()).collect()
}

/// What each of the `asked` questions gets when the `stored` ones are the example questions of
/// the verified answers.
fn served(
    questions: &[Question],
    similarities: &[Vec<f32>],
    stored: &[usize],
    asked: &[usize],
    threshold: f32,
) -> Served {
    let mut served = Served { questions: 0, wrong: 0, own: 0 };
    for &q in asked {
        let mut best: BTreeMap<&str, f32> = BTreeMap::new();
        for &example in stored.iter().filter(|&&e| e != q) {
            let entry = best.entry(questions[example].group.as_str()).or_insert(f32::MIN);
            *entry = entry.max(similarities[q][example]);
        }
        let own = questions[q].group.as_str();
        served.questions += 1;
        let own_best = best.get(own).copied().unwrap_or(f32::MIN);
        let other_best = best.iter().filter(|(group, _)| **group != own).map(|(_, &s)| s).fold(f32::MIN, f32::max);
        if own_best >= threshold && own_best >= other_best {
            served.own += 1;
        } else if other_best >= threshold {
            served.wrong += 1;
        }
    }
    served
}

struct Context<'a> {
    args: &'a VerifiedArgs,
    config: &'a Config,
    questions: &'a [Question],
    fitted: Calibration,
}

fn report(context: &Context, held_out: &[&Pair], served: &dyn Fn(Option<&str>, f32) -> Served) -> String {
    let Context { args, config, questions, fitted } = context;
    let groups: HashSet<&str> = questions.iter().map(|q| q.group.as_str()).collect();
    let held_out_groups = groups.iter().filter(|g| half_of(g) == Half::HeldOut).count();
    let mut out = String::new();
    let _ = writeln!(out, "# Verified answers: the similarity threshold\n");
    let _ = writeln!(
        out,
        "Model `{}`; {} questions in {} intent groups ({}).\n",
        config.embedding.name,
        questions.len(),
        groups.len(),
        args.questions.display()
    );
    let _ = writeln!(
        out,
        "Fit on the pairs within {} groups ({} same-intent, {} different), split by a hash of the \
         group id; the held-out pairs come from the other {held_out_groups} groups.\n",
        groups.len() - held_out_groups,
        fitted.true_pairs,
        fitted.false_pairs
    );
    let _ = writeln!(
        out,
        "Fitted at a false-match rate of at most {}: **threshold {:.3}** (on the fit pairs: false matches {:.4}, \
         true matches {:.3}).\n",
        args.max_false_rate, fitted.threshold, fitted.false_match_rate, fitted.true_match_rate
    );
    out.push_str("Held out at the fitted threshold:\n\n");
    out.push_str("| pairs | same-intent | matched | true-match rate | different | matched | false-match rate |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    let row = |name: &str, rates: Rates| {
        format!(
            "| {name} | {} | {} | {:.3} | {} | {} | {:.4} |\n",
            rates.true_pairs,
            rates.true_matches,
            rates.true_rate(),
            rates.false_pairs,
            rates.false_matches,
            rates.false_rate()
        )
    };
    out.push_str(&row("all (reported)", Rates::of(held_out.iter().copied(), fitted.threshold)));
    let mut langs: Vec<&str> = held_out.iter().map(|p| p.langs.as_str()).collect();
    langs.sort_unstable();
    langs.dedup();
    for langs in langs {
        let part = held_out.iter().copied().filter(|p| p.langs == langs);
        out.push_str(&row(langs, Rates::of(part, fitted.threshold)));
    }
    out.push_str("\nServed at the fitted threshold (see below), by the language of the question asked:\n\n");
    out.push_str("| asked in | questions | served a wrong answer | served their own |\n|---|---|---|---|\n");
    let mut asked_langs: Vec<&str> =
        questions.iter().filter(|q| half_of(&q.group) == Half::HeldOut).map(|q| q.lang.as_str()).collect();
    asked_langs.sort_unstable();
    asked_langs.dedup();
    for lang in asked_langs {
        let served = served(Some(lang), fitted.threshold);
        let _ = writeln!(
            out,
            "| {lang} | {} | {} ({:.3}) | {} ({:.3}) |",
            served.questions,
            served.wrong,
            share(served.wrong, served.questions),
            served.own,
            share(served.own, served.questions)
        );
    }
    out.push_str(
        "\nHeld out at fixed thresholds. Pairs: one example question against one question. Served: each \
         held-out question asked with every other held-out group stored as a verified answer (its own \
         group without it), matched on the best example as the server does.\n\n",
    );
    out.push_str(
        "| threshold | true-match rate | false-match rate | false matches | questions served a wrong answer | \
         questions served their own |\n|---|---|---|---|---|---|\n",
    );
    let mut thresholds: Vec<f32> = FIXED_THRESHOLDS.to_vec();
    thresholds.push(fitted.threshold);
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    for threshold in thresholds {
        let rates = Rates::of(held_out.iter().copied(), threshold);
        let served = served(None, threshold);
        let name = if threshold == fitted.threshold {
            format!("**{threshold:.3}** (fitted)")
        } else {
            format!("{threshold:.2}")
        };
        let _ = writeln!(
            out,
            "| {name} | {:.3} | {:.4} | {} | {} of {} ({:.3}) | {:.3} |",
            rates.true_rate(),
            rates.false_rate(),
            rates.false_matches,
            served.wrong,
            served.questions,
            share(served.wrong, served.questions),
            share(served.own, served.questions)
        );
    }
    let mut closest: Vec<&&Pair> = held_out.iter().filter(|p| !p.same).collect();
    closest.sort_by(|x, y| y.similarity.total_cmp(&x.similarity));
    out.push_str(
        "\nThe most similar held-out questions of different intent:\n\n| similarity | question | question |\n",
    );
    out.push_str("|---|---|---|\n");
    for pair in closest.into_iter().take(CLOSEST_FALSE_PAIRS) {
        let (a, b) = (&questions[pair.a], &questions[pair.b]);
        let _ = writeln!(
            out,
            "| {:.3} | {} ({}) | {} ({}) |",
            pair.similarity,
            a.question.replace('|', "\\|"),
            a.group,
            b.question.replace('|', "\\|"),
            b.group
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(id: &str, group: &str, lang: &str) -> Question {
        Question { id: id.into(), group: group.into(), lang: lang.into(), question: format!("question {id}") }
    }

    /// Two group names that fall in different halves.
    fn one_group_per_half() -> (String, String) {
        let names: Vec<String> = (0..20).map(|i| format!("group-{i}")).collect();
        let fit = names.iter().find(|g| half_of(g) == Half::Fit).expect("a fit group").clone();
        let held_out = names.iter().find(|g| half_of(g) == Half::HeldOut).expect("a held-out group").clone();
        (fit, held_out)
    }

    #[test]
    fn pairs_are_same_intent_exactly_when_they_share_a_group() {
        let questions = [question("1", "a", "en"), question("2", "a", "es"), question("3", "b", "es")];
        let vectors = vec![vec![1.0, 0.0], vec![2.0, 0.0], vec![0.0, 1.0]];
        let pairs = pairs(&questions, &vectors);
        let summary: Vec<(usize, usize, bool, &str)> =
            pairs.iter().map(|p| (p.a, p.b, p.same, p.langs.as_str())).collect();
        assert_eq!(summary, [(0, 1, true, "mixed"), (0, 2, false, "mixed"), (1, 2, false, "es-es")]);
        assert_eq!(pairs[0].similarity, 1.0, "cosine ignores length");
        assert_eq!(pairs[1].similarity, 0.0);
    }

    #[test]
    fn the_split_follows_the_group_so_paraphrases_never_straddle_it() {
        let (fit, held_out) = one_group_per_half();
        let questions = [
            question("q1", &fit, "en"),
            question("q2", &fit, "en"),
            question("q3", &held_out, "en"),
            question("q4", &held_out, "en"),
        ];
        let vectors = vec![vec![1.0]; 4];
        let pairs = pairs(&questions, &vectors);
        let halves: Vec<(usize, usize, Option<Half>)> = pairs.iter().map(|p| (p.a, p.b, p.half)).collect();
        assert_eq!(
            halves,
            [
                (0, 1, Some(Half::Fit)),
                (0, 2, None),
                (0, 3, None),
                (1, 2, None),
                (1, 3, None),
                (2, 3, Some(Half::HeldOut)),
            ]
        );
        assert!(pairs.iter().filter(|p| p.same).all(|p| p.half.is_some()));
    }

    #[test]
    fn the_split_is_stable_and_uses_both_halves() {
        let groups: Vec<String> = (0..100).map(|i| format!("intent-{i}")).collect();
        let held_out = groups.iter().filter(|g| half_of(g) == Half::HeldOut).count();
        assert!((30..=70).contains(&held_out), "{held_out} of 100 held out");
        // The FNV-1a of "a" is 0xaf63dc4c8601ec8c (even); of "b", 0xaf63df4c8601f1a5 (odd).
        assert_eq!((half_of("a"), half_of("b")), (Half::Fit, Half::HeldOut));
    }

    #[test]
    fn a_pair_at_exactly_the_threshold_matches() {
        let pair =
            |similarity: f32, same: bool| Pair { a: 0, b: 1, similarity, same, half: None, langs: "en-en".into() };
        let pairs = [pair(0.9, true), pair(0.89, true), pair(0.9, false), pair(0.5, false), pair(0.4, false)];
        let rates = Rates::of(&pairs, 0.9);
        assert_eq!(rates, Rates { false_pairs: 3, false_matches: 1, true_pairs: 2, true_matches: 1 });
        assert!((rates.false_rate() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(rates.true_rate(), 0.5);
        assert_eq!(Rates::of(&[], 0.9).false_rate(), 0.0);
    }

    #[test]
    fn the_best_answer_is_served_each_by_its_best_example_never_the_question_itself() {
        let questions = [question("1", "a", "en"), question("2", "a", "en"), question("3", "b", "en")];
        let similarities = vec![vec![1.0, 0.95, 0.7], vec![0.95, 1.0, 0.92], vec![0.7, 0.92, 1.0]];
        let served = served(&questions, &similarities, &[0, 1, 2], &[0, 1, 2], 0.9);
        // Questions 1 and 2 get their own answer (0.95, better than b's 0.92 for question 2);
        // question 3 gets group a's answer through question 2 (0.92).
        assert_eq!(served, Served { questions: 3, wrong: 1, own: 2 });
        let closer_to_b = vec![vec![1.0, 0.91, 0.93], vec![0.91, 1.0, 0.5], vec![0.93, 0.5, 1.0]];
        let served_1 = super::served(&questions, &closer_to_b, &[0, 1, 2], &[0], 0.9);
        assert_eq!(served_1, Served { questions: 1, wrong: 1, own: 0 }, "the best answer is served, not the own");
        let only_b = super::served(&questions, &similarities, &[0, 1, 2], &[2], 0.9);
        assert_eq!(only_b, Served { questions: 1, wrong: 1, own: 0 }, "b has no other example of its own");
    }

    #[test]
    fn a_bad_line_is_named_and_ids_are_unique() {
        let path = std::path::Path::new("q.jsonl");
        let line = |id: &str| format!(r#"{{"id": "{id}", "group": "g", "lang": "en", "question": "why?"}}"#);
        let ok = format!("{}\n\n{}\n", line("1"), line("2"));
        assert_eq!(parse(&ok, path).expect("parses").len(), 2);
        let twice = format!("{}\n{}\n", line("1"), line("1"));
        let error = parse(&twice, path).expect_err("duplicate id").to_string();
        assert!(error.starts_with("q.jsonl:2:") && error.contains("twice"), "{error}");
        let no_group = format!("{}\n{}\n", line("1"), line("2").replace(r#""g""#, r#"" ""#));
        assert!(parse(&no_group, path).expect_err("empty group").to_string().contains("group is empty"));
    }

    #[test]
    fn the_rate_ceiling_is_a_share() {
        assert_eq!(parse_rate("0.01"), Ok(0.01));
        assert!(parse_rate("1.5").is_err() && parse_rate("-0.1").is_err() && parse_rate("x").is_err());
    }
}
