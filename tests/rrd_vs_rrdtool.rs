//! Differential tests: thousands of random databases are built and fetched by both the
//! real `rrdtool` and fleetpoll's RRD engine, and the printed fetch output must be
//! identical, character for character, and so must the state `rrdtool info` shows.

mod rrd_support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use fleetpoll::rrd::text::{render_fetch, render_info};
use fleetpoll::rrd::{parse_update, Cf, DsDef, FetchRequest, RraDef, Rrd, RrdFile};
use rrd_support::{
    comparable_info, generate, require_rrdtool, run_rrdtool, temp_dir, Fetch, Prng, Scenario,
};

/// Builds the scenario's database in memory.
fn build(s: &Scenario) -> Rrd {
    let ds = s.ds.iter().map(|d| d.parse::<DsDef>().unwrap()).collect();
    let rras = s
        .rras
        .iter()
        .map(|r| r.parse::<RraDef>().unwrap())
        .collect();
    let mut rrd = Rrd::create(s.step, s.start, ds, rras).unwrap();
    for u in &s.updates {
        let (t, values) = parse_update(u, 0, s.ds.len()).unwrap();
        assert!(
            rrd.update(t, &values).unwrap(),
            "generator sent an old update"
        );
    }
    rrd
}

fn request(f: &Fetch) -> FetchRequest {
    FetchRequest {
        cf: f.cf.parse::<Cf>().unwrap(),
        start: f.start,
        end: f.end,
        resolution: f.resolution.unwrap_or(1),
    }
}

/// Builds the scenario as a file, updating it in several chunks with the file
/// reopened in between, so the positioned writes and the decoder are exercised.
fn build_on_disk(s: &Scenario, path: &Path) -> RrdFile {
    let ds = s.ds.iter().map(|d| d.parse::<DsDef>().unwrap()).collect();
    let rras = s
        .rras
        .iter()
        .map(|r| r.parse::<RraDef>().unwrap())
        .collect();
    let rrd = Rrd::create(s.step, s.start, ds, rras).unwrap();
    drop(RrdFile::create(path, rrd).unwrap());
    for chunk in s.updates.chunks(7) {
        let mut file = RrdFile::open(path).unwrap();
        let parsed: Vec<_> = chunk
            .iter()
            .map(|u| parse_update(u, 0, s.ds.len()).unwrap())
            .collect();
        assert_eq!(file.update(&parsed).unwrap(), 0);
    }
    RrdFile::open(path).unwrap()
}

/// What a fetch error says, for the errors these scenarios can provoke; `None` for any
/// other text, which then never matches.
fn error_kind(text: &str) -> Option<&'static str> {
    text.contains("does not contain an RRA matching the chosen CF")
        .then_some("no archive of the consolidation function")
}

/// Compares one answer of ours with rrdtool's; returns a report when they differ.
fn compare(
    s: &Scenario,
    f: &Fetch,
    ours: Result<String, String>,
    theirs: &Result<String, String>,
    via: &str,
) -> Option<String> {
    match (&ours, theirs) {
        (Ok(a), Ok(b)) if a == b => None,
        // Two errors match only when they say the same thing.
        (Err(a), Err(b)) if error_kind(a).is_some() && error_kind(a) == error_kind(b) => None,
        _ => {
            let mut report = format!(
                "--- mismatch ({via}) ---\n{}\nfetch X {}\n",
                s.describe(),
                f.args().join(" ")
            );
            match (&ours, theirs) {
                (Ok(a), Ok(b)) => {
                    for (x, y) in a.lines().zip(b.lines()) {
                        if x != y {
                            report.push_str(&format!("ours:    {x}\nrrdtool: {y}\n"));
                        }
                    }
                    if a.lines().count() != b.lines().count() {
                        report.push_str(&format!(
                            "ours {} lines, rrdtool {} lines\n",
                            a.lines().count(),
                            b.lines().count()
                        ));
                    }
                }
                _ => report.push_str(&format!("ours: {ours:?}\nrrdtool: {theirs:?}\n")),
            }
            Some(report)
        }
    }
}

fn assert_no_mismatches(mismatches: &[String], compared: usize) {
    let shown: Vec<&String> = mismatches.iter().take(5).collect();
    assert!(
        mismatches.is_empty(),
        "{} of {compared} comparisons differ from rrdtool; the first ones:\n{}",
        mismatches.len(),
        shown.iter().map(|s| s.as_str()).collect::<String>()
    );
}

