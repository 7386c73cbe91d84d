//! The service's usage layer: one usage event per metered request (search, chat, upload,
//! feedback), recorded off the request path; budgets admitted before a chat; rate limits after
//! authentication; question categories from the query vector retrieval already computed; and
//! knowledge gaps fed by abstentions and thumbs-down votes through a background worker (a
//! down-voted question is embedded there, never on the request path).

use std::sync::Arc;

use lore_chat::Retriever;
use lore_core::audit::Outcome;
use lore_core::auth::Caller;
use lore_core::config::Config;
use lore_usage::budgets::{Admission, Amount, BudgetStore, Decision, Ledger, Who};
use lore_usage::categories::Categories;
use lore_usage::gaps::{GapInput, GapReason, GapStore};
use lore_usage::limits::{RateLimiter, Subject};
use lore_usage::store::{Recorder, UsageStore};
use lore_usage::{Endpoint, UsageEvent};

use crate::http::ApiError;
use crate::state::{AppState, OpenError};

pub struct Usage {
    pub store: Arc<UsageStore>,
    pub recorder: Recorder,
    pub budgets: Arc<BudgetStore>,
    pub ledger: Ledger,
    pub limiter: RateLimiter,
    pub categories: Categories,
    pub gaps: Arc<GapStore>,
    gap_work: tokio::sync::mpsc::UnboundedSender<GapWork>,
}

/// A question for the knowledge-gap report; the worker embeds it when no vector came along.
pub struct GapWork {
    pub question: String,
    pub vector: Option<Vec<f32>>,
    pub departments: Vec<String>,
    pub reason: GapReason,
    pub event_id: Option<String>,
}

/// How stale a replica's view of other replicas' spending may get: a budget's spending is
/// read again from the shared usage records when its tally is older than this. Bounds the
/// overshoot of a hard limit to what the other replicas admit in this window (plus the usage
/// recorder's own batching delay).
const SHARED_SPEND_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

impl Usage {
    /// Opens the stores in the service's database, embeds the category examples once, and
    /// starts the recorder thread and the gap worker (which ends with the last `Usage`).
    pub async fn open(
        config: &Config,
        database: &lore_db::Database,
        retriever: Arc<Retriever>,
    ) -> Result<Usage, OpenError> {
        let store = Arc::new(UsageStore::open_in(database)?);
        let recorder =
            if config.usage.enabled { Recorder::start(store.clone(), &config.usage) } else { Recorder::disabled() };
        let budgets = Arc::new(BudgetStore::open_in(database)?);
        // Replicas sharing PostgreSQL see each other's spending (the usage records) and share
        // rate-limit buckets; a process alone with its SQLite file keeps both in memory.
        let shared = database.dialect() == lore_db::Dialect::Postgres;
        let mut ledger = Ledger::new(budgets.clone(), store.clone());
        if shared {
            ledger = ledger.refreshing_every(SHARED_SPEND_REFRESH);
        }
        let limiter = if shared {
            RateLimiter::shared(&config.rate_limits, database)?
        } else {
            RateLimiter::new(&config.rate_limits)
        };
        let examples: Vec<String> =
            Categories::examples(&config.usage.categories).into_iter().map(str::to_owned).collect();
        let vectors = if examples.is_empty() { Vec::new() } else { retriever.embed_queries(examples).await? };
        let categories = Categories::new(&config.usage.categories, vectors, config.usage.category_floor)
            .map_err(|e| lore_core::Error::Config(format!("usage.categories: {e}")))?
            .with_rule(config.usage.category_rule);
        let gaps = Arc::new(GapStore::open_in(database, config.usage.gap_similarity)?);
        let (gap_work, queue) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(gap_worker(queue, retriever, gaps.clone()));
        Ok(Usage { store, recorder, budgets, ledger, limiter, categories, gaps, gap_work })
    }

