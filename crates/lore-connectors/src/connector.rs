//! `[[connectors]]` in `lore.toml`: one source each, the collection it fills, and when it syncs.
//! Credentials are named, never written: `token_env` is the environment variable holding the
//! token (and `user` the account it belongs to, for sources with basic authentication).

use serde::Deserialize;

use crate::http::Http;
use crate::{ConnectorError, SyncBatch, SyncState, confluence, git, sharepoint, web, zendesk};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// The collection it fills, created on the first sync.
    pub name: String,
    /// The department whose knowledge managers manage that collection.
    pub department: Option<String>,
    /// Who may read items the source says nothing about (web pages; pages of a space without
    /// configured groups). Without one, such items are refused.
    pub default_acl: Option<Vec<String>>,
    /// Minutes between syncs inside `lore serve`; 0 (the default): on demand only.
    #[serde(default)]
    pub every_minutes: u32,
    /// The account of a source with basic authentication (Confluence Cloud's e-mail).
    pub user: Option<String>,
    /// The environment variable holding the source's token.
    pub token_env: Option<String>,
    /// Or a file holding it (a mounted secret); wins over any `token_env`, Zendesk's included.
    pub token_file: Option<std::path::PathBuf>,
    pub web: Option<web::WebConfig>,
    pub zendesk: Option<zendesk::ZendeskConfig>,
    pub confluence: Option<confluence::ConfluenceConfig>,
    /// `cache_dir` defaults to `<data>/connectors/<name>.git`.
    pub git: Option<git::GitConfig>,
    /// SharePoint and OneDrive drives through Microsoft Graph; `token_env` holds an access token.
    pub sharepoint: Option<sharepoint::SharePointConfig>,
}

impl ConnectorConfig {
    /// `web`, `zendesk`, `confluence`, `git` or `sharepoint`.
    pub fn kind(&self) -> &'static str {
        if self.web.is_some() {
            "web"
        } else if self.zendesk.is_some() {
            "zendesk"
        } else if self.confluence.is_some() {
            "confluence"
        } else if self.git.is_some() {
            "git"
        } else if self.sharepoint.is_some() {
            "sharepoint"
        } else {
            "none"
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let name = format!("connectors {:?}", self.name);
        let kinds = [
            self.web.is_some(),
            self.zendesk.is_some(),
            self.confluence.is_some(),
            self.git.is_some(),
            self.sharepoint.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(format!("{name}: give exactly one of `web`, `zendesk`, `confluence`, `git`, `sharepoint`"));
        }
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid_name {
            return Err(format!("{name}: a name is a collection id: lowercase letters, digits, `-`, `_`, `.`"));
        }
        let has_token = self.token_env.is_some() || self.token_file.is_some();
        if self.sharepoint.is_some() && !has_token {
            return Err(format!("{name}: SharePoint needs `token_env` or `token_file`: a Graph access token"));
        }
        if self.confluence.is_some() && !has_token {
            return Err(format!(
                "{name}: Confluence needs `token_env` or `token_file` (and `user` for Cloud's basic authentication)"
            ));
        }
        Ok(())
    }
}

/// A configured connector, its credentials read.
pub enum Connector {
    Web(web::WebConnector),
    Zendesk(zendesk::ZendeskConnector),
    Confluence(confluence::ConfluenceConnector),
    Git(git::GitConnector),
    SharePoint(sharepoint::SharePointConnector),
}

impl Connector {
    /// The connector of `config`, its credentials read now; `data_dir` holds what a connector
    /// keeps between syncs (a git mirror).
    pub fn build(config: &ConnectorConfig, data_dir: &std::path::Path) -> Result<Connector, ConnectorError> {
        let source = |message: String| ConnectorError::Source { source_name: config.name.clone(), message };
        let from_file = || -> Result<Option<String>, ConnectorError> {
            let Some(path) = &config.token_file else { return Ok(None) };
            let token =
                std::fs::read_to_string(path).map_err(|e| source(format!("token_file {}: {e}", path.display())))?;
            Ok(Some(token.trim().to_owned()).filter(|t| !t.is_empty()))
        };
        let token = || -> Result<String, ConnectorError> {
            if let Some(token) = from_file()? {
                return Ok(token);
            }
            let variable =
                config.token_env.as_deref().ok_or_else(|| source("no `token_env` or `token_file`".into()))?;
            std::env::var(variable)
                .ok()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| source(format!("environment variable {variable} (token_env) is not set")))
        };
        if let Some(web) = &config.web {
            let http = Http::new(&web.user_agent)?;
            return Ok(Connector::Web(web::WebConnector::new(web.clone(), http)));
        }
        let http = Http::new("LoreBot")?;
        if let Some(zendesk) = &config.zendesk {
            let credentials = match from_file()? {
                Some(token) => zendesk::Credentials::resolve(zendesk, |_| Some(token.clone()))?,
                None => zendesk::Credentials::from_env(zendesk)?,
            };
            return Ok(Connector::Zendesk(zendesk::ZendeskConnector::new(zendesk.clone(), credentials, http)));
        }
        if let Some(confluence) = &config.confluence {
            let credentials = match &config.user {
                Some(email) => confluence::Credentials::Basic { email: email.clone(), api_token: token()? },
                None => confluence::Credentials::Bearer { token: token()? },
            };
            return Ok(Connector::Confluence(confluence::ConfluenceConnector::new(
                confluence.clone(),
                credentials,
                http,
            )));
        }
        if let Some(sharepoint) = &config.sharepoint {
            let token = sharepoint::AccessToken::new(token()?);
            return Ok(Connector::SharePoint(sharepoint::SharePointConnector::new(sharepoint.clone(), token, http)));
        }
        if let Some(git) = &config.git {
            let mut git = git.clone();
            if git.cache_dir.as_os_str().is_empty() {
                git.cache_dir = data_dir.join("connectors").join(format!("{}.git", config.name));
            }
            return Ok(Connector::Git(git::GitConnector::new(git)));
        }
        Err(source("no source configured".into()))
    }

    pub async fn sync(&self, previous: &SyncState) -> Result<SyncBatch, ConnectorError> {
        match self {
            Connector::Web(c) => c.sync(previous).await,
            Connector::Zendesk(c) => c.sync(previous).await,
            Connector::Confluence(c) => c.sync(previous).await,
            Connector::Git(c) => c.sync(previous).await,
            Connector::SharePoint(c) => c.sync(previous).await,
        }
    }
}
