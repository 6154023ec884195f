//! `kaudit proof` output checked by a verifier written here from RFC 6962's
//! recursive definitions (not the store's code path), plus the key and
//! checkpoint commands and `verify --key/--checkpoint` from the command line.

use kaudit_store::merkle::sha256;
use std::io::Write;
use std::path::Path;
use std::process::Command;

type H = [u8; 32];

fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn h32(s: &str) -> H {
    b64(s).try_into().expect("32-byte hash")
}

fn split(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn incl_root(m: u64, n: u64, leaf: H, proof: &[H]) -> Option<H> {
    if n == 1 {
        return proof.is_empty().then_some(leaf);
    }
    let (last, rest) = proof.split_last()?;
    let k = split(n);
    if m < k {
        Some(sha256(&[&[1], &incl_root(m, k, leaf, rest)?, last]))
    } else {
        Some(sha256(&[&[1], last, &incl_root(m - k, n - k, leaf, rest)?]))
    }
}

fn cons(m: u64, n: u64, b: bool, proof: &[H], old: &H) -> Option<(H, H)> {
    if m == n {
        return if b {
            proof.is_empty().then_some((*old, *old))
        } else {
            (proof.len() == 1).then(|| (proof[0], proof[0]))
        };
    }
    let (last, rest) = proof.split_last()?;
    let k = split(n);
    if m <= k {
        let (o, nl) = cons(m, k, b, rest, old)?;
        Some((o, sha256(&[&[1], &nl, last])))
    } else {
        let (o, nr) = cons(m - k, n - k, false, rest, old)?;
        Some((sha256(&[&[1], last, &o]), sha256(&[&[1], last, &nr])))
    }
}

fn kaudit(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .env("KAUDIT_DATA", data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(n: u64) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"Metadata\",\"auditID\":\"a0000000-0000-4000-8000-{i:012x}\",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api/v1/namespaces/default/configmaps/cm-{i}\",\"verb\":\"get\",\"user\":{{\"username\":\"alice\"}},\"sourceIPs\":[\"10.1.2.3\"],\"objectRef\":{{\"resource\":\"configmaps\",\"namespace\":\"default\",\"name\":\"cm-{i}\",\"apiVersion\":\"v1\"}},\"responseStatus\":{{\"metadata\":{{}},\"code\":200}},\"requestReceivedTimestamp\":\"2026-01-02T15:04:05.000000Z\",\"stageTimestamp\":\"2026-01-02T15:04:05.001000Z\"}}\n"
            )
        })
        .collect()
}

