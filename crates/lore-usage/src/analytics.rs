//! Usage analytics: requests, active users, answer kinds, abstention, tokens, cost, latency
//! percentiles and thumbs per department, user, key, category, collection, model, endpoint, day
//! or week ([`usage`]); what answered questions saved against what the model cost, per
//! department and period ([`roi`]); and both as CSV ([`to_csv`]).
//!
//! The whole UTC days of a range are read from the daily rollups, the partial days at its edges
//! from raw events, aggregated with the same [`contributions`] and [`Measures`] the rollup writer
//! uses: however a range is cut, the numbers agree.
//!
//! Knowledge managers see only their departments: a query's `departments` scope keeps the events
//! of which at least one department is in it, and department groups outside it are not shown.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::store::{
    Dim, Measures, UsageStore, admits, contributions, normalized_departments, parse_departments_key, split_days,
};
use crate::{Error, KINDS, Result, RoiConfig, date_text, day_start, month_bounds, week_start};

/// The group of events that have no value of the grouping (no department, no API key, …).
pub const NO_GROUP: &str = "(none)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Department,
    User,
    Key,
    Category,
    Collection,
    Model,
    Endpoint,
    Day,
    Week,
}

impl GroupBy {
    pub const ALL: [GroupBy; 9] = [
        GroupBy::Department,
        GroupBy::User,
        GroupBy::Key,
        GroupBy::Category,
        GroupBy::Collection,
        GroupBy::Model,
        GroupBy::Endpoint,
        GroupBy::Day,
        GroupBy::Week,
    ];

    pub fn parse(text: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Department => "department",
            GroupBy::User => "user",
            GroupBy::Key => "key",
            GroupBy::Category => "category",
            GroupBy::Collection => "collection",
            GroupBy::Model => "model",
            GroupBy::Endpoint => "endpoint",
            GroupBy::Day => "day",
            GroupBy::Week => "week",
        }
    }

    /// The rollup rows the grouping reads: departments, days and weeks come from the `all` rows.
    fn dim(self) -> Dim {
        match self {
            GroupBy::Department | GroupBy::Day | GroupBy::Week => Dim::All,
            GroupBy::User => Dim::User,
            GroupBy::Key => Dim::Key,
            GroupBy::Category => Dim::Category,
            GroupBy::Collection => Dim::Collection,
            GroupBy::Model => Dim::Model,
            GroupBy::Endpoint => Dim::Endpoint,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// Unix milliseconds, exclusive.
    pub to_ms: i64,
    pub group_by: GroupBy,
    /// Knowledge managers: only events whose departments intersect these (None = everything, admins).
    pub departments: Option<Vec<String>>,
}

/// One group's usage. Latency percentiles are read from log histograms: within ±9 % of the exact
/// value (see [`crate::store::Histogram`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// The department, user, key, …; `YYYY-MM-DD` of the day or of the week's Monday;
    /// [`NO_GROUP`] for events without a value.
    pub group: String,
    pub requests: u64,
    /// Distinct users with at least one request in the group.
    pub active_users: u64,
    /// Requests per answer kind; kinds with no request are left out.
    pub kinds: BTreeMap<String, u64>,
    /// Chats answered (status below 400).
    pub chats: u64,
    /// `no_answer` / `chats`; `None` without chats.
    pub abstention_rate: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    /// Of the chats answered.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// Of the searches answered.
    pub search_latency_p50_ms: Option<f64>,
    pub search_latency_p95_ms: Option<f64>,
    pub thumbs_up: u64,
    pub thumbs_down: u64,
}

