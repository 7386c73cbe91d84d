//! What the console needs from the server beyond the API the widget uses: document listings
//! filtered by text, format, ACL principal and state; the settings an admin reads; the audit
//! chain's status; usage of one department; the top questions of a period; the console's
//! assets, with uPlot vendored from its locked npm package.

use std::time::Duration;

use lore_chat::testing::{FakeProvider, Reply};
use lore_core::role::Role;
use serde_json::{Value, json};

use crate::support::client::{call, call_with, upload, wait_for_job};
use crate::support::{Setup, TestServer, block_on, workspace_root};

struct Console {
    server: TestServer,
    admin: String,
    km_hr: String,
    km_sales: String,
    employee: String,
}

/// A `policies` collection (department hr) of a PDF shared with everyone, a page for the hr
/// group and one for the sales department; keys for an admin, a knowledge manager of hr and one
/// of sales, and an employee in the hr group.
fn console_server(edit: impl FnOnce(&mut Setup)) -> Console {
    let mut setup = Setup::new();
    let folder = setup.folder("policies");
    std::fs::copy(workspace_root().join("ingest/samples/policies/security-policy.pdf"), folder.join("security.pdf"))
        .unwrap();
    std::fs::write(folder.join("pay.md"), "# Payday\n\nSalaries are paid on the 25th.").unwrap();
    std::fs::write(
        folder.join("Travel Rules.html"),
        "<html><head><title>Travel</title></head><body><p>Book trains for trips under four hours.</p></body></html>",
    )
    .unwrap();
    edit(&mut setup);
    let server = setup.source("policies", folder, &["everyone"], Some("hr")).start();
    let key = |user: &str, role: Role, groups: &[&str], department: Option<&str>| {
        crate::usage::key(&server, role, user, groups, department).0
    };
    let admin = key("admin-user", Role::Admin, &[], None);
    let documents = server.documents_of("policies");
    for (path, acl) in [("pay.md", "group:hr"), ("Travel Rules.html", "dept:sales")] {
        let (addr, admin, id) = (server.addr, admin.clone(), documents[path].clone());
        let (status, body) = block_on(move || async move {
            call(addr, "PATCH", &format!("/v1/documents/{id}"), Some(&admin), Some(json!({"acl": [acl]}))).await
        });
        assert_eq!(status, 200, "{body}");
    }
    Console {
        admin,
        km_hr: key("km-hr-user", Role::KnowledgeManager, &["hr"], Some("hr")),
        km_sales: key("km-sales-user", Role::KnowledgeManager, &["sales"], Some("sales")),
        employee: key("employee-user", Role::Employee, &["hr"], Some("hr")),
        server,
    }
}

