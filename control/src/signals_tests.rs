use super::*;
use paddock_api_types::SignalAction;

fn m(denied_total: u64, cpu_pct: Option<f64>, disk_pct: Option<f64>) -> Measures {
    Measures {
        denied_total,
        outbound_total: 0,
        cpu_pct,
        disk_pct,
    }
}

#[test]
fn an_agent_calling_out_in_a_loop_raises_outbound_rate() {
    let w = Watch::default();
    let r = rules(r#"{"outbound_rate": {"threshold": 100, "window_s": 60}}"#);
    let at = |t, total| {
        w.sample(
            "ws_out",
            &r,
            t,
            Measures {
                outbound_total: total,
                ..Measures::default()
            },
        )
    };
    // 10 a sample (every 5 s): 120 a minute, but the first minute is
    // still filling.
    let mut fired = Vec::new();
    for (i, t) in (0..=60).step_by(5).enumerate() {
        fired.extend(at(t, 10 * i as u64));
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].signal, "outbound_rate");
    assert!(fired[0].value >= 100);
    // Calm: 1 a sample, it stops holding; no second firing meanwhile.
    let mut total = 120;
    for t in (65..=200).step_by(5) {
        total += 1;
        assert!(at(t, total).is_empty(), "{t}");
    }
}

fn rules(json: &str) -> SignalRules {
    serde_json::from_str(json).expect("rules")
}

#[test]
fn a_burst_of_refusals_fires_once_until_it_calms_down() {
    let w = Watch::default();
    let r = rules(r#"{"denied_burst": {"threshold": 10, "window_s": 30, "action": "stop"}}"#);
    // A trickle (1 per 5 s sample, 6 in any 30 s) stays under it.
    let mut total = 0;
    for t in (0..60).step_by(5) {
        total += 1;
        assert!(
            w.sample("ws_a", &r, t, m(total, None, None)).is_empty(),
            "{t}"
        );
    }
    // A burst: 12 in one sample.
    total += 12;
    let fired = w.sample("ws_a", &r, 60, m(total, None, None));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].signal, "denied_burst");
    assert!(fired[0].value >= 10);
    assert_eq!(fired[0].rule.action, SignalAction::Stop);
    // Still holding: not again.
    total += 12;
    assert!(w.sample("ws_a", &r, 65, m(total, None, None)).is_empty());
    // Quiet past the window, then another burst fires again.
    for t in (70..=110).step_by(5) {
        assert!(w.sample("ws_a", &r, t, m(total, None, None)).is_empty());
    }
    total += 15;
    assert_eq!(w.sample("ws_a", &r, 115, m(total, None, None)).len(), 1);
    assert_eq!(w.counts(), vec![("ws_a".to_string(), "denied_burst", 2)]);
}

#[test]
fn the_same_command_failing_fires_a_success_resets_it_and_others_do_not_add_up() {
    let w = Watch::default();
    let r = rules(r#"{"repeated_failure": {"threshold": 3, "window_s": 100}}"#);
    assert!(w.command_ended("ws_a", &r, 0, "pytest", true).is_none());
    assert!(w.command_ended("ws_a", &r, 1, "pytest", true).is_none());
    // A success of it: its failures before no longer count.
    assert!(w.command_ended("ws_a", &r, 2, "pytest", false).is_none());
    assert!(w.command_ended("ws_a", &r, 3, "pytest", true).is_none());
    assert!(w.command_ended("ws_a", &r, 4, "pytest", true).is_none());
    // Different commands failing do not add up.
    for (n, c) in ["a", "b", "c", "d"].iter().enumerate() {
        assert!(w.command_ended("ws_a", &r, 5 + n as u64, c, true).is_none());
    }
    let f = w
        .command_ended("ws_a", &r, 10, "pytest", true)
        .expect("fired");
    assert_eq!((f.signal, f.value), ("repeated_failure", 3));
    assert!(
        w.command_ended("ws_a", &r, 11, "pytest", true).is_none(),
        "once"
    );
    // Another workspace has its own count.
    assert!(w.command_ended("ws_b", &r, 11, "pytest", true).is_none());
    // Failures older than the window fall out.
    let w = Watch::default();
    for t in [0, 60, 120, 180] {
        assert!(
            w.command_ended("ws_a", &r, t, "slow", true).is_none(),
            "{t}"
        );
    }
}

#[test]
fn a_guest_running_endless_distinct_commands_stays_bounded() {
    let w = Watch::default();
    let r = rules("{}");
    for n in 0..10_000u64 {
        let _ = w.command_ended("ws_a", &r, n / 100, &format!("cmd{n}"), true);
    }
    let all = w.all.lock().expect("lock");
    assert!(all["ws_a"].failures.len() <= MAX_COMMANDS);
}

#[test]
fn cpu_must_stay_pinned_for_the_window_and_a_disk_fires_when_full() {
    let w = Watch::default();
    let r = rules(
        r#"{"cpu_pinned": {"threshold": 90, "window_s": 20}, "disk_full": {"threshold": 80}}"#,
    );
    assert!(w
        .sample("ws_a", &r, 0, m(0, Some(99.0), Some(10.0)))
        .is_empty());
    assert!(w
        .sample("ws_a", &r, 10, m(0, Some(50.0), Some(10.0)))
        .is_empty());
    for t in [15, 20, 25, 30] {
        assert!(
            w.sample("ws_a", &r, t, m(0, Some(97.0), Some(10.0)))
                .is_empty(),
            "{t}"
        );
    }
    let f = w.sample("ws_a", &r, 35, m(0, Some(97.0), Some(85.0)));
    let names: Vec<&str> = f.iter().map(|f| f.signal).collect();
    assert_eq!(names, ["cpu_pinned", "disk_full"]);
}

#[test]
fn a_signal_turned_off_never_fires_and_forgotten_workspaces_go() {
    let w = Watch::default();
    let r = rules(r#"{"disk_full": {"threshold": 1, "off": true}}"#);
    assert!(w.sample("ws_a", &r, 0, m(0, None, Some(100.0))).is_empty());
    w.keep_only(&[]);
    assert!(w.all.lock().expect("lock").is_empty());
}
