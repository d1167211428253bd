//! Helpers of the exporter tests: the real receivers (VictoriaMetrics, InfluxDB 1.x,
//! Prometheus, carbon-cache), each started on free loopback ports with its own data
//! directory and killed when dropped, and what the daemon stored for one entity (read
//! from its live stream's replay) to compare them with.
//!
//! A receiver's binary that is missing fails the test with the package to install
//! (`.ci/run` installs them): these tests are never skipped.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::daemon_support::{free_port, http, wait_until, Proc};

/// The binary `name` from Debian package `package`, or a loud failure.
pub fn receiver_binary(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "the receiver `{name}` is not installed: these tests need the real receiver; \
         install it with `apt-get install {package}` (.ci/run does this as root)"
    );
}

/// A free loopback UDP port.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET or POST with a form body on a receiver; status and body.
pub fn form(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the receiver accepts connections");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query value.
pub fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// VictoriaMetrics single-node with its HTTP, Graphite and Influx listeners.
pub struct Victoria {
    pub proc: Option<Proc>,
    pub http: u16,
    pub graphite: u16,
    pub influx: u16,
    pub data: PathBuf,
}

impl Victoria {
    /// Starts it with data under `dir`.
    pub fn start(dir: &Path) -> Victoria {
        // A port found free may be taken by a parallel test before the receiver binds
        // it (then it exits): try again on other ports.
        for _ in 0..3 {
            let mut vm = Victoria {
                proc: None,
                http: free_port(),
                graphite: free_port(),
                influx: free_port(),
                data: dir.join("vm-data"),
            };
            vm.restart();
            #[allow(clippy::disallowed_methods)] // reason: let a failed bind end the process
            std::thread::sleep(Duration::from_millis(300));
            let alive = vm
                .proc
                .as_mut()
                .is_some_and(|p| p.0.try_wait().ok().flatten().is_none());
            let listening = [vm.graphite, vm.influx]
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if alive && listening {
                return vm;
            }
        }
        panic!("VictoriaMetrics did not keep running on free ports three times");
    }

    /// Starts it (again) on the same ports and data.
    pub fn restart(&mut self) {
        let bin = receiver_binary("victoria-metrics", "victoria-metrics");
        let child = Command::new(bin)
            .arg(format!("-storageDataPath={}", self.data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.http))
            .arg(format!("-graphiteListenAddr=127.0.0.1:{}", self.graphite))
            .arg(format!("-influxListenAddr=127.0.0.1:{}", self.influx))
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.proc = Some(Proc::new(child));
        let port = self.http;
        wait_until(
            Duration::from_secs(30),
            "VictoriaMetrics is healthy",
            || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && form(port, "GET", "/health", "").0 == 200
            },
        );
    }

    /// Stops it gracefully (SIGTERM: what it acknowledged is flushed to disk).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.0.id().to_string()])
                .status();
            let _ = p.0.wait();
        }
    }

    /// Every raw sample of the series `selector` matches: series labels → (ts s, value).
    pub fn export(&self, selector: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        let (status, body) = form(
            self.http,
            "POST",
            "/api/v1/export",
            &format!("match[]={}", enc(selector)),
        );
        assert_eq!(status, 200, "{body}");
        let mut out = BTreeMap::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let metric = &v["metric"];
            let key = metric_key(metric);
            let ts = v["timestamps"].as_array().unwrap();
            let vals = v["values"].as_array().unwrap();
            let entry: &mut Vec<(i64, f64)> = out.entry(key).or_default();
            for (t, x) in ts.iter().zip(vals) {
                entry.push((t.as_i64().unwrap() / 1000, x.as_f64().unwrap()));
            }
            entry.sort_by_key(|p| p.0);
        }
        out
    }
}

