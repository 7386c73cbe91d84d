//! Who may do what, in one place. Reads of documents follow the document's ACL, plus the
//! collection's managers (admins, and knowledge managers of the owning department), who see
//! everything they curate. Writes need a manager. A document the caller may not see is
//! reported as not found, so its existence does not leak; a refused action on something the
//! caller can see is a 403, audited as `access.denied`.

use lore_core::audit::Outcome;
use lore_core::auth::Caller;
use lore_core::types::{Collection, DocumentRecord};

use super::error::ApiError;
use crate::state::AppState;

pub fn deny(state: &AppState, caller: &Caller, action: &str, target: Option<&str>, message: &str) -> ApiError {
    state.audit_caller(caller, "access.denied", target, Outcome::Denied, serde_json::json!({ "attempted": action }));
    ApiError::Forbidden(message.to_owned())
}

pub fn require_admin(state: &AppState, caller: &Caller, action: &str, target: Option<&str>) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(deny(state, caller, action, target, "this action needs the admin role"))
    }
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

pub fn can_read(caller: &Caller, document: &DocumentRecord, collection: Option<&Collection>) -> bool {
    caller.scope.permits(&document.acl.to_strings())
        || collection.is_some_and(|c| caller.manages(c.department.as_deref()))
}

/// A document the caller may read, with its collection; not found otherwise.
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
        Err(ApiError::DocumentNotFound)
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
