//! `fleetpoll rrd create|update|fetch|info`: the RRD engine with rrdtool's argument
//! syntax and output, for operators and for the differential tests.

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use fleetpoll_actors::system_now_secs;

use super::def::{Cf, DsDef, RraDef};
use super::fetch::FetchRequest;
use super::file::RrdFile;
use super::text;
use super::value::parse_update;
use super::Rrd;

/// The command line was wrong; `main` exits with 64 for it.
#[derive(Debug, thiserror::Error)]
#[error("{0}\n{USAGE}")]
pub struct UsageError(String);

const USAGE: &str = "usage:
  fleetpoll rrd create FILE [--step S] [--start T] DS:name:TYPE:heartbeat:min:max... RRA:CF:xff:steps:rows...
  fleetpoll rrd update FILE T:v1[:v2...]...    (or - to read such updates from stdin; U = unknown, N = now)
  fleetpoll rrd fetch FILE CF [-r RES] [-s START] [-e END]
  fleetpoll rrd info FILE";

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Runs `fleetpoll rrd …` as a command: prints any error (with its causes) and
/// returns the exit code — 0, 64 for bad usage, 1 for runtime errors. `args` are the
/// words after `rrd`.
pub fn main(args: &[String]) -> u8 {
    match run(args) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("fleetpoll: {err:#}");
            if err.is::<UsageError>() {
                64
            } else {
                1
            }
        }
    }
}

/// Runs `fleetpoll rrd …`; `args` are the words after `rrd`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let Some((command, rest)) = args.split_first() else {
        return Err(usage("missing rrd command"));
    };
    match command.as_str() {
        "create" => create(rest),
        "update" => update(rest),
        "fetch" => fetch(rest),
        "info" => info(rest),
        other => Err(usage(format!("unknown rrd command {other:?}"))),
    }
}

/// Parses a time: seconds since the epoch, `N`/`now`, or a negative number of
/// seconds relative to `base`.
fn parse_time(text: &str, base: i64) -> anyhow::Result<i64> {
    match text {
        "N" | "now" => Ok(system_now_secs()),
        _ => match text.parse::<i64>() {
            Ok(t) if t < 0 => base
                .checked_add(t)
                .ok_or_else(|| usage(format!("time {text:?} lies too far before {base}"))),
            Ok(t) => Ok(t),
            Err(_) => Err(usage(format!(
                "time {text:?} must be seconds since the epoch, N, or -SECONDS"
            ))),
        },
    }
}

/// Options found on a command line: `(canonical name, value)` pairs.
type Named<'a> = Vec<(&'static str, &'a str)>;

/// Splits `--name value` / `-n value` options from positional words.
fn options<'a>(
    args: &'a [String],
    names: &[(&str, &str)],
) -> anyhow::Result<(Named<'a>, Vec<&'a str>)> {
    let mut found = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_str();
        let matched = names
            .iter()
            .find(|(long, short)| word == *long || word == *short);
        if let Some((long, _)) = matched {
            let value = args
                .get(i + 1)
                .ok_or_else(|| usage(format!("{word} needs a value")))?;
            found.push((canonical(long), value.as_str()));
            i += 2;
        } else if let Some((long, value)) = word
            .split_once('=')
            .filter(|(l, _)| names.iter().any(|(n, _)| n == l))
        {
            found.push((canonical(long), value));
            i += 1;
        } else {
            positional.push(word);
            i += 1;
        }
    }
    Ok((found, positional))
}

fn canonical(long: &str) -> &'static str {
    match long {
        "--step" => "step",
        "--start" => "start",
        "--end" => "end",
        "--resolution" => "resolution",
        _ => "other",
    }
}

fn create(args: &[String]) -> anyhow::Result<()> {
    let (file, rrd) = create_args(args)?;
    RrdFile::create(Path::new(file), rrd)?;
    Ok(())
}

/// The file and the new database a `create` command line asks for.
pub(crate) fn create_args(args: &[String]) -> anyhow::Result<(&str, Rrd)> {
    let (file, spec) = create_spec(args)?;
    let rrd =
        Rrd::create(spec.step, spec.start, spec.ds, spec.rras).map_err(|e| usage(e.to_string()))?;
    Ok((file, rrd))
}

/// What a `create` command line defines, before the database is made.
pub(crate) struct CreateSpec {
    /// Seconds per primary data point.
    pub(crate) step: u64,
    /// The database's first last-update time.
    pub(crate) start: i64,
    /// The data sources.
    pub(crate) ds: Vec<DsDef>,
    /// The archives.
    pub(crate) rras: Vec<RraDef>,
}

