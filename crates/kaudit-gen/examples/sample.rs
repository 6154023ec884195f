//! Prints generated events as JSON lines: `cargo run -p kaudit-gen --example sample -- [events] [seed]`.
//! Handy for looking at the traffic without building the whole CLI.

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let events = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut config = kaudit_gen::GenConfig::new(seed);
    config.events = Some(events);
    config.spread_incidents();
    let generator = match kaudit_gen::Generator::new(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for e in generator {
        if out
            .write_all(&e.bytes)
            .and_then(|_| out.write_all(b"\n"))
            .is_err()
        {
            return;
        }
    }
}
