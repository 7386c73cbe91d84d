//! Identity, roles and document management over HTTP on loopback: API keys from the key store,
//! SSO tokens from a loopback OpenID provider, embed tokens, the role matrix, department
//! isolation, the upload → job → index flow, and the audit log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lore_core::config::{Config, Role};
use lore_core::embed::Embedder;
use lore_core::keys::NewKey;
use lore_identity::testing::TestIdp;
use lore_ingest::{IngestOptions, Ingestor, Source, SourceConfig};
use lore_server::AppState;
use serde_json::{Value, json};

use crate::workspace_root;

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub keys: HashMap<&'static str, String>,
    pub idp: Arc<TestIdp>,
    /// Document ids by path in the `hr` and `admin-only` collections.
    pub hr_docs: HashMap<String, String>,
    /// A job an admin created at setup.
    pub admin_job: String,
    /// A key only the role matrix revokes.
    pub sacrificial_key: String,
    _data: tempfile::TempDir,
}

fn embedder() -> Arc<Embedder> {
    static EMBEDDER: OnceLock<Arc<Embedder>> = OnceLock::new();
    EMBEDDER.get_or_init(|| Arc::new(Embedder::load(&Config::default().embedding).unwrap())).clone()
}

const HR_FILES: [(&str, &str); 4] = [
    ("policy.md", "# Parental leave\n\nEmployees get sixteen weeks of paid parental leave, bookable in two blocks."),
    ("matrix-delete-km.md", "# Old notice\n\nThe cafeteria closes early on Fridays during the summer."),
    ("matrix-replace.md", "# Dress code\n\nBusiness casual is expected in client meetings."),
    ("matrix-patch.md", "# Lockers\n\nLockers are assigned by the facilities team on request."),
];

/// The roles the matrix exercises, each an API key. All hold `group:hr`, so a refusal shows as
/// 403 (they can see the HR documents) rather than 404.
/// Refusals come before successes, so a destructive call that succeeds cannot hide a later
/// refusal behind a 404.
const ROLES: [&str; 5] = ["employee", "agent", "km_eng", "km_hr", "admin"];

pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> Server {
    let data = tempfile::tempdir().unwrap();
    let hr = data.path().join("hr-docs");
    let eng = data.path().join("eng-docs");
    std::fs::create_dir_all(&hr).unwrap();
    std::fs::create_dir_all(&eng).unwrap();
    for (name, text) in HR_FILES {
        std::fs::write(hr.join(name), text).unwrap();
    }
    let admin_only = data.path().join("admin-docs");
    std::fs::create_dir_all(&admin_only).unwrap();
    std::fs::write(
        admin_only.join("matrix-delete-admin.md"),
        "# Old memo\n\nThe parking garage is repainted in October.",
    )
    .unwrap();
    std::fs::write(eng.join("oncall.md"), "# On-call\n\nThe on-call engineer answers pages within fifteen minutes.")
        .unwrap();
    let data_dir = data.path().join("data");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let idp = Arc::new(TestIdp::start().await);
            let mut config = crate::config_in(data_dir);
            config.auth.oidc = Some(idp.oidc_config());
            config.auth.roles.admin = vec!["it-admins".into()];
            config.auth.roles.knowledge_manager = vec!["hr-km".into()];
            config.ingest.max_file_bytes = 300_000;
            let mut sources = SourceConfig::load(&workspace_root().join("ingest/samples.toml")).unwrap().sources;
            sources.push(Source {
                name: "hr".into(),
                path: hr,
                default_acl: Some(vec!["group:hr".into()]),
                department: Some("hr".into()),
            });
            // A collection without a department: only admins manage it.
            sources.push(Source {
                name: "admin-only".into(),
                path: admin_only,
                default_acl: Some(vec!["group:hr".into()]),
                department: None,
            });
            sources.push(Source {
                name: "eng".into(),
                path: eng,
                default_acl: Some(vec!["group:engineering".into()]),
                department: Some("engineering".into()),
            });
            let mut ingestor = Ingestor::open(config.clone(), embedder()).await.unwrap();
            let report = ingestor.ingest(&sources, &IngestOptions::default()).await.unwrap();
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            let mut hr_docs: HashMap<String, String> = HashMap::new();
            for collection in ["hr", "admin-only"] {
                for d in ingestor.catalog().documents_of_source(collection).unwrap() {
                    hr_docs.insert(d.path, d.id);
                }
            }
            drop(ingestor);
            let state = AppState::open(config, embedder()).await.unwrap();
            let store = state.identity.keys.store().unwrap().clone();
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
            state
                .catalog()
                .create_collection(&lore_core::types::Collection {
                    id: "empty".into(),
                    name: "empty".into(),
                    department: None,
                    default_acl: None,
                    created_at: String::new(),
                })
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let serving = state.clone();
            tokio::spawn(lore_server::http::serve(listener, serving, std::future::pending()));
            // A job created by an admin, for the matrix's GET /v1/jobs/{id}.
            let job = upload(addr, &keys["admin"], "hr", "admin-setup.md", b"# Setup\n\nA note.".to_vec(), &[]).await;
            assert_eq!(job.0, 202, "{}", job.1);
            let admin_job = job.1["job"]["id"].as_str().unwrap().to_owned();
            sender.send((addr, state, keys, idp, hr_docs, admin_job, sacrificial.id)).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let (addr, state, keys, idp, hr_docs, admin_job, sacrificial_key) = receiver.recv().expect("server started");
    Server { addr, state, keys, idp, hr_docs, admin_job, sacrificial_key, _data: data }
}

pub async fn call(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    call_with(addr, method, path, key, body, &[]).await
}

async fn call_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), format!("http://{addr}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Multipart upload (`POST /v1/collections/{collection}/documents`, or `PUT` to a document when
/// `collection` starts with `/v1/documents/`).
pub async fn upload(
    addr: SocketAddr,
    key: &str,
    collection: &str,
    filename: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()));
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    let client = reqwest::Client::new();
    let request = if collection.starts_with("/v1/documents/") {
        client.put(format!("http://{addr}{collection}"))
    } else {
        client.post(format!("http://{addr}/v1/collections/{collection}/documents"))
    };
    let response = request.bearer_auth(key).multipart(form).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Polls a job until it is indexed, failed or cancelled.
