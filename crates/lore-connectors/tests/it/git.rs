//! The Git connector against real repositories made with the `git` CLI in a temporary
//! directory: a working repository stands for the remote, reached by its local path.

use std::path::{Path, PathBuf};
use std::process::Command;

use lore_connectors::git::{GitConfig, GitConnector};
use lore_connectors::{Change, ConnectorError, SyncBatch, SyncState};

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let path = std::env::temp_dir().join(format!("lore-git-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs git in the working repository with a fixed identity and no signing, whatever the
/// machine's global config says; returns trimmed stdout.
fn git(work: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(work)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn write(work: &Path, path: &str, content: &str) {
    let path = work.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn config(work: &Path, cache: &Path) -> GitConfig {
    GitConfig {
        url: work.display().to_string(),
        branch: "main".into(),
        paths: vec!["docs".into()],
        extensions: vec![".md".into(), ".txt".into()],
        cache_dir: cache.join("handbook.git"),
        web_url: Some("https://git.example.com/handbook/blob/{branch}/{path}".into()),
    }
}

/// `+ path` for an upsert, `- path` for a delete, in the order reported.
fn summary(batch: &SyncBatch) -> Vec<String> {
    batch
        .changes
        .iter()
        .map(|change| match change {
            Change::Upsert(item) => {
                assert_eq!(item.id, item.path);
                assert_eq!(item.acl, None);
                format!("+ {}", item.path)
            }
            Change::Delete { id, path } => {
                assert_eq!(id, path);
                format!("- {path}")
            }
        })
        .collect()
}

fn upserted<'a>(batch: &'a SyncBatch, path: &str) -> &'a lore_connectors::Item {
    batch
        .changes
        .iter()
        .find_map(|change| match change {
            Change::Upsert(item) if item.path == path => Some(item),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{path} not upserted"))
}

#[tokio::test]
async fn syncs_commits_incrementally_and_survives_a_force_push_and_a_lost_cache() {
    let root = TempDir::new("sync");
    let work = root.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    write(&work, "docs/handbook.md", "# Handbook\n\nWelcome.\n");
    write(&work, "docs/old-name.md", "# Expenses\n\nKeep receipts.\n");
    write(&work, "docs/gone.md", "# Parking\n");
    write(&work, "docs/faq.txt", "Q: where?\nA: here.\n");
    write(&work, "docs/logo.png", "not really a png");
    write(&work, "drafts/secret.md", "# Not yet\n");
    write(&work, "README.md", "# Repo\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "first"]);
    let first_commit = git(&work, &["rev-parse", "HEAD"]);

    let connector = GitConnector::new(config(&work, &root.0));
    let first = connector.sync(&SyncState::default()).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(
        summary(&first),
        ["+ docs/faq.txt", "+ docs/gone.md", "+ docs/handbook.md", "+ docs/old-name.md"],
        "excluded directory, excluded extension and files outside `paths` are left out"
    );
    let handbook = upserted(&first, "docs/handbook.md");
    assert_eq!(handbook.content, b"# Handbook\n\nWelcome.\n");
    assert_eq!(handbook.version, git(&work, &["rev-parse", "HEAD:docs/handbook.md"]));
    assert_eq!(handbook.url.as_deref(), Some("https://git.example.com/handbook/blob/main/docs/handbook.md"));
    assert_eq!(first.state.cursor.as_deref(), Some(first_commit.as_str()));
    assert_eq!(first.state.items.len(), 4);

    // A modification, a rename, a deletion, a non-ASCII name, and a change outside `paths`.
    write(&work, "docs/handbook.md", "# Handbook\n\nWelcome, and read the policies.\n");
    git(&work, &["mv", "docs/old-name.md", "docs/expenses.md"]);
    git(&work, &["rm", "--quiet", "docs/gone.md"]);
    write(&work, "docs/guía de vacaciones.md", "# Vacaciones\n\n22 días al año.\n");
    write(&work, "drafts/secret.md", "# Still not yet\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "second"]);
    let second_commit = git(&work, &["rev-parse", "HEAD"]);

    let second = connector.sync(&first.state).await.unwrap();
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert_eq!(
        summary(&second),
        [
            "+ docs/expenses.md",
            "- docs/gone.md",
            "+ docs/guía de vacaciones.md",
            "+ docs/handbook.md",
            "- docs/old-name.md",
        ]
    );
    let vacaciones = upserted(&second, "docs/guía de vacaciones.md");
    assert_eq!(vacaciones.content, "# Vacaciones\n\n22 días al año.\n".as_bytes());
    assert_eq!(
        vacaciones.url.as_deref(),
        Some("https://git.example.com/handbook/blob/main/docs/gu%C3%ADa%20de%20vacaciones.md")
    );
    assert_eq!(upserted(&second, "docs/expenses.md").content, b"# Expenses\n\nKeep receipts.\n");
    assert_eq!(second.state.cursor.as_deref(), Some(second_commit.as_str()));
    assert_eq!(
        second.state.items.keys().map(String::as_str).collect::<Vec<_>>(),
        ["docs/expenses.md", "docs/faq.txt", "docs/guía de vacaciones.md", "docs/handbook.md"]
    );

    let third = connector.sync(&second.state).await.unwrap();
    assert!(third.changes.is_empty() && third.errors.is_empty(), "{:?}", third.changes);
    assert_eq!(third.state, second.state);

    // History rewritten: the branch goes back to the first commit plus a new one, so the cursor
    // is no longer an ancestor of the tip, and the change list comes from a full listing.
    git(&work, &["reset", "--quiet", "--hard", &first_commit]);
    write(&work, "docs/fresh.md", "# Fresh start\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "rewritten"]);
    git(&work, &["reflog", "expire", "--expire=now", "--all"]);
    git(&work, &["gc", "--quiet", "--prune=now"]);
    let rewritten_commit = git(&work, &["rev-parse", "HEAD"]);

    let fourth = connector.sync(&third.state).await.unwrap();
    assert!(fourth.errors.is_empty(), "{:?}", fourth.errors);
    assert_eq!(
        summary(&fourth),
        [
            "- docs/expenses.md",
            "+ docs/fresh.md",
            "+ docs/gone.md",
            "- docs/guía de vacaciones.md",
            "+ docs/handbook.md",
            "+ docs/old-name.md",
        ],
        "faq.txt is the same blob on both sides and is not reported"
    );
    assert_eq!(upserted(&fourth, "docs/handbook.md").content, b"# Handbook\n\nWelcome.\n");
    assert_eq!(fourth.state.cursor.as_deref(), Some(rewritten_commit.as_str()));

    // The mirror is lost: the cursor commit is not in the fresh clone (the working repository
    // pruned it too), and a full listing finds nothing new.
    std::fs::remove_dir_all(root.0.join("handbook.git")).unwrap();
    let stale = SyncState { cursor: Some(second_commit.clone()), ..fourth.state.clone() };
    let fifth = connector.sync(&stale).await.unwrap();
    assert!(fifth.changes.is_empty() && fifth.errors.is_empty(), "{:?}", fifth.changes);
    assert_eq!(fifth.state, fourth.state);
}

#[tokio::test]
async fn an_unreachable_repository_or_branch_is_a_connector_error() {
    let root = TempDir::new("bad-url");
    let missing = root.0.join("no-such-repository");
    let connector = GitConnector::new(config(&missing, &root.0));
    let error = connector.sync(&SyncState::default()).await.unwrap_err();
    let ConnectorError::Source { source_name, message } = &error else { panic!("{error:?}") };
    assert_eq!(source_name, "git");
    assert!(message.contains("git fetch") && message.contains("no-such-repository"), "{message}");
    assert!(message.contains("does not appear to be a git repository"), "{message}");

    let work = root.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    write(&work, "docs/a.md", "# A\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "first"]);
    let connector = GitConnector::new(GitConfig { branch: "release".into(), ..config(&work, &root.0) });
    let error = connector.sync(&SyncState::default()).await.unwrap_err().to_string();
    assert!(error.contains("git fetch") && error.contains("release"), "{error}");

    let connector =
        GitConnector::new(GitConfig { branch: "--upload-pack=touch pwned".into(), ..config(&work, &root.0) });
    let error = connector.sync(&SyncState::default()).await.unwrap_err().to_string();
    assert!(error.contains("not a valid branch name"), "{error}");
}

#[tokio::test]
async fn an_unreadable_blob_is_an_item_error_and_is_retried_on_the_next_sync() {
    let root = TempDir::new("blob");
    let work = root.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    write(&work, "docs/a.md", "# A\n");
    write(&work, "docs/b.md", "# B\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "first"]);
    let first_commit = git(&work, &["rev-parse", "HEAD"]);
    let connector = GitConnector::new(config(&work, &root.0));
    let first = connector.sync(&SyncState::default()).await.unwrap();
    assert_eq!(summary(&first), ["+ docs/a.md", "+ docs/b.md"]);

    write(&work, "docs/a.md", "# A, revised\n");
    write(&work, "docs/b.md", "# B, revised\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "second"]);
    let second_commit = git(&work, &["rev-parse", "HEAD"]);
    // Fetch ahead of the connector, then take the new blob of a.md out of the mirror: the
    // connector's own fetch finds the branch up to date and the blob unreadable.
    let mirror = root.0.join("handbook.git");
    let refspec = "+refs/heads/main:refs/heads/main";
    git(&work, &["--git-dir", mirror.to_str().unwrap(), "fetch", "--quiet", work.to_str().unwrap(), refspec]);
    let blob = git(&work, &["rev-parse", "HEAD:docs/a.md"]);
    let object = mirror.join("objects").join(&blob[..2]).join(&blob[2..]);
    let aside = root.0.join("object");
    std::fs::rename(&object, &aside)
        .unwrap_or_else(|error| panic!("{} should be a loose object: {error}", object.display()));

    let second = connector.sync(&first.state).await.unwrap();
    assert_eq!(summary(&second), ["+ docs/b.md"]);
    assert_eq!(second.errors.len(), 1, "{:?}", second.errors);
    assert_eq!(second.errors[0].item, "docs/a.md");
    assert!(second.errors[0].message.contains("cat-file"), "{}", second.errors[0].message);
    assert_eq!(second.state.cursor.as_deref(), Some(first_commit.as_str()), "the cursor waits for the failed item");
    assert_eq!(second.state.items["docs/a.md"], first.state.items["docs/a.md"]);

    std::fs::rename(&aside, &object).unwrap();
    let third = connector.sync(&second.state).await.unwrap();
    assert!(third.errors.is_empty(), "{:?}", third.errors);
    assert_eq!(summary(&third), ["+ docs/a.md"], "b.md was reported already");
    assert_eq!(upserted(&third, "docs/a.md").content, b"# A, revised\n");
    assert_eq!(third.state.cursor.as_deref(), Some(second_commit.as_str()));
}
