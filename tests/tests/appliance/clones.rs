//! Workspaces started as clones of a template snapshot, against the
//! booted appliance: the default shape's snapshot is built after boot, and
//! creates of that shape restore it rather than boot. Each clone is its
//! own workspace (the attack: two clones of one snapshot sharing their
//! RNG, machine-id, MAC or filesystem), with its own disk at its own size
//! and its own address, and a first create of a new shape still boots.

use super::*;

/// What one workspace says about itself.
struct Inside {
    fields: std::collections::BTreeMap<String, String>,
}

impl Inside {
    fn get(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {k} in {:?}", self.fields))
    }
}

const SCRIPT: &str = r#"printf 'machine=%s\n' "$(cat /etc/machine-id)"
printf 'random=%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'fs_uuid=%s\n' "$(od -An -tx1 -j 1128 -N 16 /dev/vdb | tr -d ' \n')"
printf 'sectors=%s\n' "$(cat /sys/class/block/vdb/size)"
printf 'mac=%s\n' "$(cat /sys/class/net/eth0/address)"
printf 'host=%s\n' "$(cat /proc/sys/kernel/hostname)"
printf 'gateway=%s\n' "$(sed -n 's/^nameserver //p' /etc/resolv.conf)"
printf 'default_route=%s\n' "$(awk '$1=="eth0" && $2=="00000000" {print "yes"}' /proc/net/route)"
printf 'clock=%s\n' "$(date +%s)"
printf 'python=%s\n' "$(python3 -c 'print(6*7)')"
printf 'written=%s\n' "$(echo own > /home/agent/own.txt && sync && cat /home/agent/own.txt)""#;

fn inside(app: &Appliance, admin: &str, id: &str) -> Inside {
    let body =
        serde_json::to_vec(&serde_json::json!({"argv": ["sh", "-c", SCRIPT], "user": "root"}))
            .expect("JSON");
    let (code, stream) = app
        .api(
            "POST",
            &format!("/v1/workspaces/{id}/exec"),
            admin,
            Some(&body),
        )
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&stream));
    let (out, last) = exec_output(&stream);
    assert_eq!(last["exit_code"], 0, "{out}: {last}");
    Inside {
        fields: out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    }
}

/// Creates a workspace; its id and how long the API took to answer.
fn create(app: &Appliance, admin: &str, spec: &str) -> (String, f64) {
    let t = std::time::Instant::now();
    let (code, body) = app
        .api("POST", "/v1/workspaces", admin, Some(spec.as_bytes()))
        .expect("curl");
    let took = t.elapsed().as_secs_f64();
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    (json(&body)["id"].as_str().expect("id").to_string(), took)
}

/// The audit log's `workspace_created` of `id` (its fields are the event's).
fn started_from(app: &Appliance, admin: &str, id: &str) -> serde_json::Value {
    let (code, body) = app
        .api(
            "GET",
            &format!("/v1/audit?event=workspace_created&workspace={id}"),
            admin,
            None,
        )
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let events = json(&body);
    events["events"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["event"] == "workspace_created"))
        .cloned()
        .unwrap_or_else(|| panic!("no workspace_created for {id}: {events}"))
}

pub(crate) fn clones_of_the_template(app: &mut Appliance, admin: &str) {
    // Built after boot, or failed: either way the log names it.
    let console = app
        .wait_for("template snapshot template-1x512-nic", BOOT_GUARD)
        .expect("the default shape's template snapshot is built after boot");
    let said = console
        .lines()
        .find(|l| l.contains("template snapshot template-1x512-nic"))
        .unwrap_or_default();
    eprintln!("{said}");
    assert!(said.contains(" ready in "), "{said}");
    // The default shape (1 vCPU, 512 MiB): two clones, disks of two sizes.
    let (a, a_s) = create(app, admin, r#"{"ttl_s": 900, "disk_mib": 512}"#);
    let (b, b_s) = create(app, admin, r#"{"ttl_s": 900, "disk_mib": 1024}"#);
    // A shape no create has used yet boots.
    let (c, c_s) = create(
        app,
        admin,
        r#"{"ttl_s": 900, "memory_mib": 384, "disk_mib": 512}"#,
    );
    eprintln!(
        "clone figures: create from the template snapshot {a_s:.2} s and {b_s:.2} s; first create of a new shape (booted) {c_s:.2} s"
    );
    for id in [&a, &b] {
        let d = started_from(app, admin, id);
        assert_eq!(d["started_from"], "snapshot", "{id}: {d}");
        assert!(d["start_ms"].as_u64().is_some(), "{d}");
    }
    assert_eq!(started_from(app, admin, &c)["started_from"], "boot");

    let (ia, ib, ic) = (
        inside(app, admin, &a),
        inside(app, admin, &b),
        inside(app, admin, &c),
    );
    for (id, i, disk_mib) in [(&a, &ia, 512u64), (&b, &ib, 1024), (&c, &ic, 512)] {
        assert_eq!(i.get("python"), "42", "{id}");
        assert_eq!(i.get("written"), "own", "{id}");
        assert_eq!(i.get("host"), id.replace('_', "-"), "{id}");
        // Its own disk, as big as asked (less a dm-crypt header, if any).
        let sectors: u64 = i.get("sectors").parse().expect("sectors");
        let want = disk_mib * 2048;
        assert!(
            sectors <= want && sectors + 65536 >= want,
            "{id}: {sectors} sectors for {disk_mib} MiB"
        );
        // Its own address, through its own gateway.
        assert!(
            i.get("mac").starts_with("02:70:64:"),
            "{id}: {}",
            i.get("mac")
        );
        assert_ne!(
            i.get("mac"),
            "02:70:64:ff:ff:fe",
            "{id}: the template's MAC"
        );
        assert_eq!(i.get("gateway").split('.').count(), 4, "{id}");
        assert_eq!(i.get("default_route"), "yes", "{id}");
        let clock: u64 = i.get("clock").parse().expect("clock");
        assert!(clock > 1_700_000_000, "{id}: clock {clock}");
    }
    for what in ["machine", "random", "fs_uuid", "mac", "gateway"] {
        assert_ne!(ia.get(what), ib.get(what), "two clones share their {what}");
    }
    let (code, metrics) = app.api("GET", "/metrics", admin, None).expect("curl");
    assert_eq!(code, 200);
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    let snapshot_starts: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("paddock_workspace_starts_total{from=\"snapshot\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no snapshot starts in the metrics"));
    assert!(snapshot_starts >= 2, "{snapshot_starts}");
    // Each is held to its one vCPU's worth by its cgroup, as read back from
    // the cgroup: a clone is capped only once provisioned (cloning.rs), so
    // a clone whose cap was never written would show no figure here.
    for id in [&a, &b, &c] {
        let want = format!("paddock_workspace_cpu_limit_cpus{{workspace=\"{id}\"}} 1\n");
        assert!(
            metrics.contains(&want),
            "{id}'s cgroup holds no CPU cap of one CPU:\n{metrics}"
        );
    }
    for id in [&a, &b, &c] {
        let (code, body) = app
            .api("DELETE", &format!("/v1/workspaces/{id}"), admin, None)
            .expect("curl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
}
