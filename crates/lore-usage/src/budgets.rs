//! Budgets: what a department, an API key or a user may spend per UTC day or calendar month
//! (UTC), in tokens or in cost. A soft limit warns; a hard limit refuses the request (HTTP 429
//! `budget_exceeded`) or degrades it to an extracted answer without a model call, as each budget
//! says. Budgets are stored in `budget_limits` ([`BudgetStore`]); the [`Ledger`] decides, request
//! by request, whether they admit it.
//!
//! The budgets that apply to a request are those of each of its departments, of its API key and
//! of its user; all of them must admit it. Per budget and period the ledger keeps what was
//! `spent`, read once from the usage records ([`SpendSource`]) when the period is first needed
//! and then kept in memory (each settled request adds what it really cost), and what is
//! `reserved` by admitted requests still running, at their estimate. A new day or month reads
//! the records again.
//!
//! A hard limit is reached when `spent + reserved >= hard_limit`. A request is admitted only
//! below that, and then reserves its estimate in every budget that applies, under the same lock
//! that took the decision. Concurrent requests at the boundary are thus decided one after the
//! other, each seeing the reservations of those before it: once the limit is reached nobody else
//! gets in, and the last one admitted started below the limit. Since an estimate is an upper
//! bound of what its request costs, a budget is overrun by at most one request's worth.
//!
//! The ledger's memory is the truth for the running period: the usage records are written in
//! batches, a little behind, so reading them again mid-period would miss requests just settled.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use lore_db::{Database, Db, Location, Migration, Row, Schema, params};
use serde::{Deserialize, Serialize};

use crate::{DAY_SECS, Error, Result, SpendSource, day_start, month_bounds, now_ms};

/// Whose spending a budget caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Department,
    /// An API key, by id.
    Key,
    User,
}

impl ScopeKind {
    /// Also the dimension asked of the [`SpendSource`].
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Department => "department",
            ScopeKind::Key => "key",
            ScopeKind::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<ScopeKind> {
        [ScopeKind::Department, ScopeKind::Key, ScopeKind::User].into_iter().find(|s| s.as_str() == text)
    }
}

/// How often a budget starts over: each UTC day, or each calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    pub fn parse(text: &str) -> Option<Period> {
        [Period::Day, Period::Month].into_iter().find(|p| p.as_str() == text)
    }

    /// The period holding `now_ms`, as `[start, end)` in Unix milliseconds.
    pub fn bounds_ms(self, now_ms: i64) -> (i64, i64) {
        let secs = now_ms.div_euclid(1000);
        let (start, end) = match self {
            Period::Day => (day_start(secs), day_start(secs) + DAY_SECS),
            Period::Month => month_bounds(secs),
        };
        (start * 1000, end * 1000)
    }
}

/// What a budget counts: tokens (prompt and completion) or cost (in `usage.currency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Tokens,
    Cost,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Tokens => "tokens",
            Unit::Cost => "cost",
        }
    }

    pub fn parse(text: &str) -> Option<Unit> {
        [Unit::Tokens, Unit::Cost].into_iter().find(|u| u.as_str() == text)
    }

    fn measure(self, tokens: u64, cost: f64) -> f64 {
        match self {
            Unit::Tokens => tokens as f64,
            Unit::Cost => cost,
        }
    }
}

/// What happens to a request once a hard limit is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnHard {
    /// HTTP 429 `budget_exceeded`, naming the budget and when it resets.
    #[default]
    Refuse,
    /// An extracted answer, without calling the model.
    Degrade,
}

impl OnHard {
    pub fn as_str(self) -> &'static str {
        match self {
            OnHard::Refuse => "refuse",
            OnHard::Degrade => "degrade",
        }
    }

    pub fn parse(text: &str) -> Option<OnHard> {
        [OnHard::Refuse, OnHard::Degrade].into_iter().find(|o| o.as_str() == text)
    }
}

/// A stored budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// `<scope>:<value>:<period>:<unit>`, derived from the rest: there is one budget per
    /// scope, period and unit, and setting it again changes its limits.
    pub id: String,
    pub scope: ScopeKind,
    /// The department, the API key id or the user.
    pub value: String,
    pub period: Period,
    pub unit: Unit,
    pub soft_limit: Option<f64>,
    pub hard_limit: Option<f64>,
    pub on_hard: OnHard,
    pub updated_at_ms: i64,
}

/// A budget as an admin sets it (`lore budgets set`, `PUT /v1/budgets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub scope: ScopeKind,
    pub value: String,
    pub period: Period,
    pub unit: Unit,
    pub soft_limit: Option<f64>,
    pub hard_limit: Option<f64>,
    #[serde(default)]
    pub on_hard: OnHard,
}

impl BudgetSpec {
    /// The id of the budget this spec sets (see [`Budget::id`]).
    pub fn id(&self) -> String {
        format!("{}:{}:{}:{}", self.scope.as_str(), self.value, self.period.as_str(), self.unit.as_str())
    }

    /// Checks what an admin could get wrong, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.value.trim().is_empty() || self.value.trim() != self.value {
            return Err(Error::Invalid(format!(
                "budget value (the {} it caps) must not be empty or start or end with spaces",
                self.scope.as_str()
            )));
        }
        for (field, limit) in [("soft_limit", self.soft_limit), ("hard_limit", self.hard_limit)] {
            let Some(limit) = limit else { continue };
            if !(limit.is_finite() && limit >= 0.0) {
                return Err(Error::Invalid(format!("budget {field} must be a number, zero or more (got {limit})")));
            }
            if self.unit == Unit::Tokens && limit.fract() != 0.0 {
                return Err(Error::Invalid(format!("budget {field} must be a whole number of tokens (got {limit})")));
            }
        }
        match (self.soft_limit, self.hard_limit) {
            (None, None) => Err(Error::Invalid("a budget needs a soft_limit, a hard_limit or both".into())),
            (Some(soft), Some(hard)) if soft > hard => {
                Err(Error::Invalid(format!("budget soft_limit ({soft}) must not be more than its hard_limit ({hard})")))
            }
            _ => Ok(()),
        }
    }
}