#[test]
fn cli_proofs_verify_with_an_independent_rfc6962_verifier() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let input = tmp.path().join("in.log");
    let text = lines(700);
    std::fs::write(&input, &text).unwrap();
    let (ok, _, err) = kaudit(&data, &["import", "--no-progress", input.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("imported 700 new events"), "{err}");

    let (ok, vkey, _) = kaudit(&data, &["checkpoint", "--verifier-key"]);
    assert!(ok);
    let vkey = vkey.trim().to_string();
    let (ok, note, _) = kaudit(&data, &["checkpoint"]);
    assert!(ok);
    let body: Vec<&str> = note.lines().collect();
    assert_eq!(body[1], "700");
    let root = h32(body[2]);
    assert_eq!(body[3], "");
    assert!(body[4].starts_with("\u{2014} "));
    assert!(vkey.starts_with(body[0]), "verifier key names the origin");

    for target in [
        "0",
        "255",
        "256",
        "699",
        "a0000000-0000-4000-8000-0000000001f4",
    ] {
        let (ok, out, err) = kaudit(&data, &["proof", "inclusion", target]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let idx = v["leaf_index"].as_u64().unwrap();
        let size = v["tree_size"].as_u64().unwrap();
        let leaf_data = b64(v["leaf_data"].as_str().unwrap());
        let leaf = sha256(&[&[0], &leaf_data]);
        assert_eq!(leaf, h32(v["leaf_hash"].as_str().unwrap()));
        let proof: Vec<H> = v["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| h32(p.as_str().unwrap()))
            .collect();
        let cp_root = h32(v["checkpoint"].as_str().unwrap().lines().nth(2).unwrap());
        assert_eq!(size, 700);
        assert_eq!(cp_root, root);
        assert_eq!(
            incl_root(idx, size, leaf, &proof),
            Some(root),
            "inclusion of {target}"
        );
        // leaf_data holds the event's bytes exactly as imported, after the
        // cluster name and before the 16 bytes of seq and receive time.
        let line = text.lines().nth(idx as usize).unwrap();
        let n = leaf_data.len();
        assert_eq!(&leaf_data[n - 16 - line.len()..n - 16], line.as_bytes());
        assert_eq!(
            u64::from_be_bytes(leaf_data[n - 16..n - 8].try_into().unwrap()),
            idx
        );
        if target.contains('-') {
            assert_eq!(idx, 0x1f4);
        }
    }

    for (old, new) in [
        (1u64, None),
        (255, Some(700u64)),
        (256, None),
        (513, Some(600)),
        (700, None),
    ] {
        let mut args = vec!["proof".to_string(), "consistency".into(), old.to_string()];
        if let Some(n) = new {
            args.push(n.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = kaudit(&data, &args);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let new_size = v["new_size"].as_u64().unwrap();
        let old_root = h32(v["old_root"].as_str().unwrap());
        let new_root = h32(v["new_root"].as_str().unwrap());
        let proof: Vec<H> = v["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| h32(p.as_str().unwrap()))
            .collect();
        if new.is_none() {
            assert_eq!(new_root, root);
        }
        if old == new_size {
            assert!(proof.is_empty());
            assert_eq!(old_root, new_root);
        } else {
            let got = cons(old, new_size, true, &proof, &old_root);
            assert_eq!(
                got,
                Some((old_root, new_root)),
                "consistency {old} -> {new_size}"
            );
        }
    }

    // verify with the published key and a saved checkpoint; then after more data.
    let saved = tmp.path().join("saved.note");
    std::fs::write(&saved, &note).unwrap();
    let more = tmp.path().join("more.log");
    let mut f = std::fs::File::create(&more).unwrap();
    f.write_all(lines(900).as_bytes()).unwrap();
    let (ok, _, err) = kaudit(&data, &["import", "--no-progress", more.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("700 duplicates dropped"), "{err}");
    let (ok, out, err) = kaudit(
        &data,
        &[
            "verify",
            "--key",
            &vkey,
            "--checkpoint",
            saved.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("OK: 900 records"), "{out}");
    assert!(out.contains("GB/s"), "{out}");
    // A different key is refused.
    let (ok, kout, _) = kaudit(
        &data,
        &[
            "keygen",
            "--name",
            "other.example/log",
            "-o",
            tmp.path().join("k").to_str().unwrap(),
        ],
    );
    assert!(ok);
    let (ok, out, _) = kaudit(&data, &["verify", "--key", kout.trim()]);
    assert!(!ok);
    assert!(out.contains("FAIL"), "{out}");

    // stat shows the parts.
    let (ok, out, _) = kaudit(&data, &["stat"]);
    assert!(ok);
    assert!(out.contains("records:      900"), "{out}");
    assert!(out.contains("compression:"), "{out}");
}

#[test]
fn a_bad_line_commits_nothing_from_that_input_unless_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let input = tmp.path().join("in.log");
    let mut text = lines(50);
    text.push_str("{not json\n");
    text.push_str(&lines(60)[lines(50).len()..]);
    std::fs::write(&input, &text).unwrap();
    let (ok, _, err) = kaudit(&data, &["import", "--no-progress", input.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("in.log:51"), "{err}");
    assert!(
        err.contains("nothing from this input was imported"),
        "{err}"
    );
    let (_, out, _) = kaudit(&data, &["stat"]);
    assert!(out.contains("records:      0"), "{out}");
    let (ok, _, err) = kaudit(
        &data,
        &[
            "import",
            "--no-progress",
            "--skip-invalid",
            input.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("imported 60 new events") && err.contains("1 invalid skipped"),
        "{err}"
    );
}

#[test]
fn holds_and_prune_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let input = tmp.path().join("in.log");
    std::fs::write(&input, lines(100)).unwrap();
    assert!(kaudit(&data, &["import", "--no-progress", input.to_str().unwrap()]).0);
    let (ok, out, _) = kaudit(
        &data,
        &[
            "hold",
            "add",
            "--reason",
            "case 7",
            "--since",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert!(ok, "{out}");
    let (_, out, _) = kaudit(&data, &["hold", "list"]);
    assert!(out.contains("case 7"));
    let (ok, out, err) = kaudit(&data, &["prune", "--max-age", "0s"]);
    assert!(ok, "{err}");
    assert!(out.contains("records before 0 are pruned"), "{out}");
    assert!(kaudit(&data, &["hold", "remove", "1"]).0);
    assert!(!kaudit(&data, &["hold", "remove", "1"]).0);
    let (ok, _, err) = kaudit(&data, &["prune"]);
    assert!(!ok);
    assert!(err.contains("no retention policy"), "{err}");
}

/// Starts `kaudit serve` on a free loopback port with an admin and a reader
/// token; returns the child and its base URL once /readyz answers.
fn serve_with_tokens(dir: &Path, data: &Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("kaudit.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ndata: {}\ningest: {{min_free_disk: 0}}\nauth:\n  tokens:\n    - {{name: root, token: admin-token-0123456789, role: admin}}\n    - {{name: viewer, token: reader-token-0123456789, role: reader}}\n",
            data.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, url);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("kaudit serve did not start");
}

#[test]
fn prune_beside_a_running_server_asks_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let input = tmp.path().join("in.log");
    std::fs::write(&input, lines(100)).unwrap();
    assert!(kaudit(&data, &["import", "--no-progress", input.to_str().unwrap()]).0);
    let (mut child, url) = serve_with_tokens(tmp.path(), &data);
    let run = |token: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_kaudit"))
            .args([
                "prune",
                "--max-age",
                "0s",
                "--server",
                &url,
                "--token",
                token,
            ])
            .env("KAUDIT_DATA", &data)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let reader = run("reader-token-0123456789");
    let admin = run("admin-token-0123456789");
    let _ = child.kill();
    let _ = child.wait();
    // A reader's token is refused by the server.
    assert!(!reader.0);
    assert!(reader.2.contains("403"), "{}", reader.2);
    // The admin's prune runs in the server instead of failing on the LOCK.
    assert!(admin.0, "{}", admin.2);
    assert!(admin.2.contains("asking"), "{}", admin.2);
    assert!(
        admin.1.contains("records before 0 are pruned"),
        "{}",
        admin.1
    );
}
