//! The `fleetpoll` command: daemon, demo, simulator and tools.

fn main() {
    eprintln!("fleetpoll: no command yet");
    std::process::exit(64);
}
