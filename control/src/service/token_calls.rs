//! The token routes: mint, list, revoke, rotate. What a minted token may do
//! is bounded by its whole chain (control::access); here are the caps that
//! keep one tenant from filling the tree, and who may manage whom.

use super::{error, reply, store_err, Control, Outcome};
use crate::access::{MAX_DEPTH, MAX_TENANT_TOKENS, MAX_TOKENS};
use crate::audit::now_s;
use crate::tokens::{hash_secret, MintRequest, Scope, TokenRecord};
use paddock_api_channel::Verdict;
use paddock_api_types::{MintedToken, TokenList};
use serde_json::{json, Value};

impl Control {
    /// A token `tok` may revoke or rotate: any, for an admin; otherwise
    /// only those minted under it, at any depth. Others get the same 403
    /// whether they exist or not.
    fn managed_token(
        &self,
        tok: &TokenRecord,
        id: &str,
        what: &str,
    ) -> Result<TokenRecord, Outcome> {
        let tree = self.tree();
        let target = tree.get(id).cloned();
        let allowed = tok.has(Scope::Admin)
            || target
                .as_ref()
                .is_some_and(|t| t.id != tok.id && tree.descends_from(&t.id, &tok.id));
        drop(tree);
        target.filter(|_| allowed).ok_or_else(|| {
            self.refuse(
                Verdict::Forbidden,
                "no such token for this token",
                Some(&tok.id),
                what,
            )
        })
    }

    pub(super) fn mint_token(
        &self,
        tok: &TokenRecord,
        request: Value,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let req: MintRequest = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("token request: {e}")))?;
        let now = now_s();
        // One mint at a time, so the caps below hold under concurrent mints.
        let _g = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        {
            let tree = self.tree();
            let depth = tree.chain(tok).map(|c| c.len()).unwrap_or(usize::MAX);
            if depth >= MAX_DEPTH {
                return Err(self.refuse(
                    Verdict::Forbidden,
                    &format!("tokens may be minted at most {MAX_DEPTH} levels deep"),
                    Some(&tok.id),
                    what,
                ));
            }
            if tree.len() >= MAX_TOKENS {
                return Err(self.refuse(
                    Verdict::Conflict,
                    &format!("the box holds {MAX_TOKENS} tokens; an admin must clean up first"),
                    Some(&tok.id),
                    what,
                ));
            }
            if !tok.has(Scope::Admin) {
                let tenant = tree.tenant_of(tok);
                if tree.live_in_tenant(&tenant, now) >= MAX_TENANT_TOKENS {
                    return Err(self.refuse(
                        Verdict::Conflict,
                        &format!("quota: this token's tree already holds {MAX_TENANT_TOKENS} live tokens; revoke some first"),
                        Some(&tok.id),
                        what,
                    ));
                }
            }
        }
        let (secret, rec) = tok
            .mint(&req, now)
            .map_err(|e| self.refuse(Verdict::Forbidden, &e.to_string(), Some(&tok.id), what))?;
        self.save_token(&rec)?;
        self.audit.record(
            "token_issued",
            json!({"token": rec.id, "by": tok.id, "name": rec.name, "scopes": rec.scopes, "expires_at": rec.expires_at, "labels": rec.labels, "workspace_ids": rec.workspace_ids, "quotas": rec.quotas, "actions": rec.actions, "egress_allow": rec.egress_allow}),
        );
        Ok(reply(
            Verdict::Created,
            MintedToken {
                id: rec.id,
                secret,
                scopes: rec.scopes,
                expires_at: rec.expires_at,
                note: "the secret is shown once".into(),
            },
        ))
    }

    pub(super) fn list_tokens(&self, tok: &TokenRecord, what: &str) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let tree = self.tree();
        let mut list: Vec<&TokenRecord> = tree.all().collect();
        list.sort_by_key(|t| (t.created_at, t.id.clone()));
        let tokens = list.into_iter().map(TokenRecord::view).collect();
        Ok(reply(Verdict::Ok, TokenList { tokens }))
    }

    pub(super) fn revoke_token(
        &self,
        tok: &TokenRecord,
        id: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let mut t = self.managed_token(tok, id, what)?;
        t.revoked = true;
        self.save_token(&t)?;
        self.audit
            .record("token_revoked", json!({"token": t.id, "by": tok.id}));
        Ok(reply(
            Verdict::Ok,
            paddock_api_types::Revoked { revoked: t.id },
        ))
    }

    pub(super) fn rotate_token(
        &self,
        tok: &TokenRecord,
        id: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let mut t = self.managed_token(tok, id, what)?;
        if t.revoked {
            return Err(error(Verdict::Conflict, format!("token {id} is revoked")));
        }
        // Same id, scopes, expiry and children; only the secret changes,
        // and the old one stops working with this commit.
        let secret = crate::tokens::new_secret(t.secret_format);
        t.hash = hash_secret(&secret);
        self.save_token(&t)?;
        self.audit
            .record("token_rotated", json!({"token": t.id, "by": tok.id}));
        Ok(reply(
            Verdict::Ok,
            paddock_api_types::TokenRotated {
                id: t.id,
                secret,
                note: "the secret is shown once; the old one no longer works".into(),
            },
        ))
    }

    /// Writes a token record to the database and then to the in-memory
    /// tree, so the tree never holds what the database does not.
    pub(super) fn save_token(&self, rec: &TokenRecord) -> Result<(), Outcome> {
        self.store
            .put(crate::store::TOKENS, &rec.id, rec)
            .map_err(store_err)?;
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rec.clone());
        Ok(())
    }
}
