//! API keys for integrations, stored in the embedded database: created, listed and revoked by
//! admins, shown once, stored as sha256 only. Each key is scoped to a role and a principal set
//! (a user, groups, optionally a department), with an optional expiry and a last-used time.
//!
//! A *public* key (for a widget on a page anyone can read) carries exactly `everyone`: it can
//! never reach a document that is not readable by everyone, whatever else is asked of it. It
//! acts for anonymous visitors, never as a user: its stored user is the placeholder
//! [`PUBLIC_USER`], and each request (or each visitor token minted from it) gets its own
//! random user id, so nobody reaches what another holder of the key created.

use std::path::Path;

use lore_db::{Database, Db, Location, Migration, Row, Schema, params};
use serde::Serialize;

use crate::acl::{Principal, PrincipalSet};
use crate::db;
use crate::error::{Error, Result};
use crate::role::Role;
use crate::types::sha256_hex;

/// The user of every public key: a placeholder, never a conversation owner (a public key's
/// callers get a random user id each).
pub const PUBLIC_USER: &str = "public";

/// What the admin asks for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
    /// The user id the key acts as (conversation owner, audit actor).
    pub user: String,
    pub groups: Vec<String>,
    /// The department the key belongs to: adds `dept:<d>`, and a knowledge manager key
    /// manages that department's collections.
    pub department: Option<String>,
    pub public: bool,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub created_by: String,
}

impl NewKey {
    /// A key for `user` with `role` and no groups, department or expiry.
    pub fn new(name: &str, role: Role, user: &str, created_by: &str) -> Self {
        NewKey {
            name: name.to_owned(),
            role,
            user: user.to_owned(),
            groups: Vec::new(),
            department: None,
            public: false,
            expires_at: None,
            created_by: created_by.to_owned(),
        }
    }

    /// A public key: reads documents shared with `everyone`, nothing else.
    pub fn public(name: &str, created_by: &str) -> Self {
        NewKey { public: true, ..NewKey::new(name, Role::Employee, PUBLIC_USER, created_by) }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub user: String,
    pub principals: Vec<String>,
    pub department: Option<String>,
    pub public: bool,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The first characters of the key, to recognise it (`lore_AbCd…`).
    pub prefix: String,
}

impl KeyInfo {
    pub fn principal_set(&self) -> Result<PrincipalSet> {
        let principals = self.principals.iter().map(|p| p.parse::<Principal>()).collect::<Result<Vec<_>>>()?;
        Ok(PrincipalSet::from_principals(principals))
    }
}

pub enum Lookup {
    Valid(KeyInfo),
    Expired(KeyInfo),
    Revoked(KeyInfo),
    Unknown,
}

pub struct KeyStore {
    db: Db,
}

const SCHEMA: Schema = Schema {
    name: "keys",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have this table.
        sqlite: r#"
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    role TEXT NOT NULL,
    user_id TEXT NOT NULL,
    principals TEXT NOT NULL,
    department TEXT,
    public INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER
);
"#,
        postgres: r#"
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    role TEXT NOT NULL,
    user_id TEXT NOT NULL,
    principals TEXT NOT NULL,
    department TEXT,
    public BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);
"#,
    }],
};

const COLUMNS: &str = "id, name, role, user_id, principals, department, public, created_at, created_by, expires_at, \
                       last_used_at, revoked_at, prefix";

/// How stale `last_used_at` may get before a request writes it again (saves a write per request).
const LAST_USED_RESOLUTION_SECS: i64 = 60;

