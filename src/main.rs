//! The `fleetpoll` command: daemon, demo, simulator and tools.

use std::process::ExitCode;

use fleetpoll::rrd::cli::UsageError;

const USAGE: &str = "usage: fleetpoll rrd <create|update|fetch|info> ...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("rrd") => fleetpoll::rrd::cli::run(&args[2..]),
        Some(other) => {
            eprintln!("fleetpoll: unknown command {other:?}\n{USAGE}");
            return ExitCode::from(64);
        }
        None => {
            eprintln!("fleetpoll: no command given\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is::<UsageError>() => {
            eprintln!("fleetpoll: {err:#}");
            ExitCode::from(64)
        }
        Err(err) => {
            eprintln!("fleetpoll: {err:#}");
            ExitCode::from(1)
        }
    }
}