/// Usage of `[from_ms, to_ms)` per group: days and weeks in date order, other groups by
/// requests (most first), then name. Groups without a request are not listed.
pub fn usage(store: &UsageStore, query: &UsageQuery) -> Result<Vec<UsageRow>> {
    check_range(query.from_ms, query.to_ms)?;
    let scope = query.departments.as_deref();
    let group_by = query.group_by;
    let groups =
        aggregate(store, query.from_ms, query.to_ms, group_by.dim(), scope, true, |day, departments, value| {
            match group_by {
                GroupBy::Department => department_groups(departments, scope).into_iter().map(|d| (0, d)).collect(),
                GroupBy::Day => vec![(day, "")],
                GroupBy::Week => vec![(week_start(day), "")],
                _ => vec![(0, if value.is_empty() { NO_GROUP } else { value })],
            }
        })?;
    let dated = matches!(group_by, GroupBy::Day | GroupBy::Week);
    let mut rows: Vec<(i64, UsageRow)> = groups
        .into_iter()
        .map(|((date, name), totals)| {
            // A user's group has one active user: the user.
            let active_users = if group_by == GroupBy::User { 1 } else { totals.users.len() as u64 };
            (date, usage_row(if dated { date_text(date) } else { name }, active_users, &totals.measures))
        })
        .collect();
    if dated {
        rows.sort_by_key(|(date, _)| *date);
    } else {
        rows.sort_by(|(_, a), (_, b)| b.requests.cmp(&a.requests).then_with(|| a.group.cmp(&b.group)));
    }
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

fn usage_row(group: String, active_users: u64, m: &Measures) -> UsageRow {
    UsageRow {
        group,
        requests: m.requests,
        active_users,
        kinds: KINDS.iter().zip(m.kinds).filter(|(_, n)| *n > 0).map(|(kind, n)| (kind.to_string(), n)).collect(),
        chats: m.chats,
        abstention_rate: (m.chats > 0).then(|| m.kind("no_answer") as f64 / m.chats as f64),
        prompt_tokens: m.prompt_tokens,
        completion_tokens: m.completion_tokens,
        cost: m.cost,
        latency_p50_ms: m.chat_latency.quantile(0.5),
        latency_p95_ms: m.chat_latency.quantile(0.95),
        search_latency_p50_ms: m.search_latency.quantile(0.5),
        search_latency_p95_ms: m.search_latency.quantile(0.95),
        thumbs_up: m.kind("up"),
        thumbs_down: m.kind("down"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoiPeriod {
    Day,
    /// ISO weeks, from Monday.
    Week,
    /// Calendar months.
    Month,
}

impl RoiPeriod {
    pub const ALL: [RoiPeriod; 3] = [RoiPeriod::Day, RoiPeriod::Week, RoiPeriod::Month];

    pub fn parse(text: &str) -> Option<RoiPeriod> {
        RoiPeriod::ALL.into_iter().find(|p| p.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoiPeriod::Day => "day",
            RoiPeriod::Week => "week",
            RoiPeriod::Month => "month",
        }
    }

    /// Unix seconds of the start of the period holding `secs`.
    fn start(self, secs: i64) -> i64 {
        match self {
            RoiPeriod::Day => day_start(secs),
            RoiPeriod::Week => week_start(secs),
            RoiPeriod::Month => month_bounds(secs).0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoiQuery {
    /// Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// Unix milliseconds, exclusive.
    pub to_ms: i64,
    pub period: RoiPeriod,
    /// As in [`UsageQuery::departments`].
    pub departments: Option<Vec<String>>,
}

/// What one department's answered questions were worth in one period, against model spend. A
/// period cut by the query's range counts only the part inside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoiRow {
    pub department: String,
    /// `YYYY-MM-DD` of the period's first day.
    pub period: String,
    /// Answers generated, extracted or verified.
    pub answered: u64,
    pub minutes_saved: f64,
    /// `minutes_saved / 60 × hourly_cost`.
    pub value: f64,
    pub model_cost: f64,
    /// `value − model_cost`.
    pub net: f64,
}

/// Rows per department and period of `[from_ms, to_ms)`, by period, then department.
pub fn roi(store: &UsageStore, query: &RoiQuery, config: &RoiConfig) -> Result<Vec<RoiRow>> {
    check_range(query.from_ms, query.to_ms)?;
    let scope = query.departments.as_deref();
    let period = query.period;
    let groups = aggregate(store, query.from_ms, query.to_ms, Dim::All, scope, false, |day, departments, _| {
        let start = period.start(day);
        department_groups(departments, scope).into_iter().map(|d| (start, d)).collect()
    })?;
    let mut rows: Vec<((i64, String), RoiRow)> = groups
        .into_iter()
        .map(|((start, department), totals)| {
            let m = &totals.measures;
            let answered = m.kind("generated") + m.kind("extracted") + m.kind("verified");
            let minutes_saved = answered as f64 * config.minutes_saved_per_answer;
            let value = minutes_saved / 60.0 * config.hourly_cost;
            let row = RoiRow {
                department: department.clone(),
                period: date_text(start),
                answered,
                minutes_saved,
                value,
                model_cost: m.cost,
                net: value - m.cost,
            };
            ((start, department), row)
        })
        .collect();
    rows.sort_by(|(a, _), (b, _)| a.cmp(b));
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

fn check_range(from_ms: i64, to_ms: i64) -> Result<()> {
    if from_ms >= to_ms {
        return Err(Error::Invalid("`from` must be before `to`".into()));
    }
    Ok(())
}

/// The department groups an event of `departments` counts in: each of its departments (inside
/// the scope, if any), or [`NO_GROUP`] when it has none and nothing is scoped.
fn department_groups<'d>(departments: &'d [String], scope: Option<&[String]>) -> Vec<&'d str> {
    match scope {
        Some(scope) => departments.iter().filter(|d| scope.contains(d)).map(String::as_str).collect(),
        None if departments.is_empty() => vec![NO_GROUP],
        None => departments.iter().map(String::as_str).collect(),
    }
}

/// One group's sums.
#[derive(Default)]
struct Totals {
    measures: Measures,
    /// Ids of the users active in the group (see [`aggregate`]).
    users: HashSet<u32>,
}

/// Groups keyed by a date (Unix seconds of the start of a day, week or period; 0 when groups
/// are not dated) and a name. Looked up by `&str`, so the hundreds of thousands of rows of an
/// existing group allocate nothing.
#[derive(Default)]
struct Groups {
    slots: HashMap<i64, HashMap<String, usize>>,
    totals: Vec<((i64, String), Totals)>,
}

impl Groups {
    fn get(&mut self, date: i64, name: &str) -> &mut Totals {
        let names = self.slots.entry(date).or_default();
        let slot = match names.get(name) {
            Some(&slot) => slot,
            None => {
                names.insert(name.to_owned(), self.totals.len());
                self.totals.push(((date, name.to_owned()), Totals::default()));
                self.totals.len() - 1
            }
        };
        &mut self.totals[slot].1
    }
}

/// Adds up the events of `[from_ms, to_ms)` visible to `scope` into the groups that
/// `groups(day, departments, value)` names for them, `value` being an event's value of `dim`
/// (an event with several values of `dim`, such as collections, is asked once per value).
/// Distinct users are gathered only `with_users`, and never for [`Dim::User`], whose groups'
/// only user is their value.
fn aggregate(
    store: &UsageStore,
    from_ms: i64,
    to_ms: i64,
    dim: Dim,
    scope: Option<&[String]>,
    with_users: bool,
    groups: impl for<'a> Fn(i64, &'a [String], &'a str) -> Vec<(i64, &'a str)>,
) -> Result<Vec<((i64, String), Totals)>> {
    let with_users = with_users && dim != Dim::User;
    let split = split_days(from_ms, to_ms);
    let mut all = Groups::default();
    if let Some((from_day, to_day)) = split.days {
        // Rows come in key order, so runs of rows share their departments: parsed once a run.
        let (mut key, mut departments) = (String::new(), Vec::new());
        store.for_each_rollup(dim, from_day, to_day, |day, departments_key, value, row| {
            if key != departments_key {
                key = departments_key.to_owned();
                departments = parse_departments_key(departments_key);
            }
            if admits(scope, &departments) {
                for (date, name) in groups(day, &departments, value) {
                    let totals = all.get(date, name);
                    row.add_to(&mut totals.measures)?;
                    if with_users {
                        row.add_users_to(&mut totals.users)?;
                    }
                }
            }
            Ok(())
        })?;
    }
    for (from_ms, to_ms) in split.edges {
        for (user_id, event) in store.events_to_total(from_ms, to_ms)? {
            let departments = normalized_departments(&event.departments);
            if !admits(scope, &departments) {
                continue;
            }
            let day = day_start(event.time_ms.div_euclid(1000));
            for (_, value) in contributions(&event).filter(|(d, _)| *d == dim) {
                for (date, name) in groups(day, &departments, value) {
                    let totals = all.get(date, name);
                    totals.measures.add_event(&event);
                    if with_users {
                        totals.users.insert(user_id);
                    }
                }
            }
        }
    }
    Ok(all.totals)
}

/// A cell of a CSV row: text is quoted and guarded against formulas, numbers are written as is.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Text(&'a str),
    /// Text made for the row (a list joined, a date).
    Owned(String),
    Count(u64),
    Number(f64),
    Missing,
}

/// A row type [`to_csv`] renders.
pub trait CsvRow {
    fn csv_header() -> Vec<&'static str>;
    fn csv_cells(&self) -> Vec<Cell<'_>>;
}

impl CsvRow for UsageRow {
    /// `kinds` as one column per kind of [`KINDS`], in that order.
    fn csv_header() -> Vec<&'static str> {
        let mut header = vec!["group", "requests", "active_users", "chats"];
        header.extend(KINDS);
        header.extend([
            "abstention_rate",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "latency_p50_ms",
            "latency_p95_ms",
            "search_latency_p50_ms",
            "search_latency_p95_ms",
            "thumbs_up",
            "thumbs_down",
        ]);
        header
    }

    fn csv_cells(&self) -> Vec<Cell<'_>> {
        let number = |x: Option<f64>| x.map_or(Cell::Missing, Cell::Number);
        let mut cells = vec![
            Cell::Text(&self.group),
            Cell::Count(self.requests),
            Cell::Count(self.active_users),
            Cell::Count(self.chats),
        ];
        cells.extend(KINDS.iter().map(|kind| Cell::Count(self.kinds.get(*kind).copied().unwrap_or(0))));
        cells.extend([
            number(self.abstention_rate),
            Cell::Count(self.prompt_tokens),
            Cell::Count(self.completion_tokens),
            Cell::Number(self.cost),
            number(self.latency_p50_ms),
            number(self.latency_p95_ms),
            number(self.search_latency_p50_ms),
            number(self.search_latency_p95_ms),
            Cell::Count(self.thumbs_up),
            Cell::Count(self.thumbs_down),
        ]);
        cells
    }
}

impl CsvRow for RoiRow {
    fn csv_header() -> Vec<&'static str> {
        vec!["department", "period", "answered", "minutes_saved", "value", "model_cost", "net"]
    }

    fn csv_cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::Text(&self.department),
            Cell::Text(&self.period),
            Cell::Count(self.answered),
            Cell::Number(self.minutes_saved),
            Cell::Number(self.value),
            Cell::Number(self.model_cost),
            Cell::Number(self.net),
        ]
    }
}

