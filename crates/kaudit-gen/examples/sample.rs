//! Writes generated events as JSON lines to stdout, the way `kaudit gen`
//! does (fast path, large buffered writes), without building the whole CLI:
//! `cargo run -p kaudit-gen --example sample -- [events] [seed]`.

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let events = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut config = kaudit_gen::GenConfig::new(seed);
    config.events = Some(events);
    config.spread_incidents();
    let mut generator = match kaudit_gen::Generator::new(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::with_capacity(1 << 21);
    while generator.next_into(&mut buf).is_some() {
        buf.push(b'\n');
        if buf.len() >= 1 << 20 {
            if out.write_all(&buf).is_err() {
                return;
            }
            buf.clear();
        }
    }
    let _ = out.write_all(&buf);
}
