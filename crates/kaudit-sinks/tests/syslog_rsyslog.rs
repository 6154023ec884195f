//! The syslog sink against a real rsyslogd (Debian package `rsyslog`),
//! started by the test on 127.0.0.1 with its own configuration: imtcp and
//! imudp inputs, the raw message and rsyslog's own parse of the RFC 5424
//! fields written to files.

mod common;

use common::*;
use kaudit_sinks::config::{SinkKind, SyslogConfig, SyslogProtocol};
use kaudit_sinks::SinkConfig;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Rsyslog {
    daemon: Daemon,
    conf: PathBuf,
    pid: PathBuf,
    tcp: u16,
}

impl Rsyslog {
    fn start(dir: &Path, tcp: u16, udp: u16) -> Rsyslog {
        let bin = require("rsyslogd", "rsyslog");
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="1m")
module(load="imtcp")
module(load="imudp")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="fields" type="string" string="%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%msgid%|%structured-data%\n")
ruleset(name="audit") {{
  action(type="omfile" file="{raw}" template="raw")
  action(type="omfile" file="{fields}" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="audit")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="audit")
"#,
                work = work.display(),
                raw = dir.join("raw.log").display(),
                fields = dir.join("fields.log").display(),
            ),
        )
        .unwrap();
        let pid = dir.join("rsyslogd.pid");
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("-n").arg("-f").arg(&conf).arg("-i").arg(&pid);
        cmd.stderr(std::fs::File::create(dir.join("rsyslogd.log")).unwrap());
        let daemon = Daemon::spawn(cmd, "rsyslogd", tcp);
        Rsyslog {
            daemon,
            conf,
            pid,
            tcp,
        }
    }

    fn restart(&mut self) {
        self.daemon.stop();
        let _ = std::fs::remove_file(&self.pid);
        let mut cmd = std::process::Command::new(require("rsyslogd", "rsyslog"));
        cmd.arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(&self.pid);
        self.daemon = Daemon::spawn(cmd, "rsyslogd", self.tcp);
    }
}

fn syslog(port: u16, protocol: SyslogProtocol) -> SinkKind {
    SinkKind::Syslog(SyslogConfig {
        address: format!("127.0.0.1:{port}"),
        protocol,
        hostname: Some("testhost".into()),
        ..Default::default()
    })
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

const EXPECTED_MSG_HEAD: &str = r#"<110>1 2026-01-05T09:00:00.123456Z testhost kaudit - audit [kaudit@32473 auditID="0b5c7a2e-1111-4c7e-9a7e-000000000001" stage="ResponseComplete" verb="get" user="alice" resource="secrets" namespace="prod" name="db" code="200" cluster="prod-eu"] "#;

#[test]
fn rfc5424_over_tcp_and_udp_reaches_rsyslog_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (tcp, udp) = (free_port(), free_udp_port());
    let _rs = Rsyslog::start(dir.path(), tcp, udp);
    let store = open_store(dir.path());
    append(&store, "prod-eu", &[EVENT.into()]);
    let cp = store.checkpoint().unwrap().unwrap();
    let mut tcp_cfg = SinkConfig::new("tcp", syslog(tcp, SyslogProtocol::Tcp));
    tcp_cfg.checkpoints = true;
    let t = run_sink(tcp_cfg, dir.path(), store.clone());
    let u = run_sink(
        SinkConfig::new("udp", syslog(udp, SyslogProtocol::Udp)),
        dir.path(),
        store.clone(),
    );
    wait_until(20, "both sinks done", || {
        t.stats.snapshot().cursor == 1 && u.stats.snapshot().cursor == 1
    });
    let raw = dir.path().join("raw.log");
    wait_until(20, "rsyslog wrote three messages", || {
        lines(&raw).len() >= 3
    });
    t.stop();
    u.stop();
    let got = lines(&raw);
    let expected = format!("{EXPECTED_MSG_HEAD}{EVENT}");
    assert_eq!(
        got.iter().filter(|l| **l == expected).count(),
        2,
        "one over TCP, one over UDP: {got:#?}"
    );
    let cp_line = got
        .iter()
        .find(|l| l.contains(" checkpoint "))
        .expect("checkpoint message");
    // rsyslog shows the note's line feeds as #012 (its control-character escape).
    let note = cp.note.trim_end().replace('\n', "#012");
    assert!(
        cp_line.ends_with(&format!("[kaudit@32473 checkpointSize=\"1\"] {note}")),
        "{cp_line}"
    );
    // rsyslog's own RFC 5424 parser read every field.
    let fields = lines(&dir.path().join("fields.log"));
    let ev_fields = fields
        .iter()
        .find(|l| l.contains("|audit|"))
        .expect("parsed event");
    assert!(
        ev_fields.starts_with("110|2026-01-05T09:00:00.123456"),
        "{ev_fields}"
    );
    assert!(
        ev_fields.contains(
            "|testhost|kaudit|audit|[kaudit@32473 auditID=\"0b5c7a2e-1111-4c7e-9a7e-000000000001\""
        ),
        "{ev_fields}"
    );
}

#[test]
fn rsyslog_restarted_mid_stream_gets_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let (tcp, udp) = (free_port(), free_udp_port());
    let mut rs = Rsyslog::start(dir.path(), tcp, udp);
    let store = open_store(dir.path());
    let events = generated(3000, 61);
    append(&store, "c1", &events[..2000]);
    let mut cfg = SinkConfig::new("tcp", syslog(tcp, SyslogProtocol::Tcp));
    cfg.batch_max_events = 100;
    cfg.backoff_max = Duration::from_millis(500);
    let run = run_sink(cfg, dir.path(), store.clone());
    wait_until(30, "some sent", || run.stats.snapshot().sent >= 500);
    rs.daemon.stop();
    append(&store, "c1", &events[2000..]);
    wait_until(30, "the outage noticed", || {
        let s = run.stats.snapshot();
        s.retries >= 2 && !s.up
    });
    rs.restart();
    wait_until(60, "all sent", || run.stats.snapshot().cursor == 3000);
    run.stop();
    let want: HashSet<String> = events.iter().map(|l| dedupe_id(l)).collect();
    let raw = dir.path().join("raw.log");
    let mut seen: HashMap<String, usize> = HashMap::new();
    wait_until(30, "rsyslog wrote them all", || {
        seen.clear();
        for l in lines(&raw) {
            let json = &l[l
                .find("{\"kind\":\"Event\"")
                .expect("event JSON in the message")..];
            *seen.entry(dedupe_id(json.as_bytes())).or_insert(0) += 1;
        }
        seen.len() == want.len()
    });
    assert_eq!(
        seen.keys().cloned().collect::<HashSet<_>>(),
        want,
        "at least once"
    );
}
