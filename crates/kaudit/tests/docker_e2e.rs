//! Docker audit end to end against a real daemon: Debian's dockerd started
//! here as root with its own data/exec roots and socket (no iptables, no
//! bridge, vfs), Debian's docker-registry on 127.0.0.1, two local users
//! driving the docker CLI through kaudit's proxy. kaudit must hold one entry
//! per action with the right user, verb, object and outcome, the events
//! source must add the daemon-side ones, `kaudit query` must answer, the
//! Docker rules must fire, and kaudit and dockerd restarts must lose and
//! duplicate nothing.
//!
//! Needs root, `dockerd`, `docker`, `docker-registry`, `busybox` and
//! `useradd` (scripts/test.sh installs the packages). Without them the test
//! fails loudly unless `KAUDIT_SKIP_ROOT_TESTS` is set.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn kaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the test can run; panics (or, with KAUDIT_SKIP_ROOT_TESTS, says
/// loudly that it skips) otherwise.
fn runnable() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = [
        "dockerd",
        "docker",
        "docker-registry",
        "busybox",
        "useradd",
        "runuser",
    ]
    .into_iter()
    .filter(|c| !have(c))
    .collect();
    if root && missing.is_empty() {
        return true;
    }
    let msg = format!(
        "the Docker end-to-end test needs root (have: {root}) and {missing:?} (apt-get install docker.io docker-registry busybox-static)"
    );
    if std::env::var_os("KAUDIT_SKIP_ROOT_TESTS").is_some() {
        eprintln!("!!!!! SKIPPED: {msg} (KAUDIT_SKIP_ROOT_TESTS is set) !!!!!");
        return false;
    }
    panic!("{msg}; set KAUDIT_SKIP_ROOT_TESTS=1 to skip it knowingly");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills (and reaps) a child when dropped, so a failing assertion leaves no
