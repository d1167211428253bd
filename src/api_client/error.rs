//! The errors of the API client: a bad `--api` or `--token-file`, a daemon that cannot
//! be reached, a reply that is not the API's, or the API's own error message.

use std::path::PathBuf;

/// Why an API client command failed. Messages name the flag or say what the API
/// answered; the underlying error, where there is one, is the source.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    /// `--api` is not a plain-HTTP URL.
    #[error("--api {0:?}: the API speaks plain HTTP; give http://HOST:PORT")]
    NotHttp(String),
    /// `--api` has no host and port.
    #[error("--api {0:?}: expected http://HOST:PORT")]
    NoHostPort(String),
    /// The token file could not be read.
    #[error("--token-file {}", path.display())]
    TokenFile {
        /// The file as given.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// `fleetpoll query` was given no `REMOTE/ENTITY`.
    #[error("query: give REMOTE/ENTITY, e.g. pve-1/node/pve1")]
    QueryPath,
    /// Nothing listens at the API's address.
    #[error(
        "cannot reach the fleetpoll API at http://{host}:{port} (is `fleetpoll run` running? see --api)"
    )]
    Unreachable {
        /// The host of `--api`.
        host: String,
        /// The port of `--api`.
        port: u16,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// Sending the request or reading the reply failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The connection closed before the reply's head was complete.
    #[error("the API sent no complete HTTP reply")]
    IncompleteReply,
    /// The reply has no status line.
    #[error("the API sent no HTTP status")]
    NoStatus,
    /// The reply's body is not JSON.
    #[error("the API answered HTTP {status} without JSON")]
    NotJson {
        /// The reply's status code.
        status: u16,
        /// Why the body did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The API answered with an error.
    #[error("the API answered HTTP {status}: {message}")]
    Api {
        /// The reply's status code.
        status: u16,
        /// The API's message (`error` of the reply).
        message: String,
    },
}
