//! Following an audit log file across appends, rotations (rename, rename +
//! gzip, copytruncate), restarts and bad lines. Each test plays the writer
//! (kube-apiserver's lumberjack, or logrotate) on real files in a tempdir.

use flate2::write::GzEncoder;
use flate2::Compression;
use kaudit_event::reader::{EventReader, ReaderOptions};
use kaudit_event::{Event, EventDoc, Level, MicroTime, Stage};
use kaudit_sources::file::{BadLineError, Batch, FileTailer, TailConfig};
use proptest::prelude::*;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Plays kube-apiserver's log backend: appends event lines, rotates like
/// lumberjack, truncates like logrotate's copytruncate.
struct Writer {
    dir: PathBuf,
    active: PathBuf,
    next_id: u64,
    rotations: u64,
    /// The unwritten rest of a line whose beginning is already in the file.
    unfinished: Vec<u8>,
    /// Audit IDs of every line written (or being written), in order.
    written: Vec<String>,
}

impl Writer {
    fn new(dir: &Path) -> Writer {
        let active = dir.join("audit.log");
        File::create(&active).unwrap();
        Writer {
            dir: dir.to_path_buf(),
            active,
            next_id: 0,
            rotations: 0,
            unfinished: Vec::new(),
            written: Vec::new(),
        }
    }

    fn event_line(&mut self) -> Vec<u8> {
        self.next_id += 1;
        let id = format!("a0000000-0000-4000-8000-{:012}", self.next_id);
        let doc = EventDoc {
            level: Level::Metadata,
            audit_id: id.clone(),
            stage: Some(Stage::ResponseComplete),
            request_uri: format!("/api/v1/namespaces/ns/pods/p{}", self.next_id),
            verb: "get".into(),
            stage_timestamp: Some(MicroTime(1_767_366_245_000_000 + self.next_id as i64)),
            ..EventDoc::default()
        };
        self.written.push(id);
        let mut line = doc.encode();
        line.push(b'\n');
        line
    }

    fn write_raw(&self, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(&self.active).unwrap();
        f.write_all(bytes).unwrap();
    }

    /// Writes `n` complete lines.
    fn append(&mut self, n: usize) {
        self.finish_line();
        let mut buf = Vec::new();
        for _ in 0..n {
            buf.extend(self.event_line());
        }
        self.write_raw(&buf);
    }

    /// Writes the first `cut` bytes of a new line; the rest comes later.
    fn start_line(&mut self, cut: usize) {
        self.finish_line();
        let line = self.event_line();
        let cut = cut.min(line.len() - 1);
        self.write_raw(&line[..cut]);
        self.unfinished = line[cut..].to_vec();
    }

    fn finish_line(&mut self) {
        if !self.unfinished.is_empty() {
            let rest = std::mem::take(&mut self.unfinished);
            self.write_raw(&rest);
        }
    }

    /// lumberjack: rename to `audit-<time>.log`, create a new `audit.log`.
    fn rotate(&mut self) -> PathBuf {
        self.finish_line();
        self.rotations += 1;
        let t = self.rotations * 1001;
        let backup = self.dir.join(format!(
            "audit-2026-01-02T{:02}-{:02}-{:02}.{:03}.log",
            (t / 3_600_000) % 24,
            (t / 60_000) % 60,
            (t / 1000) % 60,
            t % 1000
        ));
        fs::rename(&self.active, &backup).unwrap();
        File::create(&self.active).unwrap();
        backup
    }

    /// lumberjack with compression: the backup becomes `.gz`.
    fn rotate_gz(&mut self) -> PathBuf {
        let backup = self.rotate();
        gzip(&backup)
    }

