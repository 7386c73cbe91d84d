//! Question categories ("prompt types"): admins name a few categories (HR, IT, Sales, …) and
//! give each a handful of example questions; every question asked gets a category from the
//! query embedding search already computed, so categorising costs a few dot products and no
//! model call.
//!
//! Two [`Rule`]s: the nearest category *centroid* (the normalised mean of its examples), the
//! default, or the category of the nearest *example*. `lore eval categories` fits a floor for
//! each on one half of a labelled set, picks the rule that does better there, and reports it
//! on the other half: on `eval/categories` with all-MiniLM-L6-v2 the centroid won (0.646
//! against 0.600 on the fit half; 0.609 held out). The nearest example is the more predictable
//! rule (a misfiled question added as an example lands there from then on, while one more
//! example moves a centroid by a fraction), which is why it stays available.
//! The similarity floor has the same meaning as `usage.category_floor`: a question less
//! similar than the floor is [`OTHER`]. Its right value depends on the embedding model
//! (all-MiniLM-L6-v2 puts on-topic questions around 0.3–0.5 from their nearest example; e5
//! models put almost any two sentences above 0.7), so it is fitted on a labelled set with
//! [`fit_floor`], not guessed.

use std::collections::BTreeMap;

use crate::config::CategoryConfig;
use crate::{Error, Result};

/// The category of a question near no configured example (and of every question when none
/// are configured). Reserved: no configured category may use it.
pub const OTHER: &str = "other";

/// The configured categories with their example vectors, ready to classify query vectors.
#[derive(Debug, Clone)]
pub struct Categories {
    /// Category names in configuration order.
    names: Vec<String>,
    /// Unit-length example vectors, each with the index of its category in `names`.
    examples: Vec<(usize, Vec<f32>)>,
    /// Unit-length mean of each category's examples, in `names` order.
    centroids: Vec<(usize, Vec<f32>)>,
    rule: Rule,
    floor: f32,
}

/// What a question is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Each example question: the nearest one's category.
    NearestExample,
    /// Each category's centroid (the normalised mean of its examples).
    Centroid,
}

impl Rule {
    pub const ALL: [Rule; 2] = [Rule::NearestExample, Rule::Centroid];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NearestExample => "nearest_example",
            Rule::Centroid => "centroid",
        }
    }
}

impl Categories {
    /// The example questions to embed, in order (the server embeds them once at start, with
    /// the query prefix, exactly as it embeds questions).
    pub fn examples(config: &[CategoryConfig]) -> Vec<&str> {
        config.iter().flat_map(|category| category.examples.iter().map(String::as_str)).collect()
    }

    /// `vectors` holds one embedding per question of [`Categories::examples`], in that order;
    /// they are normalised here. Fails when the count differs, when the vectors differ in
    /// length, or when one is zero (it could not be compared with anything).
    pub fn new(config: &[CategoryConfig], vectors: Vec<Vec<f32>>, floor: f32) -> Result<Self> {
        let expected = config.iter().map(|category| category.examples.len()).sum::<usize>();
        if vectors.len() != expected {
            return Err(Error::Invalid(format!(
                "usage.categories: {} example vectors for {expected} example questions",
                vectors.len()
            )));
        }
        let owners = config.iter().enumerate().flat_map(|(index, category)| {
            category.examples.iter().map(move |question| (index, category.name.as_str(), question.as_str()))
        });
        let mut examples: Vec<(usize, Vec<f32>)> = Vec::with_capacity(expected);
        for ((index, name, question), vector) in owners.zip(vectors) {
            if let Some((_, first)) = examples.first()
                && first.len() != vector.len()
            {
                return Err(Error::Invalid(format!(
                    "usage.categories: the vector of {question:?} ({name}) has {} dimensions, the first example's {}",
                    vector.len(),
                    first.len()
                )));
            }
            let unit = normalised(&vector).ok_or_else(|| {
                Error::Invalid(format!("usage.categories: the vector of {question:?} ({name}) is empty or zero"))
            })?;
            examples.push((index, unit));
        }
        let centroids = (0..config.len())
            .filter_map(|index| {
                let mut sum = vec![0.0f32; examples.first()?.1.len()];
                for (_, vector) in examples.iter().filter(|(owner, _)| *owner == index) {
                    sum.iter_mut().zip(vector).for_each(|(s, x)| *s += x);
                }
                normalised(&sum).map(|centroid| (index, centroid))
            })
            .collect();
        Ok(Categories {
            names: config.iter().map(|category| category.name.clone()).collect(),
            examples,
            centroids,
            rule: Rule::NearestExample,
            floor,
        })
    }

