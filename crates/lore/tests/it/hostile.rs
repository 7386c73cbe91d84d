//! Hostile uploads: files made to crash, hang or exhaust a parser (self-referencing PDF
//! structures, huge page counts, zip bombs, absurd nesting). Each must fail alone, with a
//! reason, while searches, ACL changes and deletes keep answering within a second, and the
//! server must stay up. Parsing runs in child `lore` processes (lore_ingest::sandbox).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lore_core::keys::NewKey;
use lore_core::role::Role;
use lore_ingest::{IngestOptions, Ingestor, Source};
use lore_server::AppState;
use serde_json::json;

use crate::client::{call, upload, wait_for_job};

/// A PDF from object bodies (object `i + 1` is `objects[i]`), with a correct xref table.
fn pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        writeln!(out, "{} 0 obj", i + 1).unwrap();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).unwrap();
    for offset in offsets {
        writeln!(out, "{offset:010} 00000 n ").unwrap();
    }
    write!(out, "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).unwrap();
    out
}

fn stream(dict: &str, content: &str) -> Vec<u8> {
    format!("<< {dict} /Length {} >>\nstream\n{content}\nendstream", content.len()).into_bytes()
}

/// A page whose `/Parent` is itself, so inherited attributes are looked up forever.
fn self_parent_pdf() -> Vec<u8> {
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        stream("", "BT /F1 12 Tf 72 720 Td (Hello) Tj ET"),
    ])
}

/// A form XObject that draws itself (`/X1 Do` inside X1).
fn self_drawing_pdf() -> Vec<u8> {
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /X1 5 0 R >> >> \
          /Contents 4 0 R >>"
            .to_vec(),
        stream("", "/X1 Do"),
        stream("/Type /XObject /Subtype /Form /BBox [0 0 10 10] /Resources << /XObject << /X1 5 0 R >> >>", "/X1 Do"),
    ])
}

/// `pages` empty pages (100,000 is about 6 MB).
fn many_pages_pdf(pages: usize) -> Vec<u8> {
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", i + 3)).collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!("<< /Type /Pages /Kids [{}] /Count {pages} >>", kids.join(" ")).into_bytes(),
    ];
    objects.extend((0..pages).map(|_| b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 1 1] >>".to_vec()));
    pdf(&objects)
}

/// A DOCX whose `word/document.xml` is `xml`, deflated.
fn docx(xml_parts: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9))
        .large_file(true);
    zip.start_file("word/document.xml", options).unwrap();
    for part in xml_parts {
        zip.write_all(&part).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// 12 MiB of one letter: compresses about a thousand to one (a zip bomb; the probe's 1.2 GB
/// one is the same shape, only bigger).
fn docx_bomb() -> Vec<u8> {
    let paragraph = [b"<w:p><w:r><w:t>".as_slice(), &[b'a'; 1 << 20], b"</w:t></w:r></w:p>"].concat();
    let chunks = 12;
    docx(std::iter::once(b"<w:document><w:body>".to_vec()).chain(std::iter::repeat_n(paragraph, chunks)))
}

/// Text that compresses like prose (about 3:1) but decompresses past `mib` MiB.
fn docx_oversize(mib: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let words: Vec<String> =
        (0..4096).map(|_| (0..rng.random_range(2..9)).map(|_| rng.random_range('a'..='z')).collect()).collect();
    let mut xml = b"<w:document><w:body><w:p><w:r><w:t>".to_vec();
    while xml.len() < mib * 1024 * 1024 + 1024 {
        xml.extend_from_slice(words[rng.random_range(0..words.len())].as_bytes());
        xml.push(b' ');
    }
    docx(std::iter::once(xml))
}

/// HTML nested 200,000 elements deep.
fn deep_html() -> Vec<u8> {
    let depth = 200_000;
    let mut html = b"<html><body>".to_vec();
    html.extend("<div>".repeat(depth).bytes());
    html.extend_from_slice(b"deep text");
    html.extend("</div>".repeat(depth).bytes());
    html
}

pub struct Hostile {
    pub addr: SocketAddr,
    pub admin: String,
    pub employee: String,
    /// Document ids of two well-behaved documents: one for ACL changes, one to delete.
    pub acl_doc: String,
    pub delete_doc: String,
    pub data: tempfile::TempDir,
}

pub fn start() -> Hostile {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("good");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("leave.md"), "# Leave\n\nEmployees get twenty-five vacation days a year.").unwrap();
    std::fs::write(folder.join("parking.md"), "# Parking\n\nThe garage on Elm Street opens at seven.").unwrap();
    let mut config = crate::config_in(data.path().join("data"));
    config.ingest.parser.timeout_secs = 30.0;
    // Small enough that the generated files below cross them without gigabytes of test data.
    config.ingest.parser.max_entry_mib = 16;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let embedder = crate::embedder();
            let source = Source {
                name: "handbook".into(),
                path: folder,
                default_acl: Some(vec!["everyone".into()]),
                department: Some("hr".into()),
            };
            let mut ingestor = Ingestor::open(config.clone(), embedder.clone()).await.unwrap();
            let report = ingestor.ingest(&[source], &IngestOptions::default()).await.unwrap();
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            let ids: Vec<(String, String)> = ingestor
                .catalog()
                .documents_of_source("handbook")
                .unwrap()
                .into_iter()
                .map(|d| (d.path, d.id))
                .collect();
            drop(ingestor);
            let state = AppState::open(config, embedder).await.unwrap();
            let store = state.identity.keys.store().unwrap().clone();
            let (admin, _) = store.create(&NewKey::new("admin", Role::Admin, "admin-user", "test")).unwrap();
            let (employee, _) = store.create(&NewKey::new("employee", Role::Employee, "emp", "test")).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send((listener.local_addr().unwrap(), admin, employee, ids)).unwrap();
            lore_server::http::serve(listener, state, std::future::pending()).await.unwrap();
        });
    });
    let (addr, admin, employee, ids) = receiver.recv().expect("server started");
    let id_of = |path: &str| ids.iter().find(|(p, _)| p == path).unwrap().1.clone();
    Hostile { addr, admin, employee, acl_doc: id_of("leave.md"), delete_doc: id_of("parking.md"), data }
}

