//! The servers tests share: the sample corpus with three agents (`samples`), a company of
//! roles, departments and collections with an identity provider (`roles`), and a small
//! handbook for tests that mutate what they read (`handbook`, one per test).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use lore_core::config::ApiKeyConfig;
use lore_core::keys::NewKey;
use lore_core::role::Role;
use lore_identity::testing::TestIdp;
use lore_server::http::new_api_key;

use super::client::upload;
use super::{Setup, TestServer, block_on};

/// (user, key, groups) of agent keys declared in the configuration, one per user.
pub type Agents = Vec<(String, String, Vec<String>)>;

/// Declares an agent key for each `(user, groups)` in `setup`'s configuration.
pub fn agents(setup: &mut Setup, users: Vec<(String, Vec<String>)>) -> Agents {
    let mut keys = Vec::new();
    for (user, groups) in users {
        let (key, sha256) = new_api_key();
        setup.config.server.api_keys.push(ApiKeyConfig {
            name: format!("key-{user}"),
            sha256,
            role: Role::Agent,
            user: user.clone(),
            groups: groups.clone(),
            departments: vec![],
        });
        keys.push((user, key, groups));
    }
    keys
}

pub struct Samples {
    pub addr: SocketAddr,
    _server: TestServer,
    pub agents: Agents,
}

impl Samples {
    pub fn key_of(&self, user: &str) -> String {
        self.agents.iter().find(|(u, _, _)| u == user).unwrap().1.clone()
    }
}

/// A request with a raw body to the samples server; the status and the JSON (`null` when the body is not JSON).
pub async fn post(server: &Samples, key: Option<&str>, path: &str, body: String) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut request =
        client.post(format!("http://{}{path}", server.addr)).header("content-type", "application/json").body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

/// The sample corpus, served to alice (hr), dana (sales) and carlos (no group).
pub fn samples() -> &'static Samples {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut setup = Setup::new().with_samples();
        let agents = agents(
            &mut setup,
            vec![
                ("alice@acme.example".into(), vec!["hr".into()]),
                ("dana@acme.example".into(), vec!["sales".into()]),
                ("carlos@acme.example".into(), vec![]),
            ],
        );
        let server = setup.start();
        Samples { addr: server.addr, _server: server, agents }
    })
}

pub struct Roles {
    pub addr: SocketAddr,
    pub server: TestServer,
    pub keys: HashMap<&'static str, String>,
    pub idp: Arc<TestIdp>,
    /// Document ids by path in the `hr` and `admin-only` collections.
    pub hr_docs: HashMap<String, String>,
    /// A job an admin created at setup.
    pub admin_job: String,
    /// A key only the role matrix revokes.
    pub sacrificial_key: String,
}

const HR_FILES: [(&str, &str); 4] = [
    ("policy.md", "# Parental leave\n\nEmployees get sixteen weeks of paid parental leave, bookable in two blocks."),
    ("matrix-delete-km.md", "# Old notice\n\nThe cafeteria closes early on Fridays during the summer."),
    ("matrix-replace.md", "# Dress code\n\nBusiness casual is expected in client meetings."),
    ("matrix-patch.md", "# Lockers\n\nLockers are assigned by the facilities team on request."),
];

