//! `[usage]` and `[rate_limits]` in `lore.toml`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Record usage events (on by default; off only for measuring what metering costs).
    pub enabled: bool,
    /// Currency of the price table and of every cost Lore reports.
    pub currency: String,
    /// Input and output price per million tokens, per model.
    pub prices: Vec<Price>,
    /// Raw events older than this are deleted (the daily rollups stay).
    pub retention_days: u32,
    /// Daily rollups older than this are deleted.
    pub rollup_retention_days: u32,
    /// Events are written in batches at least this often.
    pub flush_interval_ms: u64,
    /// ... or as soon as this many wait.
    pub flush_batch: usize,
    /// Question categories with example questions; a question gets the nearest.
    pub categories: Vec<CategoryConfig>,
    /// Below this cosine similarity to every example, a question is `other`.
    pub category_floor: f32,
    /// Compare a question with each example (`nearest_example`) or with each category's
    /// centroid (`centroid`); `lore eval categories` picks one on a labelled set.
    pub category_rule: crate::categories::Rule,
    /// Two gap questions at least this similar (cosine, to the cluster's centroid) are one gap.
    pub gap_similarity: f32,
    pub roi: RoiConfig,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            enabled: true,
            currency: "USD".into(),
            prices: Vec::new(),
            retention_days: 400,
            rollup_retention_days: 1900,
            flush_interval_ms: 500,
            flush_batch: 512,
            categories: Vec::new(),
            category_floor: 0.15,
            category_rule: crate::categories::Rule::Centroid,
            gap_similarity: 0.50,
            roi: RoiConfig::default(),
        }
    }
}

impl UsageConfig {
    /// Checks values a file could get wrong, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.currency.trim().is_empty() {
            return Err("usage.currency must not be empty".into());
        }
        for price in &self.prices {
            if price.model.trim().is_empty() {
                return Err("usage.prices: every price needs a `model`".into());
            }
            if !(price.input_per_million >= 0.0 && price.output_per_million >= 0.0) {
                return Err(format!("usage.prices: the prices of {:?} must be zero or more", price.model));
            }
        }
        if self.flush_batch == 0 || self.flush_interval_ms == 0 {
            return Err("usage.flush_batch and usage.flush_interval_ms must be at least 1".into());
        }
        if self.retention_days == 0 || self.rollup_retention_days < self.retention_days {
            return Err("usage.retention_days must be at least 1 and at most usage.rollup_retention_days".into());
        }
        for category in &self.categories {
            if category.name.trim().is_empty() || category.name == crate::categories::OTHER {
                return Err(format!("usage.categories: {:?} is not a usable category name", category.name));
            }
            if category.examples.is_empty() {
                return Err(format!("usage.categories: {:?} needs at least one example question", category.name));
            }
        }
        for (name, value) in
            [("usage.category_floor", self.category_floor), ("usage.gap_similarity", self.gap_similarity)]
        {
            if !(-1.0..=1.0).contains(&value) {
                return Err(format!("{name} must be a cosine similarity between -1 and 1"));
            }
        }
        if !(self.roi.minutes_saved_per_answer >= 0.0 && self.roi.hourly_cost >= 0.0) {
            return Err("usage.roi values must be zero or more".into());
        }
        Ok(())
    }

    /// Cost of a model call by the price table; an unknown model costs nothing (and is
    /// reported as such by `lore usage`).
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.prices.iter().find(|p| p.model == model).map_or(0.0, |p| p.cost(prompt_tokens, completion_tokens))
    }

    /// The highest cost a call of so many tokens could have with any priced model (budget
    /// reservations are upper bounds).
    pub fn max_cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.prices.iter().map(|p| p.cost(prompt_tokens, completion_tokens)).fold(0.0, f64::max)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub model: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
}

impl Price {
    fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_per_million + completion_tokens as f64 * self.output_per_million) / 1e6
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryConfig {
    pub name: String,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoiConfig {
    /// Minutes an answered question saves the asker.
    pub minutes_saved_per_answer: f64,
    /// Cost of an hour of an employee's time, in `usage.currency`.
    pub hourly_cost: f64,
}

impl Default for RoiConfig {
    fn default() -> Self {
        RoiConfig { minutes_saved_per_answer: 5.0, hourly_cost: 50.0 }
    }
}

/// `[rate_limits]`: token buckets per API key, per user, and for public (widget) keys per end
/// user and per page origin. A limit of 0 requests is no limit. Public keys are limited by
/// default (anyone on the page can call with them); keys and users are not until an admin
/// sets limits that fit their integrations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub per_key: RateLimit,
    pub per_user: RateLimit,
    /// Public keys and their visitor tokens, per visitor.
    pub per_visitor: RateLimit,
    /// Public keys and their visitor tokens, per `Origin`.
    pub per_origin: RateLimit,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_key: RateLimit { per_minute: 0, burst: 0 },
            per_user: RateLimit { per_minute: 0, burst: 0 },
            per_visitor: RateLimit { per_minute: 30, burst: 10 },
            per_origin: RateLimit { per_minute: 1200, burst: 200 },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per minute; 0 turns the limit off.
    pub per_minute: u32,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}