    /// Every [`BUDGET_RELOAD`]: budgets re-read (`lore budgets` changes them beside a running
    /// server) and idle rate-limit buckets forgotten; every [`PURGE_EVERY`] (the first a minute
    /// after start) the retention purge ([`AppState::purge`]). Runs until `state` is the last holder.
    pub fn spawn_maintenance(state: &Arc<AppState>) {
        let state = Arc::downgrade(state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BUDGET_RELOAD);
            // The first purge waits a minute: a server starting up has enough to do.
            let mut next_purge = std::time::Instant::now() + PURGE_DELAY;
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(state) = state.upgrade() else { break };
                if let Err(error) = state.usage.ledger.reload() {
                    tracing::error!(%error, "budgets: cannot reload");
                }
                state.usage.limiter.retain_recent();
                for connector in &state.config.connectors {
                    if state.syncs.due(connector, lore_core::db::now()) {
                        let (state, name) = (state.clone(), connector.name.clone());
                        tokio::spawn(async move {
                            if let Err(error) = crate::sync::run(&state, &name, None).await {
                                tracing::debug!(connector = %name, %error, "scheduled sync not run");
                            }
                        });
                    }
                }
                if std::time::Instant::now() >= next_purge {
                    next_purge = std::time::Instant::now() + PURGE_EVERY;
                    let state = state.clone();
                    let _ = tokio::task::spawn_blocking(move || state.purge(lore_core::db::now())).await;
                }
            }
        });
    }

    /// An event of `endpoint` for `caller` (who holds the credential: for an agent acting for a
    /// customer, the agent), to be filled in and [`record`](Self::record)ed.
    pub fn event(&self, caller: &Caller, endpoint: Endpoint, kind: &str) -> UsageEvent {
        UsageEvent {
            role: caller.role.as_str().to_owned(),
            departments: caller.departments.clone(),
            credential: caller.method.label().to_owned(),
            key_id: caller.key_id().map(str::to_owned),
            ..UsageEvent::new(endpoint, &caller.user, kind)
        }
    }

    /// The category of a question by its query vector (`None` when none are configured).
    pub fn category(&self, query_vector: &[f32]) -> Option<String> {
        (!self.categories.is_empty() && !query_vector.is_empty())
            .then(|| self.categories.classify(query_vector).0.to_owned())
    }

    /// Queues a question for the knowledge-gap report.
    pub fn gap(&self, work: GapWork) {
        let _ = self.gap_work.send(work);
    }

    /// Checks the caller's rate limits (after authentication, before the handler).
    pub fn check_rate(&self, caller: &Caller, origin: Option<&str>) -> Result<(), ApiError> {
        let subject = Subject { key_id: caller.key_id(), user: &caller.user, public: caller.is_public(), origin };
        self.limiter.check(&subject).map_err(|limited| ApiError::RateLimited {
            limit: limited.limit,
            retry_after_secs: limited.retry_after_secs(),
        })
    }
}

impl AppState {
    /// Writes a usage event (in the background) and counts it in the metrics; its ids go on
    /// the request's trace span.
    pub fn meter(&self, event: UsageEvent) {
        let span = tracing::Span::current();
        span.record("usage.event_id", event.id.as_str());
        if let Some(conversation) = &event.conversation_id {
            span.record("conversation.id", conversation.as_str());
        }
        if let Some(message) = event.message_id {
            span.record("message.id", message);
        }
        self.metrics.count_event(event.endpoint.as_str(), &event.departments, &event.kind);
        self.usage.recorder.record(event);
    }