/// The budgets, in table `budget_limits` of the application database.
pub struct BudgetStore {
    db: Db,
}

const SCHEMA: Schema = Schema {
    name: "budgets",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have this table.
        sqlite: r#"
CREATE TABLE IF NOT EXISTS budget_limits (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    value TEXT NOT NULL,
    period TEXT NOT NULL,
    unit TEXT NOT NULL,
    soft_limit REAL,
    hard_limit REAL,
    on_hard TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
"#,
        postgres: r#"
CREATE TABLE budget_limits (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    value TEXT NOT NULL,
    period TEXT NOT NULL,
    unit TEXT NOT NULL,
    soft_limit DOUBLE PRECISION,
    hard_limit DOUBLE PRECISION,
    on_hard TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
"#,
    }],
};

impl BudgetStore {
    /// The budgets in the embedded database file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_in(&Database::open(&Location::Sqlite(path.to_owned()))?)
    }

    /// The budgets in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> Result<Self> {
        Ok(BudgetStore { db: database.store(&SCHEMA)? })
    }

    /// Creates the budget of `spec`'s scope, period and unit, or changes its limits. The
    /// [`Ledger`] sees the change at its next [`Ledger::reload`].
    pub fn set(&self, spec: &BudgetSpec) -> Result<Budget> {
        spec.validate()?;
        let budget = Budget {
            id: spec.id(),
            scope: spec.scope,
            value: spec.value.clone(),
            period: spec.period,
            unit: spec.unit,
            soft_limit: spec.soft_limit,
            hard_limit: spec.hard_limit,
            on_hard: spec.on_hard,
            updated_at_ms: now_ms(),
        };
        self.db.execute(
            "INSERT INTO budget_limits (id, scope, value, period, unit, soft_limit, hard_limit, on_hard, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(id) DO UPDATE SET soft_limit = excluded.soft_limit, hard_limit = excluded.hard_limit,
                 on_hard = excluded.on_hard, updated_at_ms = excluded.updated_at_ms",
            params![
                &budget.id,
                budget.scope.as_str(),
                &budget.value,
                budget.period.as_str(),
                budget.unit.as_str(),
                budget.soft_limit,
                budget.hard_limit,
                budget.on_hard.as_str(),
                budget.updated_at_ms
            ],
        )?;
        Ok(budget)
    }

    /// Every budget, by id.
    pub fn list(&self) -> Result<Vec<Budget>> {
        self.db
            .query(
                "SELECT id, scope, value, period, unit, soft_limit, hard_limit, on_hard, updated_at_ms
                 FROM budget_limits ORDER BY id",
                params![],
            )?
            .iter()
            .map(|row| StoredBudget::read(row)?.into_budget())
            .collect()
    }

    /// Removes a budget; false if there was none with that id.
    pub fn delete(&self, id: &str) -> Result<bool> {
        Ok(self.db.execute("DELETE FROM budget_limits WHERE id = ?1", params![id])? > 0)
    }
}

/// A row of `budget_limits` as text, before its names are checked.
struct StoredBudget {
    id: String,
    scope: String,
    value: String,
    period: String,
    unit: String,
    soft_limit: Option<f64>,
    hard_limit: Option<f64>,
    on_hard: String,
    updated_at_ms: i64,
}

impl StoredBudget {
    fn read(r: &Row) -> lore_db::Result<StoredBudget> {
        Ok(StoredBudget {
            id: r.get(0)?,
            scope: r.get(1)?,
            value: r.get(2)?,
            period: r.get(3)?,
            unit: r.get(4)?,
            soft_limit: r.get(5)?,
            hard_limit: r.get(6)?,
            on_hard: r.get(7)?,
            updated_at_ms: r.get(8)?,
        })
    }

    fn into_budget(self) -> Result<Budget> {
        let unknown = |column: &str, text: &str| Error::Other(format!("budget {}: unknown {column} {text:?}", self.id));
        Ok(Budget {
            scope: ScopeKind::parse(&self.scope).ok_or_else(|| unknown("scope", &self.scope))?,
            period: Period::parse(&self.period).ok_or_else(|| unknown("period", &self.period))?,
            unit: Unit::parse(&self.unit).ok_or_else(|| unknown("unit", &self.unit))?,
            on_hard: OnHard::parse(&self.on_hard).ok_or_else(|| unknown("on_hard", &self.on_hard))?,
            soft_limit: self.soft_limit,
            hard_limit: self.hard_limit,
            updated_at_ms: self.updated_at_ms,
            value: self.value,
            id: self.id,
        })
    }
}

/// Who a request is for, as far as budgets care.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub user: &'a str,
    pub key_id: Option<&'a str>,
    pub departments: &'a [String],
}

/// Tokens and cost of a request: an estimate (an upper bound) when admitting it, what it
/// really cost when settling.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Amount {
    pub tokens: u64,
    pub cost: f64,
}

impl Amount {
    fn in_unit(self, unit: Unit) -> f64 {
        unit.measure(self.tokens, self.cost)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow,
    /// A budget refusing at its hard limit; nothing was reserved.
    Refuse(Exceeded),
    /// A budget degrading at its hard limit (and none refusing): answer without the model.
    Degrade(Exceeded),
}

/// A budget at its hard limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exceeded {
    pub budget: Budget,
    /// Spent and reserved in the period, in the budget's unit.
    pub spent: f64,
    /// The end of the period (Unix milliseconds).
    pub resets_at_ms: i64,
}

/// A budget at or past its soft limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub budget_id: String,
    /// What the budget will have used once the request is done: spent, reserved, and this
    /// request's estimate (zero when degraded), in the budget's unit.
    pub spent: f64,
    pub soft_limit: f64,
    /// The first warning of this budget in this period (or since its soft limit changed):
    /// the server audits only then.
    pub crossed_now: bool,
}

#[derive(Debug)]
pub struct Admission {
    pub decision: Decision,
    /// Empty when refused: a refused request spends nothing, so it crosses no soft limit.
    pub warnings: Vec<Warning>,
    /// The estimate held in every applicable budget, when the request is allowed and some
    /// budget applies; `None` otherwise (nothing to settle).
    pub reservation: Option<Reservation>,
}

