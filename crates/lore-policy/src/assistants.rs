//! Per-department assistants: the name, greeting, tone and instructions an assistant of a
//! department (or the company default) answers with. Records edited by administrators and
//! knowledge managers, never changed in place: every edit is a new version, so the prompt version
//! of an answer (`…+assistant-hr-3`) names exactly the wording it was written under and the
//! history shows who changed what.

use std::path::Path;

use lore_db::{Database, Db, Dialect, Migration, Row, Schema, params};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The company default's key: departments are non-empty names.
pub const COMPANY: &str = "";

/// What an administrator or knowledge manager sets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistantSpec {
    /// Shown in the widget's title and used in the system prompt ("You are {name}…").
    pub name: String,
    pub greeting: Option<String>,
    pub greeting_es: Option<String>,
    /// A short description of the voice, e.g. "warm and brief".
    pub tone: Option<String>,
    /// Added to the system prompt (at most 2,000 characters).
    pub instructions: Option<String>,
}

/// One version of a department's assistant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assistant {
    /// `""` for the company default.
    pub department: String,
    pub version: i64,
    pub name: String,
    pub greeting: Option<String>,
    pub greeting_es: Option<String>,
    pub tone: Option<String>,
    pub instructions: Option<String>,
    pub author: String,
    pub created_ms: i64,
}

const MAX_INSTRUCTIONS: usize = 2000;
const MAX_SHORT: usize = 300;

impl Assistant {
    /// The id an answer's prompt version carries: `assistant-<department>-<version>`
    /// (`assistant-company-<version>` for the default).
    pub fn prompt_id(&self) -> String {
        let department = if self.department.is_empty() { "company" } else { self.department.as_str() };
        format!("assistant-{department}-{}", self.version)
    }

    /// The lines added to the system prompt.
    pub fn system_addition(&self) -> String {
        let mut lines = vec![format!("In this conversation you are called {}.", self.name)];
        if let Some(tone) = &self.tone {
            lines.push(format!("Tone: {tone}."));
        }
        if let Some(instructions) = &self.instructions {
            lines.push(instructions.trim().to_owned());
        }
        lines.join("\n")
    }
}

impl AssistantSpec {
    fn validate(&self) -> Result<(), Error> {
        let bad = |why: String| Err(Error::Invalid(why));
        if self.name.trim().is_empty() {
            return bad("`name` must not be empty".into());
        }
        for (field, value) in [
            ("name", Some(&self.name)),
            ("greeting", self.greeting.as_ref()),
            ("greeting_es", self.greeting_es.as_ref()),
            ("tone", self.tone.as_ref()),
        ] {
            if value.is_some_and(|v| v.chars().count() > MAX_SHORT) {
                return bad(format!("`{field}` is longer than {MAX_SHORT} characters"));
            }
        }
        if self.instructions.as_ref().is_some_and(|v| v.chars().count() > MAX_INSTRUCTIONS) {
            return bad(format!("`instructions` is longer than {MAX_INSTRUCTIONS} characters"));
        }
        Ok(())
    }
}

const SCHEMA: Schema = Schema {
    name: "assistants",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have this table.
        sqlite: r#"
CREATE TABLE IF NOT EXISTS assistants (
    department TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    greeting TEXT,
    greeting_es TEXT,
    tone TEXT,
    instructions TEXT,
    author TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (department, version)
) WITHOUT ROWID;
"#,
        postgres: r#"
CREATE TABLE assistants (
    department TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    greeting TEXT,
    greeting_es TEXT,
    tone TEXT,
    instructions TEXT,
    author TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (department, version)
);
"#,
    }],
};

const COLUMNS: &str = "department, version, name, greeting, greeting_es, tone, instructions, author, created_ms";

pub struct AssistantStore {
    db: Db,
}

