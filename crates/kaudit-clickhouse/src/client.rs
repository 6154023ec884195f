//! A small blocking client of ClickHouse's HTTP interface: statements go in
//! the body, results come back as `RowBinary` (exact bytes, no escaping) or
//! text, settings ride in the URL, errors carry the server's message.

use crate::{ChResult, ClickHouseConfig, ClickHouseError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Longest server error message kept.
const MAX_MESSAGE: usize = 2000;

/// A connection to ClickHouse's HTTP interface: one endpoint, or several
/// replicas of one cluster tried in turn (`url` then `fallback_urls`), so a
/// dead replica costs one refused connection, not an answer.
#[derive(Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    /// Every endpoint, `url` first; all serve the same tables.
    urls: Arc<Vec<String>>,
    /// The endpoint in use: the last one that answered.
    current: Arc<AtomicUsize>,
    /// Statement timeout in seconds, also the wait bound of `ON CLUSTER`
    /// DDL (`distributed_ddl_task_timeout`), so no statement waits on a
    /// dead replica longer than a request may take.
    timeout_secs: u64,
    database: String,
    user: Option<String>,
    password: Option<String>,
    /// Server major version (LowCardinality needs a setting before 19).
    major: u32,
    /// Streamed answers that broke mid-way and were read on (see
    /// [`Client::skip`]).
    resumes: Arc<std::sync::atomic::AtomicU64>,
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
        let urls: Vec<String> = std::iter::once(&cfg.url)
            .chain(cfg.fallback_urls.iter())
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        let mut c = Client {
            http,
            urls: Arc::new(urls),
            current: Arc::new(AtomicUsize::new(0)),
            timeout_secs: cfg.timeout().as_secs(),
            database: cfg.database.clone(),
            user: cfg.user.clone(),
            password,
            major: 0,
            resumes: Arc::default(),
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
        self.send_then(database, sql, settings, body, Ok)
    }

    /// Sends a statement and hands the answer to `read`. Each endpoint is
    /// tried once, starting with the one that answered last: a transport
    /// failure (refused, reset, timed out, also while `read` reads the
    /// answer) moves on to the next replica; an error the server answered
    /// with does not. Statements are safe to repeat: DDL is `IF NOT
    /// EXISTS`, reads are reads, and a repeated INSERT is folded by block
    /// deduplication and the (node, seq) key.
    fn send_then<T>(
        &self,
        database: &str,
        sql: &str,
        settings: &[(&str, &str)],
        body: Option<Vec<u8>>,
        read: impl Fn(reqwest::blocking::Response) -> Result<T, reqwest::Error>,
    ) -> ChResult<T> {
        let body = body.map(bytes::Bytes::from);
        let n = self.urls.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last_err = None;
        for i in 0..n {
            let at = (first + i) % n;
            let r = self
                .send_to(at, database, sql, settings, body.clone())
                .and_then(|r| self.check(sql, r))
                .and_then(|r| {
                    read(r).map_err(|source| ClickHouseError::Http {
                        url: self.urls[at].clone(),
                        source,
                    })
                });
            match r {
                Ok(v) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e @ ClickHouseError::Http { .. }) => {
                    if n > 1 {
                        tracing::warn!(url = %self.urls[at], error = %e, "clickhouse: endpoint failed, trying the next");
                    }
                    last_err = Some(e);
                }
                Err(e) => {
                    // The server answered: this endpoint is alive.
                    self.current.store(at, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ClickHouseError::Config("no url".into())))
    }

    fn send_to(
        &self,
        at: usize,
        database: &str,
        sql: &str,
        settings: &[(&str, &str)],
        body: Option<bytes::Bytes>,
    ) -> ChResult<reqwest::blocking::Response> {
        let url = &self.urls[at];
        let mut params: Vec<(&str, &str)> = vec![("database", database)];
        params.extend_from_slice(settings);
        let mut req = self.http.post(url).query(&params);
        if let Some(u) = &self.user {
            req = req.basic_auth(u, self.password.as_deref());
        }
        let req = match body {
            // The statement in the URL, the rows in the body.
            Some(b) => req.query(&[("query", sql)]).body(b),
            None => req.body(sql.to_string()),
        };
        req.send().map_err(|source| ClickHouseError::Http {
            url: url.clone(),
            source,
        })
    }

    fn check(
        &self,
        sql: &str,
        resp: reqwest::blocking::Response,
    ) -> ChResult<reqwest::blocking::Response> {
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
        self.send_then(database, sql, &[], None, |r| r.text())
    }

    /// The endpoint in use (the last one that answered).
    pub fn url(&self) -> &str {
        &self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()]
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
        // `ON CLUSTER` DDL waits for every host (180 s by default); a
        // dead replica must cost at most one request timeout. The DDL stays
        // queued in ZooKeeper and the replica runs it when it is back.
        let wait = self.timeout_secs.saturating_sub(2).max(1).to_string();
        let settings: &[(&str, &str)] = if sql.contains(" ON CLUSTER ") {
            &[("distributed_ddl_task_timeout", wait.as_str())]
        } else {
            &[]
        };
        self.send(database, &sql, settings, None)?;
        Ok(())
    }

    /// Runs a query and returns its whole answer (ask for a format).
    pub fn query_bytes(&self, sql: &str) -> ChResult<Vec<u8>> {
        self.send_then(&self.database, sql, &[], None, |r| {
            r.bytes().map(|b| b.to_vec())
        })
    }

    /// Runs a query and returns its answer as a stream, so large answers
    /// are never held whole.
    pub fn query_reader(&self, sql: &str) -> ChResult<reqwest::blocking::Response> {
        self.send(&self.database, sql, &[], None)
    }

    /// Runs a query whose answer is streamed, and says which endpoint
    /// answers (for [`Client::skip`] when the stream breaks).
    pub fn query_stream(&self, sql: &str) -> ChResult<(usize, reqwest::blocking::Response)> {
        let r = self.send(&self.database, sql, &[], None)?;
        Ok((self.current.load(Ordering::Relaxed) % self.urls.len(), r))
    }

    /// Moves off endpoint `at` after its answer broke mid-stream: the next
    /// statement starts with the next endpoint (the caller reads the rest
    /// of the answer there).
    pub fn skip(&self, at: usize) {
        let n = self.urls.len();
        let _ = self.current.compare_exchange(
            at % n,
            (at + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.resumes.fetch_add(1, Ordering::Relaxed);
    }

    /// How many endpoints there are (`url` and `fallback_urls`).
    pub fn endpoints(&self) -> usize {
        self.urls.len()
    }

    /// Streamed answers that broke mid-way and were read on from where
    /// they broke.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// Inserts `body` (rows in the format the statement names).
    pub fn insert(&self, sql: &str, body: Vec<u8>) -> ChResult<()> {
        self.insert_with(sql, body, &[])
    }

    /// Inserts `body` with query-level `settings`. They must ride in the
    /// URL: text after `FORMAT RowBinary` in the statement is read as the
    /// first bytes of the data.
    pub fn insert_with(&self, sql: &str, body: Vec<u8>, settings: &[(&str, &str)]) -> ChResult<()> {
        self.send(&self.database, sql, settings, Some(body))?;
        Ok(())
    }

    /// Answers `/ping`: whether any endpoint is reachable at all.
    pub fn ping(&self) -> bool {
        self.urls.iter().any(|u| {
            self.http
                .get(format!("{u}/ping"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        })
    }
}
