//! The token tree under attack: the review's minting escalations, deep
//! revocation, shared quotas, and a randomized walk that mints, revokes and
//! creates and checks after every step that no token sees what its
//! ancestors could not.

use super::*;
use crate::tokens::{MintRequest, Quotas, Scope};
use std::collections::BTreeMap;

fn ws(id: &str, owner: &str, labels: &[(&str, &str)], state: &str) -> WorkspaceRecord {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(serde_json::json!({
        "id": id, "owner": owner, "template": "default", "vcpus": 1,
        "memory_mib": 256, "disk_mib": 1024, "labels": labels, "env": {},
        "created_at": 0, "expires_at": 1000, "state": state, "uid": 200000
    }))
    .expect("record")
}

fn mint(tree: &mut TokenTree, parent: &TokenRecord, req: MintRequest) -> TokenRecord {
    let (_, t) = parent.mint(&req, 0).expect("mint");
    tree.insert(t.clone());
    t
}

fn req(scopes: &[Scope]) -> MintRequest {
    MintRequest {
        name: "t".into(),
        scopes: scopes.to_vec(),
        ttl_s: Some(100),
        ..MintRequest::default()
    }
}

fn labelled(scopes: &[Scope], k: &str, v: &str) -> MintRequest {
    let mut r = req(scopes);
    r.labels.insert(k.into(), v.into());
    r
}

const ALL_BUT_ADMIN: [Scope; 5] = [
    Scope::Create,
    Scope::Exec,
    Scope::Files,
    Scope::Delete,
    Scope::Read,
];

#[test]
fn a_child_minted_with_a_victims_id_or_labels_sees_nothing_of_it() {
    let admin = TokenRecord::bootstrap("h", 0);
    let mut tree = TokenTree::new(vec![admin.clone()]);
    let alice = mint(&mut tree, &admin, req(&ALL_BUT_ADMIN));
    let mallory = mint(&mut tree, &admin, req(&ALL_BUT_ADMIN));
    let victim = ws("ws_victim", &alice.id, &[("team", "a")], "running");
    let own = ws("ws_own", &mallory.id, &[("team", "a")], "running");
    assert!(tree.sees(&alice, &victim));
    assert!(!tree.sees(&mallory, &victim));
    // The review's two escalations.
    let by_id = mint(
        &mut tree,
        &mallory,
        MintRequest {
            workspace_ids: Some(vec!["ws_victim".into()]),
            ..req(&ALL_BUT_ADMIN)
        },
    );
    let by_label = mint(&mut tree, &mallory, labelled(&ALL_BUT_ADMIN, "team", "a"));
    for child in [&by_id, &by_label] {
        assert!(!tree.sees(child, &victim), "{child:?}");
    }
    // The same limits still select among mallory's own.
    assert!(tree.sees(&by_label, &own));
    assert!(!tree.sees(&by_id, &own));
    // A workspace a child creates is its parent's too.
    let grandchild_ws = ws("ws_gc", &by_label.id, &[("team", "a")], "running");
    assert!(tree.sees(&mallory, &grandchild_ws));
    assert!(!tree.sees(&alice, &grandchild_ws));
    // An admin's label grant still reaches what it names, whoever created it.
    let granted = mint(&mut tree, &admin, labelled(&[Scope::Read], "team", "a"));
    assert!(tree.sees(&granted, &victim) && tree.sees(&granted, &own));
    // ... and its children narrow it.
    let narrower = mint(
        &mut tree,
        &granted,
        MintRequest {
            workspace_ids: Some(vec!["ws_own".into()]),
            ..labelled(&[Scope::Read], "team", "a")
        },
    );
    assert!(tree.sees(&narrower, &own) && !tree.sees(&narrower, &victim));
    assert_eq!(tree.tenant_of(&by_label), mallory.id);
    assert_eq!(tree.tenant_of(&admin), admin.id);
}

#[test]
fn revoking_a_root_ends_a_chain_of_any_depth() {
    let admin = TokenRecord::bootstrap("h", 0);
    let mut tree = TokenTree::new(vec![admin.clone()]);
    let root = mint(&mut tree, &admin, req(&[Scope::Read]));
    let mut last = root.clone();
    for _ in 0..40 {
        last = mint(&mut tree, &last, req(&[Scope::Read]));
    }
    assert!(tree.is_live(&last, 1));
    let mut revoked = root.clone();
    revoked.revoked = true;
    tree.insert(revoked);
    assert!(!tree.is_live(&last, 1), "41 levels below a revoked root");
    // A missing link ends it too.
    let mut orphan = last.clone();
    orphan.id = "tok_orphan".into();
    orphan.parent = Some("tok_gone".into());
    tree.insert(orphan.clone());
    assert!(!tree.is_live(&orphan, 1));
}

