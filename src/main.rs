//! The `fleetpoll` command: daemon, demo, simulator and tools.

use std::process::ExitCode;

const USAGE: &str = "usage: fleetpoll rrd <create|update|fetch|info> ...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("rrd") => ExitCode::from(fleetpoll::rrd::cli::main(&args[2..])),
        Some(other) => {
            eprintln!("fleetpoll: unknown command {other:?}\n{USAGE}");
            ExitCode::from(64)
        }
        None => {
            eprintln!("fleetpoll: no command given\n{USAGE}");
            ExitCode::from(64)
        }
    }
}
