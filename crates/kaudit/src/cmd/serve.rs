//! `kaudit serve`, and the commands around it: `config check`,
//! `quarantine list|show`, `webhook-kubeconfig`, `tail`.

use anyhow::{bail, Context};
use kaudit_server::config::ServerConfig;
use kaudit_sources::quarantine::Quarantine;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Arguments of `kaudit serve`.
#[derive(clap::Args)]
#[command(after_help = "EXAMPLES:\n  \
    kaudit serve --demo                                  # a live demo on http://127.0.0.1:8080\n  \
    kaudit serve --config /etc/kaudit/kaudit.yaml        # tls.listen: 0.0.0.0:8443 with auth.tokens\n  \
    kaudit serve --tls-listen 127.0.0.1:8443             # HTTPS on loopback, no credentials\n\n\
    Off loopback, credentials are required: serve refuses to start until the config names\n\
    auth.tokens (or auth.client_certs, matched by certificate CN, with tls.client_ca);\n\
    --client-ca needs auth.client_certs entries, and a certificate no entry names gets 403.\n\n\
    Point kube-apiserver at it with --audit-webhook-config-file (see `kaudit webhook-kubeconfig`).\n\
    Every option can also be set in the YAML config (see kaudit.example.yaml) or with a\n\
    KAUDIT_<PATH> environment variable, `__` between levels: KAUDIT_INGEST__MAX_BODY=128MiB.")]
