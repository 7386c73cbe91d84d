//! Prometheus text-format metrics: request counts and latency by route and status, and
//! retrieval stage latency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS_SECONDS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_SECONDS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, limit) in self.counts.iter_mut().zip(BUCKETS_SECONDS) {
            if seconds <= limit {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (count, limit) in self.counts.iter().zip(BUCKETS_SECONDS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{limit}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{}}} {}", labels.trim_end_matches(','), self.sum);
        let _ = writeln!(out, "{name}_count{{{}}} {}", labels.trim_end_matches(','), self.count);
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), Histogram>>,
    stages: Mutex<BTreeMap<&'static str, Histogram>>,
    tokens: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Usage events by endpoint, department and kind. Label sets stay bounded: the first
    /// [`MAX_DEPARTMENT_LABELS`] departments seen get their own label, later ones `other`,
    /// and a kind outside `lore_usage::KINDS` is `other`.
    events: Mutex<EventCounts>,
    budget_warnings: std::sync::atomic::AtomicU64,
    budget_exceeded: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct EventCounts {
    departments: std::collections::BTreeSet<String>,
    counts: BTreeMap<(&'static str, String, &'static str), u64>,
}

/// Distinct department label values before the rest are counted as `other`.
pub const MAX_DEPARTMENT_LABELS: usize = 64;

impl Metrics {
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.entry((route.to_owned(), status)).or_default().observe(seconds);
    }

    pub fn observe_stage(&self, stage: &'static str, seconds: f64) {
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        stages.entry(stage).or_default().observe(seconds);
    }

    pub fn observe_retrieval(&self, t: &lore_chat::retrieval::RetrievalTimings) {
        for (stage, ms) in [("embed", t.embed_ms), ("bm25", t.bm25_ms), ("dense", t.dense_ms), ("fusion", t.fusion_ms)]
        {
            self.observe_stage(stage, ms / 1e3);
        }
    }

    pub fn add_tokens(&self, model: &str, prompt: u64, completion: u64) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        *tokens.entry((model.to_owned(), "prompt")).or_default() += prompt;
        *tokens.entry((model.to_owned(), "completion")).or_default() += completion;
    }

    /// Counts a usage event once per department of the caller (`none` without one).
    pub fn count_event(&self, endpoint: &'static str, departments: &[String], kind: &str) {
        let kind = lore_usage::KINDS.iter().copied().find(|k| *k == kind).unwrap_or("other");
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let none = [String::from("none")];
        let departments = if departments.is_empty() { &none[..] } else { departments };
        for department in departments {
            let label = if events.departments.contains(department) {
                department.clone()
            } else if events.departments.len() < MAX_DEPARTMENT_LABELS {
                events.departments.insert(department.clone());
                department.clone()
            } else {
                "other".into()
            };
            *events.counts.entry((endpoint, label, kind)).or_default() += 1;
        }
    }

    pub fn count_budget_warning(&self) {
        self.budget_warnings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn count_budget_exceeded(&self) {
        self.budget_exceeded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP lore_http_request_duration_seconds HTTP requests by route and status.\n");
        out.push_str("# TYPE lore_http_request_duration_seconds histogram\n");
        for ((route, status), histogram) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let labels = format!("route=\"{route}\",status=\"{status}\",");
            histogram.render(&mut out, "lore_http_request_duration_seconds", &labels);
        }
        out.push_str("# HELP lore_model_tokens_total Tokens reported by model providers.\n");
        out.push_str("# TYPE lore_model_tokens_total counter\n");
        for ((model, kind), count) in self.tokens.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "lore_model_tokens_total{{model=\"{model}\",kind=\"{kind}\"}} {count}");
        }
        out.push_str("# HELP lore_usage_events_total Metered requests by endpoint, department and kind.\n");
        out.push_str("# TYPE lore_usage_events_total counter\n");
        for ((endpoint, department, kind), count) in self.events.lock().unwrap_or_else(|p| p.into_inner()).counts.iter()
        {
            let department = escape_label(department);
            let _ = writeln!(
                out,
                "lore_usage_events_total{{endpoint=\"{endpoint}\",department=\"{department}\",kind=\"{kind}\"}} {count}"
            );
        }
        for (name, help, counter) in [
            ("lore_budget_warnings_total", "Requests admitted past a budget's soft limit.", &self.budget_warnings),
            (
                "lore_budget_exceeded_total",
                "Chats refused or degraded by a budget's hard limit.",
                &self.budget_exceeded,
            ),
        ] {
            let value = counter.load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        out.push_str(
            "# HELP lore_retrieval_stage_duration_seconds Answer stages (embed, bm25, dense, fusion, generation).\n",
        );
        out.push_str("# TYPE lore_retrieval_stage_duration_seconds histogram\n");
        for (stage, histogram) in self.stages.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            histogram.render(&mut out, "lore_retrieval_stage_duration_seconds", &format!("stage=\"{stage}\","));
        }
        out
    }
}

/// A label value as the Prometheus text format needs it (`\\`, `"` and newlines escaped).
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