/// `name{a="x",b="y"}` with the labels sorted.
pub fn metric_key(metric: &Value) -> String {
    let obj = metric.as_object().unwrap();
    let name = obj.get("__name__").and_then(|v| v.as_str()).unwrap_or("");
    let labels: Vec<String> = obj
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// InfluxDB 1.x with HTTP and a `[[udp]]` listener writing into database `fpudp`.
pub struct Influx {
    pub proc: Proc,
    pub http: u16,
    pub udp: u16,
}

impl Influx {
    pub fn start(dir: &Path) -> Influx {
        let bin = receiver_binary("influxd", "influxdb");
        let (http_port, udp, rpc) = (free_port(), free_udp_port(), free_port());
        let d = dir.join("influx");
        std::fs::create_dir_all(&d).unwrap();
        let conf = d.join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{http_port}\"\n  log-enabled = false\n\
                 [[udp]]\n  enabled = true\n  bind-address = \"127.0.0.1:{udp}\"\n  database = \"fpudp\"\n  batch-timeout = \"200ms\"\n",
                d = d.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-config")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc::new(child);
        wait_until(Duration::from_secs(30), "InfluxDB answers /ping", || {
            TcpStream::connect(("127.0.0.1", http_port)).is_ok()
                && form(http_port, "GET", "/ping", "").0 == 204
        });
        let (status, body) = form(http_port, "POST", "/query", "q=CREATE%20DATABASE%20fp");
        assert_eq!(status, 200, "{body}");
        Influx {
            proc,
            http: http_port,
            udp,
        }
    }

    /// `SELECT * FROM measurement WHERE entity = …` in database `db`: per field, (ts s, value).
    pub fn select(
        &self,
        db: &str,
        measurement: &str,
        entity: &str,
    ) -> BTreeMap<String, Vec<(i64, f64)>> {
        let q = format!("SELECT * FROM \"{measurement}\" WHERE \"entity\" = '{entity}'");
        let (status, body) = form(
            self.http,
            "GET",
            &format!("/query?db={db}&epoch=s&q={}", enc(&q)),
            "",
        );
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        let Some(series) = v["results"][0]["series"].as_array() else {
            return out;
        };
        for s in series {
            let cols: Vec<&str> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            for row in s["values"].as_array().unwrap() {
                let row = row.as_array().unwrap();
                let ts = row[0].as_i64().unwrap();
                for (i, c) in cols.iter().enumerate().skip(1) {
                    if let Some(x) = row[i].as_f64() {
                        out.entry(c.to_string()).or_default().push((ts, x));
                    }
                }
            }
        }
        out
    }
}

/// Prometheus with its remote-write receiver.
pub struct Prometheus {
    pub proc: Proc,
    pub http: u16,
}

impl Prometheus {
    pub fn start(dir: &Path) -> Prometheus {
        let bin = receiver_binary("prometheus", "prometheus");
        let port = free_port();
        let d = dir.join("prometheus");
        std::fs::create_dir_all(&d).unwrap();
        let conf = d.join("prometheus.yml");
        std::fs::write(
            &conf,
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        )
        .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc::new(child);
        wait_until(Duration::from_secs(30), "Prometheus is ready", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && form(port, "GET", "/-/ready", "").0 == 200
        });
        Prometheus { proc, http: port }
    }

    /// The raw samples of `selector` over the last `range` (a range-vector query).
    pub fn samples(&self, selector: &str, range: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        let q = format!("{selector}[{range}]");
        let (status, body) = form(
            self.http,
            "GET",
            &format!("/api/v1/query?query={}", enc(&q)),
            "",
        );
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let mut out = BTreeMap::new();
        for r in v["data"]["result"].as_array().unwrap() {
            let key = metric_key(&r["metric"]);
            let pts = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap() as i64,
                        p[1].as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            out.insert(key, pts);
        }
        out
    }
}

/// graphite-carbon's carbon-cache with a 10 s schema, writing whisper files.
pub struct Carbon {
    pub proc: Proc,
    pub line: u16,
    pub whisper: PathBuf,
}