    /// logrotate copytruncate: copy to `audit.log.1`, truncate in place.
    fn copytruncate(&mut self) {
        self.finish_line();
        fs::copy(&self.active, self.dir.join("audit.log.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&self.active)
            .unwrap()
            .set_len(0)
            .unwrap();
    }
}

/// Compresses `path` to `path.gz` and removes it, as lumberjack does.
fn gzip(path: &Path) -> PathBuf {
    let data = fs::read(path).unwrap();
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz_path = PathBuf::from(gz_name);
    let mut enc = GzEncoder::new(File::create(&gz_path).unwrap(), Compression::fast());
    enc.write_all(&data).unwrap();
    enc.finish().unwrap();
    fs::remove_file(path).unwrap();
    gz_path
}

fn config(dir: &Path, max_batch: usize) -> TailConfig {
    TailConfig {
        path: dir.join("audit.log"),
        cluster: "prod".into(),
        state_path: dir.join("state").join("tail.json"),
        max_line: 64 << 10,
        max_batch,
        poll_interval: Duration::from_millis(10),
    }
}

fn open(dir: &Path, max_batch: usize) -> FileTailer {
    fs::create_dir_all(dir.join("state")).unwrap();
    FileTailer::open(config(dir, max_batch)).unwrap()
}

fn ids(b: &Batch) -> Vec<String> {
    b.events.iter().map(|e| e.audit_id().to_string()).collect()
}

/// Polls until nothing is left, committing each batch when `commit`.
fn drain(t: &mut FileTailer, commit: bool) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(b) = t.poll().unwrap() {
        assert!(
            b.bad_lines.is_empty(),
            "unexpected bad lines: {:?}",
            b.bad_lines
        );
        out.extend(ids(&b));
        if commit {
            t.commit(&b.position).unwrap();
        }
    }
    out
}

#[test]
fn appended_lines_come_out_once_in_order_and_partial_lines_wait() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut t = open(d.path(), 2);
    assert!(t.poll().unwrap().is_none());

    w.append(5);
    let sizes: Vec<usize> = std::iter::from_fn(|| t.poll().unwrap())
        .map(|b| b.events.len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 1], "max_batch bounds each batch");

    w.append(1);
    w.start_line(40);
    let b = t.poll().unwrap().unwrap();
    assert_eq!(ids(&b), vec![w.written[5].clone()]);
    assert!(t.poll().unwrap().is_none(), "partial line must wait");
    assert!(t.lag_bytes() >= 40, "the partial line is lag");
    w.finish_line();
    let b = t.poll().unwrap().unwrap();
    assert_eq!(ids(&b), vec![w.written[6].clone()]);
    assert_eq!(b.position.line(), 7);
    assert_eq!(b.position.offset(), fs::metadata(&w.active).unwrap().len());
    assert_eq!(t.lag_bytes(), 0);
    assert!(t.poll().unwrap().is_none());
}

#[test]
fn rename_rotation_drains_old_file_then_new_one() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut t = open(d.path(), 100);
    w.append(3);
    let mut got = drain(&mut t, true);
    // Appended after the last poll, before the rotation.
    w.append(2);
    w.start_line(10);
    let backup = w.rotate();
    w.append(2);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);

    // Compressed right away: the tailer still reads the old file through
    // its descriptor, then goes on with the new file.
    w.append(2);
    w.rotate_gz();
    w.append(1);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);
    assert!(backup.exists());

    // Two rotations between polls: the middle file is found as a backup.
    w.append(1);
    w.rotate_gz();
    w.append(2);
    w.rotate();
    w.append(1);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);
}

#[test]
fn restart_finds_rotated_file_uncompressed_or_gzipped() {
    for compress in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let mut w = Writer::new(d.path());
        let mut t = open(d.path(), 100);
        w.append(3);
        let mut got = drain(&mut t, true);
        drop(t);
        w.append(2);
        if compress {
            w.rotate_gz();
        } else {
            w.rotate();
        }
        w.append(2);
        let mut t = open(d.path(), 100);
        got.extend(drain(&mut t, true));
        assert_eq!(got, w.written, "compress={compress}");
    }
}

#[test]
fn restart_after_several_rotations_reads_every_newer_backup_oldest_first() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut t = open(d.path(), 3);
    w.append(4);
    let mut got = drain(&mut t, true);
    drop(t);
    w.append(1);
    w.rotate_gz();
    w.append(3);
    w.rotate();
    w.append(2);
    w.rotate_gz();
    w.append(1);
    w.rotate_gz();
    w.append(2);
    let mut t = open(d.path(), 3);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);

    // Committed inside a backup that gets compressed while kaudit is down.
    drop(t);
    w.append(5);
    let backup = w.rotate();
    w.append(1);
    let mut t = open(d.path(), 2);
    let b = t.poll().unwrap().unwrap();
    assert_eq!(b.position.source(), backup.display().to_string());
    got.extend(ids(&b));
    t.commit(&b.position).unwrap();
    drop(t);
    gzip(&backup);
    let mut t = open(d.path(), 2);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);
}

