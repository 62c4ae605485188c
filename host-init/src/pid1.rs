//! PID 1's life: bring the box up step by step, then supervise it forever.
//! The main thread only handles signals (SIGCHLD → reap, SIGTERM/SIGPWR →
//! power off, SIGINT from Ctrl-Alt-Del → reboot); everything else runs on
//! threads that inherit its blocked signal mask.

use crate::api::channel::{Init, StatusReply};
use crate::children::CHILDREN;
use crate::config::{Config, CONFIG_FILE};
use crate::shutdown::{self, Then};
use crate::status::SCREEN;
use crate::{entropy, error, fatal, info, log, modules, mounts, net, power, storage, tls, warn};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::time::{Duration, Instant};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGPWR,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Descriptors PID 1 may hold. The kernel starts init with 1024: one
/// workspace holding its share of proxied connections (256, two
/// descriptors each) plus the API's exchanges ran host-init out, and the
/// API's next request lost its socket. This is above the sum of every
/// pool it serves (proxy 4096 x 2, resolver, 512 exchanges, workspaces).
const MAX_DESCRIPTORS: u64 = 65_536;

fn raise_descriptor_limit() {
    let lim = libc::rlimit {
        rlim_cur: MAX_DESCRIPTORS,
        rlim_max: MAX_DESCRIPTORS,
    };
    // SAFETY: setrlimit with a pointer to a local struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } < 0 {
        warn!(
            "raising the descriptor limit to {MAX_DESCRIPTORS}: {}",
            std::io::Error::last_os_error()
        );
    }
}

pub fn run() -> ! {
    fatal::install_panic_hook();
    // Before any thread exists: every thread inherits this mask, so the
    // handled signals reach only the signalfd below. A thread that left
    // one unblocked would take it with its default action, and PID 1's
    // exit panics the kernel.
    let signals = handled_signals();
    let blocked = signals.thread_block();
    if let Err(e) = mounts::early() {
        log::init();
        fatal::die(&e.to_string());
    }
    log::init();
    if let Err(e) = blocked {
        fatal::die(&format!("blocking signals: {e}"));
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    info!("Paddock {VERSION} starting on Linux {}", kernel_release());
    raise_descriptor_limit();
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        warn!("Ctrl-Alt-Del stays a hard reset: {e}");
    }
    let sfd = match SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => fatal::die(&format!("signalfd: {e}")),
    };
    let _ = std::thread::Builder::new()
        .name("status".into())
        .spawn(|| SCREEN.run());
    let started = Instant::now();
    let boot_cmdline = cmdline.clone();
    let _ = std::thread::Builder::new()
        .name("boot".into())
        .spawn(move || boot(&boot_cmdline, started));
    supervise(sfd)
}

