//! Docker hosts as audit sources: who pulled, created, started and exec'd
//! what, in the same `audit.k8s.io/v1` Events as Kubernetes.
//!
//! Three ways in, one event model:
//!
//! * [`proxy`]: an auditing socket proxy in front of `/var/run/docker.sock`
//!   (`sources: [{docker_proxy: {listen, upstream, name}}]`, or the
//!   standalone `kaudit docker-proxy` delivering through [`spool`]). It
//!   knows the calling process (`SO_PEERCRED`), so it names the local user.
//! * [`events`]: the daemon's own `/events` stream (`sources: [{docker:
//!   {host, name}}]`): what happened daemon-side (die, destroy, oom,
//!   health_status), with no caller.
//! * [`authz`]: an authorization plugin (`dockerd
//!   --authorization-plugin=kaudit`): every call through any listener, with
//!   the user the daemon authenticated (TLS client certificate), optionally
//!   enforcing deny rules.
//!
//! # The mapping ([`map`])
//!
//! | audit field | Engine API call (proxy, plugin) | daemon event (`/events`) |
//! | --- | --- | --- |
//! | `objectRef.apiGroup` | `docker.com` | `docker.com` |
//! | `objectRef.apiVersion` | the path's version prefix (`v1.41`) | empty |
//! | `objectRef.resource` | `containers`, `images`, `exec`, `volumes`, `networks`, `plugins`, `services`, `nodes`, `secrets`, `configs`, `swarm`, `system`, `events`, `auth`, `session` | the event `Type`, plural (`containers`, `images`, `daemons`, ...) |
//! | `objectRef.name` | id or name from the path; `?name=` on create; the image reference (`127.0.0.1:5000/busybox:1`) on pull/push | `Actor.Attributes.name`, else `Actor.ID` |
//! | `objectRef.uid` | - | `Actor.ID` when the name differs |
//! | `objectRef.subresource` | read-only views (`json`, `logs`, `stats`, `top`, `archive`), `attach`, `exec` | - |
//! | `verb` | Docker's action: `create`, `start`, `stop`, `restart`, `kill`, `pause`, `unpause`, `rename`, `update`, `attach`, `wait`, `exec` (`POST /containers/{id}/exec`), `start` of an `exec`, `delete`, `prune`, `pull`, `push`, `tag`, `import`, `load`, `save`, `build`, `commit`, `login` (`/auth`), `connect`/`disconnect` (networks), `enable`/`disable`/`set`/`upgrade` (plugins), `list`, `get`, `watch` (`/events`) | the event `Action` before any `: ` (`die`, `destroy`, `exec_start`, `health_status`); the rest goes to the `docker.com/action-detail` annotation |
//! | `user` | proxy: the peer's user name (passwd lookup of the `SO_PEERCRED` uid), `uid`, group names; plugin: the daemon's `User` (TLS client CN) or `docker:anonymous` | `system:dockerd` |
//! | `sourceIPs` | `127.0.0.1` (unix socket) | - |
//! | `userAgent` | the client's `User-Agent` (`Docker-Client/20.10.24 (linux)`) | - |
//! | `responseStatus` | the HTTP status; Docker's `message` on errors; `status: Failure` with the message when a 200 progress stream (pull, push, build) reported an error | - |
//! | `requestObject` / `responseObject` | JSON bodies at Request / RequestResponse (passwords, tokens and secrets redacted; `X-Registry-Auth` never kept) | - |
//! | `annotations` | `kaudit.io/source: docker`, `kaudit.io/host: <name>`, `docker.com/mode: proxy\|authz` | the same with mode `events`, plus `docker.com/exit-code`, `docker.com/image` |
//! | top-level `docker` | `host`, `method`, `path`, `query`, `apiVersion`, `status`, `latencyMicros`, `bytesIn`/`bytesOut`, `peer` (`uid`, `gid`, `pid`, `exe`, `cmdline`) | `host`, `event` (the original message, verbatim) |
//!
//! The records' cluster is the Docker host's `name`, so the console lists
//! Docker hosts beside clusters, and `source=docker` (the query field that
//! reads `kaudit.io/source`) selects them.

pub mod authz;
pub mod deliver;
pub mod events;
pub mod http;
pub mod map;
pub mod peer;
pub mod proxy;
pub mod spool;