/// A budget's state in its current period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub budget: Budget,
    pub period_start_ms: i64,
    pub resets_at_ms: i64,
    /// Settled in this period, in the budget's unit.
    pub spent: f64,
    /// Held by admitted requests still running, at their estimates.
    pub reserved: f64,
}

/// Admits requests against the budgets; see the module doc for the rules. Thread safe: one
/// `std::sync::Mutex` around all budgets' states, held for a decision and its reservations.
pub struct Ledger {
    store: Arc<BudgetStore>,
    spend: Arc<dyn SpendSource>,
    state: Arc<Mutex<State>>,
}

/// When a tally's spending is read again from the usage records: never (this process records
/// every request that spends, the embedded default) or when older than a duration (replicas
/// sharing a database, each seeing the others' spending only there).
#[derive(Debug, Clone, Copy, Default)]
enum Refresh {
    #[default]
    Never,
    Every(std::time::Duration),
}

#[derive(Debug, Default)]
struct State {
    /// `None` until the budgets are first needed.
    catalog: Option<Catalog>,
    tallies: Tallies,
    refresh: Refresh,
}

/// The budgets, indexed by whom they cap.
#[derive(Debug)]
struct Catalog {
    /// By id.
    budgets: Vec<Budget>,
    /// Positions in `budgets`, by scope and value.
    by_subject: HashMap<ScopeKind, HashMap<String, Vec<usize>>>,
}

impl Catalog {
    fn new(mut budgets: Vec<Budget>) -> Self {
        budgets.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_subject: HashMap<ScopeKind, HashMap<String, Vec<usize>>> = HashMap::new();
        for (position, budget) in budgets.iter().enumerate() {
            by_subject.entry(budget.scope).or_default().entry(budget.value.clone()).or_default().push(position);
        }
        Catalog { budgets, by_subject }
    }

    fn contains(&self, id: &str) -> bool {
        self.budgets.binary_search_by(|b| b.id.as_str().cmp(id)).is_ok()
    }

    /// The budgets of each of `who`'s departments, its key and its user, each once.
    fn applicable(&self, who: &Who) -> Vec<&Budget> {
        let subjects = who
            .departments
            .iter()
            .map(|d| (ScopeKind::Department, d.as_str()))
            .chain(who.key_id.map(|k| (ScopeKind::Key, k)))
            .chain([(ScopeKind::User, who.user)]);
        let mut positions: Vec<usize> =
            subjects.filter_map(|(scope, value)| self.by_subject.get(&scope)?.get(value)).flatten().copied().collect();
        positions.sort_unstable();
        positions.dedup();
        positions.into_iter().map(|p| &self.budgets[p]).collect()
    }
}

/// Every budget's current period, by budget id.
#[derive(Debug, Default)]
struct Tallies {
    by_budget: HashMap<String, Tally>,
    /// Tells tallies apart, so a reservation never settles into a tally that replaced its own
    /// (a new period, or a budget deleted and set again).
    next_epoch: u64,
}

#[derive(Debug)]
struct Tally {
    epoch: u64,
    period_start_ms: i64,
    period_end_ms: i64,
    spent: f64,
    reserved: f64,
    /// Reservations held; at zero `reserved` is reset to exactly 0 (sums and differences of
    /// costs do not cancel exactly in floating point).
    running: usize,
    /// When `spent` was read from the usage records.
    read_at: std::time::Instant,
    /// The soft limit already warned about in this period.
    warned_at: Option<f64>,
}

impl Tallies {
    /// `budget`'s tally for the period holding `now_ms`, reading what was spent from `source`
    /// when that period is new. The ledger's lock is held meanwhile: a read per budget and
    /// period, and the decision must not start from a half-loaded state.
    fn current(
        &mut self,
        source: &dyn SpendSource,
        refresh: Refresh,
        budget: &Budget,
        now_ms: i64,
    ) -> Result<&mut Tally> {
        let (start, end) = budget.period.bounds_ms(now_ms);
        let epoch = &mut self.next_epoch;
        let read = |start: i64, end: i64| -> Result<f64> {
            let spent = source.spend(budget.scope.as_str(), &budget.value, start / 1000, end / 1000)?;
            Ok(budget.unit.measure(spent.tokens, spent.cost))
        };
        let mut load = || -> Result<Tally> {
            *epoch += 1;
            Ok(Tally {
                epoch: *epoch,
                period_start_ms: start,
                period_end_ms: end,
                spent: read(start, end)?,
                reserved: 0.0,
                running: 0,
                warned_at: None,
                read_at: std::time::Instant::now(),
            })
        };
        // A tally is replaced only by a later period: a request timed a little earlier (a clock
        // stepping back) counts against the period already running.
        match self.by_budget.entry(budget.id.clone()) {
            Entry::Occupied(entry) if entry.get().period_start_ms >= start => {
                let tally = entry.into_mut();
                if let Refresh::Every(every) = refresh
                    && tally.read_at.elapsed() >= every
                {
                    // What every replica recorded, this one's settled requests included; its own
                    // reservations stay as they are.
                    tally.spent = read(tally.period_start_ms, tally.period_end_ms)?;
                    tally.read_at = std::time::Instant::now();
                }
                Ok(tally)
            }
            Entry::Occupied(mut entry) => {
                entry.insert(load()?);
                Ok(entry.into_mut())
            }
            Entry::Vacant(entry) => Ok(entry.insert(load()?)),
        }
    }
}

impl Ledger {
    /// A ledger over `store`'s budgets; they are read when first needed.
    pub fn new(store: Arc<BudgetStore>, spend: Arc<dyn SpendSource>) -> Self {
        Ledger { store, spend, state: Arc::new(Mutex::new(State::default())) }
    }

    /// Reads a budget's spending again when its tally is older than `every`: for replicas
    /// that share the usage records, where other processes spend too.
    pub fn refreshing_every(self, every: std::time::Duration) -> Self {
        lock(&self.state).refresh = Refresh::Every(every);
        self
    }

