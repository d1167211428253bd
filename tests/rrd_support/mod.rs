//! Random RRD scenarios for the differential tests: a seeded generator of create
//! arguments, update lines and fetch requests, and a runner that feeds many
//! scenarios to one `rrdtool -` process.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// A small, stable PRNG (SplitMix64) so a seed always gives the same scenarios.
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Self {
        Prng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.range(1, 100) <= percent
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
}

/// One fetch to compare.
#[derive(Clone, Debug)]
pub(crate) struct Fetch {
    pub(crate) cf: &'static str,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) resolution: Option<u64>,
}

impl Fetch {
    /// The arguments after `fetch FILE`.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.cf.to_string(),
            "-s".to_string(),
            self.start.to_string(),
            "-e".to_string(),
            self.end.to_string(),
        ];
        if let Some(r) = self.resolution {
            args.push("-r".to_string());
            args.push(r.to_string());
        }
        args
    }
}

/// One random database: its definition, its updates and the fetches to compare.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) step: u64,
    pub(crate) start: i64,
    pub(crate) ds: Vec<String>,
    pub(crate) rras: Vec<String>,
    pub(crate) updates: Vec<String>,
    pub(crate) fetches: Vec<Fetch>,
}

impl Scenario {
    /// The arguments after `create FILE`.
    pub(crate) fn create_args(&self) -> Vec<String> {
        let mut args = vec![
            "--step".to_string(),
            self.step.to_string(),
            "--start".to_string(),
            self.start.to_string(),
        ];
        args.extend(self.ds.iter().cloned());
        args.extend(self.rras.iter().cloned());
        args
    }

    /// How the scenario reads in a failure report.
    pub(crate) fn describe(&self) -> String {
        format!(
            "create X {}\nupdate X {}",
            self.create_args().join(" "),
            self.updates.join(" ")
        )
    }
}

const TYPES: [&str; 4] = ["GAUGE", "COUNTER", "DERIVE", "ABSOLUTE"];
const CFS: [&str; 4] = ["AVERAGE", "MIN", "MAX", "LAST"];

/// How each data source's raw values evolve.
struct Source {
    kind: &'static str,
    counter: u128,
    negative: bool,
}

impl Source {
    fn next_value(&mut self, rng: &mut Prng) -> String {
        if rng.chance(8) {
            return "U".to_string();
        }
        match self.kind {
            "GAUGE" => {
                let n = rng.range(0, 4000) as i64 - 1000;
                match rng.range(0, 2) {
                    0 => n.to_string(),
                    1 => format!("{}", n as f64 / 8.0),
                    _ => format!("{}", n as f64 / 1000.0),
                }
            }
            "ABSOLUTE" => rng.range(0, 5000).to_string(),
            _ => {
                match rng.range(0, 99) {
                    // A reset to a small value.
                    0..=3 => self.counter = u128::from(rng.range(0, 50)),
                    // Just below a 32-bit wrap.
                    4..=6 => self.counter = (1u128 << 32) - u128::from(rng.range(1, 500)),
                    // Just below a 64-bit wrap.
                    7..=8 => self.counter = (1u128 << 64) - u128::from(rng.range(1, 5000)),
                    // A big jump.
                    9..=10 => self.counter += u128::from(rng.range(0, 1 << 40)),
                    // Flip the sign (DERIVE only: rrdtool makes such differences unknown).
                    11..=13 if self.kind == "DERIVE" => self.negative = !self.negative,
                    // Repeat the value.
                    14..=16 => {}
                    _ => self.counter += u128::from(rng.range(0, 3000)),
                }
                if self.counter >= 1u128 << 64 {
                    self.counter -= 1u128 << 64;
                }
                let sign = if self.negative { "-" } else { "" };
                format!("{sign}{}", self.counter)
            }
        }
    }
}

fn bound(rng: &mut Prng, choices: &[&str]) -> String {
    if rng.chance(50) {
        "U".to_string()
    } else {
        rng.pick(choices).to_string()
    }
}

