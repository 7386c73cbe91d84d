//! What Lore keeps about people (issue 16): a person's export and erasure, and the retention
//! purge the maintenance task runs hourly.
//!
//! Erasure deletes what is about the person and only theirs — conversations, votes with the
//! exchanges they snapshot, reviews of their answers, the questions the knowledge-gap report
//! kept from their usage — and
//! pseudonymises what others' numbers are made of: usage events get a random `erased:`
//! pseudonym (so totals and distinct-user counts survive), and the audit log forgets the name
//! behind the person's pseudonym (its hash chain covers pseudonyms, so it still verifies).

use serde::Serialize;

use crate::http::error::ApiError;
use crate::state::AppState;

/// What an erasure removed or pseudonymised.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub conversations: usize,
    pub feedback: usize,
    pub usage_events: usize,
    pub gap_questions: usize,
    /// Reviews the person asked for.
    pub reviews: usize,
    /// The pseudonym their usage events now carry.
    pub usage_pseudonym: Option<String>,
    /// The pseudonym their audit events keep, no longer linked to them.
    pub audit_pseudonym: Option<String>,
}

/// Everything Lore holds about `user` (the person; `actor` is how the audit log names them).
pub fn export(state: &AppState, user: &str, actor: &str) -> Result<serde_json::Value, ApiError> {
    let conversations = {
        let store = state.chat.conversations();
        let mut all = Vec::new();
        for summary in store.list(user)? {
            let messages = store.messages(&summary.id, user)?.unwrap_or_default();
            all.push(serde_json::json!({ "conversation": summary, "messages": messages }));
        }
        all
    };
    let feedback = state.feedback.of_user(user)?;
    let reviews = state.policy.reviews.of_asker(user)?;
    state.usage.recorder.flush();
    let usage_events = state.usage.store.events_of_user(user)?;
    let mut audit = Vec::new();
    loop {
        let query = lore_core::audit::Query {
            actor: Some(actor.to_owned()),
            after: audit.last().map(|r: &lore_core::audit::Record| r.seq),
            limit: Some(1000),
            ..Default::default()
        };
        let page = state.audit.query(&query)?;
        let done = page.len() < 1000;
        audit.extend(page);
        if done {
            break;
        }
    }
    Ok(serde_json::json!({
        "user": user,
        "exported_at": lore_core::db::rfc3339(lore_core::db::now()),
        "conversations": conversations,
        "feedback": feedback,
        "reviews": reviews,
        "usage_events": usage_events,
        "audit": audit,
    }))
}

/// Erases `user` (see the module documentation). Idempotent: a second erasure finds nothing.
pub fn erase(state: &AppState, user: &str, actor: &str) -> Result<Erasure, ApiError> {
    let conversations = state.chat.conversations().erase_owner(user)?;
    let feedback = state.feedback.erase_user(user)?;
    let reviews = state.policy.reviews.erase_asker(user)?;
    // Events still queued for the writer would escape the pseudonym.
    state.usage.recorder.flush();
    let event_ids: Vec<String> = state.usage.store.events_of_user(user)?.into_iter().map(|e| e.id).collect();
    let gap_questions = state.usage.gaps.erase_questions_of_events(&event_ids)?;
    let (usage_pseudonym, usage_events) = match state.usage.store.pseudonymise_user(user)? {
        Some((pseudonym, events)) => (Some(pseudonym), events),
        None => (None, 0),
    };
    let audit_pseudonym = state.audit.forget_actor(actor)?;
    Ok(Erasure { conversations, feedback, usage_events, gap_questions, reviews, usage_pseudonym, audit_pseudonym })
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Purged {
    pub conversations: usize,
    pub usage_events: usize,
    pub staged_uploads: usize,
    pub expired_verified_answers: usize,
}

impl AppState {
    /// Deletes what is older than `[retention]` and `[usage]` allow, as of `now_secs` (Unix
    /// time; the maintenance task passes the clock, tests their own). A store that fails is
    /// logged and the others still run.
    pub fn purge(&self, now_secs: i64) -> Purged {
        const DAY: i64 = 86_400;
        let retention = &self.config.retention;
        let mut purged = Purged::default();
        if retention.conversations_days > 0 {
            let cutoff = now_secs - i64::from(retention.conversations_days) * DAY;
            match self.chat.conversations().purge_idle_before(cutoff) {
                Ok(n) => purged.conversations = n,
                Err(error) => tracing::error!(%error, "retention: cannot purge conversations"),
            }
        }
        let usage = &self.config.usage;
        match self.usage.store.apply_retention(now_secs * 1000, usage.retention_days, usage.rollup_retention_days) {
            Ok((events, _)) => purged.usage_events = events,
            Err(error) => tracing::error!(%error, "retention: cannot purge usage events"),
        }
        if retention.staged_uploads_days > 0 {
            let cutoff = now_secs - i64::from(retention.staged_uploads_days) * DAY;
            let reason = format!("the upload waited more than {} days (retention)", retention.staged_uploads_days);
            match self.jobs.cancel_queued_before(cutoff, &reason) {
                Ok(jobs) => {
                    for job in &jobs {
                        crate::upload::cancel_job_work(self, job);
                    }
                    purged.staged_uploads = jobs.len();
                }
                Err(error) => tracing::error!(%error, "retention: cannot purge staged uploads"),
            }
        }
        match self.policy.verified.purge_expired(now_secs * 1000) {
            Ok(n) => purged.expired_verified_answers = n,
            Err(error) => tracing::error!(%error, "retention: cannot purge expired verified answers"),
        }
        if purged.conversations + purged.usage_events + purged.staged_uploads + purged.expired_verified_answers > 0 {
            tracing::info!(?purged, "retention purge");
        }
        purged
    }
}