    /// The same categories compared by another rule (`usage.category_rule`).
    pub fn with_rule(self, rule: Rule) -> Self {
        Categories { rule, ..self }
    }

    /// The same categories with another similarity floor (after [`fit_floor`]).
    pub fn with_floor(self, floor: f32) -> Self {
        Categories { floor, ..self }
    }

    pub fn floor(&self) -> f32 {
        self.floor
    }

    /// No category is configured: every question is [`OTHER`].
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The category of the example nearest `query` (cosine) and that similarity; [`OTHER`]
    /// with the best similarity when it is under the floor, and [`OTHER`] with 0 when no
    /// category is configured or `query` cannot be compared (zero, or of another length than
    /// the examples: a different embedding model).
    pub fn classify(&self, query: &[f32]) -> (&str, f32) {
        match self.nearest(query) {
            Some((name, similarity)) if similarity >= self.floor => (name, similarity),
            Some((_, similarity)) => (OTHER, similarity),
            None => (OTHER, 0.0),
        }
    }

    /// The nearest example's category and similarity, whatever the floor.
    fn nearest(&self, query: &[f32]) -> Option<(&str, f32)> {
        let (_, first) = self.examples.first()?;
        if first.len() != query.len() {
            tracing::warn!(query = query.len(), examples = first.len(), "question vector of another dimension");
            return None;
        }
        let query = normalised(query)?;
        let candidates = match self.rule {
            Rule::NearestExample => &self.examples,
            Rule::Centroid => &self.centroids,
        };
        let (index, similarity) = candidates.iter().map(|(index, example)| (*index, dot(&query, example))).fold(
            None,
            |best: Option<(usize, f32)>, candidate| match best {
                Some(best) if best.1 >= candidate.1 => Some(best),
                _ => Some(candidate),
            },
        )?;
        Some((self.names[index].as_str(), similarity))
    }
}

/// How a classifier did on a labelled set.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub cases: usize,
    pub correct: usize,
    /// `correct / cases`, 0 for no cases.
    pub accuracy: f64,
    /// Per expected category: (correct, total).
    pub per_category: BTreeMap<String, (usize, usize)>,
    /// (expected, got, how many), most frequent first.
    pub confusions: Vec<(String, String, usize)>,
}

/// Accuracy of `categories` on `cases`, each a question vector and the expected category name
/// ([`OTHER`] for a question that belongs to none).
pub fn evaluate(categories: &Categories, cases: &[(Vec<f32>, String)]) -> Evaluation {
    let mut per_category = BTreeMap::<String, (usize, usize)>::new();
    let mut confusions = BTreeMap::<(String, String), usize>::new();
    for (vector, expected) in cases {
        let (got, _) = categories.classify(vector);
        let tally = per_category.entry(expected.clone()).or_default();
        tally.1 += 1;
        if got == expected {
            tally.0 += 1;
        } else {
            *confusions.entry((expected.clone(), got.to_owned())).or_default() += 1;
        }
    }
    let correct = per_category.values().map(|(correct, _)| correct).sum::<usize>();
    let mut confusions = confusions.into_iter().map(|((expected, got), n)| (expected, got, n)).collect::<Vec<_>>();
    confusions.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    Evaluation {
        cases: cases.len(),
        correct,
        accuracy: if cases.is_empty() { 0.0 } else { correct as f64 / cases.len() as f64 },
        per_category,
        confusions,
    }
}

