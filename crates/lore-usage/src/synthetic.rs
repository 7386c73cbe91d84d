//! Generated usage events, for benchmarks and tests of the store and analytics at scale: a
//! company of about 3,000 people in eight departments (a few in two) and some anonymous widget
//! visitors, 40 API keys, 12 collections, 10 question categories and `other`, two models, and
//! the endpoint and answer mix of a deployed assistant, on workdays in office hours (UTC).
//!
//! Deterministic: the same arguments give the same events, on every platform (a SplitMix64
//! generator, no dependency).

use crate::{DAY_SECS, Endpoint, UsageEvent};

const USERS: u64 = 3_000;
/// Anonymous visitors of public (widget) keys, who have no department.
const VISITORS: u64 = 400;
/// Keys `key-00` to `key-35` belong to integrations; the last four are public widget keys.
const KEYS: u64 = 40;
const PUBLIC_KEYS: u64 = 4;

const DEPARTMENTS: [&str; 8] = ["engineering", "sales", "support", "marketing", "finance", "hr", "legal", "operations"];

/// The category each department asks about most, by index in [`DEPARTMENTS`].
const CATEGORIES: [&str; 10] =
    ["engineering", "sales", "it", "marketing", "finance", "hr", "legal", "facilities", "security", "travel"];

const COLLECTIONS: [&str; 12] = [
    "handbook",
    "engineering-wiki",
    "runbooks",
    "sales-playbook",
    "product-docs",
    "support-kb",
    "hr-policies",
    "benefits",
    "legal-templates",
    "finance-procedures",
    "security-policies",
    "office-guides",
];

/// Name, input and output price per million tokens, share of model calls.
const MODELS: [(&str, f64, f64, f64); 2] = [("gpt-4o-mini", 0.15, 0.60, 0.8), ("gpt-4o", 2.50, 10.00, 0.2)];

/// Endpoints and their shares of requests.
const ENDPOINTS: [(Endpoint, f64); 5] = [
    (Endpoint::Search, 0.35),
    (Endpoint::Chat, 0.40),
    (Endpoint::ChatStream, 0.15),
    (Endpoint::Upload, 0.03),
    (Endpoint::Feedback, 0.07),
];

/// Answer kinds of chats and their shares.
const CHAT_KINDS: [(&str, f64); 5] = [
    ("generated", 0.70),
    ("extracted", 0.10),
    ("no_answer", 0.17),
    ("budget_exceeded", 0.015),
    ("rate_limited", 0.015),
];

/// `count` events with times in `[end_ms - days × 1 day, end_ms)`, in no particular order.
pub fn events(count: usize, seed: u64, days: i64, end_ms: i64) -> impl Iterator<Item = UsageEvent> {
    let mut generator = Generator {
        rng: SplitMix64(seed),
        from_ms: end_ms - days.max(1) * DAY_SECS * 1000,
        to_ms: end_ms,
        messages: 0,
    };
    std::iter::repeat_with(move || generator.event()).take(count)
}

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and good enough for synthetic data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((self.unit() * n as f64) as u64).min(n.saturating_sub(1))
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An item of `(item, share)` pairs, by share (the shares add up to 1).
    fn pick<T: Copy>(&mut self, items: &[(T, f64)]) -> T {
        let mut left = self.unit();
        for &(item, share) in items {
            if left < share {
                return item;
            }
            left -= share;
        }
        items[items.len() - 1].0
    }

    /// Log-normal around `median`: latencies and token counts have long right tails.
    fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        // Box–Muller; `1 - unit` is in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - self.unit()).ln()).sqrt();
        let normal = radius * (2.0 * std::f64::consts::PI * self.unit()).cos();
        median * (sigma * normal).exp()
    }
}

/// A fixed attribute of a person, scrambled from their number so it does not follow the
/// number's order.
fn scramble(n: u64) -> u64 {
    SplitMix64(n ^ 0x5DEE_CE66_D1CE_4E5B).next()
}

struct Person {
    user: String,
    role: &'static str,
    departments: Vec<String>,
    credential: &'static str,
    key_id: Option<String>,
    /// Index in [`DEPARTMENTS`] of the department the person asks most about.
    home: Option<usize>,
}