    /// Budgets changed (set/delete): reload them. A budget still there keeps what it has
    /// spent and reserved in its period (only its limits may have changed: its id names its
    /// scope, period and unit); a deleted one is forgotten.
    pub fn reload(&self) -> Result<()> {
        let catalog = Catalog::new(self.store.list()?);
        let mut state = lock(&self.state);
        state.tallies.by_budget.retain(|id, _| catalog.contains(id));
        state.catalog = Some(catalog);
        Ok(())
    }

    /// Admit a request that may cost up to `estimate` at `now_ms` (see the module doc). When
    /// several budgets are at their hard limit, a refusing one wins over a degrading one, and
    /// among those the one that resets last is named (waiting for an earlier reset would not
    /// help). Fails only if the budgets or the spending records cannot be read.
    pub fn admit(&self, who: &Who, estimate: Amount, now_ms: i64) -> Result<Admission> {
        let mut state = lock(&self.state);
        let State { catalog, tallies, refresh } = &mut *state;
        let refresh = *refresh;
        let applicable = self.catalog(catalog)?.applicable(who);

        let mut refuse: Option<Exceeded> = None;
        let mut degrade: Option<Exceeded> = None;
        for budget in &applicable {
            let tally = tallies.current(self.spend.as_ref(), refresh, budget, now_ms)?;
            let used = tally.spent + tally.reserved;
            if budget.hard_limit.is_some_and(|hard| used >= hard) {
                let exceeded = Exceeded { budget: (*budget).clone(), spent: used, resets_at_ms: tally.period_end_ms };
                let named = match budget.on_hard {
                    OnHard::Refuse => &mut refuse,
                    OnHard::Degrade => &mut degrade,
                };
                if named.as_ref().is_none_or(|e| exceeded.resets_at_ms > e.resets_at_ms) {
                    *named = Some(exceeded);
                }
            }
        }
        if let Some(exceeded) = refuse {
            return Ok(Admission { decision: Decision::Refuse(exceeded), warnings: Vec::new(), reservation: None });
        }

        // A degraded request makes no model call: it reserves (and will spend) nothing.
        let reserving = degrade.is_none();
        let mut warnings = Vec::new();
        let mut holds = Vec::new();
        for budget in &applicable {
            let tally = tallies.current(self.spend.as_ref(), refresh, budget, now_ms)?;
            let amount = if reserving { estimate.in_unit(budget.unit) } else { 0.0 };
            let projected = tally.spent + tally.reserved + amount;
            if let Some(soft) = budget.soft_limit
                && projected >= soft
            {
                warnings.push(Warning {
                    budget_id: budget.id.clone(),
                    spent: projected,
                    soft_limit: soft,
                    crossed_now: tally.warned_at != Some(soft),
                });
                tally.warned_at = Some(soft);
            }
            if reserving {
                tally.reserved += amount;
                tally.running += 1;
                holds.push(Hold { budget_id: budget.id.clone(), unit: budget.unit, epoch: tally.epoch, amount });
            }
        }
        let reservation = (!holds.is_empty()).then(|| Reservation { state: Arc::clone(&self.state), holds });
        let decision = degrade.map_or(Decision::Allow, Decision::Degrade);
        Ok(Admission { decision, warnings, reservation })
    }

    /// Current state of every budget (for `GET /v1/budgets` and `lore budgets list`), by id.
    pub fn status(&self, now_ms: i64) -> Result<Vec<BudgetStatus>> {
        let mut state = lock(&self.state);
        let State { catalog, tallies, refresh } = &mut *state;
        let refresh = *refresh;
        self.catalog(catalog)?
            .budgets
            .iter()
            .map(|budget| {
                let tally = tallies.current(self.spend.as_ref(), refresh, budget, now_ms)?;
                Ok(BudgetStatus {
                    budget: budget.clone(),
                    period_start_ms: tally.period_start_ms,
                    resets_at_ms: tally.period_end_ms,
                    spent: tally.spent,
                    reserved: tally.reserved,
                })
            })
            .collect()
    }

    fn catalog<'s>(&self, catalog: &'s mut Option<Catalog>) -> Result<&'s Catalog> {
        let loaded = match catalog.take() {
            Some(loaded) => loaded,
            None => Catalog::new(self.store.list()?),
        };
        Ok(catalog.insert(loaded))
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// An admitted request's estimate, held in every budget that applies until the request is
/// done. [`Reservation::settle`] replaces it with what the request really cost; dropping it
/// unsettled (the request failed before the model was called) releases it with nothing spent.
#[derive(Debug)]
pub struct Reservation {
    state: Arc<Mutex<State>>,
    holds: Vec<Hold>,
}

#[derive(Debug)]
struct Hold {
    budget_id: String,
    unit: Unit,
    epoch: u64,
    amount: f64,
}

impl Reservation {
    /// Releases the estimate and counts `actual` as spent in each budget. A budget whose
    /// period ended meanwhile (or that was deleted) is left alone: its new period read its
    /// spending from the usage records, which count the request by its own time.
    pub fn settle(mut self, actual: Amount) {
        self.release(actual);
    }