use crate::docker::proxy::{ProxyError, Recorder};
use crate::pipeline::Ingestor;
use crate::source::Source;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use authz::{AuthzConfig, AuthzPlugin};
pub use events::{DockerEventsConfig, DockerEventsSource};
pub use proxy::{DockerProxyConfig, Proxy};

/// The proxy run inside `kaudit serve` as a source.
pub struct DockerProxySource {
    name: String,
    cfg: DockerProxyConfig,
}

impl DockerProxySource {
    /// The source of a `docker_proxy` entry.
    pub fn new(cfg: &DockerProxyConfig) -> DockerProxySource {
        DockerProxySource {
            name: format!("docker_proxy:{}", cfg.name),
            cfg: cfg.clone(),
        }
    }
}

impl Source for DockerProxySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, ingest: Arc<Ingestor>, stop: Arc<AtomicBool>) {
        let cfg = self.cfg;
        serve_listener(
            &self.name,
            &cfg.name,
            &cfg.listen,
            ingest,
            stop,
            |rec| Proxy::bind(&cfg, rec),
            Proxy::serve,
        );
    }
}

/// The authorization plugin run inside `kaudit serve` as a source.
pub struct AuthzSource {
    name: String,
    cfg: AuthzConfig,
}

impl AuthzSource {
    /// The source of a `docker_authz` entry.
    pub fn new(cfg: &AuthzConfig) -> AuthzSource {
        AuthzSource {
            name: format!("docker_authz:{}", cfg.name),
            cfg: cfg.clone(),
        }
    }
}

impl Source for AuthzSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, ingest: Arc<Ingestor>, stop: Arc<AtomicBool>) {
        let cfg = self.cfg;
        serve_listener(
            &self.name,
            &cfg.name,
            &cfg.listen,
            ingest,
            stop,
            |rec| AuthzPlugin::bind(&cfg, rec),
            AuthzPlugin::serve,
        );
    }
}

/// Runs an in-process Docker listener (the proxy or the authorization
/// plugin) until `stop`: binds it with a recorder feeding `ingest` under
/// cluster `host`, wakes its accept loop once `stop` is set, then waits for
/// the recorder to drain what it took.
fn serve_listener<L>(
    source: &str,
    host: &str,
    listen: &std::path::Path,
    ingest: Arc<Ingestor>,
    stop: Arc<AtomicBool>,
    bind: impl FnOnce(Arc<dyn Recorder>) -> Result<L, ProxyError>,
    serve: impl FnOnce(L, Arc<AtomicBool>),
) {
    let (recorder, drain) =
        deliver::ingesting(ingest, host.to_string(), source.to_string(), stop.clone());
    let listener = match bind(recorder) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(source = %source, error = %e, "docker listener cannot start");
            return;
        }
    };
    let wake_at = listen.to_path_buf();
    let watch_stop = stop.clone();
    let watcher = std::thread::spawn(move || {
        while !watch_stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        proxy::wake(&wake_at);
    });
    serve(listener, stop);
    let _ = watcher.join();
    let _ = drain.join();
}

/// Runs the standalone proxy (`kaudit docker-proxy`): records are spooled
/// durably in `spool_dir` and sent to a running `kaudit serve` at `to`,
/// where the server's policy applies on ingest. Returns once `stop` is set
/// and the spool has been sent (or could not be, it stays on disk for the
/// next start).
pub fn run_standalone(
    cfg: &DockerProxyConfig,
    spool_dir: &std::path::Path,
    to: spool::SpoolTarget,
    stop: Arc<AtomicBool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let sp = spool::Spool::open(spool_dir)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(deliver::QUEUE);
    let proxy = Proxy::bind(cfg, Arc::new(proxy::ChannelRecorder(tx)))?;
    let writer = {
        let sp = sp.clone();
        std::thread::spawn(move || sp.write_from(rx))
    };
    let sender = {
        let (sp, stop) = (sp.clone(), stop.clone());
        std::thread::spawn(move || sp.send_loop(&to, &stop))
    };
    let listen = cfg.listen.clone();
    let watch_stop = stop.clone();
    let watcher = std::thread::spawn(move || {
        while !watch_stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        proxy::wake(&listen);
    });
    proxy.serve(stop);
    let _ = watcher.join();
    let _ = writer.join();
    let _ = sender.join();
    Ok(())
}