impl KeyStore {
    /// The keys in the embedded database file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_in(&Database::open(&Location::Sqlite(path.to_owned()))?)
    }

    /// The keys in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> Result<Self> {
        Ok(KeyStore { db: database.store(&SCHEMA)? })
    }

    /// Creates a key; returns the secret (shown once) and the stored record.
    pub fn create(&self, key: &NewKey) -> Result<(String, KeyInfo)> {
        if key.name.trim().is_empty() || key.name.len() > 100 {
            return Err(Error::InvalidInput("key name must be 1-100 characters".into()));
        }
        if let Some(expires_at) = key.expires_at
            && expires_at <= db::now()
        {
            return Err(Error::InvalidInput("key expiry must be in the future".into()));
        }
        let principals = if key.public {
            if key.role != Role::Employee || !key.groups.is_empty() || key.department.is_some() {
                return Err(Error::InvalidInput(
                    "a public key has role employee and no groups or department: it can only read documents \
                     shared with everyone"
                        .into(),
                ));
            }
            if key.user != PUBLIC_USER {
                return Err(Error::InvalidInput(format!(
                    "a public key cannot act as user {:?}: it is shared by everyone who loads the page, so it acts \
                     for anonymous visitors only (leave the user out, or use {PUBLIC_USER:?})",
                    key.user
                )));
            }
            PrincipalSet::from_principals([Principal::everyone()])
        } else {
            let departments: Vec<String> = key.department.iter().cloned().collect();
            PrincipalSet::for_user(&key.user, &key.groups, &departments)?
        };
        if key.user.trim().is_empty() || key.user.chars().any(char::is_whitespace) {
            return Err(Error::InvalidInput(format!("invalid user id {:?}", key.user)));
        }
        let (secret, hash) = new_api_key();
        let id = db::new_id("key");
        let prefix: String = secret.chars().take(9).collect();
        let row = self.db.query_opt(
            &format!(
                "INSERT INTO api_keys (id, name, sha256, prefix, role, user_id, principals, department, public, \
                 created_at, created_by, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 RETURNING {COLUMNS}"
            ),
            params![
                id,
                &key.name,
                hash,
                prefix,
                key.role.as_str(),
                &key.user,
                serde_json::to_string(&principals.to_strings()).expect("strings serialize"),
                key.department.as_deref(),
                key.public,
                db::now(),
                &key.created_by,
                key.expires_at
            ],
        )?;
        let info = row_to_key(&row.expect("INSERT … RETURNING gives the row"))?;
        Ok((secret, info))
    }

    pub fn list(&self) -> Result<Vec<KeyInfo>> {
        self.db
            .query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"), params![])?
            .iter()
            .map(row_to_key)
            .collect()
    }

    pub fn get(&self, id: &str) -> Result<Option<KeyInfo>> {
        self.find("id", id)
    }

    /// The key whose `column` (`id` or `sha256`) is `value`.
    fn find(&self, column: &str, value: &str) -> Result<Option<KeyInfo>> {
        self.db
            .query_opt(&format!("SELECT {COLUMNS} FROM api_keys WHERE {column} = ?1"), params![value])?
            .map(|r| row_to_key(&r))
            .transpose()
    }

    /// Revokes a key; `Ok(None)` when there is no such key. Revoking twice keeps the first time.
    pub fn revoke(&self, id: &str) -> Result<Option<KeyInfo>> {
        self.db.execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![id, db::now()],
        )?;
        self.get(id)
    }

    /// Looks a presented key up by its hash (so secrets are never compared byte by byte) and
    /// records its use.
    pub fn verify(&self, presented: &str) -> Result<Lookup> {
        let hash = sha256_hex(presented.as_bytes());
        let Some(info) = self.find("sha256", &hash)? else { return Ok(Lookup::Unknown) };
        self.check_and_record_use(info)
    }

    /// Looks a key up by id, as [`KeyStore::verify`] does by secret: for credentials derived
    /// from a key (visitor tokens), which are good only while the key is. Records the key's use.
    pub fn verify_id(&self, id: &str) -> Result<Lookup> {
        let Some(info) = self.find("id", id)? else { return Ok(Lookup::Unknown) };
        self.check_and_record_use(info)
    }

    /// Whether a stored key is usable now (recording its use if so).
    fn check_and_record_use(&self, info: KeyInfo) -> Result<Lookup> {
        if info.revoked_at.is_some() {
            return Ok(Lookup::Revoked(info));
        }
        let now = db::now();
        if info.expires_at.as_deref().and_then(db::parse_rfc3339).is_some_and(|e| e <= now) {
            return Ok(Lookup::Expired(info));
        }
        self.db.execute(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?3)",
            params![info.id.as_str(), now, now - LAST_USED_RESOLUTION_SECS],
        )?;
        Ok(Lookup::Valid(info))
    }
}

fn row_to_key(r: &Row) -> Result<KeyInfo> {
    let role: String = r.get(2)?;
    let principals: String = r.get(4)?;
    let time = |i: usize| -> Result<Option<String>> { Ok(r.get::<Option<i64>>(i)?.map(db::rfc3339)) };
    Ok(KeyInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Employee),
        user: r.get(3)?,
        principals: serde_json::from_str(&principals).unwrap_or_default(),
        department: r.get(5)?,
        public: r.get(6)?,
        created_at: db::rfc3339(r.get(7)?),
        created_by: r.get(8)?,
        expires_at: time(9)?,
        last_used_at: time(10)?,
        revoked_at: time(11)?,
        prefix: r.get(12)?,
    })
}