#[test]
fn copytruncate_restarts_from_offset_zero() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut t = open(d.path(), 100);
    w.append(4);
    let mut got = drain(&mut t, true);
    // Shrinks below the offset.
    w.copytruncate();
    w.append(2);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);
    // Regrows past the offset before the next poll: the line before the
    // offset no longer matches.
    w.copytruncate();
    w.append(6);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);
    // While kaudit is down: same inode, different content.
    drop(t);
    w.copytruncate();
    w.append(9);
    let mut t = open(d.path(), 100);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);
    // Copy and truncate while down, nothing new yet.
    drop(t);
    w.copytruncate();
    let mut t = open(d.path(), 100);
    assert!(t.poll().unwrap().is_none());
    w.append(1);
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);
}

#[test]
fn copytruncate_to_the_same_size_then_rotation_loses_nothing() {
    // Found by the property test: the file regrows to exactly the size
    // already read, then is renamed before the next poll.
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut t = open(d.path(), 1);
    w.append(1);
    let mut got = drain(&mut t, true);
    w.copytruncate();
    w.append(1);
    w.rotate();
    got.extend(drain(&mut t, true));
    assert_eq!(got, w.written);
}

#[test]
fn restart_continues_after_the_committed_position() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut t = open(d.path(), 3);
    w.append(9);
    let first = t.poll().unwrap().unwrap();
    t.commit(&first.position).unwrap();
    let second = t.poll().unwrap().unwrap();
    t.commit(&second.position).unwrap();
    drop(t);
    let mut t = open(d.path(), 3);
    let third = t.poll().unwrap().unwrap();
    assert_eq!(ids(&third), w.written[6..9].to_vec());
    assert_eq!(third.position.line(), 9);
}

#[test]
fn uncommitted_events_come_again_and_the_caller_dedupes() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut t = open(d.path(), 4);
    w.append(10);
    let mut delivered: Vec<String> = Vec::new();
    let b = t.poll().unwrap().unwrap();
    delivered.extend(ids(&b));
    t.commit(&b.position).unwrap();
    // Read but never committed (crash before the store's fsync).
    let b = t.poll().unwrap().unwrap();
    delivered.extend(ids(&b));
    drop(t);
    w.append(2);
    let mut t = open(d.path(), 4);
    let again = drain(&mut t, true);
    assert_eq!(again[..4], w.written[4..8], "uncommitted batch comes again");
    delivered.extend(again);
    assert_eq!(delivered.len(), w.written.len() + 4);
    let mut seen = HashSet::new();
    let deduped: Vec<String> = delivered
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect();
    assert_eq!(deduped, w.written);
}

#[test]
fn bad_lines_are_located_with_raw_bytes_and_tailing_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut cfg = config(d.path(), 100);
    cfg.max_line = 1024;
    fs::create_dir_all(d.path().join("state")).unwrap();
    let mut t = FileTailer::open(cfg).unwrap();
    w.append(1);
    let long = format!("{{\"kind\":\"Event\",\"x\":\"{}\"}}", "y".repeat(5000));
    w.write_raw(
        format!("not json\n{{\"kind\":\"Pod\"}}\n{{\"level\":\"Metadata\"}}\n{long}\n").as_bytes(),
    );
    w.append(1);
    let b = t.poll().unwrap().unwrap();
    assert_eq!(ids(&b), w.written);
    let active = w.active.display().to_string();
    let got: Vec<(String, u64, Vec<u8>)> = b
        .bad_lines
        .iter()
        .map(|l| (l.location.source.clone(), l.location.line, l.raw.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (active.clone(), 2, b"not json".to_vec()),
            (active.clone(), 3, b"{\"kind\":\"Pod\"}".to_vec()),
            (active.clone(), 4, b"{\"level\":\"Metadata\"}".to_vec()),
            (active.clone(), 5, long.as_bytes()[..1024].to_vec()),
        ]
    );
    assert!(matches!(b.bad_lines[0].error, BadLineError::Event(_)));
    assert!(b.bad_lines[1]
        .to_string()
        .contains("not a Kubernetes audit event"));
    assert!(matches!(
        b.bad_lines[3].error,
        BadLineError::TooLong { len, limit: 1024 } if len == long.len() as u64
    ));
    assert!(b.bad_lines[0]
        .to_string()
        .starts_with(&format!("{active}:2: ")));

    // A rotated file's unterminated last line is reported, not lost silently.
    w.write_raw(b"{\"kind\":\"Ev");
    let backup = w.rotate();
    w.append(1);
    let b = t.poll().unwrap().unwrap();
    assert_eq!(b.bad_lines.len(), 1);
    assert_eq!(b.bad_lines[0].raw, b"{\"kind\":\"Ev");
    assert_eq!(b.bad_lines[0].location.source, backup.display().to_string());
    assert_eq!(b.bad_lines[0].location.line, 7);
    assert!(matches!(
        b.bad_lines[0].error,
        BadLineError::Unterminated { len: 11 }
    ));
    let b = t.poll().unwrap().unwrap();
    assert_eq!(ids(&b), w.written[2..].to_vec());
}

