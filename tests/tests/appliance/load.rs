//! The appliance's API under load from many clients (issue 15): a thousand
//! connections at once from twenty addresses, two hundred of them sending
//! their heads a byte a second, while `/v1/health` and an exec in a real
//! workspace keep answering. The appliance's uplink is a tap in a network
//! namespace this test makes (QEMU's user-mode network would show every
//! client as one address, and the API's caps are per address), with a
//! static address; nothing leaves the namespace. Bounded loops that end on
//! their own; the figures printed are for reading, not asserted.

use super::*;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use paddock_tests::fakenet::{enter, ip};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const TAP: &str = "pdkload0";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const BOX: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Kept-alive clients on HTTP/2, each asking every `ASK_EVERY` with a
/// tenant's token (the API keeps a connection open only while admitted
/// requests use it, so health pollers cannot hold slots: 30 s on HTTP/2,
/// 10 s on HTTP/1.1), and slow ones on HTTP/1.1.
const BUSY: usize = 800;
const SLOW: usize = 200;
/// Connections per client address (the API's cap is 64 per address).
const PER_ADDRESS: usize = 50;
const LOADERS: usize = 8;
const ASK_EVERY: Duration = Duration::from_secs(20);
/// Each loader opens a connection at most this often (16 a second in
/// all), a pace the emulated appliance (one TCG vCPU) serves while it
/// answers the connections already open.
const OPEN_EVERY: Duration = Duration::from_millis(500);
/// Tenants the busy clients ask as, 20 connections each, dealt out in
/// turn as the loaders open them: a tenant's 20, opened over the whole
/// opening and each asking every `ASK_EVERY`, reach the tenant cap of 8
/// requests in flight only if an answer takes 8 s.
const TENANTS: usize = 40;
/// How long the whole load is held once every connection is open.
const HOLD: Duration = Duration::from_secs(60);
/// Hang guard on the hold's wait for the slow heads to be cut.
const SLOW_CUT_GUARD: Duration = Duration::from_secs(600);

/// The i-th client address (198.51.100.100 on).
fn client(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 100 + i as u8)
}

/// A namespace of this test's, removed on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let ns = Netns(format!("pdk-load-{}", std::process::id()));
        // One left by an earlier run of this pid; usually there is none.
        let _ = ip(&["netns", "del", &ns.0]);
        ip(&["netns", "add", &ns.0]).expect("a namespace (needs root)");
        let run = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.0, "ip"];
            all.extend_from_slice(args);
            ip(&all).expect("the namespace's network");
        };
        run(&["link", "set", "lo", "up"]);
        run(&["tuntap", "add", "dev", TAP, "mode", "tap"]);
        run(&["addr", "add", &format!("{GATEWAY}/24"), "dev", TAP]);
        for i in 0..(BUSY + SLOW).div_ceil(PER_ADDRESS) {
            run(&["addr", "add", &format!("{}/24", client(i)), "dev", TAP]);
        }
        run(&["link", "set", TAP, "up"]);
        ns
    }

    fn prefix(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.0.clone()]
    }

    /// Its name, for the load's threads to `enter`.
    fn name(&self) -> Arc<str> {
        self.0.as_str().into()
    }

    /// curl in the namespace: (status, body).
    fn curl(&self, args: &[&str]) -> (String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "curl", "-sk", "--max-time", "120"])
            .args(["-H", "Content-Type: application/json"])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_string(), body.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

/// The load's threads: told to stop and joined when dropped, so a failed
/// assertion leaves none running into the next test.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The load's TLS: any certificate (what is under test is the API's
/// admission, not its identity, which the other appliance tests pin).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(alpn: &[u8]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to the API from `from` (in the namespace the calling
/// thread is in), its handshake done; or why not.
/// A TCP connection to the API from `from` (in the namespace the calling
/// thread is in).
fn tcp_from(from: Ipv4Addr) -> Result<TcpStream, String> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )
    .map_err(|e| format!("bind {from}: {e}"))?;
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(BOX, 8443)),
    )
    .map_err(|e| format!("connect from {from}: {e}"))?;
    Ok(TcpStream::from(fd))
}

/// A slow client's HTTP/1.1 connection, its TLS handshake done.
fn open(config: &Arc<ClientConfig>, from: Ipv4Addr) -> Result<Tls, String> {
    let sock = tcp_from(from)?;
    let timeout = Some(Duration::from_secs(20));
    sock.set_read_timeout(timeout)
        .and_then(|()| sock.set_write_timeout(timeout))
        .map_err(|e| format!("timeouts: {e}"))?;
    let name = ServerName::try_from("paddock.test").map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.conn
        .complete_io(&mut tls.sock)
        .map_err(|e| format!("TLS handshake from {from}: {e}"))?;
    Ok(tls)
}

