//! A small blocking client of ClickHouse's HTTP interface: statements go in
//! the body, results come back as `RowBinary` (exact bytes, no escaping) or
//! text, settings ride in the URL, errors carry the server's message.

use crate::{ChResult, ClickHouseConfig, ClickHouseError};
use std::io::Read;

/// Longest server error message kept.
const MAX_MESSAGE: usize = 2000;

/// A connection to one ClickHouse HTTP endpoint.
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    url: String,
    database: String,
    user: Option<String>,
    password: Option<String>,
    /// Server major version (LowCardinality needs a setting before 19).
    major: u32,
}

fn what(sql: &str) -> String {
    let mut s: String = sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
    if s.len() > 80 {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl Client {
    /// Connects (asks the server's version) with the settings of `cfg`.
    pub fn connect(cfg: &ClickHouseConfig) -> ChResult<Client> {
        cfg.validate()?;
        let mut b = reqwest::blocking::Client::builder()
            .timeout(cfg.timeout())
            .connect_timeout(cfg.timeout().min(std::time::Duration::from_secs(5)));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|source| ClickHouseError::Io {
                path: ca.clone(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ClickHouseError::Config(format!("store.clickhouse.ca_file {}: {e}", ca.display()))
            })?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|source| ClickHouseError::Http {
            url: cfg.url.clone(),
            source,
        })?;
        let password = match &cfg.password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|source| ClickHouseError::Io {
                        path: p.clone(),
                        source,
                    })?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            None => None,
        };
        let mut c = Client {
            http,
            url: cfg.url.trim_end_matches('/').to_string(),
            database: cfg.database.clone(),
            user: cfg.user.clone(),
            password,
            major: 0,
        };
        let v = c.text_in("default", "SELECT version()")?;
        c.major = v
            .trim()
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        Ok(c)
    }

    /// The server's major version.
    pub fn major_version(&self) -> u32 {
        self.major
    }

    /// The database this client works in.
    pub fn database(&self) -> &str {
        &self.database
    }

    fn send(
        &self,
        database: &str,
        sql: &str,
        settings: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> ChResult<reqwest::blocking::Response> {
        let mut params: Vec<(&str, &str)> = vec![("database", database)];
        params.extend_from_slice(settings);
        let mut req = self.http.post(&self.url).query(&params);
        if let Some(u) = &self.user {
            req = req.basic_auth(u, self.password.as_deref());
        }
        let req = match body {
            // The statement in the URL, the rows in the body.
            Some(b) => req.query(&[("query", sql)]).body(b),
            None => req.body(sql.to_string()),
        };
        let resp = req.send().map_err(|source| ClickHouseError::Http {
            url: self.url.clone(),
            source,
        })?;
        let status = resp.status();
        if !status.is_success() {
            let mut message = resp.text().unwrap_or_default();
            if message.len() > MAX_MESSAGE {
                let mut cut = MAX_MESSAGE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            return Err(ClickHouseError::Server {
                what: what(sql),
                status: status.as_u16(),
                message: message.trim().to_string(),
            });
        }
        Ok(resp)
    }

    fn text_in(&self, database: &str, sql: &str) -> ChResult<String> {
        let resp = self.send(database, sql, &[], None)?;
        resp.text().map_err(|source| ClickHouseError::Http {
            url: self.url.clone(),
            source,
        })
    }

    /// Runs a statement and returns its text answer.
    pub fn execute(&self, sql: &str) -> ChResult<String> {
        self.text_in(&self.database, sql)
    }

    /// Runs a DDL statement. Before 19.x `LowCardinality` is experimental
    /// and the setting allowing it does not travel with `ON CLUSTER` DDL to
    /// the other replicas, so there those columns are plain `String` (same
    /// values, same answers; only the storage differs).
    pub fn ddl(&self, database: &str, sql: &str) -> ChResult<()> {
        let sql = if self.major < 19 {
            sql.replace("LowCardinality(String)", "String")
        } else {
            sql.to_string()
        };
        self.send(database, &sql, &[], None)?;
        Ok(())
    }

    /// Runs a query and returns its whole answer (ask for a format).
    pub fn query_bytes(&self, sql: &str) -> ChResult<Vec<u8>> {
        let mut r = self.query_reader(sql)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(|e| ClickHouseError::Answer {
                what: what(sql),
                message: e.to_string(),
            })?;
        Ok(out)
    }

    /// Runs a query and returns its answer as a stream, so large answers
    /// are never held whole.
    pub fn query_reader(&self, sql: &str) -> ChResult<reqwest::blocking::Response> {
        self.send(&self.database, sql, &[], None)
    }

    /// Inserts `body` (rows in the format the statement names).
    pub fn insert(&self, sql: &str, body: Vec<u8>) -> ChResult<()> {
        self.send(&self.database, sql, &[], Some(body))?;
        Ok(())
    }

    /// Answers `/ping`: whether the server is reachable at all.
    pub fn ping(&self) -> bool {
        self.http
            .get(format!("{}/ping", self.url))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }
}