#[test]
fn state_files_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let _w = Writer::new(d.path());
    drop(open(d.path(), 10));
    let mut other = config(d.path(), 10);
    other.cluster = "staging".into();
    let err = FileTailer::open(other).err().unwrap().to_string();
    assert!(err.contains("cluster \"prod\""), "{err}");
    fs::write(d.path().join("state/tail.json"), b"{garbage").unwrap();
    let err = FileTailer::open(config(d.path(), 10))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tail.json") && err.contains("unreadable"),
        "{err}"
    );
    let mut bad = config(d.path(), 10);
    bad.max_batch = 0;
    assert!(FileTailer::open(bad).is_err());
    // A missing state directory is an error naming it at the first commit.
    let mut cfg = config(d.path(), 10);
    cfg.state_path = d.path().join("nope/tail.json");
    let err = FileTailer::open(cfg).err().unwrap().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn waits_for_a_missing_file() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("state")).unwrap();
    let mut t = FileTailer::open(config(d.path(), 10)).unwrap();
    assert!(t.poll().unwrap().is_none());
    let mut w = Writer::new(d.path());
    w.append(2);
    assert_eq!(drain(&mut t, true), w.written);
}

#[test]
fn corrupt_gzip_backup_is_reported_and_skipped() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let mut t = open(d.path(), 100);
    w.append(1);
    let mut got = drain(&mut t, true);
    drop(t);
    w.append(400);
    let gz = w.rotate_gz();
    w.append(2);
    // Cut the compressed backup in half (a crash during compression).
    let bytes = fs::read(&gz).unwrap();
    fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let mut t = open(d.path(), 1000);
    let mut bad = Vec::new();
    while let Some(b) = t.poll().unwrap() {
        got.extend(ids(&b));
        bad.extend(b.bad_lines);
        t.commit(&b.position).unwrap();
    }
    let corrupt: Vec<_> = bad
        .iter()
        .filter(|l| matches!(l.error, BadLineError::CorruptFile { .. }))
        .collect();
    assert_eq!(corrupt.len(), 1, "{bad:?}");
    assert_eq!(corrupt[0].location.source, gz.display().to_string());
    // What decompressed is delivered, the rest of the backup is lost, the
    // newer file is read whole.
    let n = got.len();
    assert!(n > 1 && n < w.written.len(), "{n}");
    assert_eq!(got[..n - 2], w.written[..n - 2]);
    assert_eq!(got[n - 2..], w.written[w.written.len() - 2..]);
}

fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("KAUDIT_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
        });
    assert!(
        dir.join("k8s/examples/v1_real_events.jsonl").is_file(),
        "conformance data not found at {} (set KAUDIT_CONFORMANCE to the shared/conformance directory)",
        dir.display()
    );
    dir
}