struct Generator {
    rng: SplitMix64,
    from_ms: i64,
    to_ms: i64,
    /// Chat answers so far: their message ids are `1..=messages`, which feedback refers to.
    messages: i64,
}

impl Generator {
    fn event(&mut self) -> UsageEvent {
        let person = self.person();
        let endpoint = self.rng.pick(&ENDPOINTS);
        let mut event = UsageEvent {
            id: format!("{:016x}{:016x}", self.rng.next(), self.rng.next()),
            time_ms: self.time_ms(),
            role: person.role.to_owned(),
            departments: person.departments,
            credential: person.credential.to_owned(),
            key_id: person.key_id,
            ..UsageEvent::new(endpoint, &person.user, "")
        };
        match endpoint {
            Endpoint::Search => self.search(&mut event, person.home),
            Endpoint::Chat | Endpoint::ChatStream => self.chat(&mut event, person.home),
            Endpoint::Upload => self.upload(&mut event),
            Endpoint::Feedback => self.feedback(&mut event),
        }
        event
    }

    /// Who asks: a few people ask a lot (the square skews towards low numbers), most now and
    /// then; one request in twenty comes from a widget visitor.
    fn person(&mut self) -> Person {
        if self.rng.chance(0.05) {
            return Person {
                user: format!("visitor-{:03}", self.rng.below(VISITORS)),
                role: "employee",
                departments: Vec::new(),
                credential: "embed_token",
                key_id: Some(format!("key-{:02}", KEYS - PUBLIC_KEYS + self.rng.below(PUBLIC_KEYS))),
                home: None,
            };
        }
        let skew = self.rng.unit();
        let number = ((skew * skew * USERS as f64) as u64).min(USERS - 1);
        let traits = scramble(number);
        let home = (traits % DEPARTMENTS.len() as u64) as usize;
        let mut departments = vec![DEPARTMENTS[home].to_owned()];
        if number.is_multiple_of(97) {
            departments.push(DEPARTMENTS[(home + 1) % DEPARTMENTS.len()].to_owned());
        }
        let role = match number {
            n if n.is_multiple_of(150) => "admin",
            n if n.is_multiple_of(40) => "knowledge_manager",
            _ => "employee",
        };
        // A fifth of a person's requests come through an integration's API key.
        let (credential, key_id) = if self.rng.chance(0.2) {
            ("api_key", Some(format!("key-{:02}", (traits >> 8) % (KEYS - PUBLIC_KEYS))))
        } else {
            ("sso", None)
        };
        Person { user: format!("user-{number:04}"), role, departments, credential, key_id, home: Some(home) }
    }

    /// A time in range, mostly on workdays between 08:00 and 18:00 UTC (rejection sampling).
    fn time_ms(&mut self) -> i64 {
        loop {
            let t = self.from_ms + (self.rng.unit() * (self.to_ms - self.from_ms) as f64) as i64;
            let secs = t.div_euclid(1000);
            let weekday = (secs.div_euclid(DAY_SECS) + 3).rem_euclid(7);
            let hour = secs.rem_euclid(DAY_SECS) / 3600;
            let day_weight = if weekday < 5 { 1.0 } else { 0.08 };
            let hour_weight = if (8..18).contains(&hour) { 1.0 } else { 0.07 };
            if self.rng.chance(day_weight * hour_weight) {
                return t;
            }
        }
    }

    /// Collections a question is limited to or cites: none, one or two.
    fn collections(&mut self) -> Vec<String> {
        let count = self.rng.pick(&[(0, 0.2), (1, 0.55), (2, 0.25)]);
        let mut collections: Vec<String> = Vec::new();
        while collections.len() < count {
            let collection = COLLECTIONS[self.rng.below(COLLECTIONS.len() as u64) as usize];
            if !collections.iter().any(|c| c == collection) {
                collections.push(collection.to_owned());
            }
        }
        collections
    }

    /// Questions are mostly about the asker's own field; some fit no category.
    fn question(&mut self, event: &mut UsageEvent, home: Option<usize>) {
        let category = match home {
            Some(home) if self.rng.chance(0.45) => CATEGORIES[home],
            _ if self.rng.chance(0.15) => "other",
            _ => CATEGORIES[self.rng.below(CATEGORIES.len() as u64) as usize],
        };
        event.category = Some(category.to_owned());
        event.lang = Some(if self.rng.chance(0.12) { "es" } else { "en" }.to_owned());
        event.collections = self.collections();
    }

