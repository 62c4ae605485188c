//! The guest agent in a real workspace VM: one run of scenarios/agent.sh
//! (one L1 boot on the nested path) serves every test here.

use paddock_tests::harness::{agent_stage, run_script, Artifacts, Checks, Outcome};
use std::sync::OnceLock;

fn outcome() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let a = Artifacts::from_env().unwrap_or_else(|e| panic!("{e}"));
        let stage = agent_stage(&a).unwrap_or_else(|e| panic!("{e}"));
        run_script("agent.sh", &stage).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn checks() -> Checks<'static> {
    Checks::new(outcome(), "agent")
}

#[test]
fn agent_reports_ready_and_the_suite_completes() {
    let mut c = checks();
    c.eq("ws1_ready", "1")
        .eq("ws2_ready", "1")
        .eq("suite_done", "1")
        .eq("hostname", "ws1");
    c.finish();
}

#[test]
fn exec_reports_output_exit_codes_and_signals() {
    let mut c = checks();
    c.eq("python_stdout", "42")
        .eq("python_status", "code:0,signal:-,timed_out:false")
        .eq("exit3_status", "code:3,signal:-,timed_out:false")
        .eq("sigkill_status", "code:-,signal:9,timed_out:false")
        .eq("missing_binary", "NotFound")
        .eq("sigterm_status", "code:-,signal:15,timed_out:false");
    c.finish();
}

#[test]
fn stdin_and_output_stream_intact() {
    let mut c = checks();
    c.eq("stdin50_status", "code:0,signal:-,timed_out:false")
        .eq("stdin50_match", "true")
        .eq("stdout20_status", "code:0,signal:-,timed_out:false")
        .eq("stdout20_len", &(20u64 << 20).to_string())
        .eq("stdout20_match", "true")
        .eq("stderr_lines_in_order", "true")
        .eq("stream_interleaved", "true");
    c.finish();
}

#[test]
fn files_round_trip_with_permissions() {
    let mut c = checks();
    c.eq("upload100", "ok")
        .eq("download100", "ok")
        .eq("roundtrip100_len", &(100u64 << 20).to_string())
        .eq("roundtrip100_match", "true")
        .eq("uploaded_mode", "640")
        .eq("mkdir", "ok")
        .eq("list_has_d1", "true")
        .eq("remove_dir", "ok")
        .eq("stat_removed", "NotFound")
        .eq("relative_path", "InvalidRequest")
        .eq("read_missing", "NotFound");
    c.finish();
}

#[test]
fn file_operations_as_the_agent_user_are_checked_by_the_guest_kernel() {
    let mut c = checks();
    c.eq("as_agent_read_environ", "PermissionDenied")
        .eq("as_agent_read_root_file", "PermissionDenied")
        .eq("as_agent_read_via_symlink", "PermissionDenied")
        .eq("as_agent_write_etc", "PermissionDenied")
        .eq("as_agent_setuid", "InvalidRequest")
        .eq("as_agent_write_tmp", "ok")
        .eq("as_agent_owner", "1000")
        .eq("as_root_setuid", "ok")
        .eq("as_root_read_root_file", "ok")
        .eq("health_after_users", "ok");
    c.finish();
}

#[test]
fn timeouts_kill_the_tree_and_concurrent_execs_all_finish() {
    let mut c = checks();
    c.eq("timeout_status", "code:-,signal:9,timed_out:true")
        .eq("sleeps_left_after_timeout", "0")
        .eq("concurrent_ok", "20")
        .eq("sleeps_left_after_disconnect", "0");
    if let Some(ms) = c.number("timeout_elapsed_ms") {
        c.check(
            ms >= 2000,
            format!("killed after {ms} ms, before the 2 s timeout"),
        );
    }
    c.finish();
}

#[test]
fn hostile_frames_get_errors_and_the_agent_keeps_serving() {
    let mut c = checks();
    c.eq("malformed_frame", "Malformed")
        .eq("oversized_frame", "FrameTooLarge")
        .eq("unknown_operation", "UnknownOperation")
        .eq("bad_version", "UnsupportedVersion");
    let health = outcome().fact("agent", "health_after_abuse").unwrap_or("");
    c.check(
        health.starts_with("ok:"),
        format!("health after abuse: {health}"),
    );
    c.finish();
}

#[test]
fn agent_user_is_unprivileged_and_secrets_stay_in_the_process() {
    let mut c = checks();
    c.eq("agent_uid", "1000")
        .eq("agent_write_root", "refused")
        .eq("secret_seen_by_process", "true")
        .eq("secret_in_logs", "0");
    c.finish();
}

#[test]
fn writes_persist_across_a_restart_and_the_template_is_never_written() {
    let o = outcome();
    let mut c = checks();
    c.eq("persisted", "written before the restart")
        .eq("ws1_vmm_exit", "0")
        .eq("ws2_vmm_exit", "0");
    let id = o.fact("agent", "template_id").unwrap_or("");
    c.check(
        id.starts_with("paddock-template default"),
        format!("template id {id:?}"),
    );
    let before = o.fact("agent", "template_sha_before");
    c.check(
        before.is_some_and(|b| b.len() == 64),
        "template checksum missing",
    );
    c.check(
        before == o.fact("agent", "template_sha_after"),
        "the template changed",
    );
    c.finish();
}

fn snapshot_checks() -> Checks<'static> {
    Checks::new(outcome(), "snapshot")
}

/// A timing the control client printed (`ms=12.5`): present and a number.
fn timed(c: &mut Checks<'static>, key: &str) {
    timed_in(c, "snapshot", key);
}