/// `rows` as CSV (RFC 4180: a header line, CRLF line ends, fields with `,`, `"` or a line break
/// quoted). A text field that a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return) gets a leading `'`: group names are user-controlled.
pub fn to_csv<T: CsvRow>(rows: &[T]) -> String {
    let mut out = T::csv_header().join(",");
    out.push_str("\r\n");
    for row in rows {
        for (i, cell) in row.csv_cells().into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match cell {
                Cell::Text(text) => push_text(&mut out, text),
                Cell::Owned(text) => push_text(&mut out, &text),
                Cell::Count(n) => out.push_str(&n.to_string()),
                Cell::Number(x) => out.push_str(&x.to_string()),
                Cell::Missing => {}
            }
        }
        out.push_str("\r\n");
    }
    out
}

fn push_text(out: &mut String, text: &str) {
    let guarded = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if guarded.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&guarded.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&guarded);
    }
}

#[cfg(test)]
mod tests {
    use lore_db::Database;
    use lore_db::testing::on_both;

    use super::*;
    use crate::store::Histogram;
    use crate::{DAY_SECS, Endpoint, UsageEvent, synthetic};

    /// 2026-11-30T10:00:00Z, a Monday.
    const NOW_MS: i64 = 1_796_032_800_000;
    const DAY_MS: i64 = DAY_SECS * 1000;

