//! `POST /v1/system/update` (admin): the bundle staged in a file PID 1
//! opens, verified whole before anything is written, then written to the
//! slot this boot does not run (PID 1's `update`). Every step is audited:
//! staged, refused (with why), accepted, written or failed.

use super::{error, reply, with_fd, Control, Outcome};
use crate::host::UpdateRefusal;
use crate::tokens::{Scope, TokenRecord};
use paddock_api_channel::Verdict;
use serde_json::json;

fn refusal(r: UpdateRefusal) -> Outcome {
    match r {
        UpdateRefusal::Busy(m) => error(Verdict::Conflict, m),
        UpdateRefusal::Bundle(m) => error(Verdict::Invalid, m),
        UpdateRefusal::TooLarge(m) => error(Verdict::TooLarge, m),
        UpdateRefusal::Unavailable(m) => error(Verdict::Unavailable, m),
        UpdateRefusal::Failed(m) => error(Verdict::Failed, m),
    }
}

impl Control {
    pub(super) fn stage_update(
        &self,
        tok: &TokenRecord,
        bytes: u64,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let file = crate::host::get().stage_update(bytes).map_err(|r| {
            self.audit.record(
                "update_refused",
                json!({"by": tok.id, "reason": format!("{r:?}")}),
            );
            refusal(r)
        })?;
        Ok(with_fd(json!({"bytes": bytes}), file))
    }

    pub(super) fn apply_update(
        &self,
        tok: &TokenRecord,
        reboot_at: Option<u64>,
        force: bool,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let by = tok.id.clone();
        // The writer ends on PID 1's thread, after this call answered: the
        // audit log is reached through the registered control plane.
        let done: crate::host::UpdateDone = Box::new(move |result| {
            let Some(c) = super::instance() else {
                return;
            };
            match result {
                Ok(s) => c.audit.record(
                    "update_written",
                    json!({"by": by, "version": s.version, "slot": s.slot, "reboot_at": s.reboot_at}),
                ),
                Err(e) => c.audit.record("update_failed", json!({"by": by, "reason": e})),
            }
        });
        match crate::host::get().apply_update(reboot_at, force, done) {
            Ok(status) => {
                self.audit.record(
                    "update_accepted",
                    json!({"by": tok.id, "version": status.version, "slot": status.slot, "forced": force, "reboot_at": status.reboot_at}),
                );
                Ok(reply(Verdict::Ok, status))
            }
            Err(r) => {
                let reason = match &r {
                    UpdateRefusal::Busy(m)
                    | UpdateRefusal::Bundle(m)
                    | UpdateRefusal::TooLarge(m)
                    | UpdateRefusal::Unavailable(m)
                    | UpdateRefusal::Failed(m) => m.clone(),
                };
                self.audit
                    .record("update_refused", json!({"by": tok.id, "reason": reason}));
                Err(refusal(r))
            }
        }
    }

    pub(super) fn abandon_update(&self, tok: &TokenRecord, what: &str) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        crate::host::get().abandon_update();
        self.audit.record(
            "update_refused",
            json!({"by": tok.id, "reason": "the upload did not arrive whole"}),
        );
        Ok(reply(Verdict::Ok, json!({"abandoned": true})))
    }
}
