//! Every error answer of the API.

use serde::{Deserialize, Serialize};

/// `{"error": "what went wrong, in a sentence"}`: the body of every 4xx
/// and 5xx answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    pub fn new(msg: impl Into<String>) -> ErrorBody {
        ErrorBody { error: msg.into() }
    }
}
