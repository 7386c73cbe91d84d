//! Who may do what, in one place. Reads of documents follow the document's ACL, plus the
//! collection's managers (admins, and knowledge managers of the owning department), who see
//! everything they curate. Writes need a manager. A document the caller may not see is
//! reported as not found, so its existence does not leak; a refused action on something the
//! caller can see is a 403, audited as `access.denied`.

use lore_core::audit::Outcome;
use lore_core::auth::Caller;
use lore_core::role::Role;
use lore_core::types::{Collection, DocumentRecord};

use super::error::ApiError;
use crate::state::AppState;

pub fn deny(state: &AppState, caller: &Caller, action: &str, target: Option<&str>, message: &str) -> ApiError {
    state.audit_caller(caller, "access.denied", target, Outcome::Denied, serde_json::json!({ "attempted": action }));
    ApiError::Forbidden(message.to_owned())
}

/// A refusal answered as "not found", so the thing's existence does not leak: audited as
/// `access.denied` like every refusal, at most once a minute per caller, action and target,
/// so probing many times cannot flood the log.
pub fn hidden(state: &AppState, caller: &Caller, action: &str, target: &str, error: ApiError) -> ApiError {
    if state.denials.should_record(&caller.actor(), action, target) {
        state.audit_caller(
            caller,
            "access.denied",
            Some(target),
            Outcome::Denied,
            serde_json::json!({ "attempted": action, "answered": error.code() }),
        );
    }
    error
}

/// Remembers which hidden refusals were audited recently (bounded: forgets everything when
/// full, which at worst records a repeat early).
#[derive(Default)]
pub struct DenialLimiter {
    seen: std::sync::Mutex<std::collections::HashMap<(String, String, String), std::time::Instant>>,
}

impl DenialLimiter {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
    const CAPACITY: usize = 10_000;

    pub fn should_record(&self, actor: &str, action: &str, target: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let key = (actor.to_owned(), action.to_owned(), target.to_owned());
        if seen.get(&key).is_some_and(|at| now.duration_since(*at) < Self::INTERVAL) {
            return false;
        }
        if seen.len() >= Self::CAPACITY {
            seen.retain(|_, at| now.duration_since(*at) < Self::INTERVAL);
            if seen.len() >= Self::CAPACITY {
                seen.clear();
            }
        }
        seen.insert(key, now);
        true
    }
}

pub fn require_admin(state: &AppState, caller: &Caller, action: &str, target: Option<&str>) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(deny(state, caller, action, target, "this action needs the admin role"))
    }
}

/// Admins and knowledge managers (of any department): who may see the lists of what they
/// manage.
pub fn require_manager_role(state: &AppState, caller: &Caller, action: &str) -> Result<(), ApiError> {
    if matches!(caller.role, Role::Admin | Role::KnowledgeManager) {
        Ok(())
    } else {
        Err(deny(state, caller, action, None, "knowledge managers and admins only"))
    }
}

/// Which departments' usage the caller may read: everything for admins (`None`), their own
/// departments for knowledge managers (none at all for one without a department), and
/// nothing for anyone else (403, audited).
pub fn analytics_scope(state: &AppState, caller: &Caller, action: &str) -> Result<Option<Vec<String>>, ApiError> {
    require_manager_role(state, caller, action)?;
    Ok((!caller.is_admin()).then(|| caller.departments.clone()))
}

pub fn collection(state: &AppState, id: &str) -> Result<Collection, ApiError> {
    state.catalog().collection(id)?.ok_or(ApiError::CollectionNotFound)
}

pub fn require_manager(
    state: &AppState,
    caller: &Caller,
    collection: &Collection,
    action: &str,
) -> Result<(), ApiError> {
    if caller.manages(collection.department.as_deref()) {
        Ok(())
    } else {
        Err(deny(
            state,
            caller,
            action,
            Some(&collection.id),
            "only admins and knowledge managers of the collection's department may change its documents",
        ))
    }
}

/// A collection whose documents the caller may change. To a caller who may not, a collection
/// they can read nothing of is "not found" like an unknown id (audited), so ids cannot be
/// probed; one they can read from is a 403.
pub fn managed_collection(state: &AppState, caller: &Caller, id: &str, action: &str) -> Result<Collection, ApiError> {
    let collection = collection(state, id)?;
    if caller.manages(collection.department.as_deref()) {
        return Ok(collection);
    }
    if !reads_some(state, caller, &collection)? {
        return Err(hidden(state, caller, action, id, ApiError::CollectionNotFound));
    }
    require_manager(state, caller, &collection, action)?;
    Ok(collection)
}

/// Whether the caller may read at least one document of a collection.
pub fn reads_some(state: &AppState, caller: &Caller, collection: &Collection) -> Result<bool, ApiError> {
    let page =
        state.catalog().documents_page(&collection.id, None, 1, |doc| can_read(caller, doc, Some(collection)))?;
    Ok(!page.is_empty())
}

/// Whether the caller manages the collection with this id; admins do even when it no longer
/// exists.
pub fn manages_collection(state: &AppState, caller: &Caller, id: &str) -> Result<bool, ApiError> {
    let manages = state.catalog().collection(id)?.is_some_and(|c| caller.manages(c.department.as_deref()));
    Ok(manages || caller.is_admin())
}

pub fn can_read(caller: &Caller, document: &DocumentRecord, collection: Option<&Collection>) -> bool {
    caller.scope.permits(&document.acl.to_strings())
        || collection.is_some_and(|c| caller.manages(c.department.as_deref()))
}

/// Whether the caller may read a document (a check, not a request: nothing is audited).
pub fn may_read_document(state: &AppState, caller: &Caller, id: &str) -> bool {
    let catalog = state.catalog();
    let Ok(Some(document)) = catalog.document(id) else { return false };
    let collection = catalog.collection(&document.source).ok().flatten();
    can_read(caller, &document, collection.as_ref())
}

/// A document the caller may read, with its collection; not found otherwise (and the
/// refusal audited when the document exists).
pub fn readable_document(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(DocumentRecord, Option<Collection>), ApiError> {
    let catalog = state.catalog();
    let document = catalog.document(id)?.ok_or(ApiError::DocumentNotFound)?;
    let collection = catalog.collection(&document.source)?;
    if can_read(caller, &document, collection.as_ref()) {
        Ok((document, collection))
    } else {
        drop(catalog);
        Err(hidden(state, caller, "document.read", id, ApiError::DocumentNotFound))
    }
}

/// A document the caller may change: not found if they cannot see it, forbidden if they can
/// see but not manage it.
pub fn managed_document(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: &str,
) -> Result<(DocumentRecord, Collection), ApiError> {
    let (document, collection) = readable_document(state, caller, id)?;
    let collection = match collection {
        Some(c) => c,
        None if caller.is_admin() => Collection {
            id: document.source.clone(),
            name: document.source.clone(),
            department: None,
            default_acl: None,
            created_at: String::new(),
        },
        None => {
            return Err(deny(state, caller, action, Some(id), "only admins may change documents outside collections"));
        }
    };
    require_manager(state, caller, &collection, action)?;
    Ok((document, collection))
}
