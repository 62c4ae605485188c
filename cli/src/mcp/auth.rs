//! The HTTP transport's clients, told apart by the Paddock token each
//! presents. A token is checked with the appliance before its first call
//! is served (and again when its check is old), so a client with a wrong
//! or revoked token is refused at the door with the appliance's reason,
//! not with a tool error later. Each token gets its own tools, so its
//! background commands are its own, and its own share of the calls.

use super::tools::Tools;
use crate::client::Api;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a token's check holds before the next call checks it again.
const RECHECK: Duration = Duration::from_secs(60);
/// Tokens remembered at once. Past that the least recently used one
/// without a running background command is forgotten; when every one has
/// one, a new token is turned away rather than another's commands lost.
const MAX_TOKENS: usize = 64;
/// Calls one token may have running at once (of the server's 16): one
/// client's long commands cannot take every slot.
pub const CALLS_PER_TOKEN: usize = 4;

#[derive(Debug)]
pub enum Refusal {
    /// The appliance does not take the token: its reason.
    Unauthorized(String),
    /// The appliance could not say (unreachable, busy, rate-limiting).
    Unreachable(String),
    /// This server is full, or this token has its calls running.
    Busy(String),
}

struct Known {
    tools: Arc<Tools>,
    checked: Instant,
    used: Instant,
    calls: Arc<AtomicUsize>,
}

/// One of a token's call slots, given back when dropped.
pub struct CallSlot(Arc<AtomicUsize>);

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
pub struct Clients {
    upstream: Arc<Api>,
    /// By the token's SHA-256 (each entry's tools hold the token itself,
    /// to call the API with).
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
    /// said it takes it, and one of its call slots. Blocking (it may ask
    /// the appliance).
    pub fn tools_for(&self, token: &str) -> Result<(Arc<Tools>, CallSlot), Refusal> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        let fresh = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            known.get_mut(&key).is_some_and(|k| {
                k.used = now;
                k.checked.elapsed() < RECHECK
            })
        };
        if !fresh {
            let api = self.api_as(token);
            check(&api)?;
            self.remember(key, api, now)?;
        }
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let k = known
            .get(&key)
            .ok_or_else(|| Refusal::Busy("this server is full; try again".into()))?;
        if k.calls.fetch_add(1, Ordering::SeqCst) >= CALLS_PER_TOKEN {
            k.calls.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Busy(format!(
                "this token has {CALLS_PER_TOKEN} calls running already"
            )));
        }
        Ok((k.tools.clone(), CallSlot(k.calls.clone())))
    }

    fn api_as(&self, token: &str) -> Api {
        Api {
            host: self.upstream.host.clone(),
            port: self.upstream.port,
            token: token.to_string(),
            pin: self.upstream.pin.clone(),
        }
    }

    /// Records a token the appliance took (again).
    fn remember(&self, key: [u8; 32], api: Api, now: Instant) -> Result<(), Refusal> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = known.get_mut(&key) {
            // Checked again: same tools, so its background commands stay.
            k.checked = now;
            return Ok(());
        }
        if known.len() >= MAX_TOKENS {
            let idle = known
                .iter()
                .filter(|(_, k)| !k.tools.any_running() && k.calls.load(Ordering::SeqCst) == 0)
                .min_by_key(|(_, k)| k.used)
                .map(|(key, _)| *key);
            match idle {
                Some(oldest) => {
                    known.remove(&oldest);
                }
                None => {
                    return Err(Refusal::Busy(format!(
                    "this server serves {MAX_TOKENS} tokens with commands running; try again later"
                )))
                }
            }
        }
        known.insert(
            key,
            Known {
                tools: Arc::new(Tools::new(Arc::new(api))),
                checked: now,
                used: now,
                calls: Arc::default(),
            },
        );
        Ok(())
    }
}

/// Asks the appliance whether it takes the token: it does when it answers
/// (200, or 403 for a token without the read scope), not when it says 401;
/// anything else (429, 5xx) says nothing either way and is not remembered.
fn check(api: &Api) -> Result<(), Refusal> {
    let answer = api
        .call("GET", "/v1/workspaces?label=mcp-token-check=1", None)
        .map_err(|e| Refusal::Unreachable(format!("asking the appliance about the token: {e}")))?;
    match answer.status {
        200..=299 | 403 => Ok(()),
        401 => Err(Refusal::Unauthorized(format!(
            "the appliance refuses the token: {}",
            crate::client::api_error(&answer)
        ))),
        _ => Err(Refusal::Unreachable(format!(
            "the appliance could not check the token: {}",
            crate::client::api_error(&answer)
        ))),
    }
}