/// The floor on the grid 0.00, 0.01, …, 0.95 that classifies the most `cases` right (the
/// floor `categories` holds is ignored). Fit it on one part of a labelled set and report
/// accuracy on another: fitted and measured on the same questions, the accuracy flatters.
/// The grid starts at 0 because models differ widely in how similar related questions are.
///
/// Several floors often tie; this takes the median of the tied ones, the one farthest from
/// where accuracy starts to drop on either side, so it moves least on unseen questions.
/// Without cases the current floor is kept.
pub fn fit_floor(categories: &Categories, cases: &[(Vec<f32>, String)]) -> f32 {
    if cases.is_empty() {
        return categories.floor;
    }
    // The nearest example does not depend on the floor: find it once per case.
    let nearest =
        cases.iter().map(|(vector, expected)| (categories.nearest(vector), expected.as_str())).collect::<Vec<_>>();
    let grid = (0..=95).map(|hundredths| hundredths as f32 / 100.0);
    let scored = grid
        .map(|floor| {
            let correct = nearest
                .iter()
                .filter(|(nearest, expected)| {
                    let got = match nearest {
                        Some((name, similarity)) if *similarity >= floor => *name,
                        _ => OTHER,
                    };
                    got == *expected
                })
                .count();
            (floor, correct)
        })
        .collect::<Vec<_>>();
    let best = scored.iter().map(|(_, correct)| *correct).max().unwrap_or(0);
    let tied = scored.iter().filter(|(_, correct)| *correct == best).map(|(floor, _)| *floor).collect::<Vec<_>>();
    tied[tied.len() / 2]
}

