//! The appliance's own admin calls: forensic snapshots, the API's TLS
//! identity, the disk keys' status and recovery, the box's state and its
//! host figures.

use super::{error, reply, with_fd, Control, Outcome};
use crate::forensics;
use crate::tokens::{Scope, TokenRecord};
use log::warn;
use paddock_api_channel::Verdict;
use paddock_api_types::{Deleted, HostMetrics, KeyState, KeyStatus, SystemStatus, TlsRotated};
use serde_json::json;
use std::time::Duration;

impl Control {
    /// `GET .../forensics/{name}` (admin): one file of its snapshot, as a descriptor the API process streams.
    pub(super) fn forensic_file(
        &self,
        tok: &TokenRecord,
        id: String,
        name: String,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        if forensics::file(&id, &name).is_none() {
            return Err(error(
                Verdict::NotFound,
                format!("no forensic {name:?} for workspace {id} (files: manifest, memory, disk, audit, network)"),
            ));
        }
        let mut f = forensics::open(&id, &name).map_err(|e| {
            error(
                Verdict::Failed,
                format!("opening forensic {name} of {id}: {e}"),
            )
        })?;
        let path = forensics::snapshot_dir(&id).join(&name);
        let bytes = forensics::size(&mut f)
            .map_err(|e| error(Verdict::Failed, format!("sizing {}: {e}", path.display())))?;
        self.audit.record(
            "forensics_read",
            json!({"workspace": id, "token": tok.id, "file": name}),
        );
        Ok(with_fd(json!({"bytes": bytes}), f))
    }

    /// `DELETE .../forensics` (admin): the snapshot removed (nothing else removes it).
    pub(super) fn delete_forensics(
        &self,
        tok: &TokenRecord,
        id: String,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        match forensics::delete(&id) {
            Ok(true) => {
                self.audit.record(
                    "forensics_deleted",
                    json!({"workspace": id, "token": tok.id}),
                );
                Ok(reply(Verdict::Ok, Deleted { deleted: id }))
            }
            Ok(false) => Err(error(
                Verdict::NotFound,
                format!("no forensic snapshot of {id}"),
            )),
            Err(e) => Err(error(Verdict::Failed, e.to_string())),
        }
    }

    pub(super) fn rotate_tls(&self, tok: &TokenRecord, what: &str) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let fingerprint = crate::host::get()
            .rotate_tls(&self.state_dir)
            .map_err(|e| error(Verdict::Failed, format!("rotating the TLS identity: {e}")))?;
        self.audit.record(
            "tls_rotated",
            json!({"by": tok.id, "fingerprint": fingerprint}),
        );
        warn!("API TLS certificate rotated; new SHA-256 {fingerprint}");
        // This answer goes out through the API process serving the
        // old certificate; it is restarted with the new one once it
        // has had time to send it.
        crate::host::get().restart_api_soon(Duration::from_millis(750));
        Ok(reply(
            Verdict::Ok,
            TlsRotated {
                fingerprint,
                note:
                    "the API restarts with the new certificate within 2 s; pin the new fingerprint"
                        .into(),
            },
        ))
    }

    pub(super) fn key_status(&self, tok: &TokenRecord, what: &str) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let store =
            paddock_keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        let (state, detail) = store.summary();
        Ok(reply(Verdict::Ok, KeyStatus { state, detail }))
    }

    /// `GET /v1/system` (admin). A key store that cannot answer (not yet
    /// opened, or failed) reads as unavailable, with why: the box's own
    /// page must still show.
    pub(super) fn system_status(&self, tok: &TokenRecord, what: &str) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let keys = match paddock_keys::store() {
            Ok(store) => {
                let (state, detail) = store.summary();
                KeyStatus { state, detail }
            }
            Err(e) => KeyStatus {
                state: KeyState::Unavailable,
                detail: e.to_string(),
            },
        };
        let uptime_s = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|u| u.split('.').next()?.parse().ok())
            .unwrap_or(0);
        Ok(reply(
            Verdict::Ok,
            SystemStatus {
                version: env!("CARGO_PKG_VERSION").into(),
                uptime_s,
                tls_fingerprint: crate::host::get().tls_fingerprint(),
                keys,
                data: crate::host_samples::data_use(),
                host: self.host_samples.latest(),
                slots: crate::host::get().slots(),
                update: crate::host::get().update_status(),
            },
        ))
    }

    /// `GET /v1/system/metrics` (admin).
    pub(super) fn host_metrics(
        &self,
        tok: &TokenRecord,
        since: u64,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        Ok(reply(
            Verdict::Ok,
            HostMetrics {
                samples: self.host_samples.since(since),
            },
        ))
    }

    /// `POST /v1/keys/recover` (admin): unlocks locked disk keys with the recovery secret.
    pub(super) fn recover_keys(
        &self,
        tok: &TokenRecord,
        secret: String,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let store =
            paddock_keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        let recovered = match store.recover(&secret) {
            // Keys that open already: the secret, once checked against the
            // TPM, is what backups get encrypted to (a store set up before
            // backups existed has no recovery backup key until then).
            Err(paddock_keys::KeyError::NotLocked) => store
                .add_recovery_backup_key(&secret)
                .map(|()| "the disk keys were not locked; the recovery secret is right, and backups are encrypted to it from now on".to_string()),
            other => other,
        };
        match recovered {
            Ok(summary) => {
                self.audit
                    .record("keys_recovered", json!({"by": tok.id, "result": summary}));
                warn!("disk keys: {summary}");
                crate::host::get().show_keys(&summary);
                Ok(reply(
                    Verdict::Ok,
                    KeyStatus {
                        state: KeyState::Ready,
                        detail: summary,
                    },
                ))
            }
            Err(e) => {
                self.audit.record(
                    "keys_recovery_refused",
                    json!({"by": tok.id, "reason": e.to_string()}),
                );
                let verdict = match e {
                    paddock_keys::KeyError::WrongRecovery => Verdict::Forbidden,
                    paddock_keys::KeyError::NotLocked | paddock_keys::KeyError::NoBackupKey(_) => {
                        Verdict::Conflict
                    }
                    _ => Verdict::Failed,
                };
                Err(error(verdict, e.to_string()))
            }
        }
    }
}