    /// Admits a chat of `caller` against their budgets with the most it can cost; soft
    /// limits crossed for the first time this period are audited.
    pub fn admit_chat(&self, caller: &Caller, question: &str, earlier: Option<&str>) -> Result<Admission, ApiError> {
        let estimate = if self.chat.has_providers() {
            let (prompt, completion) = self.chat.token_bound(question, earlier);
            Amount { tokens: prompt + completion, cost: self.config.usage.max_cost(prompt, completion) }
        } else {
            Amount { tokens: 0, cost: 0.0 }
        };
        let who = Who { user: &caller.user, key_id: caller.key_id(), departments: &caller.departments };
        let admission = self.usage.ledger.admit(&who, estimate, lore_usage::now_ms())?;
        for warning in admission.warnings.iter().filter(|w| w.crossed_now) {
            self.metrics.count_budget_warning();
            self.audit_caller(
                caller,
                "budget.soft_limit",
                Some(&warning.budget_id),
                Outcome::Ok,
                serde_json::json!({ "spent": warning.spent, "soft_limit": warning.soft_limit }),
            );
            self.webhooks.emit(
                "budget.threshold",
                serde_json::json!({ "budget_id": warning.budget_id, "spent": warning.spent, "soft_limit": warning.soft_limit }),
            );
        }
        if let Decision::Refuse(exceeded) | Decision::Degrade(exceeded) = &admission.decision {
            self.metrics.count_budget_exceeded();
            // At most once a minute per caller and budget, like other refusals.
            if self.denials.should_record(&caller.actor(), "budget.hard_limit", &exceeded.budget.id) {
                self.audit_caller(
                    caller,
                    "budget.hard_limit",
                    Some(&exceeded.budget.id),
                    Outcome::Denied,
                    serde_json::json!({ "spent": exceeded.spent, "on_hard": exceeded.budget.on_hard }),
                );
            }
        }
        Ok(admission)
    }
}

/// Default reporting window of the analytics when no start is given.
pub const DEFAULT_WINDOW_DAYS: i64 = 30;

/// The parameters of a usage report as the API and `lore usage` take them; `names` says how
/// the caller spells `from` and `to` (`` `from` `` or `--from`), so errors name what was wrong.
/// `[from, to)` in Unix milliseconds: `to` defaults to now, `from` to 30 days before `to`.
pub fn report_window(from: Option<&str>, to: Option<&str>, names: [&str; 2]) -> Result<(i64, i64), String> {
    let to_ms = to.map(|t| time_param(t, names[1])).transpose()?.unwrap_or_else(lore_usage::now_ms);
    let from_ms = from
        .map(|t| time_param(t, names[0]))
        .transpose()?
        .unwrap_or(to_ms - DEFAULT_WINDOW_DAYS * lore_usage::DAY_SECS * 1000);
    if from_ms >= to_ms {
        return Err(format!("{} must be before {}", names[0], names[1]));
    }
    Ok((from_ms, to_ms))
}

/// An RFC 3339 time or a date (UTC) in Unix milliseconds; the error names the parameter.
pub fn time_param(text: &str, name: &str) -> Result<i64, String> {
    lore_core::db::parse_rfc3339(text)
        .map(|secs| secs * 1000)
        .ok_or_else(|| format!("{name} must be an RFC 3339 time or a date (YYYY-MM-DD), not {text:?}"))
}

/// A report grouping by name; the error names the parameter and lists the groupings.
pub fn group_by(text: &str, name: &str) -> Result<lore_usage::analytics::GroupBy, String> {
    use lore_usage::analytics::GroupBy;
    GroupBy::parse(text).ok_or_else(|| {
        let names: Vec<&str> = GroupBy::ALL.iter().map(|g| g.as_str()).collect();
        format!("{name} must be one of {}", names.join(", "))
    })
}

/// How soon a running server sees budgets changed by `lore budgets`.
pub const BUDGET_RELOAD: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the retention purge runs.
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// How long after start the first purge runs.
const PURGE_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// The `Lore-Budget-Warning` header: the budgets past their soft limit, by id.
pub const BUDGET_WARNING_HEADER: &str = "lore-budget-warning";

/// The ISO time a budget resets, and the seconds until then (for `Retry-After`).
pub fn budget_exceeded(exceeded: &lore_usage::budgets::Exceeded) -> ApiError {
    let now = lore_usage::now_ms();
    ApiError::BudgetExceeded {
        budget: exceeded.budget.id.clone(),
        resets_at: lore_core::db::rfc3339(exceeded.resets_at_ms.div_euclid(1000)),
        retry_after_secs: ((exceeded.resets_at_ms - now).max(1000) as u64).div_ceil(1000),
    }
}

/// The collections of cited documents (a citation's `source_path` starts with its collection).
pub fn cited_collections(citations: &[lore_chat::answer::Citation]) -> Vec<String> {
    let mut collections: Vec<String> = citations
        .iter()
        .filter_map(|c| c.source_path.split_once('/').map(|(collection, _)| collection.to_owned()))
        .collect();
    collections.sort();
    collections.dedup();
    collections
}