    /// The usage store of `database`, with `batches` written.
    fn store_with(database: &Database, batches: &[&[UsageEvent]]) -> UsageStore {
        let store = UsageStore::open_in(database).expect("open");
        for batch in batches {
            store.write_batch(batch).expect("write");
        }
        store
    }

    fn query(from_ms: i64, to_ms: i64, group_by: GroupBy, departments: Option<&[&str]>) -> UsageQuery {
        let departments = departments.map(|ds| ds.iter().map(|d| d.to_string()).collect());
        UsageQuery { from_ms, to_ms, group_by, departments }
    }

    /// The groups of an event, written out plainly from the definitions rather than with the
    /// module's helpers.
    fn expected_groups(event: &UsageEvent, group_by: GroupBy, scope: Option<&[String]>) -> Vec<String> {
        if let Some(scope) = scope
            && !event.departments.iter().any(|d| scope.contains(d))
        {
            return Vec::new();
        }
        let named = |value: Option<&str>| vec![value.filter(|v| !v.is_empty()).unwrap_or(NO_GROUP).to_owned()];
        let distinct = |values: &[String]| {
            let mut values: Vec<String> = values.iter().filter(|v| !v.is_empty()).cloned().collect();
            values.sort();
            values.dedup();
            values
        };
        let secs = event.time_ms.div_euclid(1000);
        match group_by {
            GroupBy::Department => {
                let departments: Vec<String> = distinct(&event.departments)
                    .into_iter()
                    .filter(|d| scope.is_none_or(|scope| scope.contains(d)))
                    .collect();
                if departments.is_empty() && scope.is_none() { vec![NO_GROUP.to_owned()] } else { departments }
            }
            GroupBy::User => named(Some(&event.user)),
            GroupBy::Key => named(event.key_id.as_deref()),
            GroupBy::Category => named(event.category.as_deref()),
            GroupBy::Collection => {
                let collections = distinct(&event.collections);
                if collections.is_empty() { vec![NO_GROUP.to_owned()] } else { collections }
            }
            GroupBy::Model => named(event.model.as_deref()),
            GroupBy::Endpoint => named(Some(event.endpoint.as_str())),
            GroupBy::Day => vec![date_text(secs)],
            GroupBy::Week => vec![date_text(week_start(secs))],
        }
    }

