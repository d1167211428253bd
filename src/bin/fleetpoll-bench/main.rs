//! `fleetpoll-bench`: one benchmark scenario per subcommand. Each prints progress to
//! stderr and one JSON object with its figures as the last line of stdout.

mod e2e;
mod engine;
mod export;
mod fleet;
mod measure;
mod parse;
mod recovery;
mod rrd_ingest;
mod rules;
mod scrape_peers;
mod soak;
mod soak_watch;
mod task_query;
mod top;
mod ui;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "fleetpoll-bench", about = "fleetpoll's benchmark scenarios")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// The engine alone: in-process fake remotes with a fixed latency, one full cycle,
    /// idle memory per poller, and trigger latency during a running cycle.
    Engine(engine::EngineArgs),
    /// The daemon against the simulator, both as processes: a full cycle and API latency.
    E2e(e2e::E2eArgs),
    /// One metrics cycle of a simulated fleet over HTTPS (simulator in its own process).
    Fleet(fleet::FleetArgs),
    /// The fleet with remote write and InfluxDB export into a real VictoriaMetrics:
    /// exporters' CPU per point, store-to-receiver lag, drops.
    Export(export::ExportArgs),
    /// Metric reply parsing into the engine's batch type, on one core.
    Parse(parse::ParseArgs),
    /// The task cache: a week of a large fleet's tasks built on disk, reopened cold,
    /// query latency, memory per task and open time.
    TaskQuery(task_query::TaskQueryArgs),
    /// Metric points stored durably per second through the RRD store, side by side
    /// with rrdcached fed the same points.
    RrdIngest(rrd_ingest::RrdIngestArgs),
    /// Samples through 1,000 threshold rules over 50,000 entities by the hook seam,
    /// alerts to a webhook receiver on loopback.
    Rules(rules::RulesArgs),
    /// The web status page at fleet size: server time of the overview and a remote's
    /// page, the overview's gzip bytes, and headless Chromium's time to draw the list.
    Ui(ui::UiArgs),
    /// fleetpoll, vmagent and Prometheus (agent mode) scraping the same simulated
    /// exposition targets, alternating: CPU per million samples, peak RSS, cycle span.
    ScrapePeers(scrape_peers::ScrapePeersArgs),
    /// The daemon against a simulated fleet with hanging, erroring, malformed,
    /// oversized, wrong-certificate, clock-ahead and over-limit remotes, for many short
    /// cycles with rules and an exporter on, against the same fleet without faults.
    Soak(soak::SoakArgs),
    /// The top-lists aggregate at fleet size (1,000 remotes × 50 guests): the time of
    /// one hour ranking over every remote, as `GET /api/v1/top?timeframe=hour` asks it.
    Top(top::TopArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Engine(args) => engine::run(args)?,
        Scenario::Parse(args) => parse::run(args)?,
        Scenario::Fleet(args) => fleet::run(args)?,
        Scenario::Export(args) => export::run(args)?,
        Scenario::E2e(args) => e2e::run(args)?,
        Scenario::TaskQuery(args) => task_query::run(args)?,
        Scenario::RrdIngest(args) => rrd_ingest::run(args)?,
        Scenario::Rules(args) => rules::run(args)?,
        Scenario::Ui(args) => ui::run(args)?,
        Scenario::ScrapePeers(args) => scrape_peers::run(args)?,
        Scenario::Top(args) => top::run(args)?,
        Scenario::Soak(args) => soak::run(args)?,
    };
    println!("{result}");
    Ok(())
}