/// Searches and ACL changes in a loop until `stop`; returns each call's latency.
async fn probe(
    addr: SocketAddr,
    admin: String,
    employee: String,
    acl_doc: String,
    stop: Arc<AtomicBool>,
) -> Vec<(String, Duration)> {
    let mut timings = Vec::new();
    let mut public = true;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let (status, body) =
            call(addr, "POST", "/v1/search", Some(&employee), Some(json!({"query": "vacation days"}))).await;
        assert_eq!(status, 200, "{body}");
        timings.push(("search".to_owned(), started.elapsed()));
        public = !public;
        let acl = if public { json!(["everyone"]) } else { json!(["group:hr"]) };
        let started = Instant::now();
        let (status, body) =
            call(addr, "PATCH", &format!("/v1/documents/{acl_doc}"), Some(&admin), Some(json!({ "acl": acl }))).await;
        assert_eq!(status, 200, "{body}");
        timings.push(("acl change".to_owned(), started.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    timings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_fail_alone_while_the_server_keeps_answering() {
    let server = start();
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let prober =
        tokio::spawn(probe(addr, server.admin.clone(), server.employee.clone(), server.acl_doc.clone(), stop.clone()));

    let files: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("self-parent.pdf", self_parent_pdf(), &[]),
        ("self-drawing.pdf", self_drawing_pdf(), &[]),
        ("many-pages.pdf", many_pages_pdf(20_000), &["20000 pages", "5000-page limit"]),
        ("bomb.docx", docx_bomb(), &["word/document.xml", "200:1 limit"]),
        // Below the ratio limit but past the size limit.
        ("oversize.docx", docx_oversize(17), &["word/document.xml", "16 MiB"]),
    ];
    let mut delete_latency = None;
    for (i, (name, bytes, reasons)) in files.into_iter().enumerate() {
        let size = bytes.len();
        let (status, body) = upload(addr, &server.admin, "handbook", name, bytes, &[]).await;
        assert_eq!(status, 202, "{name}: {body}");
        let job = body["job"]["id"].as_str().unwrap().to_owned();
        if i == 1 {
            // An urgent delete while a hostile file is being handled answers at once.
            let started = Instant::now();
            let (status, body) =
                call(addr, "DELETE", &format!("/v1/documents/{}", server.delete_doc), Some(&server.admin), None).await;
            assert_eq!(status, 204, "{body}");
            delete_latency = Some(started.elapsed());
        }
        let started = Instant::now();
        let done = wait_for_job(addr, &server.admin, &job).await;
        eprintln!("{name} ({size} bytes): {} after {:?}: {}", done["state"], started.elapsed(), done["error"]);
        assert_eq!(done["state"], "failed", "{name} ({size} bytes): {done}");
        let error = done["error"].as_str().unwrap();
        for reason in reasons {
            assert!(error.contains(reason), "{name}: the reason should name {reason:?}: {error}");
        }
    }
    // Deep nesting: parsed or refused, but never the server's problem.
    let (status, body) = upload(addr, &server.admin, "handbook", "deep.html", deep_html(), &[]).await;
    assert_eq!(status, 202, "{body}");
    let done = wait_for_job(addr, &server.admin, body["job"]["id"].as_str().unwrap()).await;
    assert!(matches!(done["state"].as_str(), Some("indexed" | "failed")), "{done}");

    stop.store(true, Ordering::Relaxed);
    let timings = prober.await.unwrap();
    assert!(timings.len() >= 20, "the probe ran {} calls", timings.len());
    let slowest = timings.iter().max_by_key(|(_, t)| *t).unwrap();
    eprintln!("{} calls while parsing; slowest {slowest:?}; delete {delete_latency:?}", timings.len());
    assert!(slowest.1 < Duration::from_secs(1), "slowest call while parsing hostile files: {slowest:?}");
    assert!(delete_latency.unwrap() < Duration::from_secs(1), "delete took {delete_latency:?}");

    // Still up, still answering, and the well-behaved document is intact.
    let path = format!("/v1/documents/{}", server.acl_doc);
    let (status, body) = call(addr, "PATCH", &path, Some(&server.admin), Some(json!({ "acl": ["everyone"] }))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        call(addr, "POST", "/v1/search", Some(&server.employee), Some(json!({"query": "vacation days"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["document"]["path"], "leave.md", "{body}");
    let (status, _) =
        call(addr, "GET", &format!("/v1/documents/{}", server.delete_doc), Some(&server.admin), None).await;
    assert_eq!(status, 404, "the deleted document is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_and_running_jobs_can_be_cancelled_by_managers_only() {
    let server = start();
    let addr = server.addr;
    // A file that keeps a parser busy for a while, then one that waits behind it.
    let busy = many_pages_pdf(4_900);
    let (status, first) = upload(addr, &server.admin, "handbook", "busy.pdf", busy, &[]).await;
    assert_eq!(status, 202, "{first}");
    let (status, second) =
        upload(addr, &server.admin, "handbook", "waiting.md", b"# Waiting\n\nQueued text.".to_vec(), &[]).await;
    assert_eq!(status, 202, "{second}");
    let (first, second) =
        (first["job"]["id"].as_str().unwrap().to_owned(), second["job"]["id"].as_str().unwrap().to_owned());

    let (status, body) = call(addr, "POST", &format!("/v1/jobs/{second}/cancel"), Some(&server.employee), None).await;
    assert_eq!(status, 404, "an employee cannot see others' jobs: {body}");
    let (status, body) = call(addr, "POST", &format!("/v1/jobs/{second}/cancel"), Some(&server.admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cancelled", "{body}");
    assert!(body["error"].as_str().unwrap().contains("cancelled by"), "{body}");

    let (status, body) = call(addr, "POST", &format!("/v1/jobs/{first}/cancel"), Some(&server.admin), None).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_for_job(addr, &server.admin, &first).await;
    assert!(matches!(done["state"].as_str(), Some("cancelled" | "indexed" | "failed")), "{done}");
    assert_eq!(wait_for_job(addr, &server.admin, &second).await["state"], "cancelled");

    // The queue goes on: a new upload is indexed, and nothing of the cancelled ones stays staged.
    let (status, body) =
        upload(addr, &server.admin, "handbook", "after.md", b"# After\n\nZanzibar holidays.".to_vec(), &[]).await;
    assert_eq!(status, 202, "{body}");
    let done = wait_for_job(addr, &server.admin, body["job"]["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "indexed", "{done}");
    let staged: Vec<_> = std::fs::read_dir(server.data.path().join("data/uploads"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "staging folders left behind: {staged:?}");
}

/// `lore ingest` of a folder meets the same files: they fail alone, with their reasons, and
/// the rest of the folder is indexed (the run used to die with the first stack overflow).
#[test]
fn cli_ingest_survives_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("docs");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a-self-parent.pdf"), self_parent_pdf()).unwrap();
    std::fs::write(folder.join("b-self-drawing.pdf"), self_drawing_pdf()).unwrap();
    std::fs::write(folder.join("c-bomb.docx"), docx_bomb()).unwrap();
    std::fs::write(folder.join("d-leave.md"), "# Leave\n\nEmployees get twenty-five vacation days a year.").unwrap();
    let data = dir.path().join("data");
    let output = crate::lore(&data, &["ingest", folder.to_str().unwrap(), "--acl", "everyone"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1 indexed") && stdout.contains("3 failed"), "stdout: {stdout}\nstderr: {stderr}");
    for (file, reason) in
        [("a-self-parent.pdf", "stack overflow"), ("b-self-drawing.pdf", "stack overflow"), ("c-bomb.docx", "200:1")]
    {
        assert!(
            stderr.lines().any(|l| l.contains(file) && l.contains(reason)),
            "{file} should fail with {reason:?}:\n{stderr}"
        );
    }
    let output = crate::lore(&data, &["search", "vacation days", "--as", "someone@acme.example"]);
    crate::assert_success(&output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("d-leave.md"));
}

/// A file that keeps the parser busy past `ingest.parser.timeout_secs` has its child killed and
/// fails with the limit named; the run goes on.
#[test]
fn a_parse_past_the_time_limit_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("docs");
    std::fs::create_dir_all(&folder).unwrap();
    // Loading 20,000 page objects takes seconds in the child (it fails on the page limit
    // after that), far past a 0.2 s limit.
    std::fs::write(folder.join("a-slow.pdf"), many_pages_pdf(20_000)).unwrap();
    std::fs::write(folder.join("b-leave.md"), "# Leave\n\nEmployees get twenty-five vacation days a year.").unwrap();
    let config = dir.path().join("lore.toml");
    std::fs::write(&config, "[ingest.parser]\ntimeout_secs = 0.2\n").unwrap();
    let data = dir.path().join("data");
    let started = Instant::now();
    let output = crate::lore(
        &data,
        &["--config", config.to_str().unwrap(), "ingest", folder.to_str().unwrap(), "--acl", "everyone"],
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 indexed") && stdout.contains("1 failed"), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("a-slow.pdf") && l.contains("timeout_secs")),
        "the slow file fails on the time limit:\n{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}
