//! The API client's commands and flags (`fleetpoll status|trigger|tasks|query`), and
//! the request each one sends.

use clap::Subcommand;
use serde_json::Value;

use super::error::ApiClientError;
use super::print;
use super::transport::ApiClient;

/// The commands that call the daemon's API; `fleetpoll`'s command line flattens them
/// into its own.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Show every remote's status (a client of the daemon's API).
    Status {
        /// Where the API is, the token, and JSON or a table.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Collect one remote, or all, now (a client of the daemon's API).
    Trigger {
        /// The remote; all remotes when omitted.
        remote: Option<String>,
        /// Return only once the data is stored.
        #[arg(long)]
        wait: bool,
        /// Where the API is, the token, and JSON or a table.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List cached tasks, newest first (a client of the daemon's API).
    Tasks {
        /// Only this remote's tasks.
        #[arg(long)]
        remote: Option<String>,
        /// Only this node's tasks.
        #[arg(long)]
        node: Option<String>,
        /// Only running tasks.
        #[arg(long)]
        running: bool,
        /// Only failed tasks.
        #[arg(long)]
        errors: bool,
        /// Only tasks started at or after this Unix time.
        #[arg(long)]
        since: Option<i64>,
        /// Only tasks started at or before this Unix time.
        #[arg(long)]
        until: Option<i64>,
        /// Only tasks whose type contains this text.
        #[arg(long = "type")]
        task_type: Option<String>,
        /// Only tasks whose user contains this text.
        #[arg(long)]
        user: Option<String>,
        /// ok, warning, error or running.
        #[arg(long)]
        status: Option<String>,
        /// Tasks to skip.
        #[arg(long, default_value_t = 0)]
        start: usize,
        /// Page size (0 = all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Where the API is, the token, and JSON or a table.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show an entity's stored metrics (a client of the daemon's API).
    Query {
        /// `REMOTE/ENTITY`, e.g. `pve-1/node/pve1` or `pve-1/qemu/100`.
        path: String,
        /// hour, day, week, month, year or decade.
        #[arg(long, default_value = "hour")]
        timeframe: String,
        /// AVERAGE or MAX.
        #[arg(long, default_value = "AVERAGE")]
        cf: String,
        /// Where the API is, the token, and JSON or a table.
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// How the command-line clients reach the API.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The daemon's API.
    #[arg(long, default_value = "http://127.0.0.1:8450")]
    api: String,
    /// File with the API token (for commands that change something); the
    /// FLEETPOLL_API_TOKEN environment variable works too.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl ApiArgs {
    fn client(&self) -> Result<ApiClient, ApiClientError> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| ApiClientError::TokenFile {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("FLEETPOLL_API_TOKEN").ok(),
        };
        ApiClient::new(&self.api, token)
    }

    /// Sends the request and prints the answer: its JSON with `--json`, else `table`.
    fn show(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        table: impl FnOnce(&Value),
    ) -> Result<(), ApiClientError> {
        let value = self.client()?.call(method, path, body)?;
        if self.json {
            println!("{value:#}");
        } else {
            table(&value);
        }
        Ok(())
    }
}

impl ApiCommand {
    /// Sends the command's request and prints the answer.
    pub fn run(&self) -> Result<(), ApiClientError> {
        match self {
            ApiCommand::Status { api } => api.show("GET", "/api/v1/remotes", None, print::status),
            ApiCommand::Trigger { remote, wait, api } => {
                let body = serde_json::json!({ "remote": remote, "wait": wait });
                api.show("POST", "/api/v1/collect", Some(&body), |value| {
                    print::trigger(value, *wait)
                })
            }
            ApiCommand::Tasks {
                remote,
                node,
                running,
                errors,
                since,
                until,
                task_type,
                user,
                status,
                start,
                limit,
                api,
            } => {
                let mut query = vec![format!("start={start}"), format!("limit={limit}")];
                let text = [
                    ("remote", remote),
                    ("node", node),
                    ("type", task_type),
                    ("user", user),
                    ("status", status),
                ];
                for (key, value) in text {
                    if let Some(v) = value {
                        query.push(format!("{key}={}", encode(v)));
                    }
                }
                for (key, value) in [("since", since), ("until", until)] {
                    if let Some(v) = value {
                        query.push(format!("{key}={v}"));
                    }
                }
                if *running {
                    query.push("running=true".into());
                }
                if *errors {
                    query.push("errors=true".into());
                }
                let path = format!("/api/v1/tasks?{}", query.join("&"));
                api.show("GET", &path, None, print::tasks)
            }
            ApiCommand::Query {
                path,
                timeframe,
                cf,
                api,
            } => {
                let path = path.trim_matches('/');
                if !path.contains('/') {
                    return Err(ApiClientError::QueryPath);
                }
                let url = format!(
                    "/api/v1/rrd/{path}?timeframe={}&cf={}",
                    encode(timeframe),
                    encode(cf)
                );
                api.show("GET", &url, None, print::history)
            }
        }
    }
}

/// Percent-encodes a query parameter value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
