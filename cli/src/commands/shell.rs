//! `paddock shell`: a terminal in a workspace that feels like ssh. The
//! local terminal goes raw; keys go to the workspace's terminal as they are
//! typed (`POST .../processes/{pid}/input`), its output comes back on the
//! process stream, the window's size follows SIGWINCH, and the shell's exit
//! code is ours. Ctrl-] detaches and leaves it running; `--attach PID`
//! comes back to it, re-sending the size so full-screen programs redraw.

use super::{api_error, ws_path, Ctx};
use crate::args::ShellArgs;
use crate::client::{Answer, ClientError};
use crate::CliError;
use paddock_api_types::{ExecEvent, ProcessRequest, PtySize};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Ctrl-]: leaves the terminal running (as telnet's escape does).
const DETACH: u8 = 0x1d;

static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    RESIZED.store(true, Ordering::SeqCst);
}

/// The terminal's settings before raw mode, for the handlers below.
static SAVED: std::sync::OnceLock<libc::termios> = std::sync::OnceLock::new();

/// SIGTERM, SIGHUP: the terminal back as it was, then gone (a release
/// build aborts rather than unwinds, so no destructor would).
extern "C" fn on_end(signal: libc::c_int) {
    // OnceLock::get is an atomic load once set; tcsetattr and _exit are
    // async-signal-safe.
    if let Some(t) = SAVED.get() {
        // SAFETY: tcsetattr reads the saved settings for the call.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
    }
    // SAFETY: _exit takes an integer and does not return.
    unsafe { libc::_exit(128 + signal) };
}

/// The local terminal's size.
fn window() -> Option<PtySize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into `ws`, valid for the call.
    let r = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some(PtySize {
        cols: ws.ws_col,
        rows: ws.ws_row,
    })
}

/// The local terminal in raw mode; restored when dropped (or by `restore`
/// from the thread that ends the session).
struct Raw {
    saved: libc::termios,
}

impl Raw {
    fn enter() -> Result<Raw, CliError> {
        // SAFETY: an all-zero termios is a valid value to be overwritten.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes the terminal's settings into `t`.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
            return Err(CliError::Usage(
                "paddock shell needs a terminal on stdin (use paddock exec otherwise)".into(),
            ));
        }
        let saved = t;
        let _ = SAVED.set(saved);
        // SAFETY: on_end makes only async-signal-safe calls.
        unsafe {
            libc::signal(libc::SIGTERM, on_end as *const () as libc::sighandler_t);
            libc::signal(libc::SIGHUP, on_end as *const () as libc::sighandler_t);
        }
        // SAFETY: cfmakeraw edits `t` in place; tcsetattr reads it.
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
        }
        Ok(Raw { saved })
    }

    fn restore(saved: &libc::termios) {
        // SAFETY: tcsetattr reads the saved settings for the call.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        Raw::restore(&self.saved);
    }
}

