//! A `kaudit serve` run in-process on 127.0.0.1 for a test, stopped (and
//! joined) on drop.

// Each test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use kaudit_server::config::ServerConfig;
use kaudit_server::serve::{run, RunOptions, ServeError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// A running server.
pub struct Server {
    /// Its listeners, as `on_ready` reported them (scheme, address).
    pub addrs: Vec<(String, SocketAddr)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// Runs `cfg` as given and waits until it listens; panics with the
    /// server's own error when it does not start.
    pub fn start(cfg: ServerConfig) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let opts = RunOptions {
            on_ready: Some(Arc::new(move |a: &[(String, SocketAddr)]| {
                let _ = tx.lock().unwrap().send(a.to_vec());
            })),
            ..Default::default()
        };
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || run(cfg, opts, s2));
        let Ok(addrs) = rx.recv_timeout(Duration::from_secs(30)) else {
            panic!("server did not start: {:?}", thread.join());
        };
        Server {
            addrs,
            stop,
            thread: Some(thread),
        }
    }

    /// `path` on the first listener (plain HTTP).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs[0].1)
    }

    /// Stops the server and fails the test if it ended with an error.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