fn timed_in(c: &mut Checks<'static>, scenario: &str, key: &str) {
    let v = outcome().fact(scenario, key);
    c.check(
        v.and_then(|v| v.parse::<f64>().ok()).is_some(),
        format!("{key}: {v:?} is not a time in ms"),
    );
}

#[test]
fn a_workspace_pauses_in_place_and_resumes_where_it_was() {
    let mut c = snapshot_checks();
    c.eq("ready", "1").eq("after_resume", "made-before");
    timed(&mut c, "pause_ms");
    timed(&mut c, "resume_ms");
    // While paused its agent answers nothing.
    let paused = outcome().fact("snapshot", "paused_exec").unwrap_or("0");
    c.check(
        paused != "0",
        format!("an exec ran while paused ({paused})"),
    );
    c.finish();
}

#[test]
fn two_workspaces_restored_from_one_snapshot_run_on_from_its_memory() {
    let mut c = snapshot_checks();
    timed(&mut c, "snapshot_ms");
    // 512 MiB of guest, written sparse: far less than that on disk.
    c.eq("memory_bytes", &(512u64 << 20).to_string());
    if let Some(kib) = c.number("memory_blocks_kib") {
        c.check(
            kib < 400 * 1024,
            format!("memory file uses {kib} KiB: not sparse"),
        );
    }
    for clone in ["a", "b"] {
        c.eq(&format!("{clone}_marker"), "made-before")
            .eq(&format!("{clone}_sleeper_alive"), "yes")
            .eq(&format!("{clone}_renew"), "0")
            .eq(&format!("{clone}_hostname"), &format!("clone-{clone}"))
            .eq(&format!("{clone}_disk_write"), clone);
        let skew = outcome()
            .fact("snapshot", &format!("{clone}_clock_skew_s"))
            .and_then(|v| v.parse::<i64>().ok());
        c.check(
            skew.is_some_and(|s| s.abs() <= 2),
            format!("clone {clone}'s clock is off by {skew:?} s after renew"),
        );
    }
    c.finish();
}

/// The clone attack: two restored copies of one VM start with the same
/// kernel RNG state; after `Renew` each must draw its own random bytes,
/// UUIDs and machine-id.
#[test]
fn restored_clones_differ_in_randomness_and_identity() {
    let o = outcome();
    let mut c = snapshot_checks();
    for what in ["random", "uuid", "machine_id"] {
        let a = o.fact("snapshot", &format!("a_{what}")).unwrap_or("");
        let b = o.fact("snapshot", &format!("b_{what}")).unwrap_or("");
        c.check(
            !a.is_empty() && a != b,
            format!("clones share their {what}: {a:?} vs {b:?}"),
        );
    }
    c.finish();
}

#[test]
fn damaged_or_mismatched_snapshots_are_refused_with_a_reason() {
    let mut c = snapshot_checks();
    c.eq("damaged_exit", "1")
        .eq("damaged_says_damaged", "1")
        .eq("mismatch_exit", "1")
        .eq("mismatch_says_size", "1");
    c.finish();
}

fn template_checks() -> Checks<'static> {
    Checks::new(outcome(), "template")
}

/// A template booted to wait, snapshotted, and two clones made workspaces
/// of their own: each with its own disk at its own size, formatted and
/// joined into the root, its name and its clock.
#[test]
fn template_clones_are_provisioned_with_their_own_disks() {
    let o = outcome();
    let mut c = template_checks();
    c.eq("ready", "1").eq("cold_reads", "pa");
    timed_in(&mut c, "template", "snapshot_ms");
    for (clone, sectors) in [("pa", "524288"), ("pb", "1048576")] {
        timed_in(&mut c, "template", &format!("{clone}_provision_ms"));
        c.eq(&format!("{clone}_disk_sectors"), sectors)
            .eq(&format!("{clone}_data_mount"), "1")
            .eq(&format!("{clone}_hostname"), clone)
            .eq(&format!("{clone}_disk_write"), clone);
        c.check(
            o.fact("template", &format!("{clone}_template_id"))
                .is_some_and(|t| !t.is_empty()),
            format!("{clone}: the template's root is not joined"),
        );
        let skew = o
            .fact("template", &format!("{clone}_clock_skew_s"))
            .and_then(|v| v.parse::<i64>().ok());
        c.check(
            skew.is_some_and(|s| s.abs() <= 2),
            format!("clone {clone}'s clock is off by {skew:?} s after provisioning"),
        );
    }
    c.finish();
}

/// The clone attack on templates: every clone starts from one RNG state,
/// so anything drawn before `Provision` reseeds it (the new filesystem's
/// UUID included) would be shared.
#[test]
fn template_clones_differ_in_randomness_identity_and_filesystem() {
    let o = outcome();
    let mut c = template_checks();
    for what in ["random", "machine_id", "fs_uuid"] {
        let a = o.fact("template", &format!("pa_{what}")).unwrap_or("");
        let b = o.fact("template", &format!("pb_{what}")).unwrap_or("");
        c.check(
            !a.is_empty() && a != b,
            format!("template clones share their {what}: {a:?} vs {b:?}"),
        );
    }
    c.finish();
}

/// `Provision` is taken once; a disk that never shows the size the host
/// gave is refused rather than formatted at the wrong size.
#[test]
fn provision_is_once_only_and_checks_the_disk_it_was_given() {
    let mut c = template_checks();
    c.eq("pa_again", "1")
        .eq("pb_again", "1")
        .eq("wrong_size", "1");
    c.finish();
}
