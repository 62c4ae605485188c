//! Who may see what: the token tree. Every token but the bootstrap admin
//! was minted by another, and everything a token may do is bounded by its
//! whole chain of ancestors, not by its own record alone: a limit a
//! non-admin token writes into a child can only narrow what the child sees,
//! never select workspaces the parent could not see (issue 14, item 1).
//!
//! Kept in memory (loaded once from the store, updated on every token
//! write) so that authentication is a hash lookup plus a walk up a chain of
//! bounded depth, not a scan of every token.

use super::tokens::{Scope, TokenRecord};
use super::workspace::{WorkspaceRecord, WsState};
use std::collections::HashMap;

/// The deepest a chain of minted tokens may go; minting refuses past it.
pub const MAX_DEPTH: usize = 16;
/// Live tokens one tenant (a non-admin tree) may hold at once.
pub const MAX_TENANT_TOKENS: usize = 1000;
/// Tokens the box keeps in all (expired and revoked ones included: their
/// ids stay named in workspace records and the audit log).
pub const MAX_TOKENS: usize = 100_000;

#[derive(Default)]
pub struct TokenTree {
    by_id: HashMap<String, TokenRecord>,
    by_hash: HashMap<String, String>,
}

impl TokenTree {
    pub fn new(tokens: Vec<TokenRecord>) -> TokenTree {
        let mut t = TokenTree::default();
        for rec in tokens {
            t.insert(rec);
        }
        t
    }

    /// Adds or replaces a record (a rotation changes its hash).
    pub fn insert(&mut self, rec: TokenRecord) {
        if let Some(old) = self.by_id.get(&rec.id) {
            if old.hash != rec.hash {
                self.by_hash.remove(&old.hash);
            }
        }
        self.by_hash.insert(rec.hash.clone(), rec.id.clone());
        self.by_id.insert(rec.id.clone(), rec);
    }

    pub fn get(&self, id: &str) -> Option<&TokenRecord> {
        self.by_id.get(id)
    }