/// A new random API key (`lore_` + 43 URL-safe characters, 256 bits) and its sha256.
pub fn new_api_key() -> (String, String) {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // 6 bits per character over the 256 random bits.
    let mut key = String::from("lore_");
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            key.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        key.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    let hash = sha256_hex(key.as_bytes());
    (key, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lore_db::testing::on_both;

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            role: Role::Agent,
            user: "crm".into(),
            groups: vec!["support".into()],
            department: Some("sales".into()),
            public: false,
            expires_at: None,
            created_by: "admin".into(),
        }
    }

    #[test]
    fn create_verify_revoke_expire() {
        on_both("create_verify_revoke_expire", |database| {
            let store = KeyStore::open_in(database).unwrap();
            let (secret, info) = store.create(&new_key("crm")).unwrap();
            assert!(secret.starts_with("lore_") && secret.len() == 5 + 43, "{secret}");
            assert_eq!(info.principals, ["dept:sales", "everyone", "group:support", "user:crm"]);
            assert!(matches!(store.verify(&secret).unwrap(), Lookup::Valid(k) if k.id == info.id));
            assert!(store.get(&info.id).unwrap().unwrap().last_used_at.is_some());
            assert!(matches!(store.verify("lore_nope").unwrap(), Lookup::Unknown));
            store.revoke(&info.id).unwrap();
            assert!(matches!(store.verify(&secret).unwrap(), Lookup::Revoked(_)));

            let (secret, info) = store.create(&NewKey { expires_at: Some(db::now() + 1), ..new_key("short") }).unwrap();
            // Another connection to the database, as another process would have.
            let other = KeyStore::open_in(database).unwrap();
            other
                .db
                .execute("UPDATE api_keys SET expires_at = ?2 WHERE id = ?1", params![info.id, db::now() - 1])
                .unwrap();
            assert!(matches!(store.verify(&secret).unwrap(), Lookup::Expired(_)));
            assert!(store.create(&NewKey { expires_at: Some(db::now() - 10), ..new_key("past") }).is_err());
            assert_eq!(store.list().unwrap().len(), 2);
        });
    }

    #[test]
    fn public_keys_hold_everyone_only() {
        on_both("public_keys_hold_everyone_only", |database| {
            let store = KeyStore::open_in(database).unwrap();
            let public = NewKey::public("intranet", "admin");
            let (_, info) = store.create(&public).unwrap();
            assert_eq!(info.principals, ["everyone"]);
            assert_eq!(info.user, PUBLIC_USER);
            assert!(info.public);
            for wider in [
                NewKey { groups: vec!["hr".into()], ..public.clone() },
                NewKey { department: Some("hr".into()), ..public.clone() },
                NewKey { role: Role::Admin, ..public.clone() },
            ] {
                assert!(store.create(&wider).is_err());
            }
        });
    }

    #[test]
    fn public_keys_never_act_as_a_user() {
        on_both("public_keys_never_act_as_a_user", |database| {
            let store = KeyStore::open_in(database).unwrap();
            let as_alice = NewKey { user: "alice@acme.example".into(), ..NewKey::public("alice-page", "admin") };
            match store.create(&as_alice) {
                Err(Error::InvalidInput(message)) => {
                    assert!(message.contains("public key") && message.contains("alice@acme.example"), "{message}")
                }
                other => panic!("a public key for alice was accepted: {:?}", other.map(|(_, info)| info)),
            }
            assert!(store.list().unwrap().is_empty());
        });
    }

    #[test]
    fn keys_are_checked_by_id() {
        on_both("keys_are_checked_by_id", |database| {
            let store = KeyStore::open_in(database).unwrap();
            let (_, info) = store.create(&NewKey::public("page", "admin")).unwrap();
            assert!(matches!(store.verify_id(&info.id).unwrap(), Lookup::Valid(k) if k.public));
            assert!(store.get(&info.id).unwrap().unwrap().last_used_at.is_some());
            assert!(matches!(store.verify_id("key_nope").unwrap(), Lookup::Unknown));
            store.revoke(&info.id).unwrap();
            let revoked = store.get(&info.id).unwrap().unwrap().revoked_at;
            store.revoke(&info.id).unwrap();
            assert_eq!(store.get(&info.id).unwrap().unwrap().revoked_at, revoked, "the first revocation stays");
            assert!(matches!(store.verify_id(&info.id).unwrap(), Lookup::Revoked(_)));
        });
    }

    #[test]
    fn open_keeps_using_the_embedded_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let (secret, _) = KeyStore::open(&path).unwrap().create(&new_key("crm")).unwrap();
        let reopened = KeyStore::open(&path).unwrap();
        assert!(matches!(reopened.verify(&secret).unwrap(), Lookup::Valid(_)));
    }
}