pub struct Args {
    /// YAML configuration file.
    #[arg(long, short = 'c', env = "KAUDIT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config's `data`).
    #[arg(long, env = "KAUDIT_DATA")]
    data: Option<PathBuf>,
    /// Plain HTTP listener (loopback only unless allow_insecure_http is set).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// HTTPS listener.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// Certificate chain for HTTPS (PEM); default: a self-signed pair in the data dir.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key for HTTPS (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA bundle that signs accepted client certificates (mTLS).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Start with generated traffic flowing into the store.
    #[arg(long)]
    demo: bool,
    /// Demo events per second.
    #[arg(long, default_value_t = 200)]
    demo_rate: u32,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<ServerConfig> {
    Ok(ServerConfig::load(
        path.map(|p| p.as_path()),
        std::env::vars(),
    )?)
}

/// Runs `kaudit serve`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = load_config(args.config.as_ref())?;
    if let Some(d) = args.data {
        cfg.data = d;
    }
    if let Some(l) = args.listen {
        cfg.listen = Some(l);
    }
    if let Some(l) = args.tls_listen {
        let t = cfg.tls.get_or_insert(kaudit_server::config::TlsConfig {
            listen: l,
            cert: None,
            key: None,
            client_ca: None,
            names: vec!["localhost".into(), "127.0.0.1".into()],
        });
        t.listen = l;
    }
    if let Some(t) = cfg.tls.as_mut() {
        if args.tls_cert.is_some() {
            t.cert = args.tls_cert;
            t.key = args.tls_key;
        }
        if args.client_ca.is_some() {
            t.client_ca = args.client_ca;
        }
    } else if args.tls_cert.is_some() || args.client_ca.is_some() {
        bail!("--tls-cert/--client-ca need --tls-listen (or tls.listen in the config)");
    }
    init_logging(args.log_json || cfg.log.format == "json", &cfg.log.level);
    let stop = Arc::new(AtomicBool::new(false));
    kaudit_server::serve::run(
        cfg,
        kaudit_server::serve::RunOptions {
            sources: if args.demo {
                vec![Box::new(kaudit_sources::generated::GeneratedSource::new(
                    args.demo_rate,
                ))]
            } else {
                Vec::new()
            },
            on_ready: None,
        },
        stop,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAUDIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// `kaudit config ...`.
#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Load a config (with KAUDIT_* overrides), report every problem, print the result.
    Check {
        /// The YAML file.
        #[arg(env = "KAUDIT_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs `kaudit config`.
pub fn config(c: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { config } = c;
    let cfg = load_config(config.as_ref())?;
    let problems = cfg.check();
    for p in &problems {
        eprintln!("problem: {p}");
    }
    if problems.is_empty() {
        println!(
            "config ok: data {}, listen {}, tls {}, {} token(s), {} client cert(s), {} file source(s)",
            cfg.data.display(),
            cfg.listen.map_or("off".into(), |l| l.to_string()),
            cfg.tls.as_ref().map_or("off".into(), |t| t.listen.to_string()),
            cfg.auth.tokens.len(),
            cfg.auth.client_certs.len(),
            cfg.sources.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// `kaudit quarantine ...`.
#[derive(clap::Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined items: id, time, cluster, source, reason.
    List {
        /// Data directory.
        #[arg(long, env = "KAUDIT_DATA", default_value = "./kaudit-data")]
        data: PathBuf,
        /// JSON lines instead of a table.
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
        /// The store's encryption key file, to read sealed entries.
        #[arg(long, env = "KAUDIT_ENCRYPTION_KEY")]
        encryption_key: Option<PathBuf>,
    },
    /// Print one quarantined item's original bytes.
    Show {
        /// Its id (from `list`).
        id: u64,
        /// Data directory.
        #[arg(long, env = "KAUDIT_DATA", default_value = "./kaudit-data")]
        data: PathBuf,
        /// The store's encryption key file, to read sealed entries.
        #[arg(long, env = "KAUDIT_ENCRYPTION_KEY")]
        encryption_key: Option<PathBuf>,
    },
}

fn open_quarantine(data: &Path, key: Option<&Path>) -> anyhow::Result<Quarantine> {
    let cipher = match key {
        Some(k) => Some(std::sync::Arc::new(kaudit_store::crypt::Cipher::load(k)?)),
        None => None,
    };
    Ok(kaudit_server::serve::open_quarantine(
        data,
        cipher.as_ref(),
    )?)
}

/// Runs `kaudit quarantine`.
pub fn quarantine(c: QuarantineCommand) -> anyhow::Result<ExitCode> {
    match c {
        QuarantineCommand::List {
            data,
            output,
            encryption_key,
        } => {
            let q = open_quarantine(&data, encryption_key.as_deref())?;
            let items = q.list()?;
            if output == "jsonl" || output == "json" {
                for e in &items {
                    println!("{}", serde_json::to_string(e)?);
                }
            } else {
                println!(
                    "{:<6} {:<28} {:<16} {:<24} REASON",
                    "ID", "TIME", "CLUSTER", "SOURCE"
                );
                for e in &items {
                    let reason = match &e.path {
                        Some(p) => format!("{p}: {}", e.reason),
                        None => e.reason.clone(),
                    };
                    println!(
                        "{:<6} {:<28} {:<16} {:<24} {}",
                        e.id, e.time, e.cluster, e.source, reason
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show {
            id,
            data,
            encryption_key,
        } => {
            let q = open_quarantine(&data, encryption_key.as_deref())?;
            let e = q
                .list()?
                .into_iter()
                .find(|e| e.id == id)
                .with_context(|| format!("no quarantined item with id {id}"))?;
            eprintln!("# {} {} {} {}", e.time, e.cluster, e.source, e.reason);
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&e.bytes())?;
            out.write_all(b"\n")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Arguments of `kaudit webhook-kubeconfig`.
#[derive(clap::Args)]
#[command(after_help = "Then start kube-apiserver with:\n  \
    --audit-webhook-config-file=/etc/kubernetes/kaudit-webhook.yaml\n  \
    --audit-webhook-batch-max-size=400 --audit-webhook-batch-max-wait=5s\n  \
    --audit-policy-file=/etc/kubernetes/audit-policy.yaml")]
pub struct KubeconfigArgs {
    /// kaudit's HTTPS address, e.g. https://kaudit.example:8443
    #[arg(long)]
    server: String,
    /// Bearer token the apiserver sends.
    #[arg(long, conflicts_with = "client_cert")]
    token: Option<String>,
    /// Client certificate the apiserver presents (PEM path).
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Its private key (PEM path).
    #[arg(long)]
    client_key: Option<PathBuf>,
    /// CA that signed kaudit's serving certificate (PEM path).
    #[arg(long)]
    certificate_authority: Option<PathBuf>,
    /// Cluster name to send as `?cluster=` (the credential must allow it).
    #[arg(long)]
    cluster: Option<String>,
}

/// `kaudit webhook-config`.
#[derive(clap::Args)]
pub struct WebhookConfigArgs {
    /// kaudit's HTTPS address (https://kaudit.example:8443), or the full admission
    /// endpoint URL; `/api/v1/admission[/TOKEN]` is appended when missing.
    #[arg(long)]
    url: String,
    /// An ingest token put in the URL path (`/api/v1/admission/TOKEN`): the
    /// apiserver of a managed cluster cannot send credentials to a webhook.
    #[arg(long)]
    token: Option<String>,
    /// CA that signed kaudit's serving certificate (PEM path), embedded as caBundle.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

/// Prints a ValidatingWebhookConfiguration that sends every mutating request
/// to kaudit's admission-capture endpoint (always allowed, failing open).
pub fn webhook_config(a: WebhookConfigArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    if !a.url.starts_with("https://") {
        bail!("--url must be https:// (Kubernetes calls admission webhooks over TLS only)");
    }
    let mut url = a.url.trim_end_matches('/').to_string();
    if !url.contains("/api/v1/admission") {
        url.push_str("/api/v1/admission");
    }
    if let Some(t) = &a.token {
        if t.is_empty()
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            bail!(
                "--token must be URL-safe (letters, digits, '-', '.', '_', '~') to go in the path"
            );
        }
        url.push('/');
        url.push_str(t);
    }
    let ca = match &a.ca_file {
        Some(p) => {
            let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            if !pem.starts_with(b"-----BEGIN") {
                bail!("{}: not a PEM file", p.display());
            }
            Some(base64::engine::general_purpose::STANDARD.encode(pem))
        }
        None => None,
    };
    print!(
        "{}",
        kaudit_sources::managed::admission::webhook_configuration(&url, ca.as_deref())
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the kubeconfig for `--audit-webhook-config-file`.
pub fn webhook_kubeconfig(a: KubeconfigArgs) -> anyhow::Result<ExitCode> {
    if !a.server.starts_with("https://")
        && !a.server.starts_with("http://127.")
        && !a.server.starts_with("http://localhost")
    {
        bail!("--server must be https:// (plain http only to loopback)");
    }
    let mut url = format!("{}/api/v1/ingest/k8s", a.server.trim_end_matches('/'));
    if let Some(c) = &a.cluster {
        url.push_str(&format!("?cluster={c}"));
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut y = String::new();
    y.push_str("apiVersion: v1\nkind: Config\nclusters:\n- name: kaudit\n  cluster:\n");
    y.push_str(&format!("    server: {}\n", q(&url)));
    if let Some(ca) = &a.certificate_authority {
        y.push_str(&format!(
            "    certificate-authority: {}\n",
            q(&ca.display().to_string())
        ));
    }
    y.push_str("users:\n- name: kube-apiserver\n  user:\n");
    match (&a.token, &a.client_cert, &a.client_key) {
        (Some(t), _, _) => y.push_str(&format!("    token: {}\n", q(t))),
        (None, Some(c), Some(k)) => {
            y.push_str(&format!(
                "    client-certificate: {}\n",
                q(&c.display().to_string())
            ));
            y.push_str(&format!(
                "    client-key: {}\n",
                q(&k.display().to_string())
            ));
        }
        _ => bail!("give --token or --client-cert with --client-key"),
    }
    y.push_str("contexts:\n- name: kaudit\n  context:\n    cluster: kaudit\n    user: kube-apiserver\ncurrent-context: kaudit\n");
    print!("{y}");
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `kaudit tail`.
#[derive(clap::Args)]
#[command(
    after_help = "Follows the file as kube-apiserver's log backend writes it, through\n\
    lumberjack rotation (rename + new file, .gz backups), copytruncate and restarts, and\n\
    stores every event durably. The position is saved only after the events are durable,\n\
    so a restart neither loses nor repeats a line. Stop it with Ctrl-C or SIGTERM."
)]
pub struct TailArgs {
    /// The active audit log (kube-apiserver's --audit-log-path).
    path: PathBuf,
    /// Cluster name for its events.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Data directory.
    #[arg(long, env = "KAUDIT_DATA", default_value = "./kaudit-data")]
    data: PathBuf,
    /// Ingest-time audit policy.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Do not redact Secret data and tokens.
    #[arg(long)]
    no_redact: bool,
}

/// Runs `kaudit tail`: `serve` with one file source and no listener.
pub fn tail(a: TailArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = ServerConfig {
        data: a.data,
        listen: None,
        ..Default::default()
    };
    cfg.ingest.policy = a.policy;
    cfg.ingest.redact = !a.no_redact;
    cfg.sources = vec![kaudit_sources::SourceConfig::File(
        kaudit_sources::file::FileSourceConfig {
            path: a.path,
            cluster: a.cluster,
        },
    )];
    init_logging(false, "info");
    kaudit_server::serve::run(cfg, Default::default(), Arc::new(AtomicBool::new(false)))?;
    Ok(ExitCode::SUCCESS)
}