impl Carbon {
    pub fn start(dir: &Path) -> Carbon {
        let bin = receiver_binary("carbon-cache", "graphite-carbon");
        let d = dir.join("carbon");
        for sub in ["conf", "storage/whisper", "log", "run", "lists"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let (line, pickle, query, udp) = (free_port(), free_port(), free_port(), free_udp_port());
        let conf = d.join("conf/carbon.conf");
        std::fs::write(
            &conf,
            format!(
                "[cache]\nSTORAGE_DIR = {d}/storage/\nLOCAL_DATA_DIR = {d}/storage/whisper/\n\
                 WHITELISTS_DIR = {d}/lists/\nCONF_DIR = {d}/conf/\nLOG_DIR = {d}/log/\nPID_DIR = {d}/run/\n\
                 USER =\nDATABASE = whisper\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = inf\n\
                 MAX_CREATES_PER_MINUTE = inf\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line}\n\
                 ENABLE_UDP_LISTENER = False\nUDP_RECEIVER_INTERFACE = 127.0.0.1\nUDP_RECEIVER_PORT = {udp}\n\
                 PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle}\n\
                 CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {query}\nLOG_UPDATES = False\n\
                 LOG_CREATES = False\nWHISPER_AUTOFLUSH = True\nWHISPER_FALLOCATE_CREATE = False\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("conf/storage-schemas.conf"),
            "[everything]\npattern = .*\nretentions = 10s:7d\n",
        )
        .unwrap();
        std::fs::write(
            d.join("conf/storage-aggregation.conf"),
            "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n",
        )
        .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config={}", conf.display()))
            .arg("--debug")
            .arg("start")
            .stdout(std::fs::File::create(d.join("log/stdout.log")).unwrap())
            .stderr(std::fs::File::create(d.join("log/stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let proc = Proc::new(child);
        let log = d.join("log/stderr.log");
        wait_until(Duration::from_secs(30), "carbon-cache listens", || {
            TcpStream::connect(("127.0.0.1", line)).is_ok()
        });
        let _ = log;
        Carbon {
            proc,
            line,
            whisper: d.join("storage/whisper"),
        }
    }

    /// The points of the whisper file of `path` (dots → directories): (ts, value).
    pub fn read(&self, path: &str) -> Option<Vec<(i64, f64)>> {
        let file = self.whisper.join(format!("{}.wsp", path.replace('.', "/")));
        let bytes = std::fs::read(file).ok()?;
        Some(read_whisper(&bytes))
    }
}

/// Reads the first archive of a whisper file (big-endian: a 16-byte header, 12 bytes per
/// archive, 12 bytes per point; unwritten slots have timestamp 0).
pub fn read_whisper(b: &[u8]) -> Vec<(i64, f64)> {
    let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    let offset = u32_at(16) as usize;
    let points = u32_at(24) as usize;
    let mut out = Vec::new();
    for i in 0..points {
        let o = offset + i * 12;
        if o + 12 > b.len() {
            break;
        }
        let ts = u32_at(o) as i64;
        let v = f64::from_be_bytes(b[o + 4..o + 12].try_into().unwrap());
        if ts != 0 {
            out.push((ts, v));
        }
    }
    out.sort_by_key(|p| p.0);
    out
}

/// What the daemon stored for one entity: per metric, (ts, raw value), read from the
/// replay of its live stream (every batch the feed still holds).
pub fn stored(port: u16, remote: &str, entity: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    write!(
        s,
        "GET /api/v1/live?remote={remote}&entity={}&since=0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        enc(entity)
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for d in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let Ok(v) = serde_json::from_str::<Value>(d) else {
            continue;
        };
        let Some(points) = v["points"].as_array() else {
            continue;
        };
        for p in points {
            if let (Some(m), Some(t), Some(x)) =
                (p["metric"].as_str(), p["ts"].as_i64(), p["value"].as_f64())
            {
                out.entry(m.to_string()).or_default().push((t, x));
            }
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|p| p.0);
        v.dedup_by_key(|p| p.0);
    }
    out
}

/// The metrics the simulator reports as derives (exported as per-second rates).
pub fn is_derive(metric: &str) -> bool {
    matches!(metric, "net_in" | "net_out" | "disk_read" | "disk_write")
}

/// What an exporter sends for a stored series: gauges as they are, derives as the rate
/// between consecutive points (none for the first point or after a decrease).
pub fn expected(metric: &str, points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    if !is_derive(metric) {
        return points.to_vec();
    }
    points
        .windows(2)
        .filter_map(|w| {
            let ((t0, v0), (t1, v1)) = (w[0], w[1]);
            (v1 >= v0).then(|| (t1, (v1 - v0) / (t1 - t0) as f64))
        })
        .collect()
}

/// Asserts that `got` holds every expected point with the same timestamp and value
/// (relative tolerance `tol`: VictoriaMetrics stores decimals).
pub fn assert_same(what: &str, want: &[(i64, f64)], got: &[(i64, f64)], tol: f64) {
    assert!(!want.is_empty(), "{what}: nothing was stored to compare");
    let got: BTreeMap<i64, f64> = got.iter().copied().collect();
    let missing: Vec<i64> = want
        .iter()
        .map(|p| p.0)
        .filter(|t| !got.contains_key(t))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "{what}: {} of {} missing: {missing:?}; want {}..{}, got {:?}..{:?}",
            missing.len(),
            want.len(),
            want[0].0,
            want[want.len() - 1].0,
            got.keys().next(),
            got.keys().last()
        );
    }
    for (t, v) in want {
        let Some(g) = got.get(t) else {
            panic!("{what}: the point at {t} ({v}) is missing; the receiver has {got:?}");
        };
        let scale = v.abs().max(1e-12);
        assert!(
            (g - v).abs() <= tol * scale.max(1.0),
            "{what} at {t}: stored {v}, the receiver has {g}"
        );
    }
}

/// The daemon's exporters, by name.
pub fn exporters(port: u16) -> BTreeMap<String, Value> {
    let (status, body) = http(port, "GET", "/api/v1/exporters", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["exporters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

/// Waits until every exporter has nothing queued and sent something.
pub fn wait_flushed(port: u16, names: &[&str]) {
    wait_until(Duration::from_secs(150), "the exporters flushed", || {
        let ex = exporters(port);
        names.iter().all(|n| {
            ex.get(*n)
                .is_some_and(|e| e["queued"] == 0 && e["sent"].as_u64().unwrap_or(0) > 0)
        })
    });
}

/// Waits (up to 30 s: receivers make writes readable after a moment) until `fetch`
/// shows every expected timestamp, then compares the values as [`assert_same`] does.
pub fn assert_reads_back(
    what: &str,
    want: &[(i64, f64)],
    tol: f64,
    mut fetch: impl FnMut() -> Vec<(i64, f64)>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = fetch();
        let have: std::collections::BTreeSet<i64> = got.iter().map(|p| p.0).collect();
        if want.iter().all(|(t, _)| have.contains(t)) || tokio::time::Instant::now() > deadline {
            assert_same(what, want, &got, tol);
            return;
        }
        #[allow(clippy::disallowed_methods)] // reason: a blocking test polling a real receiver
        std::thread::sleep(Duration::from_millis(200));
    }
}
