//! `kaudit docker-proxy`: the auditing Docker socket proxy as its own
//! process, delivering to a running `kaudit serve`.

use anyhow::{Context, Result};
use clap::Parser;
use kaudit_sources::docker::{self, spool::SpoolTarget, DockerProxyConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Arguments of `kaudit docker-proxy`.
#[derive(Parser, Debug)]
#[command(after_help = "\
Clients use kaudit's socket instead of the daemon's:\n  \
    kaudit docker-proxy --listen /run/kaudit/docker.sock --upstream /var/run/docker.sock \\\n      \
    --server http://127.0.0.1:8080 --name build-01 --socket-mode 0660\n  \
    export DOCKER_HOST=unix:///run/kaudit/docker.sock\n\n\
Every call is forwarded byte for byte (attach, exec, logs -f, events, build uploads included) and\n\
recorded with the caller's user (SO_PEERCRED), process, method, path, status and latency, as\n\
audit.k8s.io/v1 Events (objectRef.apiGroup docker.com). Records are spooled in --spool until the\n\
server acknowledged them; its ingest policy decides their level. Restrict the daemon's own socket\n\
to root so that the proxy is the only way in.")]
pub struct Args {
    /// The socket to listen on.
    #[arg(long, default_value = "/run/kaudit/docker.sock")]
    listen: PathBuf,
    /// The Docker daemon's socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    upstream: PathBuf,
    /// `kaudit serve` to deliver to (http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Name of this Docker host: the cluster its records are filed under.
    #[arg(long)]
    name: String,
    /// Bearer token with the ingest role (or KAUDIT_TOKEN).
    #[arg(long, env = "KAUDIT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Directory of the durable outbox.
    #[arg(long, default_value = "/var/lib/kaudit/docker-proxy")]
    spool: PathBuf,
    /// Permission bits of the listening socket (octal).
    #[arg(long, default_value = "0660")]
    socket_mode: String,
    /// Level records are made at (the server's policy may lower it).
    #[arg(long, default_value = "RequestResponse")]
    level: String,
    /// Largest body kept in a record, in bytes.
    #[arg(long, default_value_t = docker::proxy::DEFAULT_MAX_BODY)]
    max_body: usize,
}

/// Runs the proxy until the process is stopped.
pub fn run(a: Args) -> Result<ExitCode> {
    let cfg = DockerProxyConfig {
        listen: a.listen,
        upstream: a.upstream,
        name: a.name.clone(),
        level: Some(a.level),
        max_body: Some(a.max_body),
        socket_mode: Some(a.socket_mode),
    };
    let target = SpoolTarget::parse(&a.server, &a.name, a.token).map_err(anyhow::Error::msg)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    eprintln!(
        "kaudit docker-proxy: {} -> {}, records to {} as {:?}",
        cfg.listen.display(),
        cfg.upstream.display(),
        a.server,
        a.name
    );
    docker::run_standalone(&cfg, &a.spool, target, Arc::new(AtomicBool::new(false)))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("docker-proxy")?;
    Ok(ExitCode::SUCCESS)
}