/// The sample corpus plus an `hr` collection (department hr), an `admin-only` collection (no
/// department: only admins manage it), an `eng` collection (department engineering) and an
/// empty collection; a key per role, SSO through a loopback identity provider.
pub fn roles() -> &'static Roles {
    static ROLES: OnceLock<Roles> = OnceLock::new();
    ROLES.get_or_init(|| {
        let idp = Arc::new(block_on(TestIdp::start));
        let mut setup = Setup::new().with_samples();
        setup.config.auth.oidc = Some(idp.oidc_config());
        setup.config.auth.roles.admin = vec!["it-admins".into()];
        setup.config.auth.roles.knowledge_manager = vec!["hr-km".into()];
        setup.config.ingest.max_file_bytes = 300_000;
        let hr = setup.folder("hr-docs");
        for (name, text) in HR_FILES {
            std::fs::write(hr.join(name), text).unwrap();
        }
        let admin_only = setup.folder("admin-docs");
        std::fs::write(
            admin_only.join("matrix-delete-admin.md"),
            "# Old memo\n\nThe parking garage is repainted in October.",
        )
        .unwrap();
        let eng = setup.folder("eng-docs");
        std::fs::write(
            eng.join("oncall.md"),
            "# On-call\n\nThe on-call engineer answers pages within fifteen minutes.",
        )
        .unwrap();
        let server = setup
            .source("hr", hr, &["group:hr"], Some("hr"))
            .source("admin-only", admin_only, &["group:hr"], None)
            .source("eng", eng, &["group:engineering"], Some("engineering"))
            .start();
        let mut hr_docs = server.documents_of("hr");
        hr_docs.extend(server.documents_of("admin-only"));
        let store = server.state.identity.keys.store().unwrap().clone();
        let key = |name: &str, role: Role, groups: &[&str], department: Option<&str>| {
            store
                .create(&NewKey {
                    groups: groups.iter().map(|g| g.to_string()).collect(),
                    department: department.map(str::to_owned),
                    ..NewKey::new(name, role, &format!("{name}-user"), "test")
                })
                .unwrap()
                .0
        };
        let mut keys = HashMap::new();
        keys.insert("employee", key("employee", Role::Employee, &["hr"], None));
        keys.insert("agent", key("agent", Role::Agent, &["hr", "support"], None));
        keys.insert("km_hr", key("km_hr", Role::KnowledgeManager, &["hr"], Some("hr")));
        keys.insert("km_eng", key("km_eng", Role::KnowledgeManager, &["hr"], Some("engineering")));
        keys.insert("km_eng_only", key("km_eng_only", Role::KnowledgeManager, &[], Some("engineering")));
        keys.insert("admin", key("admin", Role::Admin, &["hr"], None));
        keys.insert("nobody", key("nobody", Role::Employee, &[], None));
        let (public, _) = store.create(&NewKey::public("intranet-page", "test")).unwrap();
        keys.insert("public", public);
        let (_, sacrificial) = store.create(&NewKey::new("to-revoke", Role::Agent, "x", "test")).unwrap();
        server
            .state
            .catalog()
            .create_collection(&lore_core::types::Collection {
                id: "empty".into(),
                name: "empty".into(),
                department: None,
                default_acl: None,
                created_at: String::new(),
            })
            .unwrap();
        // A job created by an admin, for the matrix's GET /v1/jobs/{id}.
        let (addr, admin) = (server.addr, keys["admin"].clone());
        let job = block_on(move || async move {
            upload(addr, &admin, "hr", "admin-setup.md", b"# Setup\n\nA note.".to_vec(), &[]).await
        });
        assert_eq!(job.0, 202, "{}", job.1);
        let admin_job = job.1["job"]["id"].as_str().unwrap().to_owned();
        Roles { addr, server, keys, idp, hr_docs, admin_job, sacrificial_key: sacrificial.id }
    })
}

pub struct Handbook {
    pub addr: SocketAddr,
    pub admin: String,
    pub employee: String,
    /// A document for ACL changes.
    pub acl_doc: String,
    _server: TestServer,
}

/// A fresh server with a two-document `handbook` collection (department hr, shared with
/// everyone), an admin key and an employee key.
pub fn handbook() -> Handbook {
    let setup = Setup::new();
    let folder = setup.folder("good");
    std::fs::write(folder.join("leave.md"), "# Leave\n\nEmployees get twenty-five vacation days a year.").unwrap();
    std::fs::write(folder.join("parking.md"), "# Parking\n\nThe garage on Elm Street opens at seven.").unwrap();
    let server = setup.source("handbook", folder, &["everyone"], Some("hr")).start();
    let store = server.state.identity.keys.store().unwrap().clone();
    let (admin, _) = store.create(&NewKey::new("admin", Role::Admin, "admin-user", "test")).unwrap();
    let (employee, _) = store.create(&NewKey::new("employee", Role::Employee, "emp", "test")).unwrap();
    let ids = server.documents_of("handbook");
    Handbook { addr: server.addr, admin, employee, acl_doc: ids["leave.md"].clone(), _server: server }
}

/// A public key created through the roles server's API; its secret and id.
pub async fn new_public_key(addr: SocketAddr, name: &str) -> (String, String) {
    let admin = &roles().keys["admin"];
    let body = serde_json::json!({"name": name, "role": "employee", "public": true});
    let (status, created) = super::client::call(addr, "POST", "/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    (created["key"].as_str().unwrap().to_owned(), created["info"]["id"].as_str().unwrap().to_owned())
}
