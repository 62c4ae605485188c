use super::*;

#[test]
fn layers_apply_in_order_and_problems_name_their_origin() {
    let mut c = Config::default();
    let p = c.apply_file(
        r#"{"network":{"mode":"static","address":"192.0.2.5/24","gateway":"192.0.2.1"},"api":{"port":9443}}"#,
        "paddock.json",
    );
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(c.api_port, 9443);
    assert!(!c.test_probes, "off unless asked for");
    assert!(c
        .apply_file(r#"{"test_probes": true}"#, "test-config.json")
        .is_empty());
    assert!(c.test_probes);
    let p = c.apply_cmdline(
        "quiet paddock.ip=10.0.0.9/8 paddock.demo=1 paddock.bogus=1 paddock.api_port=x",
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].to_string().contains("paddock.bogus"));
    assert!(p[1].to_string().contains("\"x\" is not a port"));
    assert_eq!(
        c.net,
        NetMode::Static {
            address: Ipv4Addr::new(10, 0, 0, 9),
            prefix: 8,
            gateway: None
        }
    );
    assert!(c.demo_workspace);
    assert_eq!(c.api_port, 9443, "a bad override leaves the value below it");
}

#[test]
fn key_options_are_off_unless_set_and_checked() {
    let mut c = Config::default();
    assert!(!c.allow_software_keys);
    assert!(c.recovery_key_sha256.is_none());
    let good = "cd".repeat(32);
    assert!(c
        .apply_file(
            &format!(r#"{{"allow_software_keys": true, "recovery_key_sha256": "{good}"}}"#),
            "esp"
        )
        .is_empty());
    assert!(c.allow_software_keys);
    assert_eq!(c.recovery_key_sha256.as_deref(), Some(good.as_str()));
    let p = c.apply_file(r#"{"recovery_key_sha256": "my secret"}"#, "esp");
    assert!(p[0].to_string().contains("recovery_key_sha256"), "{p:?}");
    assert_eq!(
        c.recovery_key_sha256.as_deref(),
        Some(good.as_str()),
        "kept"
    );
}

#[test]
fn plain_http_is_off_unless_configured_and_checked() {
    let mut c = Config::default();
    assert_eq!(c.plain_http, None, "off by default");
    assert!(c
        .apply_file(
            r#"{"api":{"plain_http":{"interface":"eth1","port":8080}}}"#,
            "esp"
        )
        .is_empty());
    assert_eq!(
        c.plain_http,
        Some(PlainHttp {
            interface: "eth1".into(),
            port: 8080
        })
    );
    for (bad, what) in [
        (r#"{"interface":"eth1","port":0}"#, "not free"),
        (r#"{"interface":"eth1","port":80}"#, "not free"),
        (r#"{"interface":"eth1","port":20080}"#, "not free"),
        (r#"{"interface":"lo","port":8080}"#, "loopback"),
        (r#"{"interface":"pdk3","port":8080}"#, "tap"),
        (r#"{"interface":"a/b","port":8080}"#, "interface name"),
        (r#"{"interface":"eth1"}"#, "missing field"),
        (
            r#"{"interface":"eth1","port":8080,"tls":false}"#,
            "unknown field",
        ),
    ] {
        let mut c = Config::default();
        let p = c.apply_file(&format!(r#"{{"api":{{"plain_http":{bad}}}}}"#), "esp");
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert!(p[0].to_string().contains(what), "{bad}: {p:?}");
        assert_eq!(c.plain_http, None, "{bad}");
    }
    // Layers together: a later layer that moves the TLS port onto the
    // plain one turns plain HTTP off, never the TLS port.
    let mut c = Config::default();
    assert!(c
        .apply_file(
            r#"{"api":{"plain_http":{"interface":"eth1","port":9443}}}"#,
            "esp"
        )
        .is_empty());
    assert!(c.apply_cmdline("paddock.api_port=9443").is_empty());
    let p = c.finish();
    assert!(p[0].to_string().contains("plain HTTP is off"), "{p:?}");
    assert_eq!((c.plain_http, c.api_port), (None, 9443));
    let mut c = Config::default();
    assert!(c.apply_cmdline("paddock.api_port=20001").is_empty());
    assert!(c.finish()[0].to_string().contains("published"));
    assert_eq!(c.api_port, DEFAULT_API_PORT);
}

#[test]
fn a_domain_is_a_plain_dns_name() {
    let mut c = Config::default();
    assert_eq!(c.domain, None);
    assert!(c
        .apply_file(r#"{"api":{"domain":"Paddock.LAN."}}"#, "esp")
        .is_empty());
    assert_eq!(c.domain.as_deref(), Some("paddock.lan"));
    for bad in [
        "", "lan", "com", "*.lan", "a..b", "-a.lan", "a_b.lan", "a b", "x/y",
    ] {
        let mut c = Config::default();
        let p = c.apply_file(&format!(r#"{{"api":{{"domain":"{bad}"}}}}"#), "esp");
        assert!(p[0].to_string().contains("api.domain"), "{bad}: {p:?}");
        assert_eq!(c.domain, None);
    }
}

#[test]
fn a_build_time_credential_hash_is_checked() {
    let mut c = Config::default();
    let good = "AB".repeat(32);
    assert!(c
        .apply_file(&format!(r#"{{"bootstrap_admin_sha256":"{good}"}}"#), "esp")
        .is_empty());
    assert_eq!(c.bootstrap_admin_sha256, Some("ab".repeat(32)));
    let p = c.apply_file(r#"{"bootstrap_admin_sha256":"pdk_admin_plaintext"}"#, "esp");
    assert_eq!(p.len(), 1);
    assert!(p[0].to_string().contains("bootstrap_admin_sha256"), "{p:?}");
    assert_eq!(c.bootstrap_admin_sha256, Some("ab".repeat(32)), "kept");
}

#[test]
fn bad_files_are_reported_not_half_applied() {
    let mut c = Config::default();
    let p = c.apply_file("{not json", "f");
    assert_eq!(p.len(), 1);
    assert!(p[0].message.contains("not valid configuration JSON"));
    let p = c.apply_file(r#"{"surprise": 1}"#, "f");
    assert!(p[0].message.contains("unknown field"));
    let p = c.apply_file(
        r#"{"network":{"mode":"static","address":"300.1.1.1/24"}}"#,
        "f",
    );
    assert!(p[0].to_string().contains("network.address"));
    assert_eq!(c, Config::default());
    let p = c.apply_cmdline("paddock.gw=10.0.0.1");
    assert!(p[0].message.contains("needs paddock.ip"));
}

#[test]
fn template_snapshots_are_on_unless_switched_off() {
    let mut c = Config::default();
    assert!(c.template_snapshots);
    assert!(c
        .apply_file(r#"{"template_snapshots": false}"#, "esp")
        .is_empty());
    assert!(!c.template_snapshots);
    assert!(c.apply_cmdline("paddock.template_snapshots=1").is_empty());
    assert!(c.template_snapshots);
    let p = c.apply_cmdline("paddock.template_snapshots=maybe");
    assert!(p[0].to_string().contains("is not 0 or 1"), "{p:?}");
    assert!(c.template_snapshots, "a bad value leaves the one below");
    let p = c.apply_file(r#"{"template_snapshots": "no"}"#, "esp");
    assert!(!p.is_empty(), "a string is not a switch");
}