    pub fn by_hash(&self, hash: &str) -> Option<&TokenRecord> {
        self.by_hash.get(hash).and_then(|id| self.by_id.get(id))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn all(&self) -> impl Iterator<Item = &TokenRecord> {
        self.by_id.values()
    }

    /// The token and its ancestors, nearest first. `None` when the chain is
    /// broken (a parent that is not in the tree) or loops: such a token is
    /// treated as dead everywhere.
    pub fn chain<'a>(&'a self, tok: &'a TokenRecord) -> Option<Vec<&'a TokenRecord>> {
        let mut out = vec![tok];
        let mut cur = tok;
        while let Some(p) = cur.parent.as_deref() {
            let parent = self.by_id.get(p)?;
            if out.len() > self.by_id.len() || out.iter().any(|t| t.id == parent.id) {
                return None;
            }
            out.push(parent);
            cur = parent;
        }
        Some(out)
    }

    /// Whether the token and every ancestor are unrevoked and unexpired:
    /// revoking any ancestor, at any depth, ends the token.
    pub fn is_live(&self, tok: &TokenRecord, now: u64) -> bool {
        self.chain(tok)
            .is_some_and(|c| c.iter().all(|t| t.is_live(now)))
    }

    /// The non-admin part of the chain: the token up to (not including) its
    /// nearest admin ancestor. Empty for an admin token.
    fn tenant_part<'a>(&'a self, tok: &'a TokenRecord) -> Vec<&'a TokenRecord> {
        let Some(chain) = self.chain(tok) else {
            return Vec::new();
        };
        chain
            .into_iter()
            .take_while(|t| !t.has(Scope::Admin))
            .collect()
    }

    /// The tenant a token acts for: its topmost non-admin ancestor (itself
    /// if an admin minted it). Admin tokens are their own tenant. Used to
    /// share quotas and request slots across everything a tenant mints.
    pub fn tenant_of(&self, tok: &TokenRecord) -> String {
        self.tenant_part(tok)
            .last()
            .map(|t| t.id.clone())
            .unwrap_or_else(|| tok.id.clone())
    }

    /// Whether `id` is `ancestor` or was minted, at any depth, under it.
    pub fn descends_from(&self, id: &str, ancestor: &str) -> bool {
        let Some(tok) = self.by_id.get(id) else {
            return false;
        };
        self.chain(tok)
            .is_some_and(|c| c.iter().any(|t| t.id == ancestor))
    }

    /// Whether `tok` may see a workspace. An admin token sees every one.
    /// For any other token, every non-admin token on its chain must cover
    /// the workspace (labels, ids), and the workspace must be in the base
    /// set: for an unlimited token, those created by it or by tokens minted
    /// under it; for a limited token, its parent's base set, unless an
    /// admin minted it, in which case the admin granted every workspace
    /// its limits cover. So a limit a tenant writes narrows, never widens.
    pub fn sees(&self, tok: &TokenRecord, ws: &WorkspaceRecord) -> bool {
        if tok.has(Scope::Admin) {
            return true;
        }
        let part = self.tenant_part(tok);
        if part.is_empty() || !part.iter().all(|t| t.covers(&ws.id, &ws.labels)) {
            return false;
        }
        for (i, t) in part.iter().enumerate() {
            if !t.is_limited() {
                return self.descends_from(&ws.owner, &t.id);
            }
            if i + 1 == part.len() {
                // The topmost non-admin token, limited by the admin who minted it.
                return true;
            }
        }
        false
    }

    /// Live tokens in `tenant`'s tree, for the minting cap.
    pub fn live_in_tenant(&self, tenant: &str, now: u64) -> usize {
        self.by_id
            .values()
            .filter(|t| self.is_live(t, now) && self.descends_from(&t.id, tenant))
            .count()
    }

    /// Why `tok` may not create a workspace of this size, if it may not:
    /// every token on its chain with quotas is checked against what its
    /// whole subtree holds. Stopped and quarantined workspaces keep their
    /// disk, so they count toward the workspace and disk quotas; only
    /// running and starting ones hold vCPUs and memory.
    pub fn quota_problem(
        &self,
        tok: &TokenRecord,
        all: &[WorkspaceRecord],
        vcpus: u32,
        memory_mib: u64,
        disk_mib: u64,
    ) -> Option<String> {
        let chain = self.chain(tok)?;
        for t in chain {
            let q = &t.quotas;
            let held: Vec<&WorkspaceRecord> = all
                .iter()
                .filter(|w| w.state != WsState::Lost && self.descends_from(&w.owner, &t.id))
                .collect();
            let live = || {
                held.iter()
                    .filter(|w| matches!(w.state, WsState::Running | WsState::Starting))
            };
            let whose = if t.id == tok.id {
                "this token's".to_string()
            } else {
                format!("its ancestor {}'s", t.id)
            };
            if q.max_workspaces
                .is_some_and(|m| held.len() as u64 >= u64::from(m))
            {
                return Some(format!("quota: {whose} max_workspaces is reached (stopped workspaces count until deleted)"));
            }
            let cpu: u64 = live().map(|w| u64::from(w.vcpus)).sum();
            if q.max_vcpus
                .is_some_and(|m| cpu + u64::from(vcpus) > u64::from(m))
            {
                return Some(format!("quota: {whose} max_vcpus would be exceeded"));
            }
            let mem: u64 = live().map(|w| w.memory_mib).sum();
            if q.max_memory_mib.is_some_and(|m| mem + memory_mib > m) {
                return Some(format!("quota: {whose} max_memory_mib would be exceeded"));
            }
            let disk: u64 = held.iter().map(|w| w.disk_mib).sum();
            if q.max_disk_mib.is_some_and(|m| disk + disk_mib > m) {
                return Some(format!("quota: {whose} max_disk_mib would be exceeded"));
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