/// Generates a scenario from the PRNG.
pub(crate) fn generate(rng: &mut Prng, index: usize) -> Scenario {
    let step = *rng.pick(&[1, 2, 5, 10, 10, 60, 60, 300, 7, 13]);
    let start = 1_600_000_000 + rng.range(0, 10_000_000) as i64;
    let ds_count = rng.range(1, 4) as usize;
    let mut ds = Vec::new();
    let mut sources = Vec::new();
    let mut heartbeats = Vec::new();
    for d in 0..ds_count {
        let kind = *rng.pick(&TYPES);
        let heartbeat = match rng.range(0, 3) {
            0 => step,
            1 => step * 2,
            2 => rng.range(1, step * 3),
            _ => step * rng.range(1, 10),
        };
        let (min, max) = match kind {
            "GAUGE" => (
                bound(rng, &["-100", "0", "-0.5"]),
                bound(rng, &["100", "250.5", "1000"]),
            ),
            _ => (
                bound(rng, &["0", "0", "-5"]),
                bound(rng, &["100", "1000", "100000", "1e20"]),
            ),
        };
        let (min, max) = match (min.parse::<f64>(), max.parse::<f64>()) {
            (Ok(a), Ok(b)) if a >= b => (min, "U".to_string()),
            _ => (min, max),
        };
        ds.push(format!("DS:ds{index}_{d}:{kind}:{heartbeat}:{min}:{max}"));
        heartbeats.push(heartbeat);
        sources.push(Source {
            kind,
            counter: u128::from(rng.range(0, 1000)),
            negative: false,
        });
    }
    let mut rras: Vec<String> = Vec::new();
    let mut spans = Vec::new();
    for _ in 0..rng.range(1, 4) {
        let cf = *rng.pick(&CFS);
        let xff = *rng.pick(&["0", "0.1", "0.25", "0.5", "0.5", "0.75", "0.99"]);
        let steps = *rng.pick(&[1, 1, 2, 3, 4, 5, 6, 12]);
        let rows = rng.range(1, 40);
        let spec = format!("RRA:{cf}:{xff}:{steps}:{rows}");
        if !rras.contains(&spec) {
            rras.push(spec);
            spans.push(steps * rows * step);
        }
    }
    let max_span = *spans.iter().max().unwrap_or(&step);
    let mut updates = Vec::new();
    let mut t = start;
    let hb = *rng.pick(&heartbeats);
    for _ in 0..rng.range(1, 60) {
        let delta = match rng.range(0, 9) {
            0..=2 => rng.range(1, step),
            3 => hb,
            4 => hb + 1,
            5 => rng.range(1, step * 3),
            6 => step - (t as u64 % step),
            7 if rng.chance(30) => rng.range(1, max_span * 2),
            _ => rng.range(1, step * 2),
        };
        t += delta.max(1) as i64;
        let values: Vec<String> = sources.iter_mut().map(|s| s.next_value(rng)).collect();
        updates.push(format!("{t}:{}", values.join(":")));
    }
    let mut fetches = Vec::new();
    for _ in 0..rng.range(1, 5) {
        let cf = if rng.chance(85) {
            let rra = rng.pick(&rras);
            CFS.iter()
                .copied()
                .find(|cf| rra[4..].starts_with(cf))
                .unwrap_or("AVERAGE")
        } else {
            *rng.pick(&CFS)
        };
        let back = rng.range(0, max_span + max_span / 2) as i64;
        let fetch_start = t - back;
        let fetch_end = if rng.chance(5) {
            fetch_start
        } else {
            fetch_start + rng.range(1, max_span + step * 3) as i64
        };
        let resolution = match rng.range(0, 3) {
            0 | 1 => None,
            2 => Some(step * *rng.pick(&[1, 2, 3, 4, 5, 6, 12])),
            _ => Some(rng.range(1, max_span)),
        };
        fetches.push(Fetch {
            cf,
            start: fetch_start,
            end: fetch_end,
            resolution,
        });
    }
    Scenario {
        step,
        start,
        ds,
        rras,
        updates,
        fetches,
    }
}