    /// Retrieval stages of a search or chat, in milliseconds; returns their sum.
    fn retrieval(&mut self, event: &mut UsageEvent) -> f64 {
        let stages = [
            ("embed", self.rng.log_normal(14.0, 0.35)),
            ("bm25", self.rng.log_normal(3.0, 0.5)),
            ("dense", self.rng.log_normal(6.0, 0.5)),
            ("fusion", self.rng.log_normal(0.3, 0.3)),
        ];
        let total = stages.iter().map(|(_, ms)| ms).sum();
        event.stages.extend(stages.map(|(stage, ms)| (stage.to_owned(), ms)));
        total
    }

    fn search(&mut self, event: &mut UsageEvent, home: Option<usize>) {
        self.question(event, home);
        if self.rng.chance(0.01) {
            event.kind = "rate_limited".into();
            event.status = 429;
            event.latency_ms = self.rng.log_normal(0.4, 0.3);
            return;
        }
        event.kind = "results".into();
        event.latency_ms = self.retrieval(event) * self.rng.log_normal(1.15, 0.05);
    }

    fn chat(&mut self, event: &mut UsageEvent, home: Option<usize>) {
        self.question(event, home);
        event.kind = self.rng.pick(&CHAT_KINDS).to_owned();
        if matches!(event.kind.as_str(), "budget_exceeded" | "rate_limited") {
            event.status = 429;
            event.latency_ms = self.rng.log_normal(0.6, 0.3);
            return;
        }
        event.conversation_id = Some(format!("conv-{:012x}", self.rng.next() >> 16));
        self.messages += 1;
        event.message_id = Some(self.messages);
        event.prompt_version = Some("v3".into());
        let mut latency = self.retrieval(event);
        // Extracted answers need no model; a no-answer is decided before the model four times
        // in ten, and said by the model otherwise.
        let model_called = match event.kind.as_str() {
            "generated" => true,
            "no_answer" => self.rng.chance(0.6),
            _ => false,
        };
        if model_called {
            let (model, input_price, output_price, _) = self.rng.pick(&MODELS.map(|m| (m, m.3)));
            event.model = Some(model.to_owned());
            event.provider = Some("openai".into());
            event.prompt_tokens = self.rng.log_normal(1_800.0, 0.35).round() as u64;
            event.completion_tokens = if event.kind == "generated" {
                self.rng.log_normal(220.0, 0.5).round() as u64 + 1
            } else {
                self.rng.log_normal(25.0, 0.3).round() as u64 + 1
            };
            event.cost =
                (event.prompt_tokens as f64 * input_price + event.completion_tokens as f64 * output_price) / 1e6;
            let per_token = if model == "gpt-4o" { 18.0 } else { 9.0 };
            let generation = self.rng.log_normal(350.0, 0.3) + event.completion_tokens as f64 * per_token;
            event.stages.insert("generation".into(), generation);
            latency += generation;
        } else {
            let extraction = self.rng.log_normal(20.0, 0.4);
            event.stages.insert("extraction".into(), extraction);
            latency += extraction;
        }
        event.latency_ms = latency * self.rng.log_normal(1.1, 0.05);
        if self.rng.chance(0.02) {
            event.budget_warnings = vec![format!("budget-{:02}", self.rng.below(10))];
        }
    }

    fn upload(&mut self, event: &mut UsageEvent) {
        event.collections = vec![COLLECTIONS[self.rng.below(COLLECTIONS.len() as u64) as usize].to_owned()];
        let queued = self.rng.chance(0.85);
        event.kind = if queued { "queued" } else { "duplicate" }.into();
        event.status = if queued { 202 } else { 200 };
        event.latency_ms = self.rng.log_normal(180.0, 0.6);
    }