    /// The rows `usage` should give, computed directly from the raw events.
    fn expected_rows(events: &[UsageEvent], group_by: GroupBy, scope: Option<&[String]>) -> BTreeMap<String, UsageRow> {
        #[derive(Default)]
        struct Sums {
            requests: u64,
            kinds: BTreeMap<String, u64>,
            chats: u64,
            prompt_tokens: u64,
            completion_tokens: u64,
            cost: f64,
            users: HashSet<String>,
            chat_latency: Histogram,
            search_latency: Histogram,
        }
        let mut sums: BTreeMap<String, Sums> = BTreeMap::new();
        for event in events {
            for group in expected_groups(event, group_by, scope) {
                let s = sums.entry(group).or_default();
                s.requests += 1;
                *s.kinds.entry(event.kind.clone()).or_default() += 1;
                let answered = event.status < 400;
                if event.endpoint.is_chat() && answered {
                    s.chats += 1;
                    s.chat_latency.record(event.latency_ms);
                }
                if event.endpoint == Endpoint::Search && answered {
                    s.search_latency.record(event.latency_ms);
                }
                s.prompt_tokens += event.prompt_tokens;
                s.completion_tokens += event.completion_tokens;
                s.cost += event.cost;
                s.users.insert(event.user.clone());
            }
        }
        sums.into_iter()
            .map(|(group, s)| {
                let count = |kind: &str| s.kinds.get(kind).copied().unwrap_or(0);
                let row = UsageRow {
                    group: group.clone(),
                    requests: s.requests,
                    active_users: s.users.len() as u64,
                    chats: s.chats,
                    abstention_rate: (s.chats > 0).then(|| count("no_answer") as f64 / s.chats as f64),
                    prompt_tokens: s.prompt_tokens,
                    completion_tokens: s.completion_tokens,
                    cost: s.cost,
                    latency_p50_ms: s.chat_latency.quantile(0.5),
                    latency_p95_ms: s.chat_latency.quantile(0.95),
                    search_latency_p50_ms: s.search_latency.quantile(0.5),
                    search_latency_p95_ms: s.search_latency.quantile(0.95),
                    thumbs_up: count("up"),
                    thumbs_down: count("down"),
                    kinds: s.kinds,
                };
                (group, row)
            })
            .collect()
    }

    fn assert_sorted(rows: &[UsageRow], group_by: GroupBy) {
        for pair in rows.windows(2) {
            let in_order = if matches!(group_by, GroupBy::Day | GroupBy::Week) {
                pair[0].group < pair[1].group
            } else {
                (pair[1].requests, &pair[0].group) < (pair[0].requests, &pair[1].group)
            };
            assert!(in_order, "{group_by:?}: {} before {}", pair[0].group, pair[1].group);
        }
    }

