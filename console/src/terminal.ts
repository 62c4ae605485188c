// A terminal into a workspace: xterm.js on a process with a pseudo-terminal
// (POST .../processes with `pty`), its output read from the NDJSON stream,
// keys sent as input, the size following the window.
import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { ApiError, csrfToken } from "./api";
import { clear, h, notice } from "./dom";

type Event = { pid?: number; stdout?: string; stderr?: string; exit_code?: number | null; signal?: number | null; error?: string };

function decode(b64: string): Uint8Array {
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

async function post(path: string, body: BodyInit, type: string): Promise<void> {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": type, "X-Paddock-CSRF": csrfToken() },
    body,
    credentials: "same-origin",
  });
  if (!r.ok) {
    const said = await r.json().then((j: { error?: string }) => j.error, () => undefined);
    throw new ApiError(r.status, said ?? `${r.status}`);
  }
}

let open: { term: Terminal; abort: AbortController; onResize: () => void } | null = null;

/** Ends the terminal on the page, if any (the process keeps running). */
export function closeTerminal(): void {
  if (!open) return;
  open.abort.abort();
  window.removeEventListener("resize", open.onResize);
  open.term.dispose();
  open = null;
}

export async function terminalPage(main: HTMLElement, id: string): Promise<void> {
  closeTerminal();
  const screen = h("div", { id: "terminal", class: "terminal" });
  const status = h("div", { class: "page-status", id: "terminal-status" });
  clear(
    main,
    h("h2", {}, `Terminal: ${id}`),
    h("p", { class: "hint" }, "A login shell on a terminal in the workspace. Leaving this page leaves the shell running."),
    status,
    screen,
  );
  const term = new Terminal({ cursorBlink: true, convertEol: false, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  fit.fit();
  const base = `/v1/workspaces/${encodeURIComponent(id)}/processes`;
  const abort = new AbortController();
  let pid = 0;
  const onResize = () => {
    fit.fit();
    if (pid) void post(`${base}/${pid}/resize`, JSON.stringify({ cols: term.cols, rows: term.rows }), "application/json").catch(() => {});
  };
  open = { term, abort, onResize };
  window.addEventListener("resize", onResize);

  // Keys typed close together go as one input call, in order.
  let pending = "";
  let sending = false;
  const flush = async () => {
    if (sending || !pid || pending === "") return;
    sending = true;
    const data = pending;
    pending = "";
    try {
      await post(`${base}/${pid}/input`, new TextEncoder().encode(data), "application/octet-stream");
    } catch (err) {
      clear(status, notice(err instanceof ApiError ? `input: ${err.message}` : String(err)));
    } finally {
      sending = false;
      if (pending !== "") void flush();
    }
  };
  term.onData((d) => {
    pending += d;
    void flush();
  });

  const r = await fetch(base, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Paddock-CSRF": csrfToken() },
    body: JSON.stringify({
      argv: ["/bin/bash", "-l"],
      pty: { cols: term.cols, rows: term.rows },
      env: { TERM: "xterm-256color" },
    }),
    credentials: "same-origin",
    signal: abort.signal,
  });
  if (!r.ok || !r.body) {
    const said = await r.json().then((j: { error?: string }) => j.error, () => undefined);
    clear(status, notice(said ?? `starting the shell: ${r.status}`));
    return;
  }
  term.focus();
  const reader = r.body.getReader();
  const text = new TextDecoder();
  let buffered = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += text.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        const e = JSON.parse(line) as Event;
        if (e.pid !== undefined) {
          pid = e.pid;
          screen.setAttribute("data-pid", String(pid));
          void flush();
        }
        if (e.stdout) term.write(decode(e.stdout));
        if (e.stderr) term.write(decode(e.stderr));
        if (e.error) clear(status, notice(e.error));
        if ("exit_code" in e) {
          clear(status, notice(`The shell ended (exit code ${e.exit_code ?? "none"}${e.signal ? `, signal ${e.signal}` : ""}).`, "ok"));
        }
      }
    }
  } catch (err) {
    if (!abort.signal.aborted) clear(status, notice(`the stream broke: ${String(err)}`));
  }
}