/// Real audit lines (kube-apiserver v1 lines published by users, Falco's
/// v1beta1 regression traces, one of which is not an event), written in
/// odd-sized chunks across rotations and a restart, come out exactly as
/// `Event::from_json` reads each line: same bytes, same errors.
#[test]
fn conformance_lines_come_out_as_the_event_reader_reads_them() {
    let conf = conformance_dir();
    let mut inputs = vec![conf.join("k8s/examples/v1_real_events.jsonl")];
    let mut traces: Vec<PathBuf> = fs::read_dir(conf.join("falco/traces"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    traces.sort();
    assert!(traces.len() >= 40, "expected Falco's trace files");
    inputs.extend(traces);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for p in &inputs {
        for l in fs::read(p).unwrap().split(|&b| b == b'\n') {
            if !l.iter().all(u8::is_ascii_whitespace) {
                lines.push(l.to_vec());
            }
        }
    }
    let expected: Vec<Result<Event, Vec<u8>>> = lines
        .iter()
        .map(|l| Event::from_json(l).map_err(|_| l.clone()))
        .collect();
    assert!(
        expected.iter().any(|e| e.is_err()),
        "fal_01_003 is not an event"
    );

    let d = tempfile::tempdir().unwrap();
    let w = Writer::new(d.path());
    let mut t = open(d.path(), 7);
    let mut got: Vec<Result<Event, Vec<u8>>> = Vec::new();
    let collect = |t: &mut FileTailer, got: &mut Vec<Result<Event, Vec<u8>>>| {
        while let Some(b) = t.poll().unwrap() {
            // Within a batch, events and bad lines are each in file order;
            // merge them back by line number.
            let first = b.position.line() as usize - (b.events.len() + b.bad_lines.len());
            let mut slots: Vec<Option<Result<Event, Vec<u8>>>> =
                vec![None; b.events.len() + b.bad_lines.len()];
            for bl in &b.bad_lines {
                slots[bl.location.line as usize - 1 - first] = Some(Err(bl.raw.clone()));
            }
            let mut evs = b.events.into_iter();
            for s in slots.iter_mut().filter(|s| s.is_none()) {
                *s = Some(Ok(evs.next().unwrap()));
            }
            got.extend(slots.into_iter().map(Option::unwrap));
            t.commit(&b.position).unwrap();
        }
    };
    let mut all: Vec<u8> = Vec::new();
    for l in &lines {
        all.extend_from_slice(l);
        all.push(b'\n');
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rotations = 0;
    let mut at = 0;
    let mut w = w;
    while at < all.len() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (seed % 3000) as usize + 1;
        let mut end = (at + n).min(all.len());
        let rotate = seed.is_multiple_of(4);
        if rotate {
            // The writer rotates between lines: finish the current one.
            while end < all.len() && all[end - 1] != b'\n' {
                end += 1;
            }
        }
        w.write_raw(&all[at..end]);
        at = end;
        collect(&mut t, &mut got);
        if rotate {
            rotations += 1;
            if rotations % 2 == 0 {
                w.rotate_gz();
            } else {
                w.rotate();
            }
        }
        if seed.is_multiple_of(11) {
            drop(t);
            t = open(d.path(), 7);
        }
    }
    collect(&mut t, &mut got);
    assert!(rotations >= 3, "the test must rotate ({rotations})");
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "line {i}");
    }
}

/// The writer runs in its own thread, lumberjack-style (rename, create,
/// compress the backup), with lines sometimes written in two parts; the
/// tailer polls, commits, and restarts concurrently.
#[test]
fn concurrent_writer_and_tailer_agree() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let mut w = Writer::new(&dir);
    let total = 3000;
    let writer = std::thread::spawn(move || {
        for i in 0..total {
            if i % 7 == 3 {
                w.start_line(30 + i % 50);
                std::thread::yield_now();
                w.finish_line();
            } else {
                w.append(1);
            }
            if i % 250 == 249 {
                let backup = w.rotate();
                if i % 500 == 499 {
                    gzip(&backup);
                }
            }
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        w.written
    });
    let mut t = open(&dir, 50);
    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut polls = 0u64;
    while got.len() < total {
        if Instant::now() >= deadline {
            let mut files: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let state = fs::read_to_string(dir.join("state/tail.json")).unwrap_or_default();
            panic!(
                "only {} of {total} events (last {:?}); files {files:?}; state {state}",
                got.len(),
                got.last()
            );
        }
        match t.poll().unwrap() {
            Some(b) => {
                assert!(b.bad_lines.is_empty(), "{:?}", b.bad_lines);
                got.extend(ids(&b));
                t.commit(&b.position).unwrap();
            }
            None => std::thread::sleep(Duration::from_micros(300)),
        }
        polls += 1;
        if polls.is_multiple_of(97) {
            drop(t);
            t = open(&dir, 50);
        }
    }
    let written = writer.join().unwrap();
    got.extend(drain(&mut t, true));
    assert_eq!(got, written);
}