/// The file and the definitions of a `create` command line.
pub(crate) fn create_spec(args: &[String]) -> anyhow::Result<(&str, CreateSpec)> {
    let (opts, words) = options(args, &[("--step", "-s"), ("--start", "-b")])?;
    let Some((file, defs)) = words.split_first() else {
        return Err(usage("create needs a FILE"));
    };
    let mut step = 300;
    let mut start = system_now_secs() - 10;
    for (name, value) in opts {
        match name {
            "step" => {
                step = value
                    .parse()
                    .map_err(|_| usage(format!("--step {value:?} must be whole seconds")))?
            }
            _ => start = parse_time(value, system_now_secs())?,
        }
    }
    let mut ds = Vec::new();
    let mut rras = Vec::new();
    for def in defs {
        if def.starts_with("DS:") {
            ds.push(def.parse::<DsDef>().map_err(|e| usage(e.to_string()))?);
        } else if def.starts_with("RRA:") {
            rras.push(def.parse::<RraDef>().map_err(|e| usage(e.to_string()))?);
        } else {
            return Err(usage(format!(
                "{def:?} is neither a DS: nor an RRA: definition"
            )));
        }
    }
    Ok((
        file,
        CreateSpec {
            step,
            start,
            ds,
            rras,
        },
    ))
}

fn update(args: &[String]) -> anyhow::Result<()> {
    let Some((file, updates)) = args.split_first() else {
        return Err(usage("update needs a FILE"));
    };
    if updates.is_empty() {
        return Err(usage("update needs at least one T:value... or -"));
    }
    let mut rrd = RrdFile::open(Path::new(file))?;
    let ds_count = rrd.rrd().data_sources().len();
    let mut parsed = Vec::new();
    for word in updates {
        if word == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line.context("reading updates from stdin")?;
                for item in line.split_whitespace() {
                    parsed.push(parse_update(item, system_now_secs(), ds_count)?);
                }
            }
        } else {
            parsed.push(parse_update(word, system_now_secs(), ds_count)?);
        }
    }
    let ignored = rrd.update(&parsed)?;
    if ignored > 0 {
        eprintln!(
            "fleetpoll rrd update: warning: {ignored} update(s) at or before the last update \
             of {file} were ignored"
        );
    }
    Ok(())
}

fn fetch(args: &[String]) -> anyhow::Result<()> {
    let (file, request) = fetch_args(args)?;
    let rrd = RrdFile::open(Path::new(file))?;
    let result = rrd.fetch(&request)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text::render_fetch(&result).as_bytes())?;
    Ok(())
}

/// The file and the fetch a `fetch` command line asks for.
fn fetch_args(args: &[String]) -> anyhow::Result<(&str, FetchRequest)> {
    let (opts, words) = options(
        args,
        &[("--resolution", "-r"), ("--start", "-s"), ("--end", "-e")],
    )?;
    let [file, cf] = words[..] else {
        return Err(usage("fetch needs FILE and CF"));
    };
    let cf = cf.parse::<Cf>().map_err(usage)?;
    let mut resolution = 1;
    let mut start_text = None;
    let mut end = system_now_secs();
    for (name, value) in opts {
        match name {
            "resolution" => {
                resolution = value
                    .parse()
                    .map_err(|_| usage(format!("-r {value:?} must be whole seconds")))?
            }
            "start" => start_text = Some(value),
            _ => end = parse_time(value, system_now_secs())?,
        }
    }
    let start = match start_text {
        Some(text) => parse_time(text, end)?,
        None => end - 86_400,
    };
    let request = FetchRequest {
        cf,
        start,
        end,
        resolution,
    };
    Ok((file, request))
}

/// Runs `create`, `update` and `fetch` command lines (the words after the command
/// name) against a database held in memory, without files: what the fuzz target
/// `rrd_args` drives. A command line that is refused gives the usage error `main`
/// exits 64 for; an update or fetch the engine refuses, its error.
#[cfg(feature = "fuzzing")]
pub(crate) fn in_memory(
    create: &[String],
    updates: &[String],
    fetch: &[String],
) -> anyhow::Result<(Rrd, super::fetch::FetchResult)> {
    let (_, mut rrd) = create_args(create)?;
    let ds_count = rrd.data_sources().len();
    for word in updates {
        let (time, values) = parse_update(word, system_now_secs(), ds_count)?;
        rrd.update(time, &values)?;
    }
    let (_, request) = fetch_args(fetch)?;
    let result = rrd.fetch(&request)?;
    Ok((rrd, result))
}

fn info(args: &[String]) -> anyhow::Result<()> {
    let [file] = args else {
        return Err(usage("info needs exactly one FILE"));
    };
    let rrd = RrdFile::open(Path::new(file))?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text::render_info(rrd.rrd(), file).as_bytes())?;
    Ok(())
}