/// daemon behind.
struct Proc(Option<Child>, &'static str);

impl Proc {
    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SAFETY: kill(2) on our own child's pid touches no memory of ours.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("{} did not stop on SIGTERM; killing it", self.1);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct World {
    dir: PathBuf,
    daemon_sock: PathBuf,
    proxy_sock: PathBuf,
    data: PathBuf,
    image: String,
    port: u16,
}

impl World {
    fn dockerd(&self) -> Proc {
        let d = &self.dir;
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("docker-data"))
            .arg("--exec-root")
            .arg(d.join("docker-exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.daemon_sock.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let p = Proc(Some(child), "dockerd");
        let sock = self.daemon_sock.clone();
        wait_for("dockerd", 60, || {
            Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", sock.display()))
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        p
    }

    fn serve(&self) -> Proc {
        let log =
            std::fs::File::create(self.dir.join(format!("serve-{}.log", free_port()))).unwrap();
        let child = kaudit()
            .args(["serve", "--config"])
            .arg(self.dir.join("kaudit.yaml"))
            .env("KAUDIT_INGEST__MIN_FREE_DISK", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let p = Proc(Some(child), "kaudit serve");
        let port = self.port;
        wait_for("kaudit serve", 60, || {
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/readyz"))
                .is_ok_and(|r| r.status().is_success())
        });
        let sock = self.proxy_sock.clone();
        wait_for("the proxy socket", 20, || sock.exists());
        p
    }

    fn docker_as(&self, user: &str, args: &[&str]) -> String {
        let home = self.dir.join(format!("home-{user}"));
        sh(Command::new("runuser")
            .args(["-u", user, "--", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.proxy_sock.display()))
            .args(args))
    }

    /// A docker CLI process as `user` through the proxy, stdin and stdout piped.
    fn docker_cmd(&self, user: &str, args: &[&str]) -> Child {
        let home = self.dir.join(format!("home-{user}"));
        Command::new("runuser")
            .args(["-u", user, "--", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.proxy_sock.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn docker_root(&self, args: &[&str]) -> String {
        sh(Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.daemon_sock.display()))
            .args(args))
    }

    /// Every stored record matching `q`, as JSON.
    fn query(&self, q: &str) -> Vec<Value> {
        let out = kaudit()
            .args(["query", "--data"])
            .arg(&self.data)
            .args([q, "-o", "jsonl", "--limit", "10000"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "query {q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("jsonl"))
            .collect()
    }

    fn wait_query(&self, q: &str, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            got = self.query(q);
            if got.len() >= n {
                return got;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{q}: wanted {n} records, got {}: {got:#?}", got.len());
    }
}

fn add_user(name: &str, home: &Path) {
    let exists = Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        sh(Command::new("useradd").args(["-M", "-s", "/bin/sh", name]));
    }
    std::fs::create_dir_all(home).unwrap();
    sh(Command::new("chown").arg(name).arg(home));
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

#[test]
fn docker_through_kaudit_end_to_end() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("kd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().to_path_buf();
    sh(Command::new("chmod").arg("0755").arg(&dir));
    let port = free_port();
    let reg_port = free_port();
    let w = World {
        daemon_sock: dir.join("docker.sock"),
        proxy_sock: dir.join("kaudit-docker.sock"),
        data: dir.join("data"),
        image: format!("127.0.0.1:{reg_port}/busybox:1"),
        port,
        dir: dir.clone(),
    };

    // The registry.
    std::fs::write(
        dir.join("registry.yml"),
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{reg_port}\n",
            dir.join("registry").display()
        ),
    )
    .unwrap();
    let _registry = Proc(
        Some(
            Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("registry.yml"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
                .spawn()
                .expect("docker-registry starts"),
        ),
        "registry",
    );
    wait_for("the registry", 30, || {
        reqwest::blocking::get(format!("http://127.0.0.1:{reg_port}/v2/")).is_ok()
    });

    // The daemon, and an image in the registry (then removed locally, so
    // the pull below is real).
    let mut dockerd = w.dockerd();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let busybox = sh(Command::new("sh").args(["-c", "command -v busybox"]));
    std::fs::copy(busybox.trim(), rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "sleep", "echo", "true", "false", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    sh(Command::new("sh").args([
        "-c",
        &format!(
            "tar -C {} -c . | docker -H unix://{} import - {}",
            rootfs.display(),
            w.daemon_sock.display(),
            w.image
        ),
    ]));
    w.docker_root(&["push", &w.image]);
    w.docker_root(&["rmi", &w.image]);

    for u in ["alice", "bob"] {
        add_user(u, &dir.join(format!("home-{u}")));
    }
    std::fs::write(
        dir.join("kaudit.yaml"),
        format!(
            "data: {data}\nlisten: 127.0.0.1:{port}\nsources:\n  - docker_proxy: {{listen: {proxy}, upstream: {daemon}, name: build-01, socket_mode: \"0666\"}}\n  - docker: {{host: \"unix://{daemon}\", name: build-01}}\n",
            data = w.data.display(),
            proxy = w.proxy_sock.display(),
            daemon = w.daemon_sock.display(),
        ),
    )
    .unwrap();
    let mut serve = w.serve();

    // --- the seed scenario, as two users -----------------------------------
    for (u, c) in [("alice", "a1"), ("bob", "b1")] {
        w.docker_as(u, &["pull", &w.image]);
        w.docker_as(
            u,
            &[
                "create",
                "--name",
                c,
                "--network",
                "none",
                &w.image,
                "sleep",
                "300",
            ],
        );
        w.docker_as(u, &["start", c]);
        let out = w.docker_as(u, &["exec", c, "echo", "hello-from-exec"]);
        assert_eq!(
            out.trim(),
            "hello-from-exec",
            "exec output passes through the proxy"
        );
        w.docker_as(u, &["rm", "-f", c]);
    }
    // A privileged container and a Docker socket mount (created, never started).
    w.docker_as(
        "bob",
        &[
            "create",
            "--name",
            "p1",
            "--privileged",
            "--network",
            "none",
            &w.image,
            "true",
        ],
    );
    w.docker_as(
        "bob",
        &[
            "create",
            "--name",
            "m1",
            "--network",
            "none",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            &w.image,
            "true",
        ],
    );
    // A failing call: removing what does not exist.
    let fail = Command::new("runuser")
        .args(["-u", "alice", "--", "env"])
        .arg(format!("HOME={}", dir.join("home-alice").display()))
        .arg("docker")
        .arg("-H")
        .arg(format!("unix://{}", w.proxy_sock.display()))
        .args(["rm", "no-such-container"])
        .output()
        .unwrap();
    assert!(!fail.status.success());

    for (u, c) in [("alice", "a1"), ("bob", "b1")] {
        let done = |q: &str| {
            w.wait_query(
                &format!("source=docker user={u} stage=ResponseComplete {q}"),
                1,
            )
        };
        for (q, name, code) in [
            ("verb=pull resource=images", w.image.as_str(), 200),
            ("verb=create resource=containers", c, 201),
            ("verb=start resource=containers", c, 204),
            ("verb=exec resource=containers", c, 201),
            ("verb=delete resource=containers", c, 204),
        ] {
            let got = done(&format!("{q} name=\"{name}\""));
            assert_eq!(got.len(), 1, "{u} {q}: one entry per action: {got:#?}");
            let e = &got[0];
            assert_eq!(s(e, "/objectRef/name"), name, "{u} {q}");
            assert_eq!(s(e, "/objectRef/apiGroup"), "docker.com");
            assert_eq!(e["responseStatus"]["code"], code, "{u} {q}: {e:#}");
            assert_eq!(s(e, "/annotations/kaudit.io~1host"), "build-01");
            assert!(s(e, "/docker/peer/exe").ends_with("docker"), "{e:#}");
            assert!(s(e, "/userAgent").starts_with("Docker-Client/"), "{e:#}");
        }
    }
    let failed = w.wait_query("source=docker user=alice verb=delete code=404", 1);
    assert_eq!(s(&failed[0], "/objectRef/name"), "no-such-container");
    // The query language answers the question.
    let execs = w.query("source=docker user=alice verb=exec stage=ResponseComplete");
    assert_eq!(execs.len(), 1);
    assert!(w.query("source=docker user=carol").is_empty());

    // The daemon's side: die and destroy of a1 from the events stream.
    for verb in ["create", "start", "die", "destroy"] {
        let got = w.wait_query(
            &format!("source=docker user=system:dockerd verb={verb} name=a1"),
            1,
        );
        assert_eq!(got.len(), 1, "events {verb} a1: {got:#?}");
    }

    // Alerts: privileged and socket mount, by bob.
    let alerts_file = w.data.join("alerts/alerts.jsonl");
    let mut rules = Vec::new();
    wait_for("docker alerts", 30, || {
        rules = std::fs::read_to_string(&alerts_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v.to_string())
            .collect();
        rules
            .iter()
            .any(|r| r.contains("Docker Privileged Container Created"))
            && rules
                .iter()
                .any(|r| r.contains("Docker Sensitive Host Path Mounted"))
    });
    assert!(rules
        .iter()
        .any(|r| r.contains("Docker Privileged Container Created") && r.contains("bob")));

    // --- streams through the proxy are not held back ---------------------------
    w.docker_as(
        "alice",
        &[
            "run",
            "-d",
            "--name",
            "s1",
            "--network",
            "none",
            &w.image,
            "sh",
            "-c",
            "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done",
        ],
    );
    let mut logs = w.docker_cmd("alice", &["logs", "-f", "s1"]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(logs.stdout.take().unwrap()));
    let started = Instant::now();
    let mut last = Instant::now();
    for i in 0..8 {
        let line = lines.next().expect("a log line").unwrap();
        assert!(line.starts_with("tick"), "{line}");
        if i >= 3 {
            // Live lines arrive about every 0.2 s, each on its own.
            assert!(
                last.elapsed() < Duration::from_millis(1500),
                "line {i} held back {:?}",
                last.elapsed()
            );
        }
        last = Instant::now();
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = logs.kill();
    let _ = logs.wait();
    // An interactive exec: what goes in comes back while stdin stays open.
    let mut cat = w.docker_cmd("alice", &["exec", "-i", "s1", "cat"]);
    let mut stdin = cat.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(cat.stdout.take().unwrap());
    for word in ["ping", "pong"] {
        std::io::Write::write_all(&mut stdin, format!("{word}\n").as_bytes()).unwrap();
        std::io::Write::flush(&mut stdin).unwrap();
        let mut line = String::new();
        let t = Instant::now();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), word);
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "echo held back {:?}",
            t.elapsed()
        );
    }
    drop(stdin);
    assert!(cat.wait().unwrap().success());
    w.docker_as("alice", &["rm", "-f", "s1"]);
    let started = w.wait_query(
        "source=docker user=alice stage=ResponseStarted subresource=logs name=s1",
        1,
    );
    assert_eq!(started.len(), 1);
    // The CLI started s1 by id; the record names it (and keeps the id).
    let start = w.wait_query(
        "source=docker user=alice verb=start name=s1 stage=ResponseComplete",
        1,
    );
    assert_eq!(start.len(), 1);
    assert_eq!(s(&start[0], "/objectRef/uid").len(), 64, "{:#}", start[0]);

    // --- the standalone proxy: spooled while kaudit serve is down --------------
    let spool_sock = dir.join("standalone.sock");
    let mut standalone = Proc(
        Some(
            kaudit()
                .args(["docker-proxy", "--listen"])
                .arg(&spool_sock)
                .arg("--upstream")
                .arg(&w.daemon_sock)
                .args([
                    "--server",
                    &format!("http://127.0.0.1:{port}"),
                    "--name",
                    "build-02",
                    "--socket-mode",
                    "0666",
                    "--spool",
                ])
                .arg(dir.join("spool"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("standalone.log")).unwrap())
                .spawn()
                .unwrap(),
        ),
        "docker-proxy",
    );
    wait_for("the standalone proxy", 20, || spool_sock.exists());
    let via = |args: &[&str]| {
        sh(Command::new("runuser")
            .args(["-u", "bob", "--", "env"])
            .arg(format!("HOME={}", dir.join("home-bob").display()))
            .arg("docker")
            .arg("-H")
            .arg(format!("unix://{}", spool_sock.display()))
            .args(args))
    };
    via(&[
        "create",
        "--name",
        "sp1",
        "--network",
        "none",
        &w.image,
        "true",
    ]);
    w.wait_query(
        "cluster=build-02 user=bob verb=create name=sp1 stage=ResponseComplete",
        1,
    );
    serve.kill9();
    via(&[
        "create",
        "--name",
        "sp2",
        "--network",
        "none",
        &w.image,
        "true",
    ]);
    via(&["rm", "sp1", "sp2"]);
    serve = w.serve();
    for n in ["sp1", "sp2"] {
        let got = w.wait_query(
            &format!("cluster=build-02 user=bob verb=create name={n} stage=ResponseComplete"),
            1,
        );
        assert_eq!(got.len(), 1, "{n}: {got:#?}");
    }
    standalone.stop();

    // --- restarts: kaudit down while the daemon works, then dockerd restarted
    serve.kill9();
    w.docker_root(&["run", "--name", "c2", "--network", "none", &w.image, "true"]);
    w.docker_root(&["rm", "c2"]);
    serve = w.serve();
    dockerd.stop();
    let _dockerd = w.dockerd();
    w.docker_root(&["run", "--name", "c3", "--network", "none", &w.image, "true"]);
    w.docker_root(&["rm", "c3"]);
    for c in ["c2", "c3"] {
        for verb in ["create", "start", "die", "destroy"] {
            let got = w.wait_query(&format!("source=docker verb={verb} name={c}"), 1);
            assert_eq!(got.len(), 1, "{verb} {c} exactly once: {got:#?}");
        }
    }
    // Nothing stored twice: every (auditID, stage) is unique.
    let all = w.query("source=docker");
    let mut seen = HashSet::new();
    let mut dup = HashMap::new();
    for e in &all {
        let k = (s(e, "/auditID").to_string(), s(e, "/stage").to_string());
        if !seen.insert(k.clone()) {
            *dup.entry(k).or_insert(1) += 1;
        }
    }
    assert!(dup.is_empty(), "duplicates: {dup:?}");
    serve.stop();
}

/// The authorization-plugin mode: dockerd asks kaudit about every call (on
/// its own socket, no proxy in between); calls are recorded at both stages
/// with the daemon's user (`docker:anonymous` without TLS) and a deny rule
/// refuses a privileged container, the denial recorded.
#[test]
fn docker_authz_plugin_end_to_end() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("kz")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let port = free_port();
    // Plugins are found by socket name under /run/docker/plugins.
    let plugin = format!("kaudit-test-{}", std::process::id());
    let plugin_sock = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let w = World {
        daemon_sock: dir.join("docker.sock"),
        proxy_sock: plugin_sock.clone(),
        data: dir.join("data"),
        image: "kaudit-test/busybox:1".into(),
        port,
        dir: dir.clone(),
    };
    std::fs::write(
        dir.join("deny.yaml"),
        "- rule: No privileged containers\n  desc: refuse --privileged\n  condition: ka.verb = create and ka.target.resource = containers and jevt.value[/requestObject/HostConfig/Privileged] = true\n  output: privileged container refused (user=%ka.user.name)\n  priority: ERROR\n  source: k8s_audit\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("kaudit.yaml"),
        format!(
            "data: {data}\nlisten: 127.0.0.1:{port}\nsources:\n  - docker_authz: {{listen: {sock}, name: build-03, deny_rules: {deny}}}\n",
            data = w.data.display(),
            sock = plugin_sock.display(),
            deny = dir.join("deny.yaml").display(),
        ),
    )
    .unwrap();
    let mut serve = w.serve();
    let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
    let mut dockerd = Proc(
        Some(
            Command::new("dockerd")
                .arg("--data-root")
                .arg(dir.join("docker-data"))
                .arg("--exec-root")
                .arg(dir.join("docker-exec"))
                .arg("--pidfile")
                .arg(dir.join("docker.pid"))
                .arg("-H")
                .arg(format!("unix://{}", w.daemon_sock.display()))
                .arg(format!("--authorization-plugin={plugin}"))
                .args([
                    "--iptables=false",
                    "--ip6tables=false",
                    "--bridge=none",
                    "--storage-driver=vfs",
                ])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ),
        "dockerd",
    );
    let sock = w.daemon_sock.clone();
    wait_for("dockerd with the plugin", 60, || {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let busybox = sh(Command::new("sh").args(["-c", "command -v busybox"]));
    std::fs::copy(busybox.trim(), rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "sleep", "echo", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    sh(Command::new("sh").args([
        "-c",
        &format!(
            "tar -C {} -c . | docker -H unix://{} import - {}",
            rootfs.display(),
            w.daemon_sock.display(),
            w.image
        ),
    ]));
    w.docker_root(&[
        "create",
        "--name",
        "z1",
        "--network",
        "none",
        &w.image,
        "sleep",
        "300",
    ]);
    w.docker_root(&["start", "z1"]);
    assert_eq!(w.docker_root(&["exec", "z1", "echo", "hi"]).trim(), "hi");
    w.docker_root(&["rm", "-f", "z1"]);
    let denied = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", w.daemon_sock.display()))
        .args([
            "create",
            "--name",
            "z2",
            "--privileged",
            "--network",
            "none",
            &w.image,
            "true",
        ])
        .output()
        .unwrap();
    assert!(
        !denied.status.success(),
        "the deny rule refuses a privileged container"
    );
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("privileged container refused"), "{err}");

    for (q, code) in [
        ("verb=create resource=containers name=z1", 201),
        ("verb=start resource=containers name=z1", 204),
        ("verb=exec resource=containers name=z1", 201),
        ("verb=delete resource=containers name=z1", 204),
    ] {
        let got = w.wait_query(
            &format!("source=docker cluster=build-03 stage=ResponseComplete {q}"),
            1,
        );
        assert_eq!(got.len(), 1, "{q}: {got:#?}");
        assert_eq!(got[0]["responseStatus"]["code"], code, "{q}");
        assert_eq!(s(&got[0], "/user/username"), "docker:anonymous");
        assert_eq!(s(&got[0], "/annotations/docker.com~1mode"), "authz");
        // The request stage carries the same audit id.
        let id = s(&got[0], "/auditID");
        assert_eq!(
            w.query(&format!("auditid={id}")).len(),
            2,
            "{q}: both stages"
        );
    }
    let forbid = w.wait_query(
        "source=docker cluster=build-03 decision=forbid verb=create",
        1,
    );
    assert_eq!(forbid.len(), 1);
    assert_eq!(forbid[0]["responseStatus"]["code"], 403);
    dockerd.stop();
    serve.stop();
}