pub fn shell(ctx: Ctx, args: ShellArgs) -> Result<ExitCode, CliError> {
    let size = window().ok_or_else(|| {
        CliError::Usage("paddock shell needs a terminal (use paddock exec otherwise)".into())
    })?;
    let ctx = Arc::new(ctx);
    let id = args.id.clone();
    let mut stream = match args.attach {
        Some(pid) => ctx.api.stream(
            "GET",
            &ws_path(&id, &format!("/processes/{pid}/output")),
            None,
        )?,
        None => {
            let argv = if args.command.is_empty() {
                vec!["/bin/bash".to_string(), "-l".to_string()]
            } else {
                args.command.clone()
            };
            let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
            let req = ProcessRequest {
                argv,
                env: [("TERM".to_string(), term)].into(),
                user: args.root.then(|| "root".to_string()),
                pty: Some(size),
                ..ProcessRequest::default()
            };
            let body = serde_json::to_vec(&req)
                .map_err(|e| CliError::Api(format!("shaping the request: {e}")))?;
            ctx.api
                .stream("POST", &ws_path(&id, "/processes"), Some(&body))?
        }
    };
    if stream.status != 200 || !stream.chunked() {
        let body = stream.body()?;
        return Err(api_error(&Answer {
            status: stream.status,
            body,
        }));
    }
    let mut events = Events::default();
    let pid = match events.next(&mut stream)? {
        Some(ExecEvent::Started { pid }) => pid,
        other => {
            return Err(ClientError::Protocol(format!("the stream began with {other:?}")).into())
        }
    };
    let raw = Raw::enter()?;
    let saved = raw.saved;
    // SAFETY: on_winch only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t) };
    // Reattaching re-sends the size: the program redraws for it.
    RESIZED.store(args.attach.is_some(), Ordering::SeqCst);
    let post = {
        let ctx = ctx.clone();
        let id = id.clone();
        move |what: &str, body: &[u8]| {
            let path = ws_path(&id, &format!("/processes/{pid}/{what}"));
            ctx.api.call("POST", &path, Some(body))
        }
    };
    {
        let post = post.clone();
        std::thread::spawn(move || loop {
            if RESIZED.swap(false, Ordering::SeqCst) {
                if let Some(size) = window() {
                    let body = serde_json::to_vec(&size).unwrap_or_default();
                    let _ = post("resize", &body);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        });
    }
    // Keys, as typed, until Ctrl-] or the session ends (the output side
    // exits the process then).
    let detached = Arc::new(Mutex::new(false));
    {
        let detached = detached.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let keys = &buf[..n];
                // A key that did not arrive is said, not lost silently.
                let send = |keys: &[u8]| match post("input", keys) {
                    Ok(a) if (200..300).contains(&a.status) => {}
                    Ok(a) => eprint!("\r\npaddock: keys lost: {}\r\n", api_error(&a)),
                    Err(e) => eprint!("\r\npaddock: keys lost: {e}\r\n"),
                };
                if let Some(i) = keys.iter().position(|b| *b == DETACH) {
                    if i > 0 {
                        send(&keys[..i]);
                    }
                    *detached.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    Raw::restore(&saved);
                    eprintln!(
                        "\r\npaddock: detached; the terminal goes on. Back: paddock shell {id} --attach {pid}"
                    );
                    std::process::exit(0);
                }
                send(keys);
            }
        });
    }
    let mut out = std::io::stdout();
    let code = loop {
        match events.next(&mut stream) {
            Ok(Some(ExecEvent::Stdout { stdout }))
            | Ok(Some(ExecEvent::Stderr { stderr: stdout })) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(stdout)
                    .unwrap_or_default();
                let _ = out.write_all(&bytes);
                let _ = out.flush();
            }
            Ok(Some(ExecEvent::Exit {
                exit_code, signal, ..
            })) => {
                break match (exit_code, signal) {
                    (Some(c), _) => u8::try_from(c).unwrap_or(1),
                    (None, Some(s)) => u8::try_from(128 + i64::from(s)).unwrap_or(1),
                    _ => 1,
                }
            }
            Ok(Some(ExecEvent::Error { error, .. })) => {
                drop(raw);
                return Err(CliError::Api(error));
            }
            Ok(Some(ExecEvent::Started { .. })) => {}
            Ok(None) => {
                drop(raw);
                return Err(ClientError::Cut(
                    "the terminal's stream ended without its exit".into(),
                )
                .into());
            }
            Err(e) => {
                drop(raw);
                return Err(e);
            }
        }
    };
    drop(raw);
    Ok(ExitCode::from(code))
}

/// The process stream's NDJSON lines, as events.
#[derive(Default)]
struct Events {
    pending: Vec<u8>,
}

impl Events {
    fn next(&mut self, r: &mut crate::client::Response) -> Result<Option<ExecEvent>, CliError> {
        loop {
            if let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                let event = serde_json::from_slice(&line).map_err(|e| {
                    ClientError::Protocol(format!(
                        "process stream line {:?}: {e}",
                        String::from_utf8_lossy(&line).trim()
                    ))
                })?;
                return Ok(Some(event));
            }
            match r.next_chunk()? {
                Some(chunk) => self.pending.extend(chunk),
                None => return Ok(None),
            }
        }
    }
}