/// A busy client's connection: HTTP/2, which the API keeps open 30 s
/// between requests (an HTTP/1.1 connection only 10 s: the head deadline).
type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// How long one step of a busy client may take before it counts as failed.
const STEP: Duration = Duration::from_secs(20);

async fn open_h2(config: &Arc<ClientConfig>, from: Ipv4Addr) -> Result<H2, String> {
    let sock = tcp_from(from)?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::from_std(sock).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("paddock.test").map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("TLS handshake from {from}: no answer in {STEP:?}"))?
    .map_err(|e| format!("TLS handshake from {from}: {e}"))?;
    let (send, conn) = tokio::time::timeout(
        STEP,
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)),
    )
    .await
    .map_err(|_| format!("HTTP/2 from {from}: no settings in {STEP:?}"))?
    .map_err(|e| format!("HTTP/2 from {from}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// One request on a busy client's connection: Ok when a 200 came back
/// whole, or why not.
async fn ask_h2(send: &mut H2, bearer: &str) -> Result<(), String> {
    let step = async {
        send.ready()
            .await
            .map_err(|e| format!("the connection: {e}"))?;
        let request = hyper::Request::get("https://paddock.test/v1/workspaces")
            .header(hyper::header::AUTHORIZATION, bearer)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let answer = send
            .send_request(request)
            .await
            .map_err(|e| format!("the request: {e}"))?;
        let status = answer.status();
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the answer's body: {e}"))?
            .to_bytes();
        match status.as_u16() {
            200 => Ok(()),
            code => Err(format!("{code}: {}", String::from_utf8_lossy(&body))),
        }
    };
    tokio::time::timeout(STEP, step)
        .await
        .map_err(|_| format!("no answer in {STEP:?}"))?
}

/// 429s the busy clients were given and asked again after (the API's
/// per-address and per-tenant caps answering a burst: "retry shortly").
static RETRIED: AtomicUsize = AtomicUsize::new(0);
/// How often, and how far apart, a refused request is asked again: within
/// the API's idle limit, which only an admitted request resets.
const RETRIES: usize = 15;
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// `ask_h2`, asking again after a 429 as a well-behaved client does; on
/// success, when the admitted request was sent.
async fn ask_until_admitted(send: &mut H2, bearer: &str) -> Result<Instant, String> {
    let mut tries = 0;
    loop {
        let sent = Instant::now();
        match ask_h2(send, bearer).await {
            Ok(()) => return Ok(sent),
            Err(why) if why.starts_with("429") && tries < RETRIES => {
                tries += 1;
                RETRIED.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(why) => return Err(why),
        }
    }
}

/// A busy client after its first answer: asks `ASK_EVERY` after it sent
/// its last admitted request (or at once, if that answer took longer)
/// until told to stop.
///
/// Counting from the send, not the answer, is what keeps the connection
/// inside the API's idle limit however slowly the box answers: the API
/// counts 30 s from the end of the last admitted request, which is after
/// its send, so only the next request's way in (client to hyper) eats
/// into the 10 s margin. Counted from the answer, every delay on the way
/// out and back in did too, and a loaded box's few seconds each way
/// closed a connection (CI, stop 31).
async fn keep_asking(
    mut c: H2,
    bearer: String,
    mut sent: Instant,
    asked: Arc<AtomicUsize>,
    failed: Arc<Failures>,
    stop: Arc<AtomicBool>,
) {
    loop {
        let due = sent + ASK_EVERY;
        while Instant::now() < due {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250).min(due - Instant::now())).await;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match ask_until_admitted(&mut c, &bearer).await {
            Ok(at) => {
                sent = at;
                asked.fetch_add(1, Ordering::SeqCst);
            }
            Err(why) => {
                failed.add(why);
                sent = Instant::now();
            }
        }
    }
}

/// The first few failures, kept to say why.
#[derive(Default)]
struct Failures {
    count: AtomicUsize,
    first: std::sync::Mutex<Vec<String>>,
}

impl Failures {
    fn add(&self, why: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 5 {
            first.push(why);
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn first(&self) -> Vec<String> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn percentile(times: &mut [Duration], p: usize) -> Duration {
    times.sort();
    times[(times.len() * p / 100).min(times.len() - 1)]
}

#[test]
fn the_api_answers_health_and_exec_under_a_thousand_connections_from_twenty_addresses() {
    let ns = Netns::create();
    let netns = ns.name();
    let dir = scratch("load");
    let disk = fresh_disk(&dir);
    let config = paddock_tests::esp_config::test_config_with(serde_json::json!({
        "network": {"mode": "static", "address": format!("{BOX}/24"),
                    "gateway": GATEWAY.to_string()}
    }))
    .expect("configuration");
    paddock_tests::esp_config::set(&disk, &config).expect("the ESP with a static uplink");
    let mut app = Appliance::boot_in(
        &disk,
        &dir.join("state"),
        &dir.join("load.log"),
        &["--tap".into(), TAP.into()],
        &ns.prefix(),
    )
    .expect("boot");
    let console = app
        .wait_for("API serving TLS", BOOT_GUARD)
        .and_then(|_| app.wait_for("bootstrap admin credential", BOOT_GUARD))
        .expect("the API on the tap's address");
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("the bootstrap credential")
        .to_string();
    let base = format!("https://{BOX}:8443");
    let bearer = format!("Authorization: Bearer {admin}");
    let (code, body) = ns.curl(&[
        "-H",
        &bearer,
        "--data-binary",
        r#"{"ttl_s": 3600, "memory_mib": 256, "disk_mib": 512}"#,
        &format!("{base}/v1/workspaces"),
    ]);
    assert_eq!(code, "201", "a workspace: {body}");
    let id = json(body.as_bytes())["id"]
        .as_str()
        .expect("its id")
        .to_string();
    // The box builds template snapshots in the background (the default
    // shape's after boot, this workspace's shape's after its create): each
    // a guest booting on the emulated appliance's one CPU, long enough to
    // hold the busy clients past the API's idle limit. The load starts once
    // both are built, so what is measured is the API's own answer.
    for shape in ["template-1x512-nic", "template-1x256-nic"] {
        app.wait_for(&format!("template snapshot {shape}"), BOOT_GUARD)
            .unwrap_or_else(|e| panic!("{shape}'s snapshot is built (or fails): {e}"));
    }
    let bearers: Vec<String> = (0..TENANTS)
        .map(|t| {
            let (code, body) = ns.curl(&[
                "-H",
                &bearer,
                "--data-binary",
                &format!(r#"{{"name": "load-{t}", "scopes": ["read"]}}"#),
                &format!("{base}/v1/tokens"),
            ]);
            assert_eq!(code, "201", "a tenant's token: {body}");
            let secret = json(body.as_bytes())["secret"]
                .as_str()
                .expect("its secret")
                .to_string();
            format!("Bearer {secret}")
        })
        .collect();
    let bearers = Arc::new(bearers);

    let tls = tls_config(b"http/1.1");
    let h2 = tls_config(b"h2");
    let opened = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Failures::default());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..LOADERS)
        .map(|l| {
            let (netns, h2, bearers, opened, asked, failed, stop) = (
                netns.clone(),
                h2.clone(),
                bearers.clone(),
                opened.clone(),
                asked.clone(),
                failed.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                enter(&netns).expect("into the namespace");
                let share = BUSY / LOADERS;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async {
                    // Each connection asks on its own clock (keep_asking):
                    // however slow the answers, no connection waits on
                    // another's and idles out.
                    let mut asking = tokio::task::JoinSet::new();
                    for next in 0..share {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let opening = tokio::time::sleep(OPEN_EVERY);
                        let from = client((l * share + next) / PER_ADDRESS);
                        let bearer = bearers[(next * LOADERS + l) % TENANTS].clone();
                        let first = match open_h2(&h2, from).await {
                            Ok(mut c) => {
                                ask_until_admitted(&mut c, &bearer).await.map(|at| (c, at))
                            }
                            Err(why) => Err(why),
                        };
                        opened.fetch_add(1, Ordering::SeqCst);
                        match first {
                            Ok((c, sent)) => {
                                asking.spawn(keep_asking(
                                    c,
                                    bearer,
                                    sent,
                                    asked.clone(),
                                    failed.clone(),
                                    stop.clone(),
                                ));
                            }
                            Err(why) => failed.add(why),
                        }
                        opening.await;
                    }
                    while asking.join_next().await.is_some() {}
                });
            })
        })
        .collect();
    let mut load = Load {
        stop: stop.clone(),
        threads,
    };
    let until = Instant::now() + Duration::from_secs(900);
    while opened.load(Ordering::SeqCst) < BUSY && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
    }
    let took = app.elapsed();
    assert_eq!(
        opened.load(Ordering::SeqCst),
        BUSY,
        "busy clients connected"
    );
    assert_eq!(
        failed.count(),
        0,
        "every busy connection was taken and answered; the first failures: {:?}",
        failed.first()
    );

    // The slow ones, for the whole hold: TLS, then a head a byte a second
    // that never ends; the API cuts a head not done in 10 s, and each cut
    // one comes back.
    let slow_opened = Arc::new(AtomicUsize::new(0));
    let slow_cut = Arc::new(AtomicUsize::new(0));
    let (slow_netns, slow_tls, slow_stop) = (netns.clone(), tls.clone(), stop.clone());
    let (opened_slow, cut_slow) = (slow_opened.clone(), slow_cut.clone());
    load.threads.push(std::thread::spawn(move || {
        enter(&slow_netns).expect("into the namespace");
        let head = b"POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nX-Pad: ";
        let mut slow: Vec<Option<(Tls, usize)>> = (0..SLOW).map(|_| None).collect();
        // A cut one comes back after a pause (each handshake costs the
        // emulated box as much as many requests).
        let mut back_at = vec![Instant::now(); SLOW];
        while !slow_stop.load(Ordering::SeqCst) {
            let round = Instant::now();
            for (n, slot) in slow.iter_mut().enumerate() {
                match slot {
                    None if Instant::now() < back_at[n] => {}
                    None => {
                        *slot = open(&slow_tls, client((BUSY + n) / PER_ADDRESS))
                            .ok()
                            .map(|c| (c, 0));
                        if slot.is_some() {
                            opened_slow.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Some((c, at)) => {
                        let byte = head.get(*at).copied().unwrap_or(b'a');
                        if c.write_all(&[byte]).and_then(|()| c.flush()).is_err() {
                            cut_slow.fetch_add(1, Ordering::SeqCst);
                            *slot = None;
                            back_at[n] = Instant::now() + Duration::from_secs(10);
                        } else {
                            *at += 1;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
        }
    }));

    // Under that load: health and an exec, again and again.
    let mut health_times = Vec::new();
    let mut exec_times = Vec::new();
    // The hold lasts HOLD, and on a box slow enough that the slow clients'
    // handshakes (one thread's, one after another) take most of it, until
    // as many heads were cut as there are slow clients: the hang guard is
    // not a limit, only an end for a run where the API never cuts them.
    let held = Instant::now();
    while held.elapsed() < HOLD
        || (slow_cut.load(Ordering::SeqCst) < SLOW && held.elapsed() < SLOW_CUT_GUARD)
    {
        let t = Instant::now();
        let (code, body) = ns.curl(&[&format!("{base}/v1/health")]);
        health_times.push(t.elapsed());
        assert_eq!(code, "200", "health under load: {body}");
        let t = Instant::now();
        let (code, body) = ns.curl(&[
            "-H",
            &bearer,
            "--data-binary",
            r#"{"argv":["echo","still","here"]}"#,
            &format!("{base}/v1/workspaces/{id}/exec"),
        ]);
        exec_times.push(t.elapsed());
        assert_eq!(code, "200", "exec under load: {body}");
        let (out, end) = exec_output(body.as_bytes());
        assert_eq!(out, "still here\n", "exec under load: {body}");
        assert_eq!(end["exit_code"], 0, "exec under load: {body}");
    }
    load.stop();
    println!(
        "appliance API under {BUSY} kept-alive + {SLOW} slow connections from {} addresses \
         (opened by {took:?} after boot): health p50 {:?} max {:?}; exec p50 {:?} max {:?}; \
         {} busy requests answered ({} asked again after a 429); {} slow connections opened, \
         {} cut by the API",
        (BUSY + SLOW).div_ceil(PER_ADDRESS),
        percentile(&mut health_times, 50),
        percentile(&mut health_times, 100),
        percentile(&mut exec_times, 50),
        percentile(&mut exec_times, 100),
        asked.load(Ordering::SeqCst),
        RETRIED.load(Ordering::SeqCst),
        slow_opened.load(Ordering::SeqCst),
        slow_cut.load(Ordering::SeqCst),
    );
    assert_eq!(
        failed.count(),
        0,
        "every busy client's request was answered; the first failures: {:?}",
        failed.first()
    );
    // Each of the first SLOW cut (the hold is six head deadlines long),
    // and those that came back cut again.
    assert!(
        slow_cut.load(Ordering::SeqCst) >= SLOW,
        "the slow heads were cut off: {} of {} opened",
        slow_cut.load(Ordering::SeqCst),
        slow_opened.load(Ordering::SeqCst)
    );
    // And after it, the box is as it was.
    let (code, body) = ns.curl(&[&format!("{base}/v1/health")]);
    assert_eq!(code, "200", "health after the load: {body}");
    app.power_button(BOOT_GUARD).expect("shutdown");
}
