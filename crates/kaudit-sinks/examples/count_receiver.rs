//! A webhook receiver for the forwarding benchmark: takes EventList POSTs on
//! any path, counts their items (by their `"auditID":` keys), answers 200,
//! and reports the count at `GET /count`.
//!
//! `cargo run --release -p kaudit-sinks --example count_receiver -- 127.0.0.1:0`
//! prints `listening on ADDR` once bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let count = Arc::new(AtomicU64::new(0));
        let c2 = count.clone();
        let app = axum::Router::new()
            .route(
                "/count",
                axum::routing::get(move || {
                    let c = c2.clone();
                    async move { c.load(Ordering::Relaxed).to_string() }
                }),
            )
            .fallback(move |body: axum::body::Bytes| {
                let c = count.clone();
                async move {
                    let n = memchr::memmem::find_iter(&body, b"\"auditID\":").count();
                    c.fetch_add(n as u64, Ordering::Relaxed);
                    "{}"
                }
            })
            .layer(axum::extract::DefaultBodyLimit::max(512 << 20));
        let l = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        println!("listening on {}", l.local_addr().expect("addr"));
        axum::serve(l, app).await.expect("serve");
    });
}
