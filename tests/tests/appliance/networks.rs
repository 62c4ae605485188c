//! Workspace networks in a fake internet: deny by default, open only what
//! is listed, and the resolver and proxy under load and restart.

use super::*;

/// Issue 6 end to end, on one boot: the appliance runs inside a fake
/// internet (tests/src/fakenet.rs) and its workspaces are checked from
/// inside: deny by default, the allowlist on names and CIDRs, the host's
/// resolver, forbidden addresses, isolation from each other, policy
/// changes on a running workspace, and the counters and audit that show it.
/// Run by `appliance_networks_...` in appliance.rs (named for the order
/// the tests start in).
pub(crate) fn workspace_networks_deny_by_default_and_open_only_what_is_listed() {
    let net = FakeNet::create().expect("the fake internet (needs root and ip(8))");
    let dir = scratch("network");
    let disk = fresh_disk(&dir);
    // This appliance also posts the events a person should hear about to
    // the fake internet's webhook receiver (the shared test image has no
    // webhook: the other tests have no fake internet to aim it at).
    let config = paddock_tests::esp_config::test_config_with(serde_json::json!({
        "notify": {"webhook": {"url": format!("http://{}/hook", paddock_tests::fakenet::HOOKS),
                               "secret": yellow::HOOK_SECRET}}
    }))
    .expect("configuration");
    paddock_tests::esp_config::set(&disk, &config).expect("the ESP with a webhook");
    // 18080 in the fake internet's namespace reaches the appliance's 20080
    // (where a published port will be).
    let mut app = Appliance::boot_in(
        &disk,
        &dir.join("state"),
        &dir.join("network.log"),
        &["--forward".into(), "18080:20080".into()],
        &net.exec_prefix(),
    )
    .expect("boot");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("bootstrap admin credential", BOOT_GUARD))
        .expect("boot");
    assert!(
        console.contains("workspace firewall installed"),
        "{}",
        paddock_tests::appliance::log_tail(&console, 40)
    );
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    let call = |m: &str, p: &str, b: Option<&str>| {
        app.api(m, p, &admin, b.map(str::as_bytes)).expect("curl")
    };
    let create = |body: &str| {
        let (code, body) = call("POST", "/v1/workspaces", Some(body));
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        json(&body)["id"].as_str().expect("id").to_string()
    };
    // A shell command in a workspace: (stdout and stderr, exit code).
    let sh_for = |id: &str, script: &str, timeout_s: u64| {
        let body = serde_json::json!({"argv": ["bash", "-c", format!("{script} 2>&1")], "timeout_s": timeout_s})
            .to_string();
        let (code, stream) = call("POST", &format!("/v1/workspaces/{id}/exec"), Some(&body));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&stream));
        let (out, last) = exec_output(&stream);
        (out, last["exit_code"].as_i64().unwrap_or(-1))
    };
    let sh = |id: &str, script: &str| sh_for(id, script, 120);
    let metric = |name: &str, id: &str| -> f64 {
        let (code, body) = call("GET", "/metrics", None);
        assert_eq!(code, 200);
        let text = String::from_utf8_lossy(&body).to_string();
        let key = format!("{name}{{workspace=\"{id}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    };
    // curl from a guest: the body, or the empty string if it failed.
    let curl = |id: &str, args: &str| {
        let (out, code) = sh(id, &format!("curl -sk --max-time 15 {args}"));
        if code == 0 {
            out
        } else {
            String::new()
        }
    };
    // Waits, inside the guest, until something is bound to `port` (TCP or
    // UDP): a server started in another exec takes a while to come up on an
    // emulated CPU, and how long depends on the build machine's load.
    let listening = |id: &str, port: u16| {
        let (out, _) = sh(
            id,
            &format!(
                "python3 -c \"import time\nfor _ in range(500):\n  if any(l.split()[1].endswith(':{port:04X}') for f in ('/proc/net/tcp','/proc/net/udp') for l in open(f).readlines()[1:]):\n    print('up'); break\n  time.sleep(0.2)\""
            ),
        );
        assert!(
            out.contains("up"),
            "nothing listens on {port} in {id}: {out}"
        );
    };
    // Ends the server processes whose command line matches `pattern` (a
    // regex written so that it does not match its own shell's).
    let stop = |id: &str, pattern: &str| {
        sh(id, &format!("pkill -f '{pattern}'"));
    };

    // Bad policies are refused with the entry named; nothing is created.
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        Some(r#"{"ttl_s": 600, "egress": {"domains": ["no_dots"], "cidrs": ["10.0.0.0/8"]}}"#),
    );
    assert_eq!(code, 422);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("no_dots") && text.contains("give the ports"),
        "{text}"
    );

    // A: an allowlist. B: nothing (the default).
    let listed = format!("{RAW_LISTED}/32:8080");
    let a = create(
        &serde_json::json!({
            "ttl_s": 1800, "memory_mib": 256, "disk_mib": 512,
            "egress": {
                "domains": ["allowed.test", "*.allowed.test:443"],
                // Forbidden whatever the list says: the metadata address, the host.
                "cidrs": [listed, "169.254.169.254/32:80", "10.0.2.15/32:8443"]
            }
        })
        .to_string(),
    );
    let b = create(r#"{"ttl_s": 1800, "memory_mib": 256, "disk_mib": 512}"#);

    // network none: nothing resolves, nothing connects, no ping; counted.
    assert_eq!(curl(&b, &format!("https://{ALLOWED}/")), "");
    assert_eq!(curl(&b, "http://8.8.8.8/"), "");
    let (out, code) = sh(
        &b,
        "python3 -c \"import socket; print(socket.gethostbyname('allowed.test'))\"",
    );
    assert_ne!(code, 0, "B resolved a name: {out}");
    let (out, code) = sh(
        &b,
        "python3 -c \"import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ICMP); s.settimeout(3); s.sendto(bytes([8,0,0xf7,0xff,0,0,0,0]),('203.0.113.10',0)); print(s.recv(100))\"",
    );
    assert_ne!(code, 0, "B got a ping reply: {out}");
    assert!(metric("paddock_workspace_denied_packets_total", &b) > 0.0);
    assert!(metric("paddock_workspace_denied_lookups_total", &b) > 0.0);

    // Allowlist: the listed name works over HTTPS and HTTP, by name.
    let body = curl(&a, "https://allowed.test/");
    assert_eq!(
        body,
        "server=allowed.test host=allowed.test sni=allowed.test\n"
    );
    assert!(curl(&a, "http://allowed.test/").starts_with("server=allowed.test"));
    // A wildcard entry covers the names below it, on its own ports only.
    assert_eq!(
        curl(&a, "https://www.allowed.test/"),
        "server=allowed.test host=www.allowed.test sni=www.allowed.test\n"
    );
    let body = curl(&a, "http://www.allowed.test/");
    assert!(
        body.contains("www.allowed.test:80 is not on this workspace's allowlist"),
        "port 80 is not in the wildcard entry: {body:?}"
    );
    // An unlisted name fails at DNS.
    let (out, code) = sh(&a, "curl -sk --max-time 15 https://denied.test/");
    assert_ne!(code, 0, "{out}");
    assert_eq!(code, 6, "curl's 'could not resolve host': {out}");
    // SNI allowed.test sent to denied.test's address: the proxy connects
    // to allowed.test, never to the address the guest dialled.
    let body = curl(
        &a,
        &format!("--connect-to allowed.test:443:{DENIED}:443 https://allowed.test/"),
    );
    assert_eq!(
        body, "server=allowed.test host=allowed.test sni=allowed.test\n",
        "never denied.test"
    );
    // The Host header the same way on port 80.
    let body = curl(&a, &format!("-H 'Host: allowed.test' http://{DENIED}/"));
    assert!(body.starts_with("server=allowed.test"), "{body:?}");
    // A name sharing allowed.test's address is not allowed.test.
    assert_eq!(
        curl(
            &a,
            &format!("--resolve other.test:443:{ALLOWED} https://other.test/")
        ),
        ""
    );
    let (out, _) = sh(
        &a,
        &format!("curl -s --max-time 15 -H 'Host: other.test' http://{ALLOWED}/"),
    );
    assert!(out.contains("not on this workspace's allowlist"), "{out}");
    // Smuggling (issue 14, item 3): on one allowed keep-alive connection
    // to a front end that serves other.test on the same address, a second,
    // pipelined request for other.test never reaches it.
    let pipelined = "python3 -c 'import socket\ns=socket.create_connection((\"allowed.test\",80),timeout=15)\ns.sendall(b\"GET /keepalive HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\nGET / HTTP/1.1\\r\\nHost: other.test\\r\\n\\r\\n\")\nd=b\"\"\nwhile True:\n  try:\n    x=s.recv(4096)\n  except Exception:\n    break\n  if not x:\n    break\n  d+=x\nprint(d.decode(errors=\"replace\"))'";
    let (out, _) = sh(&a, pipelined);
    assert!(
        out.contains("host=allowed.test"),
        "the first request is served: {out}"
    );
    assert!(
        !out.contains("host=other.test"),
        "the pipelined request reached other.test: {out}"
    );
    // Where A connected (issue 17): its lookups and proxied connections,
    // allowed and denied, with bytes, answers, and the connection that
    // named allowed.test but dialled denied.test's address flagged.
    let mut log = serde_json::Value::Null;
    let find = |log: &serde_json::Value, kind: &str, decision: &str, name: &str| {
        log["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["kind"] == kind && r["decision"] == decision && r["name"] == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    for _ in 0..40 {
        log = json(&call("GET", &format!("/v1/workspaces/{a}/network"), None).1);
        if !find(&log, "tcp", "denied", "other.test").is_empty()
            && find(&log, "tcp", "allowed", "allowed.test")
                .iter()
                .any(|r| r["mismatched"].as_u64() > Some(0))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let lookups = find(&log, "dns", "allowed", "allowed.test");
    assert!(
        lookups
            .iter()
            .any(|r| r["answers"].to_string().contains(&ALLOWED.to_string())),
        "the lookup and its answer: {log}"
    );
    assert!(
        !find(&log, "dns", "denied", "denied.test").is_empty(),
        "{log}"
    );
    let conns = find(&log, "tcp", "allowed", "allowed.test");
    assert!(
        conns.iter().any(|r| r["bytes_down"].as_u64() > Some(0)
            && r["dest"].as_str().is_some_and(|d| d.ends_with(":443"))),
        "connections with their bytes: {log}"
    );
    assert!(
        conns.iter().any(|r| r["mismatched"].as_u64() > Some(0)
            && r["dest"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("{DENIED}:")))),
        "named allowed.test, dialled denied.test's address: {log}"
    );
    let refused = find(&log, "tcp", "denied", "other.test");
    assert!(
        refused
            .iter()
            .any(|r| r["reason"] == "not on its allowlist"),
        "{log}"
    );
    let denied = json(
        &call(
            "GET",
            &format!("/v1/workspaces/{a}/network?decision=denied"),
            None,
        )
        .1,
    );
    assert!(
        denied["records"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["decision"] == "denied")),
        "{denied}"
    );
    let (code, _) = call(
        "GET",
        &format!("/v1/workspaces/{a}/network?decision=maybe"),
        None,
    );
    assert_eq!(code, 422);
    // Egress requests a person approves (issue 17): A asks for denied.test
    // at the box's own endpoint, with its reason; it stays refused until an
    // admin approves it for a while, connects while the approval holds, and
    // is refused again once it ran out. A denied ask stays out.
    let ask = |host: &str, why: &str| {
        let (out, code) = sh(
            &a,
            &format!(
                "curl -s --max-time 15 http://paddock.internal/egress-requests -d '{{\"host\": \"{host}\", \"port\": 443, \"reason\": \"{why}\"}}'"
            ),
        );
        assert_eq!(code, 0, "{out}");
        json(out.trim().as_bytes())
    };
    let asked = ask("denied.test", "the task needs its API");
    assert_eq!(asked["status"], "pending", "{asked}");
    let approval = asked["id"].as_str().expect("id").to_string();
    let pending = |id: &str| {
        for _ in 0..40 {
            let list = json(&call("GET", "/v1/approvals?state=pending", None).1);
            if let Some(found) = list["approvals"]
                .as_array()
                .and_then(|l| l.iter().find(|x| x["id"] == id).cloned())
            {
                return found;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{id} never became a pending approval");
    };
    let found = pending(&approval);
    // A person hears of it at once, through the webhook.
    let told = yellow::hooked(&net, "egress_requested", &approval);
    assert_eq!(told["host"], "denied.test", "{told}");
    assert_eq!(
        (found["workspace"].as_str(), found["reason"].as_str()),
        (Some(a.as_str()), Some("the task needs its API")),
        "{found}"
    );
    let (out, code) = sh(&a, "curl -sk --max-time 15 https://denied.test/");
    assert_eq!(code, 6, "refused until decided: {out}");
    // A person approves it in the web console, in a real browser (run in
    // the fake internet's namespace, where the API port is).
    let console_dir = repo_root().join("console");
    let out = app
        .command("node")
        .arg(console_dir.join("tests/approve.mjs"))
        .current_dir(&console_dir)
        .env("PADDOCK_URL", format!("https://127.0.0.1:{}", app.port))
        .env("PADDOCK_ADMIN", &admin)
        .env("PADDOCK_APPROVAL", &approval)
        .env("PADDOCK_TTL_S", "20")
        .env("PADDOCK_REASON", "for this run")
        .output()
        .expect("node");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "approving in the console failed:\n{said}"
    );
    assert!(said.contains("asks to reach denied.test:443"), "{said}");
    let decided = json(&call("GET", &format!("/v1/approvals/{approval}"), None).1);
    assert_eq!(
        (
            decided["state"].as_str(),
            decided["decision_reason"].as_str()
        ),
        (Some("approved"), Some("for this run")),
        "{decided}"
    );
    assert!(
        curl(&a, "https://denied.test/").starts_with("server=denied.test"),
        "approved: it connects"
    );
    let (out, _) = sh(
        &a,
        "curl -s --max-time 15 'http://paddock.internal/egress-requests?host=denied.test&port=443'",
    );
    assert!(out.contains("\"allowed\""), "{out}");
    let mut refused_again = false;
    for _ in 0..120 {
        let (_, code) = sh(&a, "curl -sk --max-time 15 https://denied.test/");
        if code != 0 {
            refused_again = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(refused_again, "the approval ran out and the entry left");
    let other = ask("other.test", "also this");
    let other_id = other["id"].as_str().expect("id").to_string();
    pending(&other_id);
    let (code, body) = call(
        "POST",
        &format!("/v1/approvals/{other_id}"),
        Some(r#"{"approve": false, "reason": "not for this task"}"#),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["state"], "denied");
    let (code, _) = call(
        "POST",
        &format!("/v1/approvals/{other_id}"),
        Some(r#"{"approve": true}"#),
    );
    assert_eq!(code, 409, "decided once");
    let (_, audit) = call("GET", &format!("/v1/audit?workspace={a}"), None);
    let audit = String::from_utf8_lossy(&audit).to_string();
    for event in [
        "egress_requested",
        "egress_approved",
        "egress_grant_expired",
        "egress_denied",
    ] {
        assert!(audit.contains(event), "{event}: {audit}");
    }
    // The resolver and the proxy run in a confined process of their own
    // (issue 15). Killed with SIGKILL, it is started again by PID 1, not
    // by a reboot, with every workspace's policy; what it counted stays.
    let refused_before = metric("paddock_workspace_denied_connections_total", &a);
    let uptime = |body: &[u8]| json(body)["uptime_s"].as_u64().expect("uptime_s");
    let up_before = uptime(&call("GET", "/v1/health", None).1);
    let (code, body) = call("POST", "/v1/debug/kill-net-services", None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // Back by itself: queries and connections made while it restarts wait
    // in its sockets' queues; a few tries cover a slow restart.
    let mut body = String::new();
    for _ in 0..20 {
        body = curl(&a, "https://allowed.test/");
        if !body.is_empty() {
            break;
        }
    }
    assert_eq!(
        body, "server=allowed.test host=allowed.test sni=allowed.test\n",
        "egress after the restart"
    );
    let (out, code) = sh(&a, "curl -sk --max-time 15 https://denied.test/");
    assert_eq!(code, 6, "still refused at DNS after the restart: {out}");
    let (out, _) = sh(
        &a,
        &format!("curl -s --max-time 15 -H 'Host: other.test' http://{ALLOWED}/"),
    );
    assert!(out.contains("not on this workspace's allowlist"), "{out}");
    assert!(metric("paddock_workspace_denied_connections_total", &a) > refused_before);
    let (_, metrics) = call("GET", "/metrics", None);
    assert!(
        String::from_utf8_lossy(&metrics).contains("paddock_net_services_restarts_total 1"),
        "one restart counted"
    );
    assert!(
        uptime(&call("GET", "/v1/health", None).1) >= up_before,
        "the box did not reboot"
    );

    // Raw IP: the listed CIDR and port work, others do not.
    assert!(curl(&a, &format!("http://{RAW_LISTED}:8080/")).starts_with("server=raw-listed"));
    assert_eq!(curl(&a, &format!("http://{RAW_UNLISTED}:8080/")), "");
    // Listed but forbidden: metadata and the host's own address.
    assert_eq!(curl(&a, &format!("http://{METADATA}/")), "");
    assert_eq!(curl(&a, "https://10.0.2.15:8443/v1/health"), "");
    assert_eq!(curl(&a, "https://10.200.0.1:8443/v1/health"), "");
    // DNS elsewhere and QUIC are dropped.
    let (_, code) = sh(&a, &format!("python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); s.sendto(b'x'*20,('{DNS}',53)); s.recv(100)\""));
    assert_ne!(code, 0, "DNS to another resolver answered");

    // DNS: a random name in an unlisted zone never reaches the upstream.
    let probe = format!("x{}.exfil-zone.test", std::process::id());
    let (_, code) = sh(
        &a,
        &format!("python3 -c \"import socket; socket.gethostbyname('{probe}')\""),
    );
    assert_ne!(code, 0);
    assert!(
        !net.queries().iter().any(|q| q.contains("exfil-zone")),
        "the upstream saw {:?}",
        net.queries()
    );
    assert!(
        net.queries().iter().any(|q| q == "allowed.test"),
        "positive control"
    );
    // A listed name whose address is private gets no address (rebinding).
    let rebind = create(
        &serde_json::json!({"ttl_s": 600, "memory_mib": 256, "disk_mib": 512, "egress": {"domains": ["rebind.test"]}})
            .to_string(),
    );
    let (out, code) = sh(
        &rebind,
        "python3 -c \"import socket; print(socket.gethostbyname('rebind.test'))\"",
    );
    assert!(code != 0 || !out.contains("10.0.2.15"), "{out}");
    assert_eq!(curl(&rebind, "http://rebind.test/"), "");
    // The proxy's connections shared: A holds its share, the other still
    // connects (given allowed.test for it).
    let (code, body) = call(
        "PUT",
        &format!("/v1/workspaces/{rebind}/egress"),
        Some(r#"{"domains": ["allowed.test"]}"#),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    egress_share::a_greedy_workspace_leaves_the_proxy_to_the_others(&sh, &a, &rebind);
    let kill = || {
        let (code, body) = call("POST", "/v1/debug/kill-net-services", None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    };
    let long = |id: &str, script: &str| sh_for(id, script, 420);
    egress_share::a_workspace_at_full_rate_leaves_egress_to_the_others(
        &sh, &long, &a, &rebind, &kill,
    );
    call("DELETE", &format!("/v1/workspaces/{rebind}"), None);

    // Secrets brokered at egress, against the fake internet's echo.
    broker::secrets_brokered(&app, &admin, &net);

    // A and B cannot see each other: direct IP, broadcast.
    let (b_ip, _) = sh(&b, "python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.connect(('10.200.0.1',53)); print(s.getsockname()[0])\"");
    let b_ip = b_ip.trim().to_string();
    assert!(b_ip.starts_with("10.200."), "{b_ip}");
    // A server in B while A tries it (a command's processes end with it,
    // so the server runs in an exec of its own beside the others).
    let (from_b, from_a) = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(&b, "timeout 300 python3 -m http.server 8000"));
        listening(&b, 8000);
        let from_b = curl(&b, "http://127.0.0.1:8000/");
        let from_a = curl(&a, &format!("http://{b_ip}:8000/"));
        stop(&b, "http[.]server 8000");
        let _ = server.join();
        (from_b, from_a)
    });
    assert!(
        from_b.contains("Directory listing"),
        "positive control: {from_b:?}"
    );
    assert_eq!(from_a, "", "A reached B's server");
    let listener = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            sh(
                &b,
                "python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',9999)); s.settimeout(10); print('got', s.recv(100))\"",
            )
        });
        listening(&b, 9999);
        sh(
            &a,
            &format!("python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1); [s.sendto(b'hello',(d,9999)) for d in ('255.255.255.255','10.200.255.255','{b_ip}')]\""),
        );
        h.join().expect("listener")
    });
    assert!(!listener.0.contains("got"), "B heard A: {}", listener.0);

    // A directed private link A -> B:8080. B answers; B cannot open
    // anything to A; a third workspace C reaches neither; removing the link
    // cuts A's open connection.
    let c = create(r#"{"ttl_s": 1800, "memory_mib": 256, "disk_mib": 512}"#);
    let address = |id: &str| {
        json(&call("GET", &format!("/v1/workspaces/{id}"), None).1)["address"]
            .as_str()
            .expect("address")
            .to_string()
    };
    let a_ip = address(&a);
    assert_eq!(address(&b), b_ip);
    let (code, body) = call(
        "POST",
        "/v1/links",
        Some(&serde_json::json!({"from": a, "to": b, "port": 8080}).to_string()),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let link = json(&body);
    assert_eq!(link["to_address"], b_ip.as_str());
    let link_id = link["id"].as_str().expect("link id").to_string();
    let (code, _) = call(
        "POST",
        "/v1/links",
        Some(&serde_json::json!({"from": a, "to": b, "port": 0}).to_string()),
    );
    assert_eq!(code, 422);
    let echo_server = "timeout 300 python3 -c 'import socket,threading\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind((\"\",8080)); s.listen()\ndef h(c):\n  while True:\n    d=c.recv(100)\n    if not d: break\n    c.sendall(d)\nwhile True:\n  c,_=s.accept(); threading.Thread(target=h,args=(c,),daemon=True).start()'";
    let echo_client = |ip: &str, secs: u32| {
        format!(
            "python3 -c 'import socket,time\nn=0\ntry:\n  c=socket.create_connection((\"{ip}\",8080),timeout=5); c.settimeout(5); t=time.time()\n  while time.time()-t<{secs}:\n    c.sendall(b\"ping\"); assert c.recv(100)==b\"ping\"; n+=1; time.sleep(0.5)\n  print(\"held\",n)\nexcept Exception as e:\n  print(\"cut\",n,type(e).__name__)'"
        )
    };
    let (a_once, held, b_to_a, c_to_b, c_to_a) = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(&b, echo_server));
        let a_server = scope.spawn(|| sh(&a, "timeout 300 python3 -m http.server 9000"));
        listening(&b, 8080);
        listening(&a, 9000);
        let a_once = sh(&a, &echo_client(&b_ip, 1)).0;
        let b_to_a = (
            curl(&b, &format!("http://{a_ip}:9000/")),
            sh(&b, &echo_client(&a_ip, 1)).0,
        );
        let c_to_b = sh(&c, &echo_client(&b_ip, 1)).0;
        let c_to_a = curl(&c, &format!("http://{a_ip}:9000/"));
        // A holds a connection; the link goes while it is open.
        let holder = scope.spawn(|| {
            let started = std::time::Instant::now();
            (sh(&a, &echo_client(&b_ip, 50)).0, started.elapsed())
        });
        std::thread::sleep(Duration::from_secs(8));
        let (code, body) = call("DELETE", &format!("/v1/links/{link_id}"), None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let held = holder.join().expect("holder");
        stop(&b, "s[.]bind..\"\",8080");
        stop(&a, "http[.]server 9000");
        let _ = server.join();
        let _ = a_server.join();
        (a_once, held, b_to_a, c_to_b, c_to_a)
    });
    assert!(
        a_once.starts_with("held"),
        "A reaches B over the link: {a_once}"
    );
    assert_eq!(b_to_a.0, "", "B opened a connection to A");
    assert!(
        b_to_a.1.starts_with("cut 0"),
        "B opened a connection to A: {}",
        b_to_a.1
    );
    assert!(c_to_b.starts_with("cut 0"), "C reached B: {c_to_b}");
    assert_eq!(c_to_a, "", "C reached A");
    let ((held_out, held_for), _) = (held, ());
    assert!(
        held_out.starts_with("cut "),
        "removing the link cut A's connection: {held_out}"
    );
    assert!(
        held_for < Duration::from_secs(45),
        "cut, not run out ({held_for:?})"
    );
    let (code, body) = call("GET", "/v1/links", None);
    assert_eq!(code, 200);
    assert_eq!(json(&body)["links"].as_array().map(Vec::len), Some(0));

    // A published port: reachable from outside only while published, and
    // never from another workspace.
    let outside = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.name, "curl", "-s", "--max-time", "10"])
            .arg("http://127.0.0.1:18080/")
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (before, published, from_b, after) = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(&a, "timeout 300 python3 -m http.server 8000"));
        listening(&a, 8000);
        let before = outside();
        let (code, body) = call(
            "POST",
            &format!("/v1/workspaces/{a}/ports"),
            Some(r#"{"port": 8000, "host_port": 20080}"#),
        );
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["host_port"], 20080);
        let published = outside();
        let from_b = curl(&b, "http://10.0.2.15:20080/");
        let (code, body) = call("DELETE", &format!("/v1/workspaces/{a}/ports/8000"), None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let after = outside();
        stop(&a, "http[.]server 8000");
        let _ = server.join();
        (before, published, from_b, after)
    });
    assert_eq!(before, "", "reachable before it was published");
    assert!(
        published.contains("Directory listing"),
        "published: {published:?}"
    );
    assert_eq!(from_b, "", "another workspace used the published port");
    assert_eq!(after, "", "reachable after it was unpublished");
    // The same, and a longer TTL and a link, asked for by a token whose
    // policy says ask, and approved by the admin (issue 17).
    yellow::asked_actions(&app, &admin, &net, &a, &b);

    // A running workspace's allowlist changes without a restart, and a
    // connection the new list no longer allows is cut.
    let slow = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            let started = std::time::Instant::now();
            let r = sh(&a, "curl -sk --max-time 100 https://allowed.test/slow");
            (r, started.elapsed())
        });
        std::thread::sleep(Duration::from_secs(8));
        let (code, body) = call(
            "PUT",
            &format!("/v1/workspaces/{a}/egress"),
            Some(r#"{"domains": ["denied.test"]}"#),
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        h.join().expect("slow download")
    });
    let ((out, code), took) = slow;
    assert_ne!(code, 0, "the cut download ended in an error: {out}");
    assert!(
        took < Duration::from_secs(60),
        "cut, not run to its end ({took:?})"
    );
    assert!(curl(&a, "https://denied.test/").starts_with("server=denied.test"));
    assert_eq!(curl(&a, "https://allowed.test/"), "");

    // Every refusal is counted; every policy change is audited.
    for m in [
        "paddock_workspace_denied_packets_total",
        "paddock_workspace_denied_lookups_total",
        "paddock_workspace_denied_connections_total",
    ] {
        assert!(metric(m, &a) > 0.0, "{m} for A");
    }
    assert!(metric("paddock_workspace_net_sent_bytes_total", &a) > 0.0);
    let (code, body) = call("GET", "/v1/audit", None);
    assert_eq!(code, 200);
    let audit = String::from_utf8_lossy(&body);
    assert!(
        audit.contains("workspace_egress_changed") && audit.contains("denied.test"),
        "{audit}"
    );
    assert!(
        audit.contains("link_created") && audit.contains("link_deleted"),
        "{audit}"
    );
    assert!(
        audit.contains("port_published") && audit.contains("port_unpublished"),
        "{audit}"
    );

    // Quarantine cuts a workspace off, links into it included: C, linked
    // to A, is refused at once (the firewall's reset), where a frozen guest
    // behind an open link would leave it waiting.
    let (code, body) = call(
        "POST",
        "/v1/links",
        Some(&serde_json::json!({"from": c, "to": a, "port": 8080}).to_string()),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let reached = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(&a, echo_server));
        listening(&a, 8080);
        let r = sh(&c, &echo_client(&a_ip, 1)).0;
        stop(&a, "s[.]bind..\"\",8080");
        let _ = server.join();
        r
    });
    assert!(
        reached.starts_with("held"),
        "C reaches A over the link: {reached}"
    );
    let (code, body) = call("POST", &format!("/v1/workspaces/{a}/quarantine"), None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let after = sh(&c, &echo_client(&a_ip, 1)).0;
    assert!(
        after.contains("ConnectionRefusedError"),
        "C after A's quarantine: {after}"
    );

    for id in [&a, &b, &c] {
        assert_eq!(call("DELETE", &format!("/v1/workspaces/{id}"), None).0, 200);
    }
    let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
    assert!(exited.is_some(), "powered off");
    let _ = std::fs::remove_dir_all(&dir);
}