    #[test]
    fn rollups_and_raw_events_give_the_same_numbers_for_every_grouping() {
        on_both("rollups_and_raw_events_give_the_same_numbers_for_every_grouping", |database| {
            let mut events: Vec<UsageEvent> = synthetic::events(2_000, 5, 10, NOW_MS).collect();
            // A collection named twice counts once.
            for event in events.iter_mut().step_by(7).filter(|e| !e.collections.is_empty()) {
                event.collections.push(event.collections[0].clone());
            }
            let batches: Vec<&[UsageEvent]> = events.chunks(500).collect();
            let store = store_with(database, &batches);

            let ranges = [
                // Partial days at both ends around whole days from the rollups.
                (NOW_MS - 8 * DAY_MS - 7_654_321, NOW_MS - DAY_MS + 1_234_567),
                // Whole days only.
                (day_start(NOW_MS / 1000 - 6 * DAY_SECS) * 1000, day_start(NOW_MS / 1000) * 1000),
                // Within one day: raw events only.
                (
                    day_start(NOW_MS / 1000 - 2 * DAY_SECS) * 1000 + 30_000_000,
                    day_start(NOW_MS / 1000 - DAY_SECS) * 1000 - 1,
                ),
            ];
            let split = split_days(ranges[0].0, ranges[0].1);
            assert!(split.days.is_some() && split.edges.len() == 2);
            for (from, to) in split.edges {
                assert!(events.iter().any(|e| (from..to).contains(&e.time_ms)), "no event in the edge [{from}, {to})");
            }

            let scopes: [Option<&[&str]>; 3] = [None, Some(&["hr", "legal"]), Some(&[])];
            for (from_ms, to_ms) in ranges {
                let raw = store.events(from_ms, to_ms).expect("events");
                for scope in scopes {
                    for group_by in GroupBy::ALL {
                        let query = query(from_ms, to_ms, group_by, scope);
                        let rows = usage(&store, &query).expect("usage");
                        assert_sorted(&rows, group_by);
                        let mut expected = expected_rows(&raw, group_by, query.departments.as_deref());
                        assert_eq!(rows.len(), expected.len(), "{group_by:?} {scope:?}: groups");
                        if scope == Some(&[]) {
                            assert!(rows.is_empty());
                        }
                        for mut row in rows {
                            let want =
                                expected.remove(&row.group).unwrap_or_else(|| panic!("unexpected group {row:?}"));
                            assert!((row.cost - want.cost).abs() < 1e-9, "{group_by:?} {}: cost", row.group);
                            row.cost = want.cost;
                            assert_eq!(row, want, "{group_by:?} {scope:?} [{from_ms}, {to_ms})");
                        }
                    }
                }
            }
        });
    }

    fn event(time_ms: i64, user: &str, departments: &[&str], endpoint: Endpoint, kind: &str) -> UsageEvent {
        UsageEvent {
            time_ms,
            departments: departments.iter().map(|d| d.to_string()).collect(),
            status: if matches!(kind, "budget_exceeded" | "rate_limited") { 429 } else { 200 },
            prompt_tokens: 1_000,
            completion_tokens: 100,
            cost: 0.5,
            latency_ms: 1_500.0,
            ..UsageEvent::new(endpoint, user, kind)
        }
    }

