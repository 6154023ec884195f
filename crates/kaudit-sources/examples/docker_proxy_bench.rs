//! Latency the auditing proxy adds: `GET /containers/json` over one
//! keep-alive connection to the daemon's socket directly, then through an
//! in-process proxy that records every call into an on-disk spool (fsync'd
//! on its own thread, as the standalone `kaudit docker-proxy` does),
//! interleaved in rounds so both see the same daemon and machine load.
//!
//!   cargo run --release -p kaudit-sources --example docker_proxy_bench -- /path/docker.sock [requests]

use kaudit_sources::docker::{proxy, spool::Spool, DockerProxyConfig, Proxy};
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

fn get(r: &mut BufReader<UnixStream>, w: &mut UnixStream) -> std::time::Duration {
    use kaudit_sources::docker::http;
    let t = Instant::now();
    w.write_all(
        b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\nUser-Agent: bench\r\n\r\n",
    )
    .expect("write");
    let head = http::read_head(r).expect("head").expect("a response");
    assert_eq!(head.status, 200, "daemon answered {}", head.status);
    let mut cap = http::Capture::new(0);
    match head.framing().expect("framing") {
        http::Framing::Length(n) => http::copy_length(r, &mut std::io::sink(), n, &mut cap),
        http::Framing::Chunked => http::copy_chunked(r, &mut std::io::sink(), &mut cap),
        http::Framing::None => panic!("unframed response"),
    }
    .expect("body");
    t.elapsed()
}

fn pct(v: &mut [std::time::Duration], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1e6
}

fn main() {
    let mut args = std::env::args().skip(1);
    let upstream = args
        .next()
        .expect("usage: docker_proxy_bench DOCKER_SOCK [REQUESTS]");
    let n: usize = args.next().map_or(5000, |s| s.parse().expect("a number"));
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = dir.path().join("proxy.sock");
    let sp = Spool::open(&dir.path().join("spool")).expect("spool");
    let (tx, rx) = std::sync::mpsc::sync_channel(16_384);
    let writer = {
        let sp = sp.clone();
        std::thread::spawn(move || sp.write_from(rx))
    };
    let cfg = DockerProxyConfig {
        listen: listen.clone(),
        upstream: upstream.clone().into(),
        name: "bench".into(),
        level: None,
        max_body: None,
        socket_mode: None,
    };
    let p = Proxy::bind(&cfg, Arc::new(proxy::ChannelRecorder(tx))).expect("proxy");
    let stop = Arc::new(AtomicBool::new(false));
    let serving = {
        let stop = stop.clone();
        std::thread::spawn(move || p.serve(stop))
    };
    let connect = |path: &std::path::Path| {
        let s = UnixStream::connect(path).expect("connect");
        (BufReader::new(s.try_clone().expect("clone")), s)
    };
    let (mut dr, mut dw) = connect(std::path::Path::new(&upstream));
    let (mut pr, mut pw) = connect(&listen);
    for _ in 0..200 {
        get(&mut dr, &mut dw);
        get(&mut pr, &mut pw);
    }
    let (mut direct, mut proxied) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n / 100 {
        for _ in 0..100 {
            direct.push(get(&mut dr, &mut dw));
        }
        for _ in 0..100 {
            proxied.push(get(&mut pr, &mut pw));
        }
    }
    let (d50, d99) = (pct(&mut direct, 0.5), pct(&mut direct, 0.99));
    let (p50, p99) = (pct(&mut proxied, 0.5), pct(&mut proxied, 0.99));
    println!("requests per path: {}", direct.len());
    println!("direct   p50 {d50:8.1} us  p99 {d99:8.1} us");
    println!("proxied  p50 {p50:8.1} us  p99 {p99:8.1} us");
    println!(
        "added    p50 {:8.1} us  p99 {:8.1} us",
        p50 - d50,
        p99 - d99
    );
    drop((pr, pw));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    proxy::wake(&listen);
    let _ = serving.join();
    let _ = writer.join();
    println!("records spooled: {} bytes", sp.backlog());
}
