//! Running a command in a workspace: `POST /v1/workspaces/{id}/exec`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The request. Its answer is a chunked stream of NDJSON `ExecEvent`s.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `root`, or the workspace's unprivileged user (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Standard input, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// One line of an exec's stream: output as it comes (base64), then one
/// `Exit`; an `Error` if the command could not run or the stream broke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExecEvent {
    /// A process stream's first line (`.../processes`): which process it
    /// is. An exec's stream has none.
    Started {
        pid: u32,
    },
    Stdout {
        stdout: String,
    },
    Stderr {
        stderr: String,
    },
    /// Before `Exit`: untagged variants are tried in order, and an error
    /// line must not read as an exit with no code.
    Error {
        error: String,
        #[serde(default)]
        duration_ms: u64,
    },
    Exit {
        /// Present (null when a signal ended it): `deserialize_with`
        /// makes serde require the field instead of defaulting it.
        #[serde(deserialize_with = "Option::deserialize")]
        exit_code: Option<i32>,
        #[serde(default)]
        signal: Option<i32>,
        #[serde(default)]
        timed_out: bool,
        #[serde(default)]
        duration_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_apart_by_their_fields() {
        let parse = |s: &str| serde_json::from_str::<ExecEvent>(s).expect(s);
        assert_eq!(
            parse(r#"{"stdout":"aGk="}"#),
            ExecEvent::Stdout {
                stdout: "aGk=".into()
            }
        );
        assert_eq!(
            parse(r#"{"exit_code":3,"signal":null,"timed_out":false,"duration_ms":12}"#),
            ExecEvent::Exit {
                exit_code: Some(3),
                signal: None,
                timed_out: false,
                duration_ms: 12
            }
        );
        assert_eq!(
            parse(r#"{"error":"no such workspace","duration_ms":4}"#),
            ExecEvent::Error {
                error: "no such workspace".into(),
                duration_ms: 4
            }
        );
        assert!(serde_json::from_str::<ExecEvent>(r#"{"what":1}"#).is_err());
    }

    #[test]
    fn a_request_names_only_what_it_sets() {
        let r = ExecRequest {
            argv: vec!["true".into()],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"argv":["true"]}"#
        );
        assert!(serde_json::from_str::<ExecRequest>(r#"{"argv":[],"bogus":1}"#).is_err());
    }
}