    fn feedback(&mut self, event: &mut UsageEvent) {
        event.kind = if self.rng.chance(0.68) { "up" } else { "down" }.into();
        if self.messages > 0 {
            event.message_id = Some(1 + self.rng.below(self.messages as u64) as i64);
        }
        event.latency_ms = self.rng.log_normal(4.0, 0.4);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::KINDS;

    const END_MS: i64 = 1_796_032_800_000;

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_others() {
        let first: Vec<UsageEvent> = events(500, 7, 30, END_MS).collect();
        assert_eq!(first, events(500, 7, 30, END_MS).collect::<Vec<_>>());
        assert_ne!(first, events(500, 8, 30, END_MS).collect::<Vec<_>>());
    }

    #[test]
    fn events_have_the_documented_shape() {
        let count = 40_000;
        let days = 28;
        let events: Vec<UsageEvent> = events(count, 42, days, END_MS).collect();
        assert_eq!(events.len(), count);
        let share = |predicate: &dyn Fn(&UsageEvent) -> bool| {
            events.iter().filter(|e| predicate(e)).count() as f64 / count as f64
        };
        for (endpoint, expected) in ENDPOINTS {
            let actual = share(&|e| e.endpoint == endpoint);
            assert!((actual - expected).abs() < 0.01, "{endpoint:?}: {actual} instead of {expected}");
        }
        let chats: Vec<&UsageEvent> = events.iter().filter(|e| e.endpoint.is_chat()).collect();
        for (kind, expected) in CHAT_KINDS {
            let actual = chats.iter().filter(|e| e.kind == kind).count() as f64 / chats.len() as f64;
            assert!((actual - expected).abs() < 0.01, "{kind}: {actual} instead of {expected}");
        }

        let from_ms = END_MS - days * DAY_SECS * 1000;
        assert!(events.iter().all(|e| (from_ms..END_MS).contains(&e.time_ms)));
        assert!(events.iter().all(|e| KINDS.contains(&e.kind.as_str())));
        assert_eq!(events.iter().map(|e| &e.id).collect::<HashSet<_>>().len(), count);

        // Office hours on workdays dominate.
        let office = share(&|e| {
            let secs = e.time_ms / 1000;
            let weekday = (secs.div_euclid(DAY_SECS) + 3).rem_euclid(7);
            weekday < 5 && (8..18).contains(&(secs.rem_euclid(DAY_SECS) / 3600))
        });
        assert!(office > 0.8, "only {office} in office hours");

        let users: HashSet<&str> = events.iter().map(|e| e.user.as_str()).collect();
        assert!((1_500..=USERS as usize + VISITORS as usize).contains(&users.len()), "{} users", users.len());
        let departments: HashSet<&str> = events.iter().flat_map(|e| e.departments.iter().map(String::as_str)).collect();
        assert_eq!(departments.len(), DEPARTMENTS.len());
        assert!(events.iter().any(|e| e.departments.len() == 2));
        assert!(events.iter().any(|e| e.departments.is_empty()));
        let keys: HashSet<&str> = events.iter().filter_map(|e| e.key_id.as_deref()).collect();
        assert_eq!(keys.len(), KEYS as usize);

        // Tokens and cost only where a model was called; latencies are ordered as in life.
        for e in &events {
            assert_eq!(e.model.is_some(), e.tokens() > 0, "{e:?}");
            assert_eq!(e.cost > 0.0, e.model.is_some(), "{e:?}");
        }
        let median = |endpoint: Endpoint| {
            let mut latencies: Vec<f64> =
                events.iter().filter(|e| e.endpoint == endpoint && e.status < 400).map(|e| e.latency_ms).collect();
            latencies.sort_by(f64::total_cmp);
            latencies[latencies.len() / 2]
        };
        let (search, chat) = (median(Endpoint::Search), median(Endpoint::Chat));
        assert!((10.0..100.0).contains(&search), "search median {search} ms");
        assert!((1_000.0..5_000.0).contains(&chat), "chat median {chat} ms");

        // Feedback refers to messages that chats produced.
        let messages: HashMap<i64, &UsageEvent> =
            events.iter().filter(|e| e.endpoint.is_chat()).filter_map(|e| Some((e.message_id?, e))).collect();
        assert!(
            events
                .iter()
                .filter(|e| e.endpoint == Endpoint::Feedback)
                .filter_map(|e| e.message_id)
                .all(|id| messages.contains_key(&id))
        );
    }
}