fn supervise(sfd: SignalFd) -> ! {
    loop {
        match sfd.read_signal() {
            Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => {}
                Ok(Signal::SIGTERM) => shutdown::begin(Then::PowerOff, "SIGTERM"),
                Ok(Signal::SIGPWR) => shutdown::begin(Then::PowerOff, "power button or SIGPWR"),
                Ok(Signal::SIGINT) => shutdown::begin(Then::Reboot, "Ctrl-Alt-Del"),
                _ => {}
            },
            Ok(None) => {}
            Err(nix::Error::EINTR) => {}
            Err(e) => {
                error!("reading signals: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // SIGCHLDs coalesce: always collect everything that ended.
        CHILDREN.reap_all();
    }
}

fn boot(cmdline: &str, started: Instant) {
    SCREEN.update(|s| {
        s.version = VERSION.into();
        s.kernel = kernel_release();
        s.state = "starting".into();
        s.tpm = false;
    });
    modules::load_all();
    modules::disable_loading();
    if let Err(e) = mounts::efivars() {
        warn!("{e}");
    }
    let tpm = entropy::tpm_present();
    entropy::seed();
    SCREEN.update(|s| s.tpm = tpm);

    let booted = crate::slot::Booted::read();
    let data = match storage::prepare(booted.slot) {
        Ok(d) => d,
        Err(e) => {
            enter_error(&e.to_string());
            error!("the box stays up without its data: no API, no workspaces; no data on the partition was touched");
            return;
        }
    };
    if data.formatted {
        info!("created the data filesystem on {}", data.data_dev);
    }
    let clean = match data.was_clean {
        None => "new filesystem".to_string(),
        Some(true) => "clean".to_string(),
        Some(false) => "journal recovered (last shutdown was not clean)".to_string(),
    };
    info!(
        "data partition {} on {}: {} MiB, {}{}",
        data.data_dev,
        data.disk,
        data.size_bytes >> 20,
        clean,
        if data.grew {
            ", grown to fill the disk"
        } else {
            ""
        }
    );
    SCREEN.update(|s| {
        s.data = Some(format!(
            "{} ({} MiB, {clean})",
            data.data_dev,
            data.size_bytes >> 20
        ))
    });

    let mut cfg = Config::default();
    let mut problems = Vec::new();
    let esp = match &data.esp_dev {
        Some(dev) => storage::read_esp(dev).unwrap_or_else(|e| {
            warn!("{e}");
            storage::EspFiles::default()
        }),
        None => storage::EspFiles::default(),
    };
    crate::slot::set_slots(if data.esp_dev.is_some() && booted.slot.is_some() {
        crate::slot::describe(&esp.slots, &booted)
    } else {
        Vec::new()
    });
    if let Some(text) = &esp.config {
        info!("configuration from the ESP ({})", storage::ESP_CONFIG);
        problems.extend(cfg.apply_file(text, &format!("ESP:{}", storage::ESP_CONFIG)));
    }
    if let Ok(text) = std::fs::read_to_string(CONFIG_FILE) {
        info!("configuration from {CONFIG_FILE}");
        problems.extend(cfg.apply_file(&text, CONFIG_FILE));
    }
    problems.extend(cfg.apply_cmdline(cmdline));
    problems.extend(cfg.finish());
    for p in &problems {
        error!("configuration: {p} (ignored)");
    }
    if !problems.is_empty() {
        SCREEN.update(|s| {
            s.notes.push(format!(
                "{} configuration problem(s), see the log",
                problems.len()
            ))
        });
    }
    fatal::set_halt_on_fatal(cfg.halt_on_fatal);

    // The disk keys before anything that could start a workspace. A key
    // store that will not open (another boot state, no TPM) leaves every
    // workspace's data untouched; the API still serves, to recover.
    let keys = crate::keys::init(&crate::keys::Options {
        tpm: crate::keys::TpmSource::Device(crate::keys::TPM_DEVICE.into()),
        pcrs: crate::keys::DEFAULT_PCRS.to_vec(),
        allow_software_keys: cfg.allow_software_keys,
        recovery_key_sha256: cfg.recovery_key_sha256.clone(),
        signed: signed_images(&esp.pcr_signatures),
    });
    if keys.ready {
        info!("disk keys: {}", keys.summary);
    } else {
        error!("disk keys: {}", keys.summary);
    }
    SCREEN.update(|s| {
        s.keys = Some(keys.summary.clone());
        s.recovery_secret = keys.recovery_secret.clone();
    });

    if let Some(d) = &cfg.domain {
        tls::set_domain(d);
    }
    let (identity, fresh) =
        match tls::load_or_create(&std::path::Path::new(storage::DATA_MOUNT).join("state")) {
            Ok(i) => i,
            Err(e) => return enter_error(&e.to_string()),
        };
    if fresh {
        info!("made the API's TLS certificate");
    }
    info!("API TLS certificate SHA-256 {}", identity.fingerprint);
    if let Some(d) = &cfg.domain {
        if !tls::names_domain(&identity.cert_pem, d) {
            warn!(
                "the API's certificate does not name *.{d} (it was made before api.domain was set): POST /v1/tls/rotate makes one that does (its fingerprint changes)"
            );
        }
    }
    SCREEN.update(|s| s.fingerprint = Some(identity.fingerprint.clone()));
    let data_root = std::path::Path::new(storage::DATA_MOUNT);
    // What the control plane decides and only PID 1 can do, from here on.
    crate::host::install();
    let control = match crate::control::service::Control::open(
        &data_root.join("state"),
        &data_root.join("audit"),
        data.template_dev.clone(),
    ) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => return enter_error(&e.to_string()),
    };
    use crate::bootstrap::Bootstrap;
    match crate::bootstrap::ensure(
        &data_root.join("state"),
        cfg.bootstrap_admin_sha256.as_deref(),
    ) {
        Ok(Bootstrap::Made { secret, hash }) => {
            if let Err(e) = control.add_bootstrap(&hash) {
                error!("recording the bootstrap credential: {e}");
            }
            SCREEN.update(|s| s.bootstrap_credential = Some(secret));
        }
        Ok(Bootstrap::Given { hash }) => {
            if let Err(e) = control.add_bootstrap(&hash) {
                error!("recording the bootstrap credential: {e}");
            }
            info!("bootstrap admin credential: the one chosen when the image was built");
        }
        Ok(Bootstrap::Exists) => {}
        Err(e) => warn!("{e}"),
    }
    if let Some(t) = &data.template_dev {
        if let Err(e) = crate::control::runner::prepare_host(t) {
            warn!("workspaces may not start: {e}");
        }
    }
    // Snapshots of an earlier boot (perhaps of another image) are never
    // restored; this boot's are built below, once the box is up.
    crate::control::template_snapshots::clear();
    if !cfg.template_snapshots {
        // Before the API serves: no create may ask for one.
        crate::control::template_snapshots::disable();
        info!("template snapshots are off (config): every workspace boots its kernel");
    }
    if cfg.test_probes {
        if control.enable_test_probes() {
            warn!(
                "test probes are on (config test_probes): an image for the test suite, not for use"
            );
            SCREEN.update(|s| s.notes.push("TEST IMAGE: test probes on".into()));
        } else {
            warn!("the configuration asks for test probes; this build has none (a product image), so they stay off");
        }
    }
    control.recover_after_boot();
    control.drop_restore_leftovers();
    let ballast = std::path::Path::new(crate::control::space::BALLAST);
    if let Err(e) =
        crate::control::space::keep_ballast(ballast, crate::control::space::BALLAST_BYTES)
    {
        warn!(
            "data partition ballast {}: {e}; deletes on a full partition may fail",
            ballast.display()
        );
    }
    shutdown::set_control(control.clone());
    crate::control::service::register(control.clone());
    {
        let c = control.clone();
        let _ = std::thread::Builder::new()
            .name("ttl".into())
            .spawn(move || c.expire_loop());
    }
    {
        let c = control.clone();
        let _ = std::thread::Builder::new()
            .name("samples".into())
            .spawn(move || c.sample_loop());
    }

    if power::listen() == 0 {
        warn!("no power button found: ACPI power-off will not shut the box down in order");
    }

    if let Some(hook) = cfg.webhook.clone() {
        info!(
            "webhook: {} event kinds to {}://{}:{}",
            hook.events.len(),
            if hook.target.tls { "https" } else { "http" },
            hook.target.host,
            hook.target.port
        );
        crate::notify::start(hook);
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "/init".into());
    let init = Init {
        cert_pem: identity.cert_pem.clone(),
        key_pem: identity.key_pem.clone(),
        port: cfg.api_port,
        plain_http: cfg.plain_http.clone(),
        domain: cfg.domain.clone(),
    };
    // Before anything can create a workspace: the firewall (which also
    // turns forwarding on, only once its table is in), the resolver and
    // the proxy. If the firewall cannot be installed, workspaces are
    // refused rather than started unfenced.
    crate::net_services::start_workspace_network(exe.clone());
    let port = start_api(exe, init, control, started);

    // The network comes last among the essentials: DHCP may take a while,
    // and the API is already listening on every address it will get.
    match net::bring_up(cfg.interface.as_deref(), &cfg.net, &cfg.dns) {
        Ok(up) => {
            let addr = format!(
                "{} {}/{} ({})",
                up.interface, up.address, up.prefix, up.source
            );
            info!(
                "network: {addr}, gateway {}, dns {:?}",
                up.gateway
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "none".into()),
                up.dns
            );
            crate::net_services::set_resolvers(&up.dns, &[up.address]);
            SCREEN.update(|s| {
                s.addresses = vec![addr];
                if let Some(p) = port {
                    s.api_url = Some(format!("https://{}:{p}/", up.address));
                }
            });
            if up.source == "dhcp" {
                net::keep_lease(up.clone(), move |u| {
                    crate::net_services::set_resolvers(&u.dns, &[u.address]);
                    SCREEN.update(|s| {
                        s.addresses = vec![format!(
                            "{} {}/{} ({})",
                            u.interface, u.address, u.prefix, u.source
                        )];
                        if let Some(p) = port {
                            s.api_url = Some(format!("https://{}:{p}/", u.address));
                        }
                    })
                });
            }
        }
        Err(e) => {
            error!("network: {e}");
            SCREEN.update(|s| s.notes.push(format!("network: {e}")));
        }
    }
    if !shutdown::in_progress() {
        SCREEN.update(|s| s.state = "ready".into());
    }
    info!(
        "ready {:.1} s after host-init started",
        started.elapsed().as_secs_f64()
    );

    crate::update::init(crate::update::Context {
        booted: booted.clone(),
        running_version: esp
            .slots
            .iter()
            .find(|f| Some(f.name.slot) == booted.slot)
            .and_then(|f| f.version.clone())
            .unwrap_or_else(|| VERSION.to_string()),
        esp_dev: data.esp_dev.clone(),
        other_template: data.other_template.clone(),
    });
    // Workspaces paused for the reboot into this boot run again: now, or
    // once a slot on trial proved itself (assess).
    if booted.on_trial.is_none() {
        crate::control::service::resume_after_reboot_soon();
    }
    // A slot on trial proves itself before it is blessed (or reboots).
    crate::assess::start(crate::assess::Found {
        esp_dev: data.esp_dev.clone(),
        keys_ready: keys.ready,
        keys_summary: keys.summary.clone(),
        api_port: port,
        template_dev: data.template_dev.clone(),
        tries_left: esp
            .slots
            .iter()
            .find(|f| Some(f.name.slot) == booted.slot)
            .and_then(|f| f.name.tries.map(|(left, _)| left))
            .unwrap_or(0),
        fallback: esp
            .slots
            .iter()
            .any(|f| Some(f.name.slot) != booted.slot && !f.name.is_bad()),
        booted,
    });
    if cfg.template_snapshots && std::path::Path::new("/dev/kvm").exists() {
        if let Some(t) = &data.template_dev {
            crate::control::template_snapshots::request(
                crate::control::template_snapshots::Shape::default_workspace(),
                t,
            );
        }
    }
    if cfg.demo_workspace {
        match data.template_dev {
            Some(t) => crate::demo::start(t),
            None => warn!("demo workspace: the image has no template partition"),
        }
    }
}