    #[test]
    fn knowledge_managers_see_only_their_departments() {
        on_both("knowledge_managers_see_only_their_departments", |database| {
            let day = day_start(NOW_MS / 1000) * 1000 - 3 * DAY_MS;
            // Two events on a whole day (rollups), two on the partial day at the end (raw).
            let events = [
                event(day + 1_000, "ana", &["hr"], Endpoint::Chat, "generated"),
                event(day + 2_000, "ben", &["it"], Endpoint::Chat, "generated"),
                event(day + DAY_MS + 1_000, "cai", &["it", "hr"], Endpoint::Search, "results"),
                event(day + DAY_MS + 2_000, "dan", &[], Endpoint::Search, "results"),
            ];
            let store = store_with(database, &[&events]);
            let (from, to) = (day, day + DAY_MS + 10_000);
            let groups = |group_by, scope| -> Vec<(String, u64, u64)> {
                let rows = usage(&store, &query(from, to, group_by, scope)).expect("usage");
                rows.into_iter().map(|r| (r.group, r.requests, r.active_users)).collect()
            };
            let row = |group: &str, requests, users| (group.to_owned(), requests, users);

            assert_eq!(
                groups(GroupBy::Department, None),
                [row("hr", 2, 2), row("it", 2, 2), row(NO_GROUP, 1, 1)],
                "an event of two departments counts in both"
            );
            assert_eq!(groups(GroupBy::Department, Some(&["hr"])), [row("hr", 2, 2)]);
            assert_eq!(groups(GroupBy::User, Some(&["hr"])), [row("ana", 1, 1), row("cai", 1, 1)]);
            assert_eq!(groups(GroupBy::Endpoint, Some(&["it"])), [row("chat", 1, 1), row("search", 1, 1)]);
            assert_eq!(groups(GroupBy::Day, Some(&["sales"])), []);
            assert_eq!(
                groups(GroupBy::Day, None),
                [row(&date_text(day / 1000), 2, 2), row(&date_text(day / 1000 + DAY_SECS), 2, 2)]
            );
        });
    }

    #[test]
    fn every_kind_has_its_count_and_its_csv_column() {
        on_both("every_kind_has_its_count_and_its_csv_column", |database| {
            let t = day_start(NOW_MS / 1000) * 1000 - DAY_MS;
            let mut events: Vec<UsageEvent> = KINDS
                .iter()
                .enumerate()
                .map(|(i, kind)| {
                    let endpoint = match *kind {
                        "results" => Endpoint::Search,
                        "queued" | "duplicate" => Endpoint::Upload,
                        "up" | "down" | "revote" => Endpoint::Feedback,
                        _ => Endpoint::Chat,
                    };
                    event(t + i as i64, "ana", &["hr"], endpoint, kind)
                })
                .collect();
            events.push(event(t + 100, "ben", &["hr"], Endpoint::ChatStream, "no_answer"));
            let store = store_with(database, &[&events]);

            let rows = usage(&store, &query(t, t + DAY_MS, GroupBy::Department, None)).expect("usage");
            assert_eq!(rows.len(), 1);
            let hr = &rows[0];
            let expected_kinds: BTreeMap<String, u64> =
                KINDS.iter().map(|k| (k.to_string(), if *k == "no_answer" { 2 } else { 1 })).collect();
            assert_eq!(hr.kinds, expected_kinds);
            assert_eq!((hr.requests, hr.active_users), (KINDS.len() as u64 + 1, 2));
            // Chats answered: generated, extracted, 2 × no_answer, refused, verified, error; the
            // two refused with 429 are not.
            assert_eq!(hr.chats, 7);
            assert_eq!(hr.abstention_rate, Some(2.0 / 7.0));
            assert_eq!((hr.thumbs_up, hr.thumbs_down), (1, 1));
            let p50 = hr.latency_p50_ms.expect("chat latency");
            assert!((p50 / 1_500.0 - 1.0).abs() < 0.09, "{p50}");
            assert!(hr.search_latency_p95_ms.is_some());

            let csv = to_csv(&rows);
            let mut lines = csv.split("\r\n");
            let header: Vec<&str> = lines.next().expect("header").split(',').collect();
            assert_eq!(&header[4..4 + KINDS.len()], KINDS);
            let cells: Vec<&str> = lines.next().expect("row").split(',').collect();
            assert_eq!(cells.len(), header.len());
            let column = |name: &str| cells[header.iter().position(|h| *h == name).expect("column")];
            assert_eq!(column("no_answer"), "2");
            assert_eq!(column("rate_limited"), "1");
            assert_eq!(column("group"), "hr");
        });
    }