fn paths(body: &Value) -> Vec<&str> {
    body["documents"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn document_listings_filter_by_text_format_principal_and_state() {
    let c = console_server(|_| {});
    let addr = c.server.addr;
    let list = |key: &str, query: &str| {
        let path = format!("/v1/collections/policies/documents?{query}");
        let key = key.to_owned();
        async move { call(addr, "GET", &path, Some(&key), None).await }
    };
    let (status, all) = list(&c.km_hr, "").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(paths(&all), ["Travel Rules.html", "pay.md", "security.pdf"]);

    // Text matches the path or the title, ignoring case.
    assert_eq!(paths(&list(&c.km_hr, "q=TRAVEL").await.1), ["Travel Rules.html"]);
    assert_eq!(paths(&list(&c.km_hr, "q=payday").await.1), ["pay.md"], "the title is searched too");
    assert_eq!(paths(&list(&c.km_hr, "format=pdf").await.1), ["security.pdf"]);
    assert_eq!(paths(&list(&c.km_hr, "principal=dept:sales").await.1), ["Travel Rules.html"]);
    assert_eq!(paths(&list(&c.km_hr, "principal=group:hr&format=markdown").await.1), ["pay.md"]);
    assert_eq!(paths(&list(&c.km_hr, "principal=group:nobody").await.1), Vec::<&str>::new());
    // Filters combine with pagination: one document a page, cursor to the next.
    let (_, first) = list(&c.km_hr, "limit=1&q=a").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(paths(&first), ["Travel Rules.html"]);
    assert_eq!(paths(&list(&c.km_hr, &format!("limit=1&q=a&cursor={cursor}")).await.1), ["pay.md"]);

    // Bad filters are named.
    for (query, named) in [("format=exe", "`format`"), ("status=done", "`status`"), ("principal=hr", "`principal`")] {
        let (status, body) = list(&c.km_hr, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(named), "{query}: {body}");
    }

    // A replacement that fails leaves the indexed version; the document's state is `failed`.
    let security = c.server.documents_of("policies")["security.pdf"].clone();
    let (status, replaced) = upload(
        addr,
        &c.km_hr,
        &format!("/v1/documents/{security}"),
        "security.pdf",
        b"%PDF-1.4\nthis is not really a pdf".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 202, "{replaced}");
    let job = wait_for_job(addr, &c.km_hr, replaced["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(paths(&list(&c.km_hr, "status=failed").await.1), ["security.pdf"]);
    assert_eq!(paths(&list(&c.km_hr, "status=indexed").await.1), ["Travel Rules.html", "pay.md"]);

    // A reader who is no manager sees what they may read, filtered; a filter matching none of
    // it is an empty page, not a hidden collection.
    assert_eq!(paths(&list(&c.employee, "").await.1), ["pay.md", "security.pdf"]);
    let (status, none) = list(&c.employee, "q=travel").await;
    assert_eq!((status, paths(&none)), (200, vec![]), "{none}");
    // Someone who may read nothing of it cannot tell it exists, filters or not.
    let (status, body) =
        call(addr, "PATCH", &format!("/v1/documents/{security}"), Some(&c.admin), Some(json!({"acl": ["group:hr"]})))
            .await;
    assert_eq!(status, 200, "{body}");
    let (outsider, _) = crate::usage::key(&c.server, Role::Employee, "outsider", &[], None);
    for query in ["", "q=pay", "format=pdf"] {
        let (status, body) = list(&outsider, query).await;
        assert_eq!(status, 404, "{query}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_read_settings_and_the_audit_chain() {
    let c = console_server(|setup| {
        setup.config.rate_limits.per_user = lore_usage::RateLimit { per_minute: 90, burst: 15 };
        setup.config.policy.notice =
            Some(lore_policy::config::Notice { text: "Use Lore for work.".into(), link: None });
        setup.config.policy.rules = vec![lore_policy::config::UseRule {
            id: "no-payroll".into(),
            keywords: vec!["salary of".into()],
            message: "Ask HR directly.".into(),
            ..Default::default()
        }];
    });
    let addr = c.server.addr;
    let (status, settings) = call(addr, "GET", "/v1/admin/settings", Some(&c.admin), None).await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["sso"], Value::Null, "no single sign-on is configured");
    assert_eq!(settings["rate_limits"]["per_user"], json!({"per_minute": 90, "burst": 15}));
    assert_eq!(settings["rate_limits"]["per_visitor"]["per_minute"], 30);
    assert_eq!(settings["policy"]["rules"][0]["id"], "no-payroll");
    assert_eq!(settings["policy"]["rules"][0]["keywords"], json!(["salary of"]));
    assert_eq!(settings["policy"]["notice"]["text"], "Use Lore for work.");
    assert_eq!(settings["max_file_bytes"], c.server.state.config.ingest.max_file_bytes);
    for key in [&c.km_hr, &c.employee] {
        let (status, body) = call(addr, "GET", "/v1/admin/settings", Some(key), None).await;
        assert_eq!(status, 403, "{body}");
    }

    // Every event so far chains; the count is the log's.
    let (status, chain) = call(addr, "GET", "/v1/audit/verify", Some(&c.admin), None).await;
    assert_eq!(status, 200, "{chain}");
    assert_eq!(chain["ok"], true, "{chain}");
    assert_eq!(chain["first_mismatch"], Value::Null);
    let (_, events) = call(addr, "GET", "/v1/audit?limit=1000", Some(&c.admin), None).await;
    let listed = events["events"].as_array().unwrap().len() as u64;
    // The verification reads the log after the listing, which audits nothing more.
    assert!(chain["events"].as_u64().unwrap() >= 1 && chain["events"].as_u64().unwrap() <= listed, "{chain}");
    let (status, _) = call(addr, "GET", "/v1/audit/verify", Some(&c.km_hr), None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_gets_one_departments_usage_and_the_top_questions() {
    let provider = FakeProvider::answering("model", |_| Reply::text("Salaries are paid on the 25th [1].")).await;
    let c = console_server(|setup| {
        setup.config.chat.providers = vec![provider.config(0, 30.0)];
        setup.config.usage.flush_interval_ms = 50;
    });
    let addr = c.server.addr;
    let (sales_employee, _) = crate::usage::key(&c.server, Role::Employee, "sales-emp", &[], Some("sales"));
    // hr asks about payday three times (spelt three ways) and parking once; sales asks once.
    for (key, question) in [
        (&c.employee, "When is payday?"),
        (&c.employee, "when is  payday"),
        (&c.employee, "When is PAYDAY?"),
        (&c.employee, "Where do I park?"),
        (&sales_employee, "How do I book a train?"),
    ] {
        let (status, body) = call(addr, "POST", "/v1/chat", Some(key), Some(json!({"question": question}))).await;
        assert_eq!(status, 200, "{body}");
    }
    c.server.state.usage.recorder.flush();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let usage = |key: String, query: &'static str| async move {
        call(addr, "GET", &format!("/v1/analytics/usage?{query}"), Some(&key), None).await
    };
    let requests =
        |body: &Value| body["rows"].as_array().unwrap().iter().map(|r| r["requests"].as_u64().unwrap()).sum::<u64>();
    let (status, all) = usage(c.admin.clone(), "group_by=day").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(requests(&all), 5);
    let (_, hr) = usage(c.admin.clone(), "group_by=day&department=hr").await;
    assert_eq!(requests(&hr), 4, "{hr}");
    let (_, sales) = usage(c.admin.clone(), "group_by=day&department=sales").await;
    assert_eq!(requests(&sales), 1, "{sales}");
    let (_, own) = usage(c.km_hr.clone(), "group_by=day&department=hr").await;
    assert_eq!(requests(&own), 4, "{own}");
    let (status, other) = usage(c.km_hr.clone(), "group_by=day&department=sales").await;
    assert_eq!(status, 403, "a knowledge manager sees only their departments: {other}");

    let questions = |key: String| async move { call(addr, "GET", "/v1/analytics/questions", Some(&key), None).await };
    let (status, top) = questions(c.admin.clone()).await;
    assert_eq!(status, 200, "{top}");
    let listed: Vec<(String, u64)> = top["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["question"].as_str().unwrap().to_owned(), q["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(listed[0], ("When is PAYDAY?".to_owned(), 3), "as last asked: {top}");
    assert_eq!(listed.len(), 3, "{top}");
    assert_eq!(top["chats"], 5);
    // The sales manager sees the sales question only; the hr manager not the sales one.
    let (_, sales_top) = questions(c.km_sales.clone()).await;
    assert_eq!(sales_top["questions"].as_array().unwrap().len(), 1, "{sales_top}");
    assert_eq!(sales_top["questions"][0]["question"], "How do I book a train?");
    let (_, hr_top) = questions(c.km_hr.clone()).await;
    assert!(!hr_top.to_string().contains("train"), "{hr_top}");
    let (status, _) = questions(c.employee.clone()).await;
    assert_eq!(status, 403);
    let (status, body) = call(addr, "GET", "/v1/analytics/questions?limit=0", Some(&c.admin), None).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_assets_are_served_and_the_page_learns_the_upload_limits() {
    let c = console_server(|setup| setup.config.ingest.max_file_bytes = 123_456);
    let addr = c.server.addr;
    let (status, config) = call(addr, "GET", "/app-config.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(config["max_file_bytes"], 123_456);
    assert!(config["extensions"].as_array().unwrap().contains(&json!("docx")), "{config}");
    assert_eq!(config["formats"], json!(["markdown", "text", "html", "pdf", "docx"]));
    for (asset, kind, needle) in [
        ("console.js", "text/javascript", "loreConsole"),
        ("console.css", "text/css", "{"),
        ("uplot.js", "text/javascript", "uPlot"),
        ("uplot.css", "text/css", ".uplot"),
    ] {
        let (status, body) =
            call_with(addr, "GET", &format!("/assets/{asset}"), None, None, &[("accept", "*/*")]).await;
        assert_eq!(status, 200, "{asset}");
        let text = body.as_str().unwrap_or_else(|| panic!("{asset} is text"));
        assert!(text.contains(needle), "{asset} holds {needle:?}");
        let response = reqwest::get(format!("http://{addr}/assets/{asset}")).await.unwrap();
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with(kind), "{asset}");
    }
}

/// The vendored uPlot is the package `package-lock.json` pins: same version and integrity as
/// `VENDORED` records, each file's sha256 as recorded, and, when `npm ci` has installed the
/// package (verifying its tarball against that integrity), byte for byte the package's files.
#[test]
fn vendored_uplot_matches_the_locked_package() {
    let root = workspace_root();
    let vendor = root.join("crates/lore-server/web/vendor/uplot");
    let record = std::fs::read_to_string(vendor.join("VENDORED")).unwrap();
    let field = |name: &str| {
        record
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("VENDORED has no {name} line"))
            .to_owned()
    };
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(root.join("package-lock.json")).unwrap()).unwrap();
    let locked = &lock["packages"]["node_modules/uplot"];
    assert_eq!(locked["version"], json!(field("version")), "package-lock.json and VENDORED disagree on the version");
    assert_eq!(
        locked["integrity"],
        json!(field("integrity")),
        "package-lock.json and VENDORED disagree on the integrity"
    );
    let files: Vec<(String, String)> = record
        .lines()
        .filter_map(|l| l.strip_prefix("sha256 "))
        .map(|l| {
            let (hash, path) = l.split_once(' ').unwrap();
            (hash.to_owned(), path.to_owned())
        })
        .collect();
    assert_eq!(files.len(), 3, "{record}");
    let installed = root.join("node_modules/uplot");
    let installed_version = std::fs::read_to_string(installed.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|p| p["version"].clone());
    for (hash, path) in &files {
        let name = std::path::Path::new(path).file_name().unwrap();
        let vendored = std::fs::read(vendor.join(name)).unwrap();
        assert_eq!(&lore_core::types::sha256_hex(&vendored), hash, "{path} changed since it was vendored");
        if installed_version.as_ref() == Some(&json!(field("version"))) {
            assert_eq!(vendored, std::fs::read(installed.join(path)).unwrap(), "{path} differs from the npm package's");
        }
    }
    if installed_version.is_none() {
        eprintln!("node_modules/uplot is not installed (`npm ci`): checked the recorded hashes only");
    }
}