/// Throughput of following a file against reading it once with
/// `EventReader` (same parsing, no position tracking), in the same run.
/// `cargo test --release -p kaudit-sources --test file_tail -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn bench_tail_throughput_against_event_reader() {
    let d = tempfile::tempdir().unwrap();
    let mut w = Writer::new(d.path());
    let n = 200_000;
    for _ in 0..n / 1000 {
        w.append(1000);
    }
    let bytes = fs::metadata(&w.active).unwrap().len() as f64;
    let mb = bytes / 1e6;
    let best = |f: &mut dyn FnMut() -> usize| {
        (0..3)
            .map(|_| {
                let t0 = Instant::now();
                assert_eq!(f(), n);
                t0.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let reader = best(&mut || {
        let mut count = 0;
        for r in EventReader::open(&w.active, ReaderOptions::default()).unwrap() {
            r.unwrap();
            count += 1;
        }
        count
    });
    let run = |commit_each: bool| {
        let _ = fs::remove_file(d.path().join("state/tail.json"));
        let mut t = open(d.path(), 1000);
        let mut count = 0;
        while let Some(b) = t.poll().unwrap() {
            count += b.events.len();
            if commit_each {
                t.commit(&b.position).unwrap();
            }
        }
        count
    };
    let tail = best(&mut || run(false));
    let tail_commit = best(&mut || run(true));
    println!(
        "{n} events, {mb:.1} MB: EventReader {:.0} MB/s; tail {:.0} MB/s ({:.2}x the reader's time); \
         tail + commit every 1000 events {:.0} MB/s ({:.2}x)",
        mb / reader,
        mb / tail,
        tail / reader,
        mb / tail_commit,
        tail_commit / reader
    );
}

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    AppendPartial(usize, usize),
    Poll,
    Restart,
    RestartUncommitted,
    Rotate,
    RotateGz,
    CompressBackups,
    CopyTruncate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..6).prop_map(Op::Append),
        2 => (1usize..4, 1usize..400).prop_map(|(n, cut)| Op::AppendPartial(n, cut)),
        4 => Just(Op::Poll),
        1 => Just(Op::Restart),
        1 => Just(Op::RestartUncommitted),
        2 => Just(Op::Rotate),
        2 => Just(Op::RotateGz),
        1 => Just(Op::CompressBackups),
        1 => Just(Op::CopyTruncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    /// Whatever the interleaving, the events of committed batches are the
    /// written events exactly: no loss, no duplicates.
    #[test]
    fn committed_events_equal_written_events(ops in proptest::collection::vec(op(), 1..40), max_batch in 1usize..5) {
        let d = tempfile::tempdir().unwrap();
        let mut w = Writer::new(d.path());
        let mut t = open(d.path(), max_batch);
        let mut committed: Vec<String> = Vec::new();
        for op in ops {
            match op {
                Op::Append(n) => w.append(n),
                Op::AppendPartial(n, cut) => {
                    w.append(n);
                    w.start_line(cut);
                }
                Op::Poll => {
                    if let Some(b) = t.poll().unwrap() {
                        prop_assert!(b.bad_lines.is_empty(), "{:?}", b.bad_lines);
                        committed.extend(ids(&b));
                        t.commit(&b.position).unwrap();
                    }
                }
                Op::Restart => {
                    drop(t);
                    t = open(d.path(), max_batch);
                }
                Op::RestartUncommitted => {
                    let _ = t.poll().unwrap();
                    drop(t);
                    t = open(d.path(), max_batch);
                }
                Op::Rotate => {
                    w.rotate();
                }
                Op::RotateGz => {
                    w.rotate_gz();
                }
                Op::CompressBackups => {
                    for e in fs::read_dir(d.path()).unwrap() {
                        let p = e.unwrap().path();
                        let name = p.file_name().unwrap().to_str().unwrap().to_string();
                        if name.starts_with("audit-") && name.ends_with(".log") {
                            gzip(&p);
                        }
                    }
                }
                Op::CopyTruncate => {
                    // Quiescent: the writer is between lines and the tailer
                    // has read and committed everything.
                    w.finish_line();
                    committed.extend(drain(&mut t, true));
                    w.copytruncate();
                }
            }
        }
        w.finish_line();
        committed.extend(drain(&mut t, true));
        prop_assert_eq!(&committed, &w.written);
        drop(t);
        let mut t = open(d.path(), max_batch);
        prop_assert!(t.poll().unwrap().is_none(), "nothing comes again after a full commit");
    }
}