/// The image key in the image and the signatures on the ESP: what the
/// disk keys are sealed to when this image is signed (keys::signed). An
/// image without the key (built before there was one) seals to raw PCRs.
fn signed_images(files: &[(String, Vec<u8>)]) -> Option<crate::keys::signed::SignedImages> {
    use crate::keys::signed::{SignedImages, POLICY_KEY_FILE};
    // Without Secure Boot anything can boot and replay systemd-stub's PCR
    // 11 extends, and PCR 7 says nothing: the raw PCRs (4 binds the loader
    // the firmware ran) are then the stronger seal. Test images take the
    // signed seal regardless, so the suite (booted without Secure Boot)
    // exercises it; the ESP cannot turn that on, it is the build's.
    let secure_boot = crate::slot::secure_boot();
    info!(
        "Secure Boot is {}",
        if secure_boot {
            "on: the firmware verified the boot manager, and it this image"
        } else {
            "off"
        }
    );
    if !secure_boot && !cfg!(feature = "test-probes") {
        info!("Secure Boot is off: disk keys are sealed to this boot's raw PCRs, not to signed images (docs/keys.md)");
        return None;
    }
    let key = match std::fs::read(POLICY_KEY_FILE) {
        Ok(k) => k,
        Err(e) => {
            warn!("no image key ({POLICY_KEY_FILE}: {e}): disk keys are sealed to raw PCRs");
            return None;
        }
    };
    match SignedImages::gather(&key, files) {
        Ok((images, left_out)) => {
            for why in left_out {
                warn!("a PCR signature on the ESP was left out: {why}");
            }
            info!(
                "image key {}…, {} PCR signature(s) on the ESP",
                &images.key_name()[..16],
                images.signatures.len()
            );
            Some(images)
        }
        Err(e) => {
            error!("{POLICY_KEY_FILE}: {e}");
            None
        }
    }
}

