//! Roles and the identity-provider groups that grant them. Configuration, authentication and
//! the key store all read roles; this module depends on none of them.

use serde::{Deserialize, Serialize};

/// What a caller may do. `employee`: ask, own conversations. `agent`: ask over REST, also on
/// behalf of an end customer with a narrower principal set. `knowledge_manager`: manage the
/// documents of their departments' collections. `admin`: everything, keys, settings, audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Employee,
    Agent,
    KnowledgeManager,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Employee, Role::Agent, Role::KnowledgeManager, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Employee => "employee",
            Role::Agent => "agent",
            Role::KnowledgeManager => "knowledge_manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Which identity-provider groups make a signed-in user an admin, knowledge manager or agent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleMap {
    pub admin: Vec<String>,
    pub knowledge_manager: Vec<String>,
    pub agent: Vec<String>,
}

impl RoleMap {
    /// The highest role any of the groups grants.
    pub fn role_for(&self, groups: &[String]) -> Role {
        let member = |list: &[String]| groups.iter().any(|g| list.contains(g));
        if member(&self.admin) {
            Role::Admin
        } else if member(&self.knowledge_manager) {
            Role::KnowledgeManager
        } else if member(&self.agent) {
            Role::Agent
        } else {
            Role::Employee
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_map_picks_the_highest_role() {
        let map = RoleMap { admin: vec!["it".into()], knowledge_manager: vec!["km".into()], agent: vec![] };
        assert_eq!(map.role_for(&["km".into(), "it".into()]), Role::Admin);
        assert_eq!(map.role_for(&["km".into()]), Role::KnowledgeManager);
        assert_eq!(map.role_for(&[]), Role::Employee);
    }
}
