//! Principals, document ACLs and the access scope every search must carry.
//!
//! Deny by default: a document is visible to a caller only when the document's ACL and the
//! caller's principal set intersect. There is no "public unless said otherwise": a document
//! without an ACL is rejected at ingest, and `everyone` must be named explicitly.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One principal: `everyone`, `user:<id>`, `group:<name>` or `dept:<name>`.
///
/// Principals are case-sensitive opaque ids after the prefix (identity providers differ on
/// case rules, so we never fold case silently) and may not contain whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Principal(String);

pub const EVERYONE: &str = "everyone";
const PREFIXES: [&str; 3] = ["user:", "group:", "dept:"];

impl Principal {
    pub fn everyone() -> Self {
        Principal(EVERYONE.to_owned())
    }
    pub fn user(id: &str) -> Result<Self> {
        format!("user:{id}").parse()
    }
    pub fn group(name: &str) -> Result<Self> {
        format!("group:{name}").parse()
    }
    pub fn dept(name: &str) -> Result<Self> {
        format!("dept:{name}").parse()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Principal {
    type Err = Error;
    fn from_str(raw: &str) -> Result<Self> {
        let valid = raw == EVERYONE
            || PREFIXES.iter().any(|prefix| {
                raw.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && !rest.chars().any(char::is_whitespace))
            });
        if valid { Ok(Principal(raw.to_owned())) } else { Err(Error::InvalidPrincipal(raw.to_owned())) }
    }
}

impl TryFrom<String> for Principal {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self> {
        raw.parse()
    }
}

impl From<Principal> for String {
    fn from(principal: Principal) -> String {
        principal.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The non-empty set of principals allowed to read a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Principal>", into = "Vec<Principal>")]
pub struct Acl(BTreeSet<Principal>);

impl Acl {
    pub fn new(principals: impl IntoIterator<Item = Principal>) -> Result<Self> {
        let set: BTreeSet<Principal> = principals.into_iter().collect();
        if set.is_empty() { Err(Error::EmptyAcl) } else { Ok(Acl(set)) }
    }
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self> {
        Self::new(raw.iter().map(|s| s.as_ref().trim().parse()).collect::<Result<Vec<_>>>()?)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Principal> {
        self.0.iter()
    }
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|p| p.0.clone()).collect()
    }
    /// Whether a caller holding `principals` may read a document with this ACL.
    pub fn permits(&self, principals: &PrincipalSet) -> bool {
        self.0.iter().any(|p| principals.0.contains(p))
    }
}

impl TryFrom<Vec<Principal>> for Acl {
    type Error = Error;
    fn try_from(principals: Vec<Principal>) -> Result<Self> {
        Acl::new(principals)
    }
}

impl From<Acl> for Vec<Principal> {
    fn from(acl: Acl) -> Self {
        acl.0.into_iter().collect()
    }
}

/// The principals a caller holds. Always includes `everyone` and the caller's own `user:`
/// principal when built with [`PrincipalSet::for_user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalSet(BTreeSet<Principal>);

impl PrincipalSet {
    /// The principals of an identified user: `user:<id>`, `everyone`, and the given groups
    /// and departments.
    pub fn for_user(user_id: &str, groups: &[String], departments: &[String]) -> Result<Self> {
        let mut set = BTreeSet::from([Principal::everyone(), Principal::user(user_id)?]);
        for group in groups {
            set.insert(Principal::group(group)?);
        }
        for dept in departments {
            set.insert(Principal::dept(dept)?);
        }
        Ok(PrincipalSet(set))
    }
    /// An explicit principal list, e.g. from an API key's configured scope.
    pub fn from_principals(principals: impl IntoIterator<Item = Principal>) -> Self {
        PrincipalSet(principals.into_iter().collect())
    }
    pub fn iter(&self) -> impl Iterator<Item = &Principal> {
        self.0.iter()
    }
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|p| p.0.clone()).collect()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Whether `self` holds no principal that `wider` lacks (used when an agent narrows
    /// its scope to an end customer's).
    pub fn is_subset_of(&self, wider: &PrincipalSet) -> bool {
        self.0.is_subset(&wider.0)
    }
}

/// What a search may see. Every retrieval call takes one; there is no search API without it.
///
/// `Principals` is the normal case and is translated into a filter inside each engine (a
/// payload filter in Qdrant, a filter clause in Tantivy), so the top-k is filled with
/// permitted chunks only. `Unrestricted` exists for admin tooling (consistency checks,
/// `lore status`) and must be spelled out with a reason, which is logged.
#[derive(Debug, Clone)]
pub struct AccessScope(ScopeKind, Option<std::sync::Arc<Vec<String>>>);

#[derive(Debug, Clone)]
pub(crate) enum ScopeKind {
    Principals(PrincipalSet),
    Unrestricted { reason: &'static str },
}

impl AccessScope {
    /// The scope of a caller whose principals the auth layer established. Only
    /// [`crate::auth`] calls this.
    pub(crate) fn principals(principals: PrincipalSet) -> Self {
        AccessScope(ScopeKind::Principals(principals), None)
    }
    /// Acts as the given principals without an authenticated request: the operator's CLI
    /// (`lore search --as`, `lore ask --as`), benchmarks and tests. Named and logged so it
    /// stands out in review; request handlers use [`crate::auth`].
    pub fn impersonate_for_operator(principals: PrincipalSet, reason: &'static str) -> Self {
        tracing::info!(reason, principals = ?principals.to_strings(), "operator impersonation");
        AccessScope(ScopeKind::Principals(principals), None)
    }
    /// Bypass the ACL filter. Admin tooling only; the reason is logged on every use.
    pub fn unrestricted_for_admin_tooling(reason: &'static str) -> Self {
        tracing::info!(reason, "unrestricted index access");
        AccessScope(ScopeKind::Unrestricted { reason }, None)
    }
    /// The same scope limited to these documents (e.g. the documents of the collections a
    /// widget asks about). It can only narrow: the ACL filter still applies, and an existing
    /// restriction is intersected.
    pub fn within_documents(&self, doc_ids: Vec<String>) -> Self {
        let ids = match &self.1 {
            Some(existing) => doc_ids.into_iter().filter(|id| existing.contains(id)).collect(),
            None => doc_ids,
        };
        AccessScope(self.0.clone(), Some(std::sync::Arc::new(ids)))
    }
    /// The documents a search is limited to, if any (an empty list means nothing).
    pub fn document_restriction(&self) -> Option<&[String]> {
        self.1.as_deref().map(Vec::as_slice)
    }
    /// The principal strings a filter must match, or `None` for an unrestricted scope.
    /// An empty list means the caller can see nothing.
    pub fn filter_principals(&self) -> Option<Vec<String>> {
        match &self.0 {
            ScopeKind::Principals(set) => Some(set.to_strings()),
            ScopeKind::Unrestricted { reason } => {
                tracing::debug!(reason, "search without ACL filter");
                None
            }
        }
    }
    /// Whether a chunk with this ACL is inside the scope (used to double-check results).
    pub fn permits(&self, acl: &[String]) -> bool {
        match &self.0 {
            _ if self.1.as_ref().is_some_and(|ids| ids.is_empty()) => false,
            ScopeKind::Principals(set) => acl.iter().any(|a| set.0.iter().any(|p| p.0 == *a)),
            ScopeKind::Unrestricted { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_validated() {
        for good in ["everyone", "user:alice@acme.com", "group:hr", "dept:sales"] {
            assert!(good.parse::<Principal>().is_ok(), "{good}");
        }
        for bad in ["", "Everyone", "user:", "hr", "group:h r", "role:admin", " group:hr"] {
            assert!(bad.parse::<Principal>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_acl_is_rejected() {
        assert!(matches!(Acl::parse::<&str>(&[]), Err(Error::EmptyAcl)));
        assert!(serde_json::from_str::<Acl>("[]").is_err());
        assert!(serde_json::from_str::<Acl>(r#"["group:hr"]"#).is_ok());
    }

    #[test]
    fn permits_requires_intersection() {
        let acl = Acl::parse(&["group:hr"]).unwrap();
        let alice = PrincipalSet::for_user("alice", &["hr".into()], &[]).unwrap();
        let bob = PrincipalSet::for_user("bob", &["sales".into()], &[]).unwrap();
        assert!(acl.permits(&alice));
        assert!(!acl.permits(&bob));
        assert!(Acl::parse(&["everyone"]).unwrap().permits(&bob));
        assert!(!acl.permits(&PrincipalSet::from_principals([])));
    }
}