/// Starts the API process and keeps it running: when it ends (a crash, a
/// seccomp kill) it is started again after a pause, unless the box is
/// shutting down. Returns the port it serves.
fn start_api(
    exe: std::path::PathBuf,
    init: Init,
    control: std::sync::Arc<crate::control::service::Control>,
    started: Instant,
) -> Option<u16> {
    use crate::api::supervisor::{spawn, API_GID, API_UID};
    let plain = init.plain_http.clone();
    let domain = init.domain.clone();
    let spawn_once = move || {
        let c = control.clone();
        spawn(
            &exe,
            &crate::api::supervisor::current_init(&init),
            Some((API_UID, API_GID)),
            move || StatusReply {
                version: VERSION.into(),
                state: SCREEN.get().state,
                workspaces: crate::workspaces::count(),
                uptime_s: started.elapsed().as_secs(),
            },
            move |auth, call| c.call(auth, call),
        )
        .inspect(|r| {
            if let Err(e) = crate::api::supervisor::confine_memory(r.pid) {
                warn!("the API process's memory cgroup: {e}");
            }
        })
    };
    let first = match spawn_once() {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            SCREEN.update(|s| s.error = Some(e.to_string()));
            return None;
        }
    };
    info!(
        "API serving TLS on port {} (pid {}, uid {API_UID})",
        first.port, first.pid
    );
    if let (Some(plain), Some(p)) = (&plain, first.plain_port) {
        warn!(
            "API also serving plain HTTP (no TLS: tokens cross in the clear) on port {p}, interface {} only",
            plain.interface
        );
        let note = format!("plain HTTP on {} port {p} (no TLS)", plain.interface);
        SCREEN.update(|s| s.notes.push(note));
    }
    if let Some(why) = &first.plain_error {
        error!("plain HTTP is not serving: {why}");
        let note = format!("plain HTTP NOT serving: {why}");
        SCREEN.update(|s| s.notes.push(note));
    }
    if let Some(d) = &domain {
        SCREEN.update(|s| s.notes.push(format!("E2B domain {d}")));
    }
    shutdown::set_api_pid(first.pid);
    let port = first.port;
    let mut pid = first.pid;
    let _ = std::thread::Builder::new()
        .name("api-watch".into())
        .spawn(move || loop {
            let exit = CHILDREN.wait(pid, None);
            if shutdown::in_progress() {
                return;
            }
            warn!(
                "the API process ended ({}); starting it again",
                exit.map(|e| e.to_string()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_secs(1));
            loop {
                match spawn_once() {
                    Ok(r) => {
                        shutdown::set_api_pid(r.pid);
                        pid = r.pid;
                        break;
                    }
                    Err(e) => {
                        error!("{e}");
                        std::thread::sleep(Duration::from_secs(5));
                    }
                }
            }
        });
    Some(port)
}

/// The box stays up, showing why it cannot serve.
fn enter_error(why: &str) {
    error!("{why}");
    SCREEN.update(|s| {
        s.state = "error".into();
        s.error = Some(why.to_string());
    });
}