#[test]
fn quotas_are_shared_down_the_tree_and_count_stopped_workspaces() {
    let admin = TokenRecord::bootstrap("h", 0);
    let mut tree = TokenTree::new(vec![admin.clone()]);
    let parent = mint(
        &mut tree,
        &admin,
        MintRequest {
            quotas: Quotas {
                max_workspaces: Some(1),
                max_disk_mib: Some(4096),
                ..Quotas::default()
            },
            ..req(&[Scope::Create])
        },
    );
    let a = mint(&mut tree, &parent, req(&[Scope::Create]));
    let b = mint(&mut tree, &parent, req(&[Scope::Create]));
    let mut all = Vec::new();
    assert_eq!(tree.quota_problem(&a, &all, 1, 256, 1024), None);
    all.push(ws("ws_a", &a.id, &[], "running"));
    let why = tree.quota_problem(&b, &all, 1, 256, 1024).expect("refused");
    assert!(
        why.contains("max_workspaces") && why.contains(&parent.id),
        "{why}"
    );
    all[0].state = WsState::Stopped;
    assert!(
        tree.quota_problem(&b, &all, 1, 256, 1024).is_some(),
        "a stopped workspace still holds its place"
    );
    all[0].state = WsState::Lost;
    assert_eq!(tree.quota_problem(&b, &all, 1, 256, 1024), None);
    let why = tree.quota_problem(&b, &all, 1, 256, 8192).expect("disk");
    assert!(why.contains("max_disk_mib"), "{why}");
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the parent of `t` could see: the bound every child must stay in.
fn parent_bound(tree: &TokenTree, t: &TokenRecord, w: &WorkspaceRecord) -> bool {
    match t.parent.as_deref().and_then(|p| tree.get(p)) {
        None => true,
        Some(p) if p.has(Scope::Admin) => {
            // An admin's grant: exactly its limits, or its own subtree.
            if t.is_limited() {
                t.covers(&w.id, &w.labels)
            } else {
                tree.descends_from(&w.owner, &t.id)
            }
        }
        Some(p) => tree.sees(p, w),
    }
}

#[test]
fn random_mints_revokes_and_creates_never_widen_what_a_token_sees() {
    for seed in 1..=16u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let admin = TokenRecord::bootstrap("h", 0);
        let mut tree = TokenTree::new(vec![admin.clone()]);
        let mut tokens = vec![admin.clone()];
        let mut spaces: Vec<WorkspaceRecord> = Vec::new();
        let teams = ["a", "b", "c"];
        for step in 0..160 {
            match rng.below(10) {
                0..=4 => {
                    let parent = tokens[rng.below(tokens.len())].clone();
                    let mut r = req(&ALL_BUT_ADMIN);
                    if !parent.has(Scope::Admin) {
                        r.scopes = parent.scopes.clone();
                    }
                    r.labels = parent.labels.clone();
                    r.workspace_ids = parent.workspace_ids.clone();
                    r.ttl_s = Some(50);
                    if rng.below(3) == 0 {
                        r.labels.insert("team".into(), teams[rng.below(3)].into());
                    }
                    if rng.below(3) == 0 && !spaces.is_empty() {
                        // Often a victim's id: the attack under test.
                        let id = spaces[rng.below(spaces.len())].id.clone();
                        r.workspace_ids = Some(match &parent.workspace_ids {
                            Some(p) if !p.contains(&id) => p.clone(),
                            _ => vec![id],
                        });
                    }
                    if let Ok((_, t)) = parent.mint(&r, 0) {
                        tree.insert(t.clone());
                        tokens.push(t);
                    }
                }
                5..=7 => {
                    let creator = tokens[rng.below(tokens.len())].clone();
                    if creator.workspace_ids.is_none() && tree.is_live(&creator, 1) {
                        let mut labels: Vec<(&str, &str)> = vec![("team", teams[rng.below(3)])];
                        if let Some(v) = creator.labels.get("team") {
                            labels = vec![("team", v.as_str())];
                        }
                        let id = format!("ws_{seed}_{step}");
                        spaces.push(ws(&id, &creator.id, &labels, "running"));
                    }
                }
                _ => {
                    let i = rng.below(tokens.len());
                    if i > 0 {
                        let mut t = tokens[i].clone();
                        t.revoked = true;
                        tree.insert(t.clone());
                        tokens[i] = t;
                    }
                }
            }
            for t in tokens.iter().skip(1) {
                for w in &spaces {
                    if tree.sees(t, w) {
                        assert!(
                            parent_bound(&tree, t, w),
                            "seed {seed} step {step}: {} sees {} beyond its parent",
                            t.id,
                            w.id
                        );
                        // And, up the whole chain, every ancestor could.
                        let chain = tree.chain(t).expect("chain");
                        for a in &chain {
                            assert!(
                                tree.sees(a, w),
                                "seed {seed}: ancestor {} of {}",
                                a.id,
                                t.id
                            );
                        }
                    }
                }
                if t.revoked {
                    for u in &tokens {
                        if tree.descends_from(&u.id, &t.id) {
                            assert!(
                                !tree.is_live(u, 1),
                                "seed {seed}: {} outlives {}",
                                u.id,
                                t.id
                            );
                        }
                    }
                }
            }
        }
    }
}
