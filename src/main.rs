//! The `fleetpoll` command: daemon, demo, simulator and tools.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sim") => std::process::exit(fleetpoll::sim::cli::run(args)),
        _ => {
            eprintln!("fleetpoll: no command yet (available: sim)");
            std::process::exit(64);
        }
    }
}