impl AssistantStore {
    /// The assistants in the embedded database file at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_in(&crate::open_sqlite(path)?)
    }

    /// The assistants in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> Result<Self, Error> {
        Ok(AssistantStore { db: database.store(&SCHEMA)? })
    }

    /// Saves a new version of `department`'s assistant (`""`: the company default).
    pub fn set(&self, department: &str, spec: &AssistantSpec, author: &str, now_ms: i64) -> Result<Assistant, Error> {
        spec.validate()?;
        let trim = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let mut assistant = Assistant {
            department: department.to_owned(),
            version: 0,
            name: spec.name.trim().to_owned(),
            greeting: trim(&spec.greeting),
            greeting_es: trim(&spec.greeting_es),
            tone: trim(&spec.tone),
            instructions: trim(&spec.instructions),
            author: author.to_owned(),
            created_ms: now_ms,
        };
        let new = &assistant;
        let version = self.db.transaction(|tx| {
            // The next version is read and written under one lock, so two editors (even in two
            // processes) never take the same number: SQLite's write lock (the transaction is
            // immediate); on PostgreSQL a table lock that only writers of assistants take.
            if tx.dialect() == Dialect::Postgres {
                tx.execute("LOCK TABLE assistants IN SHARE ROW EXCLUSIVE MODE", params![])?;
            }
            let version: i64 = tx
                .query(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM assistants WHERE department = ?1",
                    params![department],
                )?
                .first()
                .map(|row| row.get(0))
                .transpose()?
                .unwrap_or(1);
            tx.execute(
                &format!("INSERT INTO assistants ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    new.department.as_str(),
                    version,
                    new.name.as_str(),
                    new.greeting.as_deref(),
                    new.greeting_es.as_deref(),
                    new.tone.as_deref(),
                    new.instructions.as_deref(),
                    new.author.as_str(),
                    new.created_ms
                ],
            )?;
            Ok(version)
        })?;
        assistant.version = version;
        Ok(assistant)
    }

    /// The current version of `department`'s assistant.
    pub fn current(&self, department: &str) -> Result<Option<Assistant>, Error> {
        self.db
            .query_opt(
                &format!("SELECT {COLUMNS} FROM assistants WHERE department = ?1 ORDER BY version DESC LIMIT 1"),
                params![department],
            )?
            .map(|row| row_to_assistant(&row))
            .transpose()
    }

    /// The assistant someone of `departments` talks to: the first of their departments that
    /// has one, else the company default.
    pub fn for_departments(&self, departments: &[String]) -> Result<Option<Assistant>, Error> {
        for department in departments {
            if let Some(assistant) = self.current(department)? {
                return Ok(Some(assistant));
            }
        }
        self.current(COMPANY)
    }

    /// Every version of `department`'s assistant, newest first.
    pub fn history(&self, department: &str) -> Result<Vec<Assistant>, Error> {
        self.db
            .query(
                &format!("SELECT {COLUMNS} FROM assistants WHERE department = ?1 ORDER BY version DESC"),
                params![department],
            )?
            .iter()
            .map(row_to_assistant)
            .collect()
    }

    /// The current version of every department's assistant.
    pub fn list(&self) -> Result<Vec<Assistant>, Error> {
        self.db
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM assistants a WHERE version = \
                     (SELECT MAX(version) FROM assistants b WHERE b.department = a.department) ORDER BY department"
                ),
                params![],
            )?
            .iter()
            .map(row_to_assistant)
            .collect()
    }
}

fn row_to_assistant(r: &Row) -> Result<Assistant, Error> {
    Ok(Assistant {
        department: r.get(0)?,
        version: r.get(1)?,
        name: r.get(2)?,
        greeting: r.get(3)?,
        greeting_es: r.get(4)?,
        tone: r.get(5)?,
        instructions: r.get(6)?,
        author: r.get(7)?,
        created_ms: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use lore_db::testing::on_both;

    use super::*;

    fn spec(name: &str) -> AssistantSpec {
        AssistantSpec { name: name.into(), tone: Some("warm and brief".into()), ..AssistantSpec::default() }
    }

    #[test]
    fn every_edit_is_a_new_version_and_departments_fall_back_to_the_company_default() {
        on_both("every_edit_is_a_new_version_and_departments_fall_back_to_the_company_default", |database| {
            let store = AssistantStore::open_in(database).unwrap();
            assert_eq!(store.for_departments(&["hr".into()]).unwrap(), None);
            store.set(COMPANY, &spec("Lore"), "root", 1).unwrap();
            let first = store.set("hr", &spec("Petra"), "hugo", 2).unwrap();
            let second = store
                .set(
                    "hr",
                    &AssistantSpec { instructions: Some("Mention the HR portal.".into()), ..spec("Petra") },
                    "hugo",
                    3,
                )
                .unwrap();
            assert_eq!((first.version, second.version), (1, 2));
            assert_eq!(second.prompt_id(), "assistant-hr-2");
            assert!(second.system_addition().contains("Mention the HR portal."));
            assert_eq!(store.history("hr").unwrap().iter().map(|a| a.version).collect::<Vec<_>>(), [2, 1]);
            assert_eq!(store.history("hr").unwrap()[0], second, "read back as saved");
            assert_eq!(store.for_departments(&["sales".into(), "hr".into()]).unwrap().unwrap().name, "Petra");
            let default = store.for_departments(&["sales".into()]).unwrap().unwrap();
            assert_eq!(default.prompt_id(), "assistant-company-1");
            assert_eq!(store.list().unwrap().len(), 2);
            assert!(store.set("hr", &spec(" "), "hugo", 4).is_err());
            let long = AssistantSpec { instructions: Some("x".repeat(2001)), ..spec("Petra") };
            assert!(store.set("hr", &long, "hugo", 4).unwrap_err().to_string().contains("instructions"));
        });
    }

    /// Editors in two processes (two stores) saving at once each get their own version.
    #[test]
    fn concurrent_edits_get_distinct_versions() {
        on_both("concurrent_edits_get_distinct_versions", |database| {
            let stores = [AssistantStore::open_in(database).unwrap(), AssistantStore::open_in(database).unwrap()];
            let mut versions: Vec<i64> = std::thread::scope(|scope| {
                let editors: Vec<_> = stores
                    .iter()
                    .map(|store| {
                        scope.spawn(move || {
                            (0..10)
                                .map(|i| store.set("hr", &spec("Petra"), "hugo", i).unwrap().version)
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                editors.into_iter().flat_map(|editor| editor.join().unwrap()).collect()
            });
            versions.sort_unstable();
            assert_eq!(versions, (1..=20).collect::<Vec<_>>());
        });
    }

    #[test]
    fn the_embedded_file_keeps_the_assistants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/catalog.sqlite");
        let saved = AssistantStore::open(&path).unwrap().set("hr", &spec("Petra"), "hugo", 1).unwrap();
        assert_eq!(AssistantStore::open(&path).unwrap().current("hr").unwrap(), Some(saved));
    }
}
