//! The API process itself: TLS on the API port, served by hyper on a small
//! tokio runtime (one connection's life in crate::conn, bounded by
//! crate::admission, each endpoint's handler in crate::dispatch), answers
//! built from what host-init says over the channel.

use crate::admission::Admission;
use crate::conn::{serve_connection, Transport};
use crate::shared::{Shared, MAX_ASKING};
use paddock_api_channel::{Endpoint, Init, Started, CHANNEL_FD};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

fn tls_config(init: &Init) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(init.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e:?}"))?;
    let key = PrivateKeyDer::from_pem_slice(init.key_pem.as_bytes())
        .map_err(|e| format!("key: {e:?}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())
}

/// Pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Threads that serve connections and everything before admission.
const WORKER_THREADS: usize = 2;
/// Most handlers running at once. Only admitted requests get one: tenants'
/// are capped by admission, and beyond those are admins' own.
const MAX_HANDLERS: usize = 512;
/// Each thread's stack (std's default is 2 MiB): TLS, the JSON parser (its
/// recursion stops at 128 levels) and the agent client fit in a fraction
/// of this.
const THREAD_STACK: usize = 512 << 10;
/// Descriptors the API process may hold: each connection takes its socket,
/// and each request an exchange with host-init and perhaps an agent
/// connection.
const OPEN_FILES: u64 = 8192;

/// Raises the soft limit on open descriptors toward `OPEN_FILES` (within
/// the hard limit), before the seccomp filter forbids it.
fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(OPEN_FILES).max(lim.rlim_cur);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Keeps freed memory from piling up under the memory cgroup's limit.
/// glibc gives each of many threads its own arena (up to 8 per core), each
/// keeping what its thread freed, and raises its mmap threshold after every
/// large free, so the next large buffers (a parsed body, a TLS record) land
/// in arenas and stay there: RSS creeps up with the number of threads that
/// ever parsed something big. Two arenas and a fixed threshold give large
/// buffers back to the kernel when freed.
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread of ours is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Entry point of `paddock-init api-server`.
pub fn main() -> std::process::ExitCode {
    // SAFETY: host-init placed the control socket (SOCK_SEQPACKET) at
    // CHANNEL_FD before exec; this process owns it from here on.
    let control = unsafe { Endpoint::from_raw(CHANNEL_FD) };
    tune_allocator();
    let init: Init = match control.recv() {
        Ok((i, _)) => i,
        Err(e) => {
            eprintln!("paddock-api: reading start-up message: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let fail = |control: &Endpoint, msg: String| {
        let _ = control.send(
            &Started {
                port: None,
                error: Some(msg.clone()),
                plain_port: None,
                plain_error: None,
            },
            None::<&OwnedFd>,
        );
        eprintln!("paddock-api: {msg}");
        std::process::ExitCode::from(1)
    };
    let mut tls = match tls_config(&init) {
        Ok(t) => t,
        Err(e) => return fail(&control, format!("TLS configuration: {e}")),
    };
    let mut tls_h1 = tls.clone();
    tls_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = match std::net::TcpListener::bind(("0.0.0.0", init.port)) {
        Ok(l) => l,
        Err(e) => return fail(&control, format!("binding port {}: {e}", init.port)),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        return fail(&control, format!("listening socket: {e}"));
    }
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(init.port);
    // A plain listener that cannot bind (its interface absent, its port
    // taken) is reported; the TLS port serves regardless, so a bad
    // setting never leaves the box unreachable.
    let (plain, plain_error) = match init.plain_http.as_ref().map(crate::plain::bind) {
        None => (None, None),
        Some(Ok(l)) => (Some(l), None),
        Some(Err(e)) => (None, Some(e.to_string())),
    };
    let plain_port = plain
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port());
    raise_open_files();
    if let Err(e) = crate::sandbox::apply() {
        return fail(&control, e.to_string());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(MAX_HANDLERS)
        .thread_stack_size(THREAD_STACK)
        .enable_io()
        .enable_time()
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => return fail(&control, format!("starting the runtime: {e}")),
    };
    let listeners = runtime.block_on(async {
        let tls = tokio::net::TcpListener::from_std(listener)?;
        let plain = plain.map(tokio::net::TcpListener::from_std).transpose()?;
        Ok::<_, std::io::Error>((tls, plain))
    });
    let (listener, plain) = match listeners {
        Ok(l) => l,
        Err(e) => return fail(&control, format!("listening socket: {e}")),
    };
    let started = Started {
        port: Some(port),
        error: None,
        plain_port,
        plain_error,
    };
    if control.send(&started, None::<&OwnedFd>).is_err() {
        return std::process::ExitCode::from(1);
    }
    let shared = Arc::new(Shared {
        tls: Arc::new(tls),
        tls_h1: Arc::new(tls_h1),
        control,
        admission: Arc::new(Admission::default()),
        asking: tokio::sync::Semaphore::new(MAX_ASKING),
        // E2B's SDK puts no port in the host names it makes from this:
        // off 443, the port goes with the domain (E2B_DOMAIN=box.lan:8443).
        domain: init.domain.as_ref().map(|d| match port {
            443 => d.clone(),
            p => format!("{d}:{p}"),
        }),
        sessions: Default::default(),
    });
    if let Some(plain) = plain {
        runtime.spawn(accept_loop(shared.clone(), plain, Transport::Plain));
    }
    runtime.block_on(accept_loop(shared, listener, Transport::Tls));
    std::process::ExitCode::SUCCESS
}

async fn accept_loop(shared: Arc<Shared>, listener: tokio::net::TcpListener, via: Transport) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of descriptors or memory: the pending connection
                // stays queued, so retrying at once would spin on it.
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Over the caps a client gets an overflow slot (health, admins,
        // else 503); over those too it is closed unread. Both listeners
        // share the caps.
        let Some(slot) = shared.admission.connect(peer.ip()) else {
            continue;
        };
        tokio::spawn(serve_connection(shared.clone(), tcp, peer.ip(), slot, via));
    }
}
