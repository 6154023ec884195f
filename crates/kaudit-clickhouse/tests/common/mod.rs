//! Test fixtures: a real clickhouse-server started unprivileged on loopback
//! with its own config and data directory, and stores of generated events.
#![allow(dead_code)]

use kaudit_clickhouse::{ClickHouseConfig, Shipper};
use kaudit_event::MicroTime;
use kaudit_store::{Followed, Follower, Record, Store, StoreOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Server processes this test started and has not reaped yet, so the
/// [`Watchdog`] can kill them before it ends a hung test.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register(pid: u32) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.push(pid);
    }
}

fn unregister(pid: u32) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.retain(|p| *p != pid);
    }
}

/// Ends the test process (status 1) if it is still running after a
/// deadline: every server it started is killed first, and `what` plus the
/// last step reached is printed, so a test can fail but never hang.
pub struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
    step: std::sync::Arc<Mutex<String>>,
}

impl Watchdog {
    /// Arms a watchdog of `limit` over the test `what`.
    pub fn arm(limit: Duration, what: &str) -> Watchdog {
        let (done, rx) = std::sync::mpsc::channel::<()>();
        let step = std::sync::Arc::new(Mutex::new("start".to_string()));
        let (what, at) = (what.to_string(), step.clone());
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                let last = at.lock().map(|s| s.clone()).unwrap_or_default();
                eprintln!("{what}: still running after {limit:?} (last step: {last}); killing its servers and failing");
                if let Ok(c) = CHILDREN.lock() {
                    for pid in c.iter() {
                        // SAFETY: kill(2) on a pid this process spawned.
                        unsafe {
                            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
                        }
                    }
                }
                std::process::exit(1);
            }
        });
        Watchdog { done, step }
    }

    /// Records the step the test reached (printed if the deadline passes).
    pub fn step(&self, s: &str) {
        eprintln!("step: {s}");
        if let Ok(mut g) = self.step.lock() {
            *g = s.to_string();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}

/// The server binary; the test command installs it (Debian's
/// clickhouse-server). Missing is a failure, not a skip.
pub const SERVER: &str = "/usr/sbin/clickhouse-server";

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Replication settings of a server that is one replica of a cluster.
#[derive(Clone)]
pub struct Replica {
    /// ZooKeeper client port.
    pub zk_port: u16,
    /// Cluster name.
    pub cluster: String,
    /// HTTP... no: native TCP ports of every replica of the one shard.
    pub tcp_ports: Vec<u16>,
    /// This replica's name.
    pub name: String,
}

/// One running clickhouse-server; killed (SIGKILL) and reaped on drop.
pub struct ClickHouse {
    pub dir: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    pub inter_port: u16,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    replica: Option<Replica>,
}

impl ClickHouse {
    /// Starts a standalone server.
    pub fn start() -> ClickHouse {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut ch = ClickHouse::configure(dir, free_port(), free_port(), None);
        ch._tmp = Some(tmp);
        ch.spawn();
        ch
    }

    /// Writes the config of a server in `dir` (no start).
    pub fn configure(
        dir: PathBuf,
        http_port: u16,
        tcp_port: u16,
        replica: Option<Replica>,
    ) -> ClickHouse {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: apt-get install -y clickhouse-server (scripts/test.sh installs it)"
        );
        let inter_port = free_port();
        std::fs::create_dir_all(dir.join("data")).expect("data dir");
        let d = dir.display();
        let mut extra = String::new();
        if let Some(r) = &replica {
            let replicas: String = r
                .tcp_ports
                .iter()
                .map(|p| format!("<replica><host>127.0.0.1</host><port>{p}</port></replica>"))
                .collect();
            extra = format!(
                "<zookeeper><node><host>127.0.0.1</host><port>{}</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>\
                 <remote_servers><{c}><shard><internal_replication>true</internal_replication>{replicas}</shard></{c}></remote_servers>\
                 <macros><shard>01</shard><replica>{}</replica></macros>\
                 <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>",
                r.zk_port,
                r.name,
                c = r.cluster
            );
        }
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/err.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <interserver_http_port>{inter_port}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/data/tmp/</tmp_path>
  <user_files_path>{d}/data/user_files/</user_files_path>
  <format_schema_path>{d}/data/format_schemas/</format_schema_path>
  <mark_cache_size>53687091</mark_cache_size>
  <uncompressed_cache_size>0</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mlock_executable>false</mlock_executable>
  {extra}
</yandex>
"#
        );
        std::fs::write(dir.join("config.xml"), config).expect("config");
        std::fs::write(
            dir.join("users.xml"),
            r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"#,
        )
        .expect("users");
        ClickHouse {
            dir,
            http_port,
            tcp_port,
            inter_port,
            child: None,
            _tmp: None,
            replica,
        }
    }

    /// Starts (or restarts) the server process and waits for `/ping`.
    pub fn spawn(&mut self) {
        let child = Command::new(SERVER)
            .arg(format!("--config-file={}/config.xml", self.dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clickhouse-server");
        register(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/ping", self.url());
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        loop {
            if http.get(&url).send().is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    let log = std::fs::read_to_string(self.dir.join("err.log")).unwrap_or_default();
                    panic!(
                        "clickhouse-server exited with {st}: {}",
                        &log[log.len().saturating_sub(3000)..]
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not answer /ping within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            unregister(c.id());
        }
    }

    /// The HTTP url.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A kaudit config for this server as node `node_id`.
    pub fn config(&self, node_id: u16) -> ClickHouseConfig {
        let mut c = ClickHouseConfig::new(&self.url());
        c.node_id = node_id;
        c.batch_events = 5_000;
        c
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A store of `n` generated events of one cluster.
pub fn store_of(dir: &Path, cluster: &str, n: u64, seed: u64) -> Store {
    let store = Store::open(dir, StoreOptions::default()).expect("open store");
    append_generated(&store, cluster, n, seed, 0);
    store
}

/// Appends `n` generated events of `cluster` to `store`.
pub fn append_generated(store: &Store, cluster: &str, n: u64, seed: u64, offset: i64) {
    append_records(store, &generated(cluster, n, seed, offset));
}

/// `n` generated events of `cluster`, received from `offset` µs after a
/// fixed time.
pub fn generated(cluster: &str, n: u64, seed: u64, offset: i64) -> Vec<Record> {
    let mut cfg = kaudit_gen::GenConfig::new(seed);
    cfg.events = Some(n);
    cfg.clusters = vec![cluster.to_string()];
    let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut i = offset;
    while g.next_into(&mut line).is_some() {
        out.push(Record {
            cluster: cluster.to_string(),
            received: MicroTime(1_800_000_000_000_000 + i),
            event: std::mem::take(&mut line),
        });
        i += 1;
    }
    out
}

/// Appends `records` to `store` in one transaction (what ingest
/// acknowledges after).
pub fn append_records(store: &Store, records: &[Record]) {
    let mut tx = store.transaction().expect("tx");
    for r in records {
        tx.push(r).expect("push");
    }
    tx.commit().expect("commit");
}

/// Steps `shipper` until it is caught up (panics after `max_failures`).
pub fn ship_all(shipper: &mut Shipper, store: &Store) -> u64 {
    let stop = AtomicBool::new(false);
    let log = Followed {
        store,
        feed: None,
        stop: &stop,
    };
    let mut total = 0;
    loop {
        match shipper.step(&log) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) => panic!("shipping failed: {e}"),
        }
    }
}

/// A ZooKeeper (Debian's 3.8) started on loopback with its own data dir;
/// killed on drop.
pub struct ZooKeeper {
    pub port: u16,
    child: Child,
    _tmp: tempfile::TempDir,
}

impl ZooKeeper {
    /// Starts it and waits until it answers `ruok`.
    pub fn start() -> ZooKeeper {
        let jar = Path::new("/usr/share/java/zookeeper.jar");
        assert!(
            jar.exists(),
            "{} is missing: apt-get install -y zookeeper (scripts/test.sh installs it)",
            jar.display()
        );
        let tmp = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let cfg = tmp.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ndataDir={}/data\nclientPort={port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n",
                tmp.path().display()
            ),
        )
        .expect("zoo.cfg");
        let child = Command::new("java")
            .arg("-cp")
            .arg("/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/*")
            .arg("-Dzookeeper.admin.enableServer=false")
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zookeeper");
        register(child.id());
        let zk = ZooKeeper {
            port,
            child,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            use std::io::{Read, Write};
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                let mut out = String::new();
                if s.write_all(b"ruok").is_ok()
                    && s.read_to_string(&mut out).is_ok()
                    && out == "imok"
                {
                    return zk;
                }
            }
            assert!(
                Instant::now() < deadline,
                "zookeeper did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(self.child.id());
    }
}

/// Two clickhouse-server replicas of one shard of cluster `cluster`.
pub fn replicated_pair(
    zk: &ZooKeeper,
    cluster: &str,
) -> (ClickHouse, ClickHouse, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tmp");
    let (h1, h2, t1, t2) = (free_port(), free_port(), free_port(), free_port());
    let replica = |name: &str| Replica {
        zk_port: zk.port,
        cluster: cluster.to_string(),
        tcp_ports: vec![t1, t2],
        name: name.to_string(),
    };
    let mut a = ClickHouse::configure(tmp.path().join("r1"), h1, t1, Some(replica("r1")));
    let mut b = ClickHouse::configure(tmp.path().join("r2"), h2, t2, Some(replica("r2")));
    a.spawn();
    b.spawn();
    (a, b, tmp)
}

/// A shipper running as a follower of `store` on its own thread (as `kaudit
/// serve` runs it), with the follower status the server reports.
pub struct ShipperThread {
    /// The follower's status (up, backlog, failures, last error).
    pub status: std::sync::Arc<kaudit_store::FollowerStatus>,
    stop: std::sync::Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Shipper>>,
}

impl ShipperThread {
    /// Starts `shipper` over `store`, backing off at most `backoff_max`
    /// between failed steps.
    pub fn start(
        shipper: Shipper,
        store: std::sync::Arc<Store>,
        backoff_max: Duration,
    ) -> ShipperThread {
        let status = std::sync::Arc::new(kaudit_store::FollowerStatus::new("clickhouse"));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let handle = {
            let (status, stop) = (status.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut shipper = shipper;
                let log = Followed {
                    store: &store,
                    feed: None,
                    stop: &stop,
                };
                let opts = kaudit_store::FollowOptions {
                    backoff_max,
                    ..kaudit_store::FollowOptions::default()
                };
                kaudit_store::run_follower(&mut shipper, &log, &opts, &status);
                shipper
            })
        };
        ShipperThread {
            status,
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the follower and hands the shipper back.
    pub fn stop(&mut self) -> Shipper {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .expect("shipper thread already stopped")
            .join()
            .expect("shipper thread")
    }
}

/// A TCP proxy in front of a server that cuts every connection once it has
/// passed `cut` bytes of answers: a stream breaking mid-way, as when a
/// replica dies while it answers. Counts the cuts.
pub struct CuttingProxy {
    /// The proxy's HTTP url.
    pub url: String,
    /// Connections cut so far.
    pub cuts: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CuttingProxy {
    /// Starts a proxy to `127.0.0.1:upstream` (runs until the test ends).
    pub fn start(upstream: u16, cut: usize) -> CuttingProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = l.local_addr().expect("addr").port();
        let cuts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = cuts.clone();
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(mut client) = client else { continue };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let cuts = counted.clone();
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 << 10];
                    let mut passed = 0usize;
                    loop {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if passed + n >= cut {
                            let _ = client.write_all(&buf[..cut - passed]);
                            let _ = client.flush();
                            cuts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                        passed += n;
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                });
            }
        });
        CuttingProxy {
            url: format!("http://127.0.0.1:{port}"),
            cuts,
        }
    }
}
