//! paddock: the command-line client for a Paddock appliance.

mod args;
mod client;
mod commands;
mod config;
mod mcp;
mod pinned;
#[cfg(test)]
mod testserver;

use clap::Parser;
use client::ClientError;
use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// What the parser could not catch; exits 2 like its own errors.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Config(String),
}

fn main() -> ExitCode {
    // Usage errors exit 2 here, --help and --version 0.
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paddock: {e}");
            ExitCode::from(if matches!(e, CliError::Usage(_)) {
                2
            } else {
                1
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::parse_url;

    #[test]
    fn urls_and_fingerprints() {
        assert_eq!(
            parse_url("https://127.0.0.1:9443/").ok(),
            Some(("127.0.0.1".to_string(), 9443))
        );
        assert_eq!(
            parse_url("https://box").ok(),
            Some(("box".to_string(), 8443))
        );
        assert!(parse_url("http://box").is_err());
        assert!(parse_url("https://box:x").is_err());
        let fp = "ab".repeat(32);
        assert_eq!(pinned::normalise(&fp).map(|f| f.len()), Some(95));
        assert!(pinned::normalise("zz").is_none());
    }
}