/// `vector` scaled to unit length; `None` when it is empty, zero or not finite.
pub(crate) fn normalised(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = dot(vector, vector).sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| vector.iter().map(|x| x / norm).collect())
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(categories: &[(&str, &[&str])]) -> Vec<CategoryConfig> {
        categories
            .iter()
            .map(|(name, examples)| CategoryConfig {
                name: (*name).to_owned(),
                examples: examples.iter().map(|e| (*e).to_owned()).collect(),
            })
            .collect()
    }

    #[test]
    fn the_centroid_rule_compares_with_each_category_as_a_whole() {
        // A's two examples point apart, so its centroid lies between them; B has one example.
        let config = config(&[("A", &["a1", "a2"]), ("B", &["b1"])]);
        let vectors = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.8, 0.6]];
        let categories = Categories::new(&config, vectors, 0.0).unwrap();
        let query = [0.95, 0.312];
        // Nearest example: a1 (0.95) beats b1 (0.947).
        assert_eq!(categories.classify(&query).0, "A");
        // Nearest centroid: B (0.947) beats A's (0.892).
        let centroid = categories.with_rule(Rule::Centroid);
        let (name, similarity) = centroid.classify(&query);
        assert_eq!(name, "B");
        assert!((similarity - 0.947).abs() < 1e-3, "{similarity}");
        assert_eq!(centroid.classify(&[-1.0, -1.0]).0, OTHER, "under the floor of 0");
    }

    /// Three categories on the axes of a 4-dimensional space; HR has two topics (axes 0 and
    /// 3) whose mean is near neither. Vectors are deliberately not unit length.
    fn hr_it_sales() -> (Vec<CategoryConfig>, Vec<Vec<f32>>) {
        let config = config(&[
            ("HR", &["vacation days?", "salary band?"]),
            ("IT", &["vpn broken"]),
            ("Sales", &["discount approval?"]),
        ]);
        let vectors = vec![
            vec![3.0, 0.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 0.5],
            vec![0.0, 2.0, 0.0, 0.0],
            vec![0.0, 0.0, 7.0, 0.0],
        ];
        (config, vectors)
    }

    #[test]
    fn examples_are_listed_in_configuration_order() {
        let (config, _) = hr_it_sales();
        assert_eq!(
            Categories::examples(&config),
            ["vacation days?", "salary band?", "vpn broken", "discount approval?"]
        );
    }

    #[test]
    fn a_question_gets_the_category_of_its_nearest_example() {
        let (config, vectors) = hr_it_sales();
        let categories = Categories::new(&config, vectors, 0.8).unwrap();
        assert!(!categories.is_empty());
        let (name, similarity) = categories.classify(&[0.0, 10.0, 0.0, 1.0]);
        assert_eq!(name, "IT");
        assert!((similarity - 10.0 / 101f32.sqrt()).abs() < 1e-6, "{similarity}");
        // Near HR's second topic only: a centroid classifier would put it nowhere near HR.
        assert_eq!(categories.classify(&[0.0, 0.2, 0.1, 2.0]).0, "HR");
        assert_eq!(categories.classify(&[5.0, 0.0, 0.0, 0.0]).0, "HR");
    }

    #[test]
    fn under_the_floor_is_other_with_its_similarity() {
        let (config, vectors) = hr_it_sales();
        let categories = Categories::new(&config, vectors, 0.8).unwrap();
        // Halfway between IT and Sales: cosine 0.707 to both.
        let (name, similarity) = categories.classify(&[0.0, 1.0, 1.0, 0.0]);
        assert_eq!(name, OTHER);
        assert!((similarity - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        let lenient = categories.with_floor(0.7);
        assert_ne!(lenient.classify(&[0.0, 1.0, 1.0, 0.0]).0, OTHER);
    }

    #[test]
    fn no_categories_or_an_unusable_query_is_other() {
        let categories = Categories::new(&[], Vec::new(), 0.5).unwrap();
        assert!(categories.is_empty());
        assert_eq!(categories.classify(&[1.0, 0.0]), (OTHER, 0.0));
        let (config, vectors) = hr_it_sales();
        let categories = Categories::new(&config, vectors, 0.5).unwrap();
        assert_eq!(categories.classify(&[0.0; 4]), (OTHER, 0.0));
        assert_eq!(categories.classify(&[1.0, 0.0]), (OTHER, 0.0));
    }

    #[test]
    fn bad_example_vectors_are_refused_by_name() {
        let (config, mut vectors) = hr_it_sales();
        let missing = Categories::new(&config, vectors[..3].to_vec(), 0.8).unwrap_err();
        assert!(missing.to_string().contains("3 example vectors for 4 example questions"), "{missing}");
        vectors[2] = vec![0.0; 4];
        let zero = Categories::new(&config, vectors.clone(), 0.8).unwrap_err();
        assert!(zero.to_string().contains("\"vpn broken\" (IT) is empty or zero"), "{zero}");
        vectors[2] = vec![1.0; 3];
        let short = Categories::new(&config, vectors, 0.8).unwrap_err();
        assert!(short.to_string().contains("has 3 dimensions"), "{short}");
    }

    #[test]
    fn evaluation_counts_per_category_and_confusions() {
        let (config, vectors) = hr_it_sales();
        let categories = Categories::new(&config, vectors, 0.8).unwrap();
        let cases = vec![
            (vec![1.0, 0.0, 0.0, 0.1], "HR".to_owned()),
            (vec![0.0, 1.0, 0.0, 0.0], "IT".to_owned()),
            (vec![0.0, 0.0, 1.0, 0.0], "IT".to_owned()),
            (vec![0.0, 0.0, 1.0, 0.1], "IT".to_owned()),
            (vec![0.0, 1.0, 1.0, 0.0], OTHER.to_owned()),
            (vec![0.1, 0.0, 1.0, 0.0], "Sales".to_owned()),
        ];
        let evaluation = evaluate(&categories, &cases);
        assert_eq!((evaluation.cases, evaluation.correct), (6, 4));
        assert!((evaluation.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(evaluation.per_category["IT"], (1, 3));
        assert_eq!(evaluation.per_category[OTHER], (1, 1));
        assert_eq!(evaluation.confusions, [("IT".to_owned(), "Sales".to_owned(), 2)]);
        assert_eq!(evaluate(&categories, &[]).accuracy, 0.0);
    }

    #[test]
    fn the_fitted_floor_separates_off_topic_questions() {
        let (config, vectors) = hr_it_sales();
        let categories = Categories::new(&config, vectors, 0.5).unwrap();
        // On-topic questions are at least 0.905 similar to their example; off-topic ones at most
        // 0.745 to any: every floor from 0.75 to 0.90 is right on all of them.
        let at = |axis: usize, similarity: f32| {
            let mut v = vec![0.0; 4];
            v[axis] = similarity;
            v[(axis + 1) % 4] = (1.0 - similarity * similarity).sqrt();
            v
        };
        let cases = vec![
            (at(0, 0.95), "HR".to_owned()),
            (at(1, 0.905), "IT".to_owned()),
            (at(2, 0.92), "Sales".to_owned()),
            (at(1, 0.745), OTHER.to_owned()),
            (at(2, 0.70), OTHER.to_owned()),
        ];
        assert_eq!(evaluate(&categories, &cases).correct, 3, "a floor of 0.5 lets off-topic questions in");
        let floor = fit_floor(&categories, &cases);
        assert!((floor - 0.83).abs() < 1e-6, "the median of the tied floors 0.75..=0.90, got {floor}");
        assert_eq!(evaluate(&categories.clone().with_floor(floor), &cases).correct, 5);
        assert_eq!(fit_floor(&categories, &[]), 0.5);
    }
}