/// After uploads were indexed: an open gap whose representative question is now answerable
/// for the departments that asked it, with the best passage from one of the `documents` just
/// written, is marked answered by that document. The question is asked as a member of those
/// departments would ask it (`everyone` and their `dept:` principals; an operator scope,
/// logged), so a document its askers may not read does not close it. Runs in a task of its
/// own, after the worker's queue has run dry.
pub async fn recheck_gaps(state: Arc<AppState>, documents: Vec<String>) {
    let open = match state.usage.gaps.open_representatives() {
        Ok(open) => open,
        Err(error) => return tracing::error!(%error, "knowledge gaps: cannot list open gaps"),
    };
    for (id, question) in open {
        if let Err(error) = recheck_gap(&state, &documents, &id, &question).await {
            tracing::warn!(%error, gap = %id, "knowledge gaps: re-check failed");
        }
    }
}

async fn recheck_gap(state: &AppState, documents: &[String], id: &str, question: &str) -> Result<(), ApiError> {
    let Some(gap) = state.usage.gaps.get(id)? else { return Ok(()) };
    let principals = lore_core::acl::PrincipalSet::for_user("lore:gap-recheck", &[], &gap.departments)?;
    let scope = lore_core::acl::AccessScope::impersonate_for_operator(principals, "knowledge gaps: re-check");
    let retrieved = state.retriever.hybrid(question, &scope, state.config.chat.context_passages).await?;
    let Some(best) = retrieved.passages.first().map(|p| p.document.id.clone()) else { return Ok(()) };
    if !documents.contains(&best) {
        return Ok(());
    }
    let evidence = state.chat.evidence(question, &retrieved).await?;
    if evidence.answerable() {
        state.usage.gaps.set_status(id, lore_usage::gaps::GapStatus::Answered, Some(&best))?;
    }
    Ok(())
}

/// Adds questions to the gap report one at a time, embedding those that came without a vector.
async fn gap_worker(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<GapWork>,
    retriever: Arc<Retriever>,
    gaps: Arc<GapStore>,
) {
    while let Some(work) = queue.recv().await {
        let vector = match work.vector {
            Some(vector) => vector,
            None => match retriever.embed_queries(vec![work.question.clone()]).await {
                Ok(mut vectors) => vectors.pop().unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(%error, "knowledge gaps: cannot embed a question");
                    continue;
                }
            },
        };
        let input = GapInput {
            question: work.question,
            vector,
            departments: work.departments,
            reason: work.reason,
            time_ms: lore_usage::now_ms(),
            event_id: work.event_id,
        };
        let gaps = gaps.clone();
        match tokio::task::spawn_blocking(move || gaps.add(&input)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "knowledge gaps: cannot record a question"),
            Err(error) => tracing::error!(%error, "knowledge gaps: task failed"),
        }
    }
}

/// A chat's DLP report as its usage event holds it.
pub fn dlp_counts(report: &lore_chat::provider::DlpReport) -> lore_usage::DlpCounts {
    let widen = |counts: &std::collections::BTreeMap<String, usize>| {
        counts.iter().map(|(kind, &n)| (kind.clone(), n as u64)).collect()
    };
    lore_usage::DlpCounts { redacted: widen(&report.redacted), blocked: widen(&report.blocked) }
}

/// One audit entry for a chat whose prompts DLP changed or stopped: the counts per kind, the
/// usage event and the message, never the values.
pub fn audit_dlp(state: &AppState, caller: &Caller, event: &UsageEvent, message_id: Option<i64>) {
    if event.dlp.is_empty() {
        return;
    }
    let action = if event.dlp.blocked.is_empty() { "dlp.redacted" } else { "dlp.blocked" };
    let detail = serde_json::json!({
        "redacted": event.dlp.redacted, "blocked": event.dlp.blocked,
        "usage_event": event.id, "message_id": message_id, "provider": event.provider,
    });
    state.audit_caller(caller, action, event.provider.as_deref(), lore_core::audit::Outcome::Ok, detail);
}