    fn release(&mut self, actual: Amount) {
        if self.holds.is_empty() {
            return;
        }
        let mut state = lock(&self.state);
        for hold in self.holds.drain(..) {
            let Some(tally) = state.tallies.by_budget.get_mut(&hold.budget_id) else { continue };
            if tally.epoch != hold.epoch {
                continue;
            }
            tally.running = tally.running.saturating_sub(1);
            tally.reserved = if tally.running == 0 { 0.0 } else { (tally.reserved - hold.amount).max(0.0) };
            tally.spent += actual.in_unit(hold.unit);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release(Amount::default());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;
    use crate::Spend;
    use lore_db::testing::on_both;

    /// 2026-11-30T10:00:00Z, the last day of November: the next day is also the next month.
    const NOW_MS: i64 = 1_796_032_800_000;
    const TODAY_MS: i64 = 1_795_996_800_000;
    const TOMORROW_MS: i64 = 1_796_083_200_000;
    const MONTH_START_MS: i64 = 1_793_491_200_000;

    /// Spending as a usage store would report it, with a log of what was asked.
    #[derive(Default)]
    struct ScriptedSpend {
        spend: Mutex<HashMap<(String, String), Spend>>,
        asked: Mutex<Vec<(String, String, i64, i64)>>,
    }

    impl ScriptedSpend {
        fn set(&self, dim: &str, value: &str, spend: Spend) {
            self.spend.lock().unwrap().insert((dim.into(), value.into()), spend);
        }

        fn asked(&self) -> Vec<(String, String, i64, i64)> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl SpendSource for ScriptedSpend {
        fn spend(&self, dim: &str, value: &str, from_secs: i64, to_secs: i64) -> Result<Spend> {
            self.asked.lock().unwrap().push((dim.into(), value.into(), from_secs, to_secs));
            Ok(self.spend.lock().unwrap().get(&(dim.into(), value.into())).copied().unwrap_or_default())
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<BudgetStore>,
        spend: Arc<ScriptedSpend>,
        ledger: Ledger,
    }

    fn fixture(specs: &[BudgetSpec]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BudgetStore::open(&dir.path().join("data/catalog.sqlite")).unwrap());
        for spec in specs {
            store.set(spec).unwrap();
        }
        let spend = Arc::new(ScriptedSpend::default());
        let ledger = Ledger::new(Arc::clone(&store), spend.clone());
        Fixture { _dir: dir, store, spend, ledger }
    }

    /// Two replicas on one database: each sees what the other spent (written to the shared
    /// usage records) once its tally is older than the refresh interval; a ledger that never
    /// refreshes (one process alone) does not.
    #[test]
    fn replicas_see_each_others_spending_after_the_refresh() {
        on_both("replicas_see_each_others_spending_after_the_refresh", |database| {
            let budgets = Arc::new(BudgetStore::open_in(database).unwrap());
            budgets.set(&hard(ScopeKind::User, "ana", 1_000.0, OnHard::Refuse)).unwrap();
            let records = |db| Arc::new(crate::store::UsageStore::open_in(db).unwrap());
            let replica_a = records(database);
            let replica_b = Ledger::new(budgets.clone(), records(database)).refreshing_every(std::time::Duration::ZERO);
            let alone = Ledger::new(budgets.clone(), records(database));
            let now = crate::now_ms();
            for ledger in [&replica_b, &alone] {
                assert!(matches!(ledger.admit(&ana(), tokens(10), now).unwrap().decision, Decision::Allow));
            }
            // Replica A answers Ana with 1,000 tokens and records it.
            let event = crate::UsageEvent {
                prompt_tokens: 600,
                completion_tokens: 400,
                time_ms: now,
                ..crate::UsageEvent::new(crate::Endpoint::Chat, "ana", "answered")
            };
            replica_a.write_batch(&[event]).unwrap();
            let decision = replica_b.admit(&ana(), tokens(10), now).unwrap().decision;
            assert!(matches!(decision, Decision::Refuse(_)), "replica B still admits: {decision:?}");
            assert!(matches!(alone.admit(&ana(), tokens(10), now).unwrap().decision, Decision::Allow));
        });
    }

    fn daily_tokens(scope: ScopeKind, value: &str) -> BudgetSpec {
        BudgetSpec {
            scope,
            value: value.into(),
            period: Period::Day,
            unit: Unit::Tokens,
            soft_limit: None,
            hard_limit: None,
            on_hard: OnHard::Refuse,
        }
    }

    fn hard(scope: ScopeKind, value: &str, limit: f64, on_hard: OnHard) -> BudgetSpec {
        BudgetSpec { hard_limit: Some(limit), on_hard, ..daily_tokens(scope, value) }
    }

    fn soft(scope: ScopeKind, value: &str, limit: f64) -> BudgetSpec {
        BudgetSpec { soft_limit: Some(limit), ..daily_tokens(scope, value) }
    }

    fn ana() -> Who<'static> {
        Who { user: "ana", key_id: None, departments: &[] }
    }

    fn tokens(tokens: u64) -> Amount {
        Amount { tokens, cost: 0.0 }
    }

    fn exceeded_id(decision: &Decision) -> Option<&str> {
        match decision {
            Decision::Allow => None,
            Decision::Refuse(e) | Decision::Degrade(e) => Some(&e.budget.id),
        }
    }

    fn invalid(spec: BudgetSpec) -> String {
        match spec.validate() {
            Err(Error::Invalid(message)) => message,
            other => panic!("expected an invalid spec, got {other:?}"),
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        let good = hard(ScopeKind::User, "ana", 100.0, OnHard::Refuse);
        assert!(good.validate().is_ok());
        assert!(invalid(BudgetSpec { value: " ".into(), ..good.clone() }).contains("value (the user"));
        assert!(invalid(BudgetSpec { value: "ana ".into(), ..good.clone() }).contains("value"));
        assert!(invalid(BudgetSpec { hard_limit: Some(-1.0), ..good.clone() }).contains("hard_limit"));
        assert!(invalid(BudgetSpec { soft_limit: Some(f64::NAN), ..good.clone() }).contains("soft_limit"));
        assert!(invalid(BudgetSpec { hard_limit: Some(f64::INFINITY), ..good.clone() }).contains("hard_limit"));
        assert!(invalid(BudgetSpec { hard_limit: Some(10.5), ..good.clone() }).contains("whole number"));
        assert!(invalid(BudgetSpec { hard_limit: None, ..good.clone() }).contains("soft_limit, a hard_limit"));
        assert!(invalid(BudgetSpec { soft_limit: Some(101.0), ..good.clone() }).contains("soft_limit (101)"));
        // Cost limits may be fractions.
        assert!(BudgetSpec { unit: Unit::Cost, hard_limit: Some(2.5), ..good }.validate().is_ok());
    }

    #[test]
    fn the_store_upserts_one_budget_per_scope_period_and_unit() {
        on_both("the_store_upserts_one_budget_per_scope_period_and_unit", |database| {
            let store = BudgetStore::open_in(database).unwrap();
            let first = store.set(&hard(ScopeKind::Department, "sales:emea", 1000.0, OnHard::Refuse)).unwrap();
            assert_eq!(first.id, "department:sales:emea:day:tokens");
            let changed = store
                .set(&BudgetSpec {
                    soft_limit: Some(800.0),
                    ..hard(ScopeKind::Department, "sales:emea", 2000.0, OnHard::Degrade)
                })
                .unwrap();
            assert_eq!(changed.id, first.id);
            let monthly = BudgetSpec {
                period: Period::Month,
                unit: Unit::Cost,
                ..hard(ScopeKind::Key, "k1", 5.0, OnHard::Refuse)
            };
            store.set(&monthly).unwrap();
            assert!(matches!(store.set(&BudgetSpec { hard_limit: Some(-1.0), ..monthly }), Err(Error::Invalid(_))));
            drop(store);

            let store = BudgetStore::open_in(database).unwrap();
            let listed = store.list().unwrap();
            assert_eq!(listed.len(), 2);
            assert_eq!(listed[0], changed);
            assert_eq!(listed[1].id, "key:k1:month:cost");
            assert_eq!(
                (listed[1].hard_limit, listed[1].period, listed[1].unit),
                (Some(5.0), Period::Month, Unit::Cost)
            );
            assert!(store.delete("key:k1:month:cost").unwrap());
            assert!(!store.delete("key:k1:month:cost").unwrap());
            assert_eq!(store.list().unwrap().len(), 1);
        });
    }

    #[test]
    fn an_unknown_name_in_the_table_is_an_error_naming_it() {
        on_both("an_unknown_name_in_the_table_is_an_error_naming_it", |database| {
            let store = BudgetStore::open_in(database).unwrap();
            store.set(&hard(ScopeKind::User, "ana", 10.0, OnHard::Refuse)).unwrap();
            store.db.execute("UPDATE budget_limits SET period = 'week'", params![]).unwrap();
            let error = store.list().unwrap_err().to_string();
            assert!(error.contains("user:ana:day:tokens") && error.contains("unknown period \"week\""), "{error}");
        });
    }

    #[test]
    fn a_database_from_before_migrations_were_recorded_opens_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        {
            // What `open` made before: the table, with a budget in it.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA.migrations[0].sqlite).unwrap();
            conn.execute(
                "INSERT INTO budget_limits (id, scope, value, period, unit, soft_limit, hard_limit, on_hard, \
                 updated_at_ms) VALUES ('user:ana:day:tokens', 'user', 'ana', 'day', 'tokens', NULL, 10.0, 'refuse', 1)",
                [],
            )
            .unwrap();
        }
        let store = BudgetStore::open(&path).unwrap();
        assert_eq!(store.list().unwrap()[0].hard_limit, Some(10.0));
        store.set(&hard(ScopeKind::User, "ben", 5.0, OnHard::Refuse)).unwrap();
        assert_eq!(BudgetStore::open(&path).unwrap().list().unwrap().len(), 2);
    }

    #[test]
    fn a_hard_limit_refuses_once_spent_and_reserved_reach_it() {
        let f = fixture(&[hard(ScopeKind::User, "ana", 100.0, OnHard::Refuse)]);
        f.spend.set("user", "ana", Spend { tokens: 90, cost: 0.0 });

        // 90 < 100: admitted, although its estimate may take the budget past the limit.
        let first = f.ledger.admit(&ana(), tokens(20), NOW_MS).unwrap();
        assert_eq!(first.decision, Decision::Allow);
        let second = f.ledger.admit(&ana(), tokens(20), NOW_MS).unwrap();
        let Decision::Refuse(exceeded) = &second.decision else { panic!("expected a refusal: {second:?}") };
        assert_eq!(exceeded.budget.id, "user:ana:day:tokens");
        assert_eq!((exceeded.spent, exceeded.resets_at_ms), (110.0, TOMORROW_MS));
        assert!(second.reservation.is_none() && second.warnings.is_empty());

        // The first request really used 5 tokens: 95 spent, room again.
        first.reservation.expect("allowed requests hold a reservation").settle(tokens(5));
        let status = f.ledger.status(NOW_MS).unwrap();
        assert_eq!((status[0].spent, status[0].reserved), (95.0, 0.0));
        assert_eq!((status[0].period_start_ms, status[0].resets_at_ms), (TODAY_MS, TOMORROW_MS));
        assert_eq!(f.ledger.admit(&ana(), tokens(20), NOW_MS).unwrap().decision, Decision::Allow);
        // The source was read once for the period; the rest was kept in memory.
        assert_eq!(f.spend.asked(), vec![("user".into(), "ana".into(), TODAY_MS / 1000, TOMORROW_MS / 1000)]);
    }

    #[test]
    fn degrade_admits_without_reserving_and_refuse_wins_over_degrade() {
        let f = fixture(&[
            hard(ScopeKind::User, "ana", 0.0, OnHard::Degrade),
            BudgetSpec { soft_limit: Some(10.0), ..hard(ScopeKind::Key, "k1", 100.0, OnHard::Refuse) },
        ]);
        let with_key = Who { key_id: Some("k1"), ..ana() };
        let degraded = f.ledger.admit(&with_key, tokens(50), NOW_MS).unwrap();
        assert_eq!(exceeded_id(&degraded.decision), Some("user:ana:day:tokens"));
        assert!(matches!(degraded.decision, Decision::Degrade(_)));
        assert!(degraded.reservation.is_none());
        // Without the model call nothing nears the key's soft limit of 10.
        assert!(degraded.warnings.is_empty(), "{:?}", degraded.warnings);
        assert!(f.ledger.status(NOW_MS).unwrap().iter().all(|s| s.reserved == 0.0));

        // Another user of the key fills it to its hard limit.
        let ben = Who { user: "ben", ..with_key };
        f.ledger.admit(&ben, tokens(100), NOW_MS).unwrap().reservation.unwrap().settle(tokens(100));
        let refused = f.ledger.admit(&with_key, tokens(50), NOW_MS).unwrap();
        assert!(matches!(refused.decision, Decision::Refuse(_)));
        assert_eq!(exceeded_id(&refused.decision), Some("key:k1:day:tokens"));
    }

    #[test]
    fn the_budget_named_is_the_one_that_resets_last() {
        let monthly = BudgetSpec { period: Period::Month, ..hard(ScopeKind::User, "ana", 10.0, OnHard::Refuse) };
        let f = fixture(&[hard(ScopeKind::User, "ana", 10.0, OnHard::Refuse), monthly]);
        f.spend.set("user", "ana", Spend { tokens: 10, cost: 0.0 });
        // Mid-month, the month outlasts the day.
        let mid_month = MONTH_START_MS + 10 * DAY_SECS * 1000;
        let refused = f.ledger.admit(&ana(), tokens(1), mid_month).unwrap();
        let Decision::Refuse(exceeded) = refused.decision else { panic!("expected a refusal") };
        assert_eq!(exceeded.budget.id, "user:ana:month:tokens");
        assert_eq!(exceeded.resets_at_ms, TOMORROW_MS);
    }

    #[test]
    fn budgets_of_every_department_the_key_and_the_user_apply_once_each() {
        let f = fixture(&[
            soft(ScopeKind::Department, "sales", 1.0),
            soft(ScopeKind::Department, "legal", 1.0),
            soft(ScopeKind::Department, "hr", 1.0),
            soft(ScopeKind::Key, "k1", 1.0),
            soft(ScopeKind::Key, "k2", 1.0),
            soft(ScopeKind::User, "ana", 1.0),
            soft(ScopeKind::User, "ben", 1.0),
            BudgetSpec { unit: Unit::Cost, ..soft(ScopeKind::User, "ana", 0.5) },
        ]);
        let departments = ["sales".to_owned(), "legal".to_owned(), "sales".to_owned()];
        let who = Who { user: "ana", key_id: Some("k1"), departments: &departments };
        let admission = f.ledger.admit(&who, Amount { tokens: 7, cost: 0.75 }, NOW_MS).unwrap();
        let mut warned: Vec<&str> = admission.warnings.iter().map(|w| w.budget_id.as_str()).collect();
        warned.sort_unstable();
        assert_eq!(
            warned,
            [
                "department:legal:day:tokens",
                "department:sales:day:tokens",
                "key:k1:day:tokens",
                "user:ana:day:cost",
                "user:ana:day:tokens"
            ]
        );
        let reserved: HashMap<String, f64> =
            f.ledger.status(NOW_MS).unwrap().into_iter().map(|s| (s.budget.id, s.reserved)).collect();
        assert_eq!(reserved["department:sales:day:tokens"], 7.0, "a repeated department reserves once");
        assert_eq!(reserved["user:ana:day:cost"], 0.75);
        assert_eq!(reserved["department:hr:day:tokens"], 0.0);
        assert_eq!(reserved["key:k2:day:tokens"], 0.0);
        assert_eq!(reserved["user:ben:day:tokens"], 0.0);
    }

    #[test]
    fn a_soft_limit_warns_and_is_crossed_once_per_period() {
        let f = fixture(&[soft(ScopeKind::User, "ana", 100.0)]);
        f.spend.set("user", "ana", Spend { tokens: 50, cost: 0.0 });
        let admit = |estimate, now_ms| f.ledger.admit(&ana(), tokens(estimate), now_ms).unwrap();

        let below = admit(40, NOW_MS);
        assert!(below.warnings.is_empty());
        // 50 spent + 40 reserved + 10 reaches the soft limit; a soft limit never refuses.
        let crossing = admit(10, NOW_MS);
        assert_eq!(crossing.decision, Decision::Allow);
        let expected =
            Warning { budget_id: "user:ana:day:tokens".into(), spent: 100.0, soft_limit: 100.0, crossed_now: true };
        assert_eq!(crossing.warnings, vec![expected.clone()]);
        assert_eq!(admit(10, NOW_MS).warnings, vec![Warning { spent: 110.0, crossed_now: false, ..expected }]);

        // A raised soft limit warns anew once reached.
        f.store.set(&soft(ScopeKind::User, "ana", 200.0)).unwrap();
        f.ledger.reload().unwrap();
        assert!(admit(10, NOW_MS).warnings.is_empty());
        let reaching = admit(100, NOW_MS);
        assert!(reaching.warnings[0].crossed_now);
        assert!(!admit(1, NOW_MS).warnings[0].crossed_now);

        // So does a new day (which has spent 250 by the records).
        f.spend.set("user", "ana", Spend { tokens: 250, cost: 0.0 });
        assert!(admit(1, TOMORROW_MS).warnings[0].crossed_now);
        drop((below, crossing, reaching));
    }

    #[test]
    fn dropping_a_reservation_releases_it_with_nothing_spent() {
        let f = fixture(&[hard(ScopeKind::User, "ana", 100.0, OnHard::Refuse)]);
        let admission = f.ledger.admit(&ana(), tokens(100), NOW_MS).unwrap();
        assert!(matches!(f.ledger.admit(&ana(), tokens(1), NOW_MS).unwrap().decision, Decision::Refuse(_)));
        drop(admission);
        let status = f.ledger.status(NOW_MS).unwrap();
        assert_eq!((status[0].spent, status[0].reserved), (0.0, 0.0));
        assert_eq!(f.ledger.admit(&ana(), tokens(1), NOW_MS).unwrap().decision, Decision::Allow);
    }

    #[test]
    fn a_new_period_reads_the_records_again() {
        let monthly =
            BudgetSpec { period: Period::Month, unit: Unit::Cost, ..hard(ScopeKind::User, "ana", 5.0, OnHard::Refuse) };
        let f = fixture(&[hard(ScopeKind::User, "ana", 100.0, OnHard::Refuse), monthly]);
        f.spend.set("user", "ana", Spend { tokens: 100, cost: 1.0 });
        let late = f.ledger.admit(&ana(), Amount { tokens: 0, cost: 1.0 }, NOW_MS).unwrap();
        assert!(matches!(late.decision, Decision::Refuse(_)), "the day's tokens are used up");

        // Midnight, and the first of December: both budgets start over from the records.
        f.spend.set("user", "ana", Spend { tokens: 3, cost: 0.25 });
        let next = f.ledger.admit(&ana(), Amount { tokens: 10, cost: 1.0 }, TOMORROW_MS).unwrap();
        assert_eq!(next.decision, Decision::Allow);
        let asked = f.spend.asked();
        assert_eq!(asked.len(), 4);
        assert!(asked.contains(&("user".into(), "ana".into(), MONTH_START_MS / 1000, TOMORROW_MS / 1000)));
        assert!(asked.contains(&("user".into(), "ana".into(), TOMORROW_MS / 1000, 1_798_761_600)));

        let status = f.ledger.status(TOMORROW_MS).unwrap();
        let by_id: HashMap<&str, &BudgetStatus> = status.iter().map(|s| (s.budget.id.as_str(), s)).collect();
        let day = by_id["user:ana:day:tokens"];
        assert_eq!((day.spent, day.reserved, day.period_start_ms), (3.0, 10.0, TOMORROW_MS));
        let month = by_id["user:ana:month:cost"];
        assert_eq!((month.spent, month.reserved, month.resets_at_ms), (0.25, 1.0, 1_798_761_600_000));
    }

    #[test]
    fn a_reservation_from_the_previous_period_is_not_settled_into_the_new_one() {
        let f = fixture(&[hard(ScopeKind::User, "ana", 100.0, OnHard::Refuse)]);
        let before_midnight = f.ledger.admit(&ana(), tokens(30), TOMORROW_MS - 1).unwrap();
        let after_midnight = f.ledger.admit(&ana(), tokens(20), TOMORROW_MS).unwrap();
        before_midnight.reservation.unwrap().settle(tokens(30));
        let status = f.ledger.status(TOMORROW_MS).unwrap();
        assert_eq!((status[0].spent, status[0].reserved), (0.0, 20.0));
        drop(after_midnight);
    }

    #[test]
    fn reload_keeps_the_spending_of_changed_budgets_and_forgets_deleted_ones() {
        let f = fixture(&[hard(ScopeKind::User, "ana", 100.0, OnHard::Refuse)]);
        f.ledger.admit(&ana(), tokens(60), NOW_MS).unwrap().reservation.unwrap().settle(tokens(60));
        let running = f.ledger.admit(&ana(), tokens(7), NOW_MS).unwrap();

        // Lowered to 50: 60 spent and 7 reserved stay, so the next request is refused.
        f.store.set(&hard(ScopeKind::User, "ana", 50.0, OnHard::Refuse)).unwrap();
        assert_eq!(f.ledger.admit(&ana(), tokens(1), NOW_MS).unwrap().decision, Decision::Allow, "not reloaded yet");
        f.ledger.reload().unwrap();
        let refused = f.ledger.admit(&ana(), tokens(1), NOW_MS).unwrap();
        assert!(
            matches!(&refused.decision, Decision::Refuse(e) if e.budget.hard_limit == Some(50.0) && e.spent == 67.0)
        );

        // Deleted: nothing applies any more, and no reservation is held.
        assert!(f.store.delete("user:ana:day:tokens").unwrap());
        f.ledger.reload().unwrap();
        let free = f.ledger.admit(&ana(), tokens(1000), NOW_MS).unwrap();
        assert_eq!(free.decision, Decision::Allow);
        assert!(free.reservation.is_none());
        assert!(f.ledger.status(NOW_MS).unwrap().is_empty());

        // Set again: it reads the records afresh; the older reservation settles nowhere.
        f.store.set(&hard(ScopeKind::User, "ana", 50.0, OnHard::Refuse)).unwrap();
        f.ledger.reload().unwrap();
        f.ledger.admit(&ana(), tokens(5), NOW_MS).unwrap().reservation.unwrap().settle(tokens(5));
        running.reservation.unwrap().settle(tokens(7));
        let status = f.ledger.status(NOW_MS).unwrap();
        assert_eq!((status[0].spent, status[0].reserved), (5.0, 0.0));
    }

    #[test]
    fn concurrent_requests_at_the_boundary_overrun_by_at_most_one_request() {
        let f = fixture(&[
            hard(ScopeKind::Department, "sales", 1000.0, OnHard::Refuse),
            BudgetSpec { unit: Unit::Cost, ..hard(ScopeKind::User, "ana", 1.0, OnHard::Refuse) },
        ]);
        f.spend.set("department", "sales", Spend { tokens: 905, cost: 0.0 });
        let ledger = Arc::new(f.ledger);
        let threads = 32;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (ledger, barrier) = (Arc::clone(&ledger), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let departments = ["sales".to_owned()];
                    let who = Who { user: "ana", key_id: None, departments: &departments };
                    barrier.wait();
                    let admission = ledger.admit(&who, Amount { tokens: 10, cost: 0.01 }, NOW_MS).unwrap();
                    // Hold every reservation until all have been decided.
                    barrier.wait();
                    let admitted = admission.decision == Decision::Allow;
                    if let Some(reservation) = admission.reservation {
                        reservation.settle(Amount { tokens: 10, cost: 0.01 });
                    }
                    admitted
                })
            })
            .collect();
        let admitted = handles.into_iter().map(|h| h.join().unwrap()).filter(|&a| a).count();
        // 905, 915, ..., 995 are below 1000: exactly ten get in, ending at 1005 (< 1000 + 10).
        assert_eq!(admitted, 10);
        let status = ledger.status(NOW_MS).unwrap();
        let sales = status.iter().find(|s| s.budget.id == "department:sales:day:tokens").unwrap();
        assert_eq!((sales.spent, sales.reserved), (1005.0, 0.0));
        let ana = status.iter().find(|s| s.budget.id == "user:ana:day:cost").unwrap();
        assert!((ana.spent - 0.1).abs() < 1e-9 && ana.reserved == 0.0, "{ana:?}");
    }
}