#[test]
fn random_databases_fetch_exactly_like_rrdtool() {
    require_rrdtool();
    let tmp = temp_dir("rrd-diff");
    let dir = tmp.path();
    // FLEETPOLL_RRD_SEED and FLEETPOLL_RRD_SCENARIOS explore beyond the fixed default.
    let seed = std::env::var("FLEETPOLL_RRD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0001);
    let count = std::env::var("FLEETPOLL_RRD_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8000);
    assert!(
        count > 0,
        "FLEETPOLL_RRD_SCENARIOS=0 compares nothing; give at least 1"
    );
    let mut rng = Prng::new(seed);
    let scenarios: Vec<Scenario> = (0..count).map(|i| generate(&mut rng, i)).collect();
    let (answers, infos) = run_rrdtool(&scenarios, dir, true);

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (i, (s, theirs)) in scenarios.iter().zip(&answers).enumerate() {
        let rrd = build(s);
        compared += 1;
        let their_info = infos[i].as_deref().map(comparable_info);
        let our_info = comparable_info(&render_info(&rrd, "X"));
        if their_info.as_ref() != Some(&our_info) {
            let diff: Vec<String> = our_info
                .iter()
                .zip(their_info.iter().flatten())
                .filter(|(a, b)| a != b)
                .map(|(a, b)| format!("ours:    {a}\nrrdtool: {b}\n"))
                .collect();
            mismatches.push(format!(
                "--- info mismatch ---\n{}\n{}",
                s.describe(),
                diff.concat()
            ));
        }
        let on_disk = (i % 10 == 0).then(|| build_on_disk(s, &dir.join(format!("ours-{i}.rrd"))));
        for (f, theirs) in s.fetches.iter().zip(theirs) {
            compared += 1;
            let ours = rrd
                .fetch(&request(f))
                .map(|r| render_fetch(&r))
                .map_err(|e| e.to_string());
            mismatches.extend(compare(s, f, ours, theirs, "library"));
            if let Some(file) = &on_disk {
                let ours = file
                    .fetch(&request(f))
                    .map(|r| render_fetch(&r))
                    .map_err(|e| e.to_string());
                compared += 1;
                mismatches.extend(compare(s, f, ours, theirs, "file"));
            }
        }
    }
    assert!(compared >= 3 * count, "too few comparisons: {compared}");
    eprintln!("compared {compared} results of {count} random databases (seed {seed}) with rrdtool");
    assert_no_mismatches(&mismatches, compared);
}

/// Runs `fleetpoll rrd ARGS`, optionally feeding stdin, and returns stdout or stderr.
fn fleetpoll(args: &[String], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .arg("rrd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetpoll");
    let mut pipe = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    let output = child.wait_with_output().expect("fleetpoll ran");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("UTF-8"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn the_fleetpoll_rrd_command_prints_what_rrdtool_prints() {
    require_rrdtool();
    let tmp = temp_dir("rrd-cli");
    let dir = tmp.path();
    let mut rng = Prng::new(0x5EED_0002);
    let scenarios: Vec<Scenario> = (0..40).map(|i| generate(&mut rng, i)).collect();
    let (answers, _) = run_rrdtool(&scenarios, dir, false);

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (i, (s, theirs)) in scenarios.iter().zip(&answers).enumerate() {
        let file = dir.join(format!("cli-{i}.rrd")).display().to_string();
        let mut create = vec!["create".to_string(), file.clone()];
        create.extend(s.create_args());
        fleetpoll(&create, None).expect("fleetpoll rrd create");
        if i % 2 == 0 {
            let mut update = vec!["update".to_string(), file.clone()];
            update.extend(s.updates.iter().cloned());
            fleetpoll(&update, None).expect("fleetpoll rrd update");
        } else {
            let lines = s.updates.join("\n") + "\n";
            let update = vec!["update".to_string(), file.clone(), "-".to_string()];
            fleetpoll(&update, Some(&lines)).expect("fleetpoll rrd update -");
        }
        for (f, theirs) in s.fetches.iter().zip(theirs) {
            compared += 1;
            let mut fetch = vec!["fetch".to_string(), file.clone()];
            fetch.extend(f.args());
            let ours = fleetpoll(&fetch, None);
            mismatches.extend(compare(s, f, ours, theirs, "binary"));
        }
    }
    assert_no_mismatches(&mismatches, compared);
}

#[test]
fn only_errors_that_say_the_same_thing_match() {
    let s = generate(&mut Prng::new(7), 0);
    let f = &s.fetches[0];
    let no_rra = |cf: &str| {
        Err(format!(
            "the RRD does not contain an RRA matching the chosen CF {cf}"
        ))
    };
    assert!(compare(&s, f, no_rra("MAX"), &no_rra(""), "t").is_none());
    let other: Result<String, String> = Err("start must be before end".into());
    assert!(compare(&s, f, other.clone(), &no_rra(""), "t").is_some());
    assert!(
        compare(&s, f, other.clone(), &other, "t").is_some(),
        "an unknown error"
    );
    assert!(compare(&s, f, Ok("1: 2\n".into()), &no_rra(""), "t").is_some());
}