pub async fn wait_for_job(addr: SocketAddr, key: &str, job: &str) -> Value {
    for _ in 0..600 {
        let (status, body) = call(addr, "GET", &format!("/v1/jobs/{job}"), Some(key), None).await;
        assert_eq!(status, 200, "{body}");
        if matches!(body["state"].as_str(), Some("indexed" | "failed" | "cancelled")) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job} did not finish");
}

fn search_paths(body: &Value) -> Vec<String> {
    body["results"].as_array().unwrap().iter().map(|r| r["document"]["path"].as_str().unwrap().to_owned()).collect()
}

/// Every endpoint × every role, allowed or refused, in one table.
#[tokio::test]
async fn role_matrix() {
    let s = server();
    let doc = |path: &str| s.hr_docs[path].clone();
    // (method, path, body per role, expected status for employee, agent, km_hr, km_eng, admin)
    type Body = fn(&str) -> Option<Value>;
    let none: Body = |_| None;
    let rows: Vec<(&str, String, Body, [u16; 5])> = vec![
        ("POST", "/v1/search".into(), |_| Some(json!({"query": "parental leave"})), [200, 200, 200, 200, 200]),
        (
            "POST",
            "/v1/chat".into(),
            |_| Some(json!({"question": "How long is parental leave?"})),
            [200, 200, 200, 200, 200],
        ),
        ("GET", "/v1/conversations".into(), none, [200, 200, 200, 200, 200]),
        ("GET", "/v1/me".into(), none, [200, 200, 200, 200, 200]),
        ("GET", "/v1/collections".into(), none, [403, 403, 200, 200, 200]),
        ("POST", "/v1/collections".into(), |r| Some(json!({"id": format!("new-{r}")})), [403, 403, 403, 403, 201]),
        ("DELETE", "/v1/collections/empty".into(), none, [403, 403, 403, 403, 204]),
        ("GET", "/v1/collections/hr/documents".into(), none, [200, 200, 200, 200, 200]),
        ("GET", format!("/v1/documents/{}", doc("policy.md")), none, [200, 200, 200, 200, 200]),
        (
            "PATCH",
            format!("/v1/documents/{}", doc("matrix-patch.md")),
            |r| Some(json!({"metadata": {"by": r}})),
            [403, 403, 403, 200, 200],
        ),
        ("DELETE", format!("/v1/documents/{}", doc("matrix-delete-km.md")), none, [403, 403, 403, 204, 404]),
        ("DELETE", format!("/v1/documents/{}", doc("matrix-delete-admin.md")), none, [403, 403, 403, 403, 204]),
        ("GET", format!("/v1/jobs/{}", s.admin_job), none, [404, 404, 404, 200, 200]),
        (
            "POST",
            "/v1/keys".into(),
            |r| Some(json!({"name": format!("k-{r}"), "role": "employee", "user": "u"})),
            [403, 403, 403, 403, 201],
        ),
        ("GET", "/v1/keys".into(), none, [403, 403, 403, 403, 200]),
        ("DELETE", format!("/v1/keys/{}", s.sacrificial_key), none, [403, 403, 403, 403, 200]),
        ("GET", "/v1/audit".into(), none, [403, 403, 403, 403, 200]),
        ("GET", "/v1/audit/export".into(), none, [403, 403, 403, 403, 200]),
        (
            "POST",
            "/v1/embed/token".into(),
            |_| Some(json!({"user": "alice", "groups": ["hr"]})),
            [403, 403, 403, 403, 200],
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &rows {
        // Unauthenticated callers get 401 everywhere.
        let (status, _) = call(s.addr, method, path, None, body("anonymous")).await;
        if status != 401 {
            failures.push(format!("{method} {path} as anonymous: {status}, expected 401"));
        }
        for (role, want) in ROLES.iter().zip(expected) {
            let (status, response) = call(s.addr, method, path, Some(&s.keys[role]), body(role)).await;
            if status != *want {
                failures.push(format!("{method} {path} as {role}: {status}, expected {want}: {response}"));
            }
        }
    }
    // Uploads and replacements need a manager of the collection's department.
    for (role, want) in ROLES.iter().zip([403, 403, 403, 202, 202]) {
        let (status, response) = upload(
            s.addr,
            &s.keys[role],
            "hr",
            &format!("matrix-{role}.md"),
            format!("# Note\n\nBy {role}.").into_bytes(),
            &[],
        )
        .await;
        if status != want {
            failures.push(format!("upload as {role}: {status}, expected {want}: {response}"));
        }
        let target = format!("/v1/documents/{}", doc("matrix-replace.md"));
        let (status, response) = upload(
            s.addr,
            &s.keys[role],
            &target,
            "matrix-replace.md",
            format!("# Dress code\n\nVersion by {role}.").into_bytes(),
            &[],
        )
        .await;
        if status != want {
            failures.push(format!("replace as {role}: {status}, expected {want}: {response}"));
        }
    }
    assert!(failures.is_empty(), "role matrix violations:\n{}", failures.join("\n"));

    // Every refusal was audited.
    let (_, denied) = call(s.addr, "GET", "/v1/audit?outcome=denied&limit=1000", Some(&s.keys["admin"]), None).await;
    let denied_actors: Vec<&str> =
        denied["events"].as_array().unwrap().iter().map(|e| e["actor"].as_str().unwrap()).collect();
    for role in ["employee", "agent", "km_eng"] {
        assert!(denied_actors.contains(&format!("{role}-user").as_str()), "no denial audited for {role}");
    }
}

#[tokio::test]
async fn knowledge_managers_cannot_touch_other_departments() {
    let s = server();
    let km = &s.keys["km_eng_only"]; // engineering, without HR access
    let hr_doc = &s.hr_docs["policy.md"];
    for (method, body) in [("GET", None), ("PATCH", Some(json!({"acl": ["everyone"]}))), ("DELETE", None)] {
        let (status, response) = call(s.addr, method, &format!("/v1/documents/{hr_doc}"), Some(km), body).await;
        assert_eq!(status, 404, "{method} on an HR document: {response}");
    }
    // It can read nothing in `hr`: to it, `hr` does not exist (ids cannot be probed).
    let (status, refused) = upload(s.addr, km, "hr", "evil.md", b"# Evil\n\nOverride.".to_vec(), &[]).await;
    assert_eq!((status, refused["code"].as_str()), (404, Some("collection_not_found")), "{refused}");
    let (status, unknown) = upload(s.addr, km, "no-such", "evil.md", b"# Evil\n\nOverride.".to_vec(), &[]).await;
    assert_eq!((status, &unknown), (404, &refused), "the same answer as an unknown collection");
    let (status, list) = call(s.addr, "GET", "/v1/collections/hr/documents", Some(km), None).await;
    assert_eq!((status, list["code"].as_str()), (404, Some("collection_not_found")), "nothing to read: {list}");
    let (status, list) = call(s.addr, "GET", "/v1/collections/hr/documents", Some(&s.keys["km_eng"]), None).await;
    assert_eq!(status, 200);
    assert!(list["pending"].as_array().unwrap().is_empty(), "only managers see pending uploads: {list}");
    // ...but manages their own department's collection, including documents they may not read.
    let (status, list) = call(s.addr, "GET", "/v1/collections/eng/documents", Some(km), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["documents"].as_array().unwrap().len(), 1, "{list}");
    let (status, collections) = call(s.addr, "GET", "/v1/collections", Some(km), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        collections["collections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["eng"]);
    // The HR document is intact.
    let (status, _) = call(s.addr, "GET", &format!("/v1/documents/{hr_doc}"), Some(&s.keys["admin"]), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn agents_narrow_but_never_widen() {
    let s = server();
    let agent = &s.keys["agent"];
    let query = json!({"query": "How many weeks of parental leave?", "limit": 5});
    let (status, own) = call(s.addr, "POST", "/v1/search", Some(agent), Some(query.clone())).await;
    assert_eq!(status, 200);
    assert!(search_paths(&own).contains(&"policy.md".to_owned()), "{own}");

    let mut narrowed = query.clone();
    narrowed["on_behalf_of"] = json!({"user": "customer-7", "principals": ["everyone"]});
    let (status, customer) = call(s.addr, "POST", "/v1/search", Some(agent), Some(narrowed)).await;
    assert_eq!(status, 200, "{customer}");
    assert!(!search_paths(&customer).contains(&"policy.md".to_owned()), "the customer must not see HR: {customer}");

    let mut wider = query.clone();
    wider["on_behalf_of"] = json!({"user": "customer-7", "principals": ["everyone", "group:engineering"]});
    let (status, refused) = call(s.addr, "POST", "/v1/search", Some(agent), Some(wider.clone())).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("scope_widening")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("group:engineering"));
    let mut chat = json!({"question": "parental leave", "on_behalf_of": wider["on_behalf_of"].clone()});
    let (status, _) = call(s.addr, "POST", "/v1/chat", Some(agent), Some(chat.clone())).await;
    assert_eq!(status, 403);
    chat["on_behalf_of"] = json!({"user": "x", "principals": ["everyone"]});
    let (status, _) = call(s.addr, "POST", "/v1/chat", Some(&s.keys["employee"]), Some(chat)).await;
    assert_eq!(status, 403, "employees cannot act on behalf of anyone");
}

#[tokio::test]
async fn public_keys_read_everyone_documents_only() {
    let s = server();
    let public = &s.keys["public"];
    let (status, me) = call(s.addr, "GET", "/v1/me", Some(public), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["principals"], json!(["everyone"]));
    let (status, results) = call(
        s.addr,
        "POST",
        "/v1/search",
        Some(public),
        Some(json!({"query": "salary range engineer parental leave", "limit": 20})),
    )
    .await;
    assert_eq!(status, 200);
    for result in results["results"].as_array().unwrap() {
        let id = result["document"]["id"].as_str().unwrap();
        let acl = s.state.catalog().document(id).unwrap().unwrap().acl.to_strings();
        assert_eq!(acl, ["everyone"], "a public key reached {id}");
    }
    let (status, refused) = call(
        s.addr,
        "POST",
        "/v1/keys",
        Some(&s.keys["admin"]),
        Some(json!({"name": "wide-public", "role": "employee", "user": "p", "public": true, "groups": ["hr"]})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
}

#[tokio::test]
async fn api_keys_are_shown_once_expire_and_revoke() {
    let s = server();
    let admin = &s.keys["admin"];
    let (status, created) = call(
        s.addr,
        "POST",
        "/v1/keys",
        Some(admin),
        Some(json!({"name": "crm", "role": "agent", "user": "crm-bot", "groups": ["support"], "department": "sales", "expires_in_days": 30})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["info"]["id"].as_str().unwrap().to_owned();
    assert!(created["info"]["expires_at"].is_string());
    let (_, me) = call(s.addr, "GET", "/v1/me", Some(&secret), None).await;
    assert_eq!(me["principals"], json!(["dept:sales", "everyone", "group:support", "user:crm-bot"]));
    let (_, listed) = call(s.addr, "GET", "/v1/keys", Some(admin), None).await;
    let entry = listed["keys"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert!(entry["last_used_at"].is_string(), "{entry}");
    assert!(!listed.to_string().contains(&secret), "listing must never show secrets");
    let (status, _) = call(s.addr, "DELETE", &format!("/v1/keys/{id}"), Some(admin), None).await;
    assert_eq!(status, 200);
    let (status, body) = call(s.addr, "GET", "/v1/me", Some(&secret), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    let (_, audit) = call(s.addr, "GET", "/v1/audit?action=auth.failed&limit=1000", Some(admin), None).await;
    assert!(audit.to_string().contains("revoked api key \\\"crm\\\""), "{audit}");
    let (status, _) = call(s.addr, "DELETE", "/v1/keys/key_nope", Some(admin), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn sso_tokens_sign_users_in_with_roles_from_groups() {
    let s = server();
    let idp = &s.idp;
    let token = idp.token_for("sso-alice", &["hr"], &["hr"], 300);
    let (status, me) = call(s.addr, "GET", "/v1/me", Some(&token), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["user"].as_str(), me["role"].as_str(), me["auth"].as_str()),
        (Some("sso-alice"), Some("employee"), Some("sso"))
    );
    assert_eq!(me["principals"], json!(["dept:hr", "everyone", "group:hr", "user:sso-alice"]));
    let (status, _) = call(s.addr, "GET", "/v1/keys", Some(&token), None).await;
    assert_eq!(status, 403);
    let admin = idp.token_for("sso-it", &["it-admins"], &[], 300);
    let (status, _) = call(s.addr, "GET", "/v1/keys", Some(&admin), None).await;
    assert_eq!(status, 200);
    let km = idp.token_for("sso-km", &["hr-km", "hr"], &["hr"], 300);
    let (_, me) = call(s.addr, "GET", "/v1/me", Some(&km), None).await;
    assert_eq!(me["role"], "knowledge_manager");
    let (status, _) = call(
        s.addr,
        "PATCH",
        &format!("/v1/documents/{}", s.hr_docs["matrix-patch.md"]),
        Some(&km),
        Some(json!({"metadata": {"by": "sso"}})),
    )
    .await;
    assert_eq!(status, 200);
    // Refused tokens: expired, wrong audience, tampered.
    let expired = idp.token_for("sso-alice", &["hr"], &[], -600);
    let mut claims = idp.claims_for("sso-alice", 300);
    claims["aud"] = json!("someone-else");
    let wrong_audience = idp.sign(&claims, lore_identity::testing::KeyChoice::Rsa);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = {
        use base64_helper::encode;
        encode(
            &json!({"iss": idp.issuer(), "aud": "lore-test", "sub": "mallory", "groups": ["it-admins"], "exp": 4_102_444_800u64}),
        )
    };
    let tampered = parts.join(".");
    for (name, bad) in [("expired", expired), ("wrong audience", wrong_audience), ("tampered", tampered)] {
        let (status, body) = call(s.addr, "GET", "/v1/me", Some(&bad), None).await;
        assert_eq!(status, 401, "{name}: {body}");
    }
    // A signed-in user exchanges their identity for an embed token carrying the same principals.
    let (status, minted) = call(s.addr, "POST", "/v1/embed/token", Some(&token), Some(json!({}))).await;
    assert_eq!(status, 200, "{minted}");
    assert_eq!(minted["principals"], json!(["dept:hr", "everyone", "group:hr", "user:sso-alice"]));
    let (status, _) =
        call(s.addr, "POST", "/v1/embed/token", Some(&token), Some(json!({"user": "someone-else"}))).await;
    assert_eq!(status, 400, "a user cannot mint for someone else");
}

mod base64_helper {
    pub fn encode(value: &serde_json::Value) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = value.to_string().into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn embed_tokens_carry_the_user_and_expire() {
    let s = server();
    let admin = &s.keys["admin"];
    let mint = |body: Value| call(s.addr, "POST", "/v1/embed/token", Some(admin), Some(body));
    let (status, alice) = mint(json!({"user": "alice", "groups": ["hr"], "ttl_secs": 600})).await;
    assert_eq!(status, 200, "{alice}");
    let alice = alice["token"].as_str().unwrap().to_owned();
    let (_, bob) = mint(json!({"user": "bob", "ttl_secs": 600})).await;
    let bob = bob["token"].as_str().unwrap().to_owned();

    let (_, me) = call(s.addr, "GET", "/v1/me", Some(&alice), None).await;
    assert_eq!(
        (me["user"].as_str(), me["role"].as_str(), me["auth"].as_str()),
        (Some("alice"), Some("employee"), Some("embed_token"))
    );
    let (status, _) = call(s.addr, "GET", "/v1/keys", Some(&alice), None).await;
    assert_eq!(status, 403, "an embed token never carries more than employee rights");

    // Bob's conversation is invisible to Alice's token.
    let (status, answer) =
        call(s.addr, "POST", "/v1/chat", Some(&bob), Some(json!({"question": "What is on-call?"}))).await;
    assert_eq!(status, 200, "{answer}");
    let conversation = answer["conversation_id"].as_str().unwrap();
    let (status, _) = call(s.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&alice), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(s.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&bob), None).await;
    assert_eq!(status, 200);

    // A token pinned to an origin is refused from another one.
    let (_, pinned) = mint(json!({"user": "alice", "origin": "https://intranet.example.com"})).await;
    let pinned = pinned["token"].as_str().unwrap().to_owned();
    let (status, _) =
        call_with(s.addr, "GET", "/v1/me", Some(&pinned), None, &[("origin", "https://intranet.example.com")]).await;
    assert_eq!(status, 200);
    let (status, _) =
        call_with(s.addr, "GET", "/v1/me", Some(&pinned), None, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 401);

    // A forged token (signed with another secret) and an expired one are refused.
    let forged = lore_identity::testing::sign_hmac(
        &json!({"alg": "HS256", "typ": lore_identity::embed::EMBED_TOKEN_TYPE}),
        &json!({"iss": "lore-embed", "aud": "lore-embed", "sub": "alice", "principals": ["everyone", "group:hr"], "role": "admin", "jti": "x", "iat": 0, "exp": 4_102_444_800u64}),
        &[7u8; 32],
    );
    let (status, _) = call(s.addr, "GET", "/v1/me", Some(&forged), None).await;
    assert_eq!(status, 401);
    let (_, short) = mint(json!({"user": "alice", "ttl_secs": 1})).await;
    let short = short["token"].as_str().unwrap().to_owned();
    let (status, _) = call(s.addr, "GET", "/v1/me", Some(&short), None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(7)).await; // past the expiry and the 5 s leeway
    let (status, _) = call(s.addr, "GET", "/v1/me", Some(&short), None).await;
    assert_eq!(status, 401, "an expired embed token must not be reusable");
    let (status, _) = mint(json!({"user": "alice", "ttl_secs": 7200})).await;
    assert_eq!(status, 400, "ttl above the cap");
}

#[tokio::test]
async fn upload_index_patch_delete_end_to_end() {
    let s = server();
    let km = &s.keys["km_hr"];
    let reader = &s.keys["employee"]; // group hr
    let outsider = &s.keys["nobody"];
    let text = b"# Sabbatical\n\nAfter seven years of service employees may take a three-month sabbatical.".to_vec();
    let (status, accepted) =
        upload(s.addr, km, "hr", "../../Sabbatical Policy.md", text.clone(), &[("metadata", r#"{"owner":"hr-ops"}"#)])
            .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["job"]["filename"], "Sabbatical Policy.md", "the path is sanitised");
    let job = wait_for_job(s.addr, km, accepted["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "indexed", "{job}");
    let doc_id = accepted["document_id"].as_str().unwrap().to_owned();

    let query = json!({"query": "sabbatical after seven years", "limit": 3});
    let (_, found) = call(s.addr, "POST", "/v1/search", Some(reader), Some(query.clone())).await;
    assert_eq!(search_paths(&found)[0], "Sabbatical Policy.md", "{found}");
    let (_, hidden) = call(s.addr, "POST", "/v1/search", Some(outsider), Some(query.clone())).await;
    assert!(!search_paths(&hidden).contains(&"Sabbatical Policy.md".to_owned()));

    // The same file again is the same document, with no new job.
    let (status, again) =
        upload(s.addr, km, "hr", "Sabbatical Policy.md", text.clone(), &[("metadata", r#"{"owner":"hr-ops"}"#)]).await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "{again}");
    assert_eq!(again["document_id"], doc_id.as_str());

    let (status, info) = call(s.addr, "GET", &format!("/v1/documents/{doc_id}"), Some(reader), None).await;
    assert_eq!(status, 200);
    assert_eq!((info["status"].as_str(), info["metadata"]["owner"].as_str()), (Some("indexed"), Some("hr-ops")));

    // ACL change: both indexes follow without re-embedding.
    let (status, patched) =
        call(s.addr, "PATCH", &format!("/v1/documents/{doc_id}"), Some(km), Some(json!({"acl": ["user:nobody-user"]})))
            .await;
    assert_eq!(status, 200, "{patched}");
    let (_, now_hidden) = call(s.addr, "POST", "/v1/search", Some(reader), Some(query.clone())).await;
    assert!(!search_paths(&now_hidden).contains(&"Sabbatical Policy.md".to_owned()), "{now_hidden}");
    let (_, now_found) = call(s.addr, "POST", "/v1/search", Some(outsider), Some(query.clone())).await;
    assert_eq!(search_paths(&now_found)[0], "Sabbatical Policy.md");
    let (status, _) = call(s.addr, "GET", &format!("/v1/documents/{doc_id}"), Some(reader), None).await;
    assert_eq!(status, 404);
    {
        let writer = s.state.writer.lock().await;
        let problems = writer.indexes().check_consistency(writer.catalog()).await.unwrap().problems();
        assert!(problems.is_empty(), "{problems:?}");
    }
    let (status, bad) =
        call(s.addr, "PATCH", &format!("/v1/documents/{doc_id}"), Some(km), Some(json!({"acl": []}))).await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid_request")), "{bad}");

    // Delete: gone from both indexes and the database.
    let (status, _) = call(s.addr, "DELETE", &format!("/v1/documents/{doc_id}"), Some(km), None).await;
    assert_eq!(status, 204);
    let (_, after) = call(s.addr, "POST", "/v1/search", Some(outsider), Some(query)).await;
    assert!(!search_paths(&after).contains(&"Sabbatical Policy.md".to_owned()));
    let (status, _) = call(s.addr, "GET", &format!("/v1/documents/{doc_id}"), Some(km), None).await;
    assert_eq!(status, 404);

    let (_, audit) = call(s.addr, "GET", "/v1/audit?action=document.&limit=1000", Some(&s.keys["admin"]), None).await;
    let actions: Vec<(&str, &str)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == doc_id.as_str())
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [("document.upload", "km_hr-user"), ("document.acl_change", "km_hr-user"), ("document.delete", "km_hr-user")]
    );
    let (status, export) = call(s.addr, "GET", "/v1/audit/export?action=document.", Some(&s.keys["admin"]), None).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = export.as_str().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|l| l["action"] == "document.delete" && l["target"] == doc_id.as_str()));
    assert_eq!(s.state.audit.verify_chain().unwrap(), None);
}

#[tokio::test]
async fn bad_uploads_fail_clearly_and_never_block_the_queue() {
    let s = server();
    let km = &s.keys["km_hr"];
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        ("tool.exe", b"MZ\x90\x00".to_vec(), 415, "unsupported file type .exe"),
        ("report.pdf", b"#!/bin/sh\nrm -rf /".to_vec(), 415, "not a PDF"),
        ("notes.md", b"%PDF-1.7\n\x00\x01binary".to_vec(), 415, "binary"),
        ("empty.md", Vec::new(), 415, "empty"),
        ("huge.md", vec![b'a'; 400_000], 413, "larger"),
    ];
    for (name, bytes, want, message) in cases {
        let (status, body) = upload(s.addr, km, "hr", name, bytes, &[]).await;
        assert_eq!(status, want, "{name}: {body}");
        assert!(body["message"].as_str().unwrap().contains(message), "{name}: {body}");
    }
    let (status, body) = upload(s.addr, km, "hr", "a.md", b"# A".to_vec(), &[("acl", "root")]).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, _) = upload(s.addr, km, "no-such-collection", "a.md", b"# A".to_vec(), &[]).await;
    assert_eq!(status, 404);

    // A corrupt PDF passes the checks, fails in the worker with a reason, and the next job runs.
    let (status, corrupt) =
        upload(s.addr, km, "hr", "broken.pdf", b"%PDF-1.4\nthis is not really a pdf".to_vec(), &[]).await;
    assert_eq!(status, 202, "{corrupt}");
    let (status, fine) =
        upload(s.addr, km, "hr", "after-broken.md", b"# Bike storage\n\nBikes go in the basement.".to_vec(), &[]).await;
    assert_eq!(status, 202);
    let failed = wait_for_job(s.addr, km, corrupt["job"]["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().to_lowercase().contains("pdf"), "{failed}");
    let ok = wait_for_job(s.addr, km, fine["job"]["id"].as_str().unwrap()).await;
    assert_eq!(ok["state"], "indexed", "{ok}");
    let (_, list) = call(s.addr, "GET", "/v1/collections/hr/documents", Some(km), None).await;
    assert!(
        list["pending"].as_array().unwrap().iter().any(|j| j["filename"] == "broken.pdf" && j["state"] == "failed"),
        "{list}"
    );
}

#[tokio::test]
async fn collections_narrow_search_and_never_widen_it() {
    let s = server();
    let search = |key: &'static str, collections: Value| {
        let body = json!({"query": "parental leave on-call pages vacation", "limit": 20, "collections": collections});
        call(s.addr, "POST", "/v1/search", Some(&s.keys[key]), Some(body))
    };
    let collection_of = |r: &Value| -> Vec<String> {
        r["results"].as_array().unwrap().iter().map(|p| p["document"]["source"].as_str().unwrap().to_owned()).collect()
    };
    let (status, hr) = search("agent", json!(["hr"])).await;
    assert_eq!(status, 200, "{hr}");
    let sources = collection_of(&hr);
    assert!(!sources.is_empty() && sources.iter().all(|c| c == "hr"), "{sources:?}");
    let (_, both) = search("agent", json!(["hr", "samples"])).await;
    let sources = collection_of(&both);
    assert!(
        sources.iter().any(|c| c == "samples") && sources.iter().all(|c| c == "hr" || c == "samples"),
        "{sources:?}"
    );
    // The ACL still applies inside the chosen collections.
    let (_, eng) = search("employee", json!(["eng"])).await;
    assert!(eng["results"].as_array().unwrap().is_empty(), "{eng}");
    let (status, unknown) = search("admin", json!(["nope"])).await;
    assert_eq!((status, unknown["code"].as_str()), (400, Some("invalid_request")), "{unknown}");
    let (status, chat) = call(
        s.addr,
        "POST",
        "/v1/chat",
        Some(&s.keys["employee"]),
        Some(json!({"question": "How long is parental leave?", "collections": ["eng"]})),
    )
    .await;
    assert_eq!((status, chat["kind"].as_str()), (200, Some("no_answer")), "{chat}");
}

// Public keys: every holder is someone else (issue 12, item 2).

/// Asks `question` as `credential`; the conversation id and the answer's message id.
async fn ask_as(addr: SocketAddr, credential: &str, question: &str) -> (String, i64) {
    let (status, answer) = call(addr, "POST", "/v1/chat", Some(credential), Some(json!({"question": question}))).await;
    assert_eq!(status, 200, "{answer}");
    (answer["conversation_id"].as_str().unwrap().to_owned(), answer["message_id"].as_i64().unwrap())
}

/// Ids of the conversations `credential` lists.
async fn conversation_ids(addr: SocketAddr, credential: &str) -> Vec<String> {
    let (status, list) = call(addr, "GET", "/v1/conversations", Some(credential), None).await;
    assert_eq!(status, 200, "{list}");
    list["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

/// `credential` can neither list, read, continue nor rate someone else's conversation.
async fn assert_cannot_reach(addr: SocketAddr, credential: &str, conversation: &str, message: i64, who: &str) {
    assert!(!conversation_ids(addr, credential).await.iter().any(|c| c == conversation), "{who} lists it");
    let (status, body) = call(addr, "GET", &format!("/v1/conversations/{conversation}"), Some(credential), None).await;
    assert_eq!(status, 404, "{who} reads it: {body}");
    let follow_up = json!({"question": "And what else?", "conversation_id": conversation});
    let (status, body) = call(addr, "POST", "/v1/chat", Some(credential), Some(follow_up.clone())).await;
    assert_eq!(status, 404, "{who} continues it: {body}");
    let mut streamed = follow_up;
    streamed["stream"] = json!(true);
    let (status, body) = call(addr, "POST", "/v1/chat", Some(credential), Some(streamed)).await;
    assert_eq!(status, 404, "{who} continues it streaming: {body}");
    let vote = json!({"message_id": message, "rating": "down", "comment": "not mine"});
    let (status, body) = call(addr, "POST", "/v1/feedback", Some(credential), Some(vote)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("message_not_found")), "{who} rates it: {body}");
}

/// A public key created through the API for this test; its secret and id.
async fn new_public_key(addr: SocketAddr, name: &str) -> (String, String) {
    let admin = &server().keys["admin"];
    let body = json!({"name": name, "role": "employee", "public": true});
    let (status, created) = call(addr, "POST", "/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    (created["key"].as_str().unwrap().to_owned(), created["info"]["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn public_key_holders_never_share_conversations_or_feedback() {
    let s = server();
    let public = &s.keys["public"];
    let mint = |body: Value| call(s.addr, "POST", "/v1/embed/token", Some(public), Some(body));

    // Two visitors of the same page: two visitor tokens, two people.
    let (status, first) = mint(json!({})).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = mint(json!({})).await;
    let (v1, v2) = (first["token"].as_str().unwrap().to_owned(), second["token"].as_str().unwrap().to_owned());
    let (u1, u2) = (first["user"].as_str().unwrap(), second["user"].as_str().unwrap());
    assert!(u1.starts_with("visitor:") && u1.len() >= "visitor:".len() + 22, "{first}");
    assert_ne!(u1, u2);
    assert_eq!(first["principals"], json!(["everyone"]));
    let (status, me) = call(s.addr, "GET", "/v1/me", Some(&v1), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!((me["user"].as_str(), me["role"].as_str()), (Some(u1), Some("employee")));
    assert_eq!(me["principals"], json!(["everyone"]));

    let (c1, m1) = ask_as(s.addr, &v1, "How many days of paid vacation do I get?").await;
    assert_eq!(conversation_ids(s.addr, &v1).await, [c1.as_str()]);
    assert_cannot_reach(s.addr, &v2, &c1, m1, "the second visitor").await;
    // The first visitor keeps their own conversation and may rate it.
    let (status, _) = call(s.addr, "GET", &format!("/v1/conversations/{c1}"), Some(&v1), None).await;
    assert_eq!(status, 200);
    let (status, vote) =
        call(s.addr, "POST", "/v1/feedback", Some(&v1), Some(json!({"message_id": m1, "rating": "up"}))).await;
    assert_eq!(status, 201, "{vote}");

    // The key itself, used twice, is two strangers: nothing it creates can be found again.
    let (_, me1) = call(s.addr, "GET", "/v1/me", Some(public), None).await;
    let (_, me2) = call(s.addr, "GET", "/v1/me", Some(public), None).await;
    assert!(me1["user"].as_str().unwrap().starts_with("anonymous:"), "{me1}");
    assert_ne!(me1["user"], me2["user"]);
    let (c3, m3) = ask_as(s.addr, public, "How many days of paid vacation do I get?").await;
    assert_cannot_reach(s.addr, public, &c3, m3, "the same key again").await;
    assert_cannot_reach(s.addr, public, &c1, m1, "the raw key").await;
    assert_cannot_reach(s.addr, &v1, &c3, m3, "a visitor").await;

    // A vote on someone else's answer is audited as a refusal.
    let (_, audit) =
        call(s.addr, "GET", "/v1/audit?action=access.denied&limit=1000", Some(&s.keys["admin"]), None).await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == u2 && e["detail"]["attempted"] == "feedback.submit"),
        "{audit}"
    );
}

#[tokio::test]
async fn public_keys_cannot_act_as_a_user() {
    let s = server();
    let admin = &s.keys["admin"];
    let body = json!({"name": "alice-public", "role": "employee", "user": "alice@acme.example", "public": true});
    let (status, refused) = call(s.addr, "POST", "/v1/keys", Some(admin), Some(body)).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_request")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("public key"), "{refused}");
    // Without a user (or with the placeholder) it is created; other keys still need a user.
    new_public_key(s.addr, "no-user-public").await;
    let body = json!({"name": "placeholder-public", "role": "employee", "user": "public", "public": true});
    let (status, created) = call(s.addr, "POST", "/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let (status, refused) =
        call(s.addr, "POST", "/v1/keys", Some(admin), Some(json!({"name": "no-user", "role": "employee"}))).await;
    assert_eq!(status, 400, "{refused}");

    // The same through the CLI.
    let data = tempfile::tempdir().unwrap();
    let output = crate::lore(
        data.path(),
        &["keys", "create", "--name", "p", "--role", "employee", "--public", "--user", "alice@acme.example"],
    );
    assert!(!output.status.success(), "lore keys create --public --user alice was accepted");
    assert!(String::from_utf8_lossy(&output.stderr).contains("public key"), "{output:?}");
    let output = crate::lore(data.path(), &["keys", "create", "--name", "p", "--public"]);
    crate::assert_success(&output);
    assert!(String::from_utf8_lossy(&output.stdout).trim().starts_with("lore_"));
}

#[tokio::test]
async fn visitor_tokens_renew_and_end_with_their_key() {
    let s = server();
    let (key, key_id) = new_public_key(s.addr, "renewals").await;
    let (other_key, _) = new_public_key(s.addr, "another-page").await;
    let mint = |key: &str, body: Value| {
        let key = key.to_owned();
        async move { call(s.addr, "POST", "/v1/embed/token", Some(&key), Some(body)).await }
    };
    let (status, first) = mint(&key, json!({})).await;
    assert_eq!(status, 200, "{first}");
    let token = first["token"].as_str().unwrap().to_owned();
    let (conversation, _) = ask_as(s.addr, &token, "How many days of paid vacation do I get?").await;

    // Renewal keeps the visitor, and so their conversation.
    let (status, renewed) = mint(&key, json!({"visitor_token": token})).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["user"], first["user"]);
    assert_ne!(renewed["token"], first["token"]);
    let renewed = renewed["token"].as_str().unwrap().to_owned();
    assert_eq!(conversation_ids(s.addr, &renewed).await, [conversation.as_str()]);

    // Refused: another key's visitor token, a user's embed token, anything else in the body.
    let (_, foreign) = mint(&other_key, json!({})).await;
    let (status, body) = mint(&key, json!({"visitor_token": foreign["token"]})).await;
    assert_eq!(status, 403, "another key's visitor cannot be taken over: {body}");
    let (_, alice) = call(
        s.addr,
        "POST",
        "/v1/embed/token",
        Some(&s.keys["admin"]),
        Some(json!({"user": "alice", "groups": ["hr"]})),
    )
    .await;
    let (status, body) = mint(&key, json!({"visitor_token": alice["token"]})).await;
    assert_eq!(status, 403, "a user's token is not a visitor's: {body}");
    for bad in [
        json!({"visitor_token": "not-a-token"}),
        json!({"user": "alice"}),
        json!({"groups": ["hr"]}),
        json!({"ttl_secs": 60}),
        json!({"origin": "https://intranet.example.com"}),
        json!({"visitor_token": renewed, "user": "alice"}),
    ] {
        let (status, body) = mint(&key, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // A visitor token cannot mint tokens itself, and a non-public key keeps today's rules.
    let (status, _) = mint(&renewed, json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = mint(&s.keys["employee"], json!({})).await;
    assert_eq!(status, 403);

    // Revoking the key ends its visitors' sessions.
    let (status, _) = call(s.addr, "DELETE", &format!("/v1/keys/{key_id}"), Some(&s.keys["admin"]), None).await;
    assert_eq!(status, 200);
    for token in [&token, &renewed] {
        let (status, body) = call(s.addr, "GET", "/v1/conversations", Some(token), None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")), "{body}");
    }
    let (status, _) = mint(&key, json!({"visitor_token": renewed})).await;
    assert_eq!(status, 401);
    let (_, audit) = call(s.addr, "GET", "/v1/audit?action=auth.failed&limit=1000", Some(&s.keys["admin"]), None).await;
    assert!(audit.to_string().contains("revoked api key \\\"renewals\\\""), "{audit}");
}

#[tokio::test]
async fn origin_pinned_tokens_need_an_origin() {
    let s = server();
    let body = json!({"user": "pinned-user", "origin": "https://intranet.example.com"});
    let (status, pinned) = call(s.addr, "POST", "/v1/embed/token", Some(&s.keys["admin"]), Some(body)).await;
    assert_eq!(status, 200, "{pinned}");
    let pinned = pinned["token"].as_str().unwrap().to_owned();
    let (status, _) =
        call_with(s.addr, "GET", "/v1/me", Some(&pinned), None, &[("origin", "https://intranet.example.com")]).await;
    assert_eq!(status, 200);
    let (status, body) = call(s.addr, "GET", "/v1/me", Some(&pinned), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")), "{body}");
    let (_, audit) = call(s.addr, "GET", "/v1/audit?action=auth.failed&limit=1000", Some(&s.keys["admin"]), None).await;
    assert!(audit.to_string().contains("without an Origin header"), "{audit}");
    // Tokens minted without `origin` work from anywhere (server-side callers, same-origin pages).
    let (_, free) =
        call(s.addr, "POST", "/v1/embed/token", Some(&s.keys["admin"]), Some(json!({"user": "free-user"}))).await;
    let (status, _) = call(s.addr, "GET", "/v1/me", Some(free["token"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
}

// Feedback is scoped to the departments responsible for it (issue 12, item 7).

/// `credential`'s view of `GET /v1/feedback`: the comments it shows.
async fn feedback_comments(addr: SocketAddr, credential: &str) -> Vec<String> {
    let (status, list) = call(addr, "GET", "/v1/feedback?limit=500", Some(credential), None).await;
    assert_eq!(status, 200, "{list}");
    list["feedback"].as_array().unwrap().iter().filter_map(|f| f["comment"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn feedback_is_seen_by_the_managers_of_its_departments_only() {
    let s = server();
    let admin = &s.keys["admin"];
    // An HR employee signed in through SSO asks about something no document they can read covers.
    let hr_employee = s.idp.token_for("hr-worried", &["hr"], &["hr"], 300);
    let (status, answer) = call(
        s.addr,
        "POST",
        "/v1/chat",
        Some(&hr_employee),
        Some(json!({"question": "Am I on the list for next month's layoff?", "collections": ["eng"]})),
    )
    .await;
    assert_eq!((status, answer["kind"].as_str()), (200, Some("no_answer")), "{answer}");
    let comment = "HR layoff question: please tell me whether my team is affected";
    let vote = json!({"message_id": answer["message_id"], "rating": "down", "comment": comment});
    let (status, hr_entry) = call(s.addr, "POST", "/v1/feedback", Some(&hr_employee), Some(vote)).await;
    assert_eq!(status, 201, "{hr_entry}");

    // Someone without a department: their no-answer feedback is for admins only.
    let (status, answer) = call(
        s.addr,
        "POST",
        "/v1/chat",
        Some(&s.keys["nobody"]),
        Some(json!({"question": "Who decides the bonus pool?", "collections": ["eng"]})),
    )
    .await;
    assert_eq!((status, answer["kind"].as_str()), (200, Some("no_answer")), "{answer}");
    let orphan = "No department: who decides the bonus pool?";
    let vote = json!({"message_id": answer["message_id"], "rating": "down", "comment": orphan});
    let (status, stored) = call(s.addr, "POST", "/v1/feedback", Some(&s.keys["nobody"]), Some(vote)).await;
    assert_eq!(status, 201, "{stored}");

    let body = json!({"name": "km-sales", "role": "knowledge_manager", "user": "km-sales-user", "department": "sales"});
    let (status, km_sales) = call(s.addr, "POST", "/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{km_sales}");
    let km_sales = km_sales["key"].as_str().unwrap().to_owned();
    let sso_km_sales = s.idp.token_for("sso-km-sales", &["hr-km"], &["sales"], 300);
    let sso_km_hr = s.idp.token_for("sso-km-hr", &["hr-km"], &["hr"], 300);

    for (who, credential) in [("sales km key", &km_sales), ("sales km (sso)", &sso_km_sales)] {
        let seen = feedback_comments(s.addr, credential).await;
        assert!(!seen.iter().any(|c| c == comment), "{who} reads HR feedback: {seen:?}");
        assert!(!seen.iter().any(|c| c == orphan), "{who} reads feedback without a department: {seen:?}");
    }
    for (who, credential) in [("hr km key", &s.keys["km_hr"]), ("hr km (sso)", &sso_km_hr)] {
        let seen = feedback_comments(s.addr, credential).await;
        assert!(seen.iter().any(|c| c == comment), "{who} misses HR feedback: {seen:?}");
        assert!(!seen.iter().any(|c| c == orphan), "{who} reads feedback without a department: {seen:?}");
    }
    let seen = feedback_comments(s.addr, admin).await;
    assert!(seen.iter().any(|c| c == comment) && seen.iter().any(|c| c == orphan), "admins see all: {seen:?}");
    // The entry says whose it is.
    assert_eq!(hr_entry["departments"], json!(["hr"]), "{hr_entry}");

    // With citations, the cited documents' collections decide, not the asker: an engineering
    // manager's vote on an answer from HR documents is HR's to review.
    let (status, answer) = call(
        s.addr,
        "POST",
        "/v1/chat",
        Some(&s.keys["km_eng"]),
        Some(json!({"question": "How long is parental leave?", "collections": ["hr"]})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(!answer["citations"].as_array().unwrap().is_empty(), "{answer}");
    let cited = "Cited HR answer, rated by an engineering manager";
    let vote = json!({"message_id": answer["message_id"], "rating": "up", "comment": cited});
    let (status, entry) = call(s.addr, "POST", "/v1/feedback", Some(&s.keys["km_eng"]), Some(vote)).await;
    assert_eq!((status, &entry["departments"]), (201, &json!(["hr"])), "{entry}");
    assert!(feedback_comments(s.addr, &s.keys["km_hr"]).await.iter().any(|c| c == cited));
    assert!(!feedback_comments(s.addr, &s.keys["km_eng_only"]).await.iter().any(|c| c == cited));
}