/// What rrdtool answered to each fetch of each scenario: the printed table, or the
/// error message.
pub(crate) type Answers = Vec<Vec<Result<String, String>>>;

/// Marks the `info` command of a scenario in the command list.
const INFO: usize = usize::MAX;

/// Runs every scenario through one `rrdtool -` process (creating files in `dir`) and
/// returns its fetch output, and with `info` also its `rrdtool info` output.
pub(crate) fn run_rrdtool(
    scenarios: &[Scenario],
    dir: &Path,
    info: bool,
) -> (Answers, Vec<Option<String>>) {
    let mut script = String::new();
    // Per command: Some((scenario, fetch)) for fetches, None for the others.
    let mut commands: Vec<Option<(usize, usize)>> = Vec::new();
    for (i, s) in scenarios.iter().enumerate() {
        let file = dir.join(format!("oracle-{i}.rrd"));
        let file = file.display();
        script.push_str(&format!("create {file} {}\n", s.create_args().join(" ")));
        commands.push(None);
        for chunk in s.updates.chunks(20) {
            script.push_str(&format!("update {file} {}\n", chunk.join(" ")));
            commands.push(None);
        }
        for (f, fetch) in s.fetches.iter().enumerate() {
            script.push_str(&format!("fetch {file} {}\n", fetch.args().join(" ")));
            commands.push(Some((i, f)));
        }
        if info {
            script.push_str(&format!("info {file}\n"));
            commands.push(Some((i, INFO)));
        }
    }
    let mut child = Command::new("rrdtool")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rrdtool is not installed: run `apt-get install -y rrdtool` (as root)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        stdin
            .write_all(script.as_bytes())
            .expect("writing to rrdtool");
    });
    let output = child.wait_with_output().expect("rrdtool ran");
    writer.join().expect("writer thread");
    let stdout = String::from_utf8(output.stdout).expect("rrdtool prints UTF-8");

    let mut answers: Answers = scenarios
        .iter()
        .map(|s| Vec::with_capacity(s.fetches.len()))
        .collect();
    let mut infos = vec![None; scenarios.len()];
    let mut block = String::new();
    let mut command = commands.iter();
    for line in stdout.lines() {
        let outcome = if line.starts_with("OK u:") {
            Ok(std::mem::take(&mut block))
        } else if let Some(message) = line.strip_prefix("ERROR: ") {
            block.clear();
            Err(message.to_string())
        } else {
            block.push_str(line);
            block.push('\n');
            continue;
        };
        match command
            .next()
            .expect("no more rrdtool output than commands")
        {
            Some((scenario, INFO)) => infos[*scenario] = outcome.ok(),
            Some((scenario, _)) => answers[*scenario].push(outcome),
            None => {
                if let Err(message) = outcome {
                    panic!("rrdtool rejected a create/update of the generator: {message}");
                }
            }
        }
    }
    assert!(
        command.next().is_none(),
        "rrdtool stopped early; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (answers, infos)
}

/// The lines of `rrdtool info` output that both implementations must agree on: all
/// but the file name, rrdtool's own format version and header size, and the row
/// pointers (rrdtool starts its rings at a random row).
pub(crate) fn comparable_info(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            !(l.starts_with("filename")
                || l.starts_with("rrd_version")
                || l.starts_with("header_size")
                || l.contains(".cur_row"))
        })
        .map(str::to_string)
        .collect()
}

/// Fails loudly when rrdtool is missing: the differential tests are never skipped.
pub(crate) fn require_rrdtool() {
    let found = Command::new("rrdtool")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "the `rrdtool` program is missing: install it with `apt-get install -y rrdtool` \
         (Debian package rrdtool); these tests compare fleetpoll's RRD engine against it"
    );
}

/// A fresh directory under the system temp dir for one test, removed when it is
/// dropped.
pub(crate) fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("fleetpoll-{name}-"))
        .tempdir()
        .expect("create temp dir")
}
