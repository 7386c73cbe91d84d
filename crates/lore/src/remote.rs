//! `lore ingest` into a running server: when `lore serve` holds the data folder, the files go
//! through its document API (the server is the only writer of the indexes), and this waits
//! for their jobs.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;
use lore_ingest::{Source, source_files};
use serde_json::{Value, json};

pub struct RemoteReport {
    pub uploaded: usize,
    pub unchanged: usize,
    pub indexed: usize,
    pub deleted: usize,
    pub failures: Vec<String>,
}

pub async fn ingest(url: &str, key: &str, sources: &[Source], sync: bool) -> anyhow::Result<RemoteReport> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let mut report = RemoteReport { uploaded: 0, unchanged: 0, indexed: 0, deleted: 0, failures: Vec::new() };
    let mut jobs: HashMap<String, String> = HashMap::new();
    for source in sources {
        let collection = json!({
            "id": source.name, "department": source.department, "default_acl": source.default_acl,
        });
        let response = client.post(format!("{url}/v1/collections")).bearer_auth(key).json(&collection).send().await?;
        match response.status().as_u16() {
            201 | 409 => {}
            // A knowledge manager's key may upload into an existing collection without creating it.
            403 => {}
            401 => {
                anyhow::bail!("the server refused the API key (set LORE_API_KEY to an admin or knowledge-manager key)")
            }
            status => anyhow::bail!("creating collection {:?}: {status}: {}", source.name, response.text().await?),
        }
        let files = source_files(source);
        let local: BTreeSet<String> = files.iter().filter(|f| f.supported).map(|f| f.relative.clone()).collect();
        for file in files.iter().filter(|f| f.supported) {
            let bytes = std::fs::read(&file.path).with_context(|| format!("reading {}", file.path.display()))?;
            let name = file.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let mut form = reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name))
                .text("path", file.relative.clone());
            match lore_ingest::source::read_sidecar(&file.path) {
                Ok(Some((meta, _))) => {
                    if let Some(acl) = meta.acl {
                        form = form.text("acl", serde_json::to_string(&acl)?);
                    }
                    if let Some(title) = meta.title {
                        form = form.text("title", title);
                    }
                }
                Ok(None) => {}
                Err(kind) => {
                    report.failures.push(format!("{}: {kind}", file.path.display()));
                    continue;
                }
            }
            let response = client
                .post(format!("{url}/v1/collections/{}/documents", source.name))
                .bearer_auth(key)
                .multipart(form)
                .send()
                .await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                202 => {
                    report.uploaded += 1;
                    jobs.insert(body["job"]["id"].as_str().unwrap_or_default().to_owned(), file.relative.clone());
                }
                200 => report.unchanged += 1,
                _ => report.failures.push(format!(
                    "{}: {status} {}",
                    file.path.display(),
                    body["message"].as_str().unwrap_or("upload refused")
                )),
            }
        }
        if sync {
            report.deleted += delete_missing(&client, url, key, &source.name, &local).await?;
        }
    }
    for (job, path) in jobs {
        let finished = wait_for_job(&client, url, key, &job).await?;
        match finished["state"].as_str() {
            Some("indexed") => report.indexed += 1,
            _ => report.failures.push(format!("{path}: {}", finished["error"].as_str().unwrap_or("failed"))),
        }
    }
    Ok(report)
}

async fn wait_for_job(client: &reqwest::Client, url: &str, key: &str, job: &str) -> anyhow::Result<Value> {
    loop {
        let body: Value = client
            .get(format!("{url}/v1/jobs/{job}"))
            .bearer_auth(key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if matches!(body["state"].as_str(), Some("indexed" | "failed")) {
            return Ok(body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn delete_missing(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    collection: &str,
    local: &BTreeSet<String>,
) -> anyhow::Result<usize> {
    let mut gone = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client.get(format!("{url}/v1/collections/{collection}/documents")).bearer_auth(key);
        request = request.query(&[("limit", "500")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor.as_str())]);
        }
        let page: Value = request.send().await?.error_for_status()?.json().await?;
        for doc in page["documents"].as_array().into_iter().flatten() {
            if !local.contains(doc["path"].as_str().unwrap_or_default()) {
                gone.push(doc["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    for id in &gone {
        client.delete(format!("{url}/v1/documents/{id}")).bearer_auth(key).send().await?.error_for_status()?;
    }
    Ok(gone.len())
}