    #[test]
    fn roi_values_answers_against_model_cost_per_department_and_period() {
        on_both("roi_values_answers_against_model_cost_per_department_and_period", |database| {
            let config = RoiConfig { minutes_saved_per_answer: 6.0, hourly_cost: 50.0 };
            // 2026-10-31 and 2026-11-02: two months, two weeks.
            let october = 1_793_404_800_000 + 3_600_000;
            let november = october + 2 * DAY_MS;
            let events = [
                event(october, "ana", &["hr"], Endpoint::Chat, "generated"),
                event(october + 1, "ana", &["hr"], Endpoint::Chat, "extracted"),
                event(october + 2, "ana", &["hr"], Endpoint::Chat, "no_answer"),
                event(november, "ben", &["hr", "it"], Endpoint::Chat, "verified"),
                event(november + 1, "ben", &["it"], Endpoint::Search, "results"),
            ];
            let store = store_with(database, &[&events]);
            let roi_of = |period, departments: Option<Vec<String>>| {
                roi(&store, &RoiQuery { from_ms: october - 3_600_000, to_ms: NOW_MS, period, departments }, &config)
                    .expect("roi")
            };
            let monthly = roi_of(RoiPeriod::Month, None);
            let expected = [("hr", "2026-10-01", 2, 1.5), ("hr", "2026-11-01", 1, 0.5), ("it", "2026-11-01", 1, 1.0)];
            assert_eq!(monthly.len(), expected.len());
            for (row, (department, period, answered, model_cost)) in monthly.iter().zip(expected) {
                let minutes = answered as f64 * 6.0;
                let value = minutes / 60.0 * 50.0;
                let want = RoiRow {
                    department: department.into(),
                    period: period.into(),
                    answered,
                    minutes_saved: minutes,
                    value,
                    model_cost,
                    net: value - model_cost,
                };
                assert_eq!(*row, want);
            }
            let weekly = roi_of(RoiPeriod::Week, Some(vec!["it".into()]));
            assert_eq!(
                weekly.iter().map(|r| (r.department.as_str(), r.period.as_str())).collect::<Vec<_>>(),
                [("it", "2026-11-02")]
            );
            assert_eq!(roi_of(RoiPeriod::Day, None).len(), 3);
        });
    }

    #[test]
    fn csv_quotes_fields_and_guards_formulas() {
        let row = |group: &str| UsageRow {
            group: group.into(),
            requests: 3,
            active_users: 1,
            kinds: BTreeMap::new(),
            chats: 0,
            abstention_rate: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.25,
            latency_p50_ms: None,
            latency_p95_ms: None,
            search_latency_p50_ms: None,
            search_latency_p95_ms: None,
            thumbs_up: 0,
            thumbs_down: 0,
        };
        let groups = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "a,b", "say \"hi\"", "two\nlines", "plain"];
        let csv = to_csv(&groups.map(row));
        let firsts: Vec<&str> = csv.split("\r\n").skip(1).map(|line| line.split(",3,").next().unwrap_or("")).collect();
        assert_eq!(
            firsts,
            [
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
                "'+1",
                "'-2",
                "'@SUM(A1)",
                "\"a,b\"",
                "\"say \"\"hi\"\"\"",
                "\"two\nlines\"",
                "plain",
                "",
            ]
        );
        assert!(csv.starts_with("group,requests,active_users,chats,generated,"));
        assert!(csv.contains(",,0,0,0.25,,,,,0,0\r\n"), "empty cells for missing values: {csv}");

        // Numbers are never guarded: a negative net stays a number.
        let roi = RoiRow {
            department: "-ops".into(),
            period: "2026-11-01".into(),
            answered: 1,
            minutes_saved: 5.0,
            value: 0.5,
            model_cost: 2.0,
            net: -1.5,
        };
        assert_eq!(
            to_csv(&[roi]),
            "department,period,answered,minutes_saved,value,model_cost,net\r\n'-ops,2026-11-01,1,5,0.5,2,-1.5\r\n"
        );
    }

    #[test]
    fn parameters_parse_and_a_reversed_range_is_refused() {
        on_both("parameters_parse_and_a_reversed_range_is_refused", |database| {
            for group_by in GroupBy::ALL {
                assert_eq!(GroupBy::parse(group_by.as_str()), Some(group_by));
            }
            assert_eq!(GroupBy::parse("team"), None);
            assert_eq!(RoiPeriod::parse("month"), Some(RoiPeriod::Month));
            assert_eq!(RoiPeriod::parse("year"), None);
            let store = store_with(database, &[]);
            let error = usage(&store, &query(NOW_MS, NOW_MS, GroupBy::Day, None)).expect_err("empty range");
            assert!(matches!(error, Error::Invalid(ref m) if m.contains("`from`")), "{error}");
        });
    }
}
