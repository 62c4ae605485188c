//! The HTTP transport's clients, told apart by the Paddock token each
//! presents. A token is checked with the appliance before its first call
//! is served (and again when its check is old), so a client with a wrong
//! or revoked token is refused at the door with the appliance's reason,
//! not with a tool error later. Each token gets its own tools, so its
//! background commands are its own.

use super::tools::Tools;
use crate::client::Api;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a token's check holds before the next call checks it again.
const RECHECK: Duration = Duration::from_secs(60);
/// Tokens remembered at once; past that the least recently used one is
/// forgotten (with its background commands' buffers).
const MAX_TOKENS: usize = 64;

#[derive(Debug)]
pub enum Refusal {
    /// The appliance does not take the token: its reason.
    Unauthorized(String),
    /// The appliance could not be asked.
    Unreachable(String),
}

struct Known {
    tools: Arc<Tools>,
    checked: Instant,
    used: Instant,
}

#[derive(Clone)]
pub struct Clients {
    upstream: Arc<Api>,
    /// By the token's SHA-256: the table holds no token in the clear.
    known: Arc<Mutex<HashMap<[u8; 32], Known>>>,
}

impl Clients {
    pub fn new(upstream: Api) -> Clients {
        Clients {
            upstream: Arc::new(upstream),
            known: Arc::default(),
        }
    }

    /// The tools that call the API as `token`, once the appliance has
    /// said it takes it. Blocking (it may ask the appliance).
    pub fn tools_for(&self, token: &str) -> Result<Arc<Tools>, Refusal> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        let current = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            known.get_mut(&key).map(|k| {
                k.used = now;
                (k.tools.clone(), k.checked.elapsed() < RECHECK)
            })
        };
        if let Some((tools, true)) = current {
            return Ok(tools);
        }
        let api = Api {
            host: self.upstream.host.clone(),
            port: self.upstream.port,
            token: token.to_string(),
            pin: self.upstream.pin.clone(),
        };
        check(&api)?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let tools = match known.get_mut(&key) {
            // Checked again: same tools, so its background commands stay.
            Some(k) => {
                k.checked = now;
                k.tools.clone()
            }
            None => {
                if known.len() >= MAX_TOKENS {
                    let oldest = known
                        .iter()
                        .min_by_key(|(_, k)| k.used)
                        .map(|(key, _)| *key);
                    if let Some(oldest) = oldest {
                        known.remove(&oldest);
                    }
                }
                let tools = Arc::new(Tools::new(Arc::new(api)));
                known.insert(
                    key,
                    Known {
                        tools: tools.clone(),
                        checked: now,
                        used: now,
                    },
                );
                tools
            }
        };
        Ok(tools)
    }
}

/// Asks the appliance whether it takes the token: any answer but 401 says
/// it does (a 403 is a token without the read scope, still a token).
fn check(api: &Api) -> Result<(), Refusal> {
    let answer = api
        .call("GET", "/v1/workspaces?label=mcp-token-check=1", None)
        .map_err(|e| Refusal::Unreachable(format!("asking the appliance about the token: {e}")))?;
    if answer.status == 401 {
        return Err(Refusal::Unauthorized(format!(
            "the appliance refuses the token: {}",
            crate::commands::api_error(&answer)
        )));
    }
    Ok(())
}
