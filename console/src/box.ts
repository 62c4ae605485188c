// The box: version, uptime, state; for an admin also its certificate, disk
// keys, data partition and host CPU and memory over the last hour.
import { api, ApiError, may, type Session, type SystemStatus } from "./api";
import { clear, every, h, notice, span } from "./dom";
import { bytes, chart } from "./graphs";

function rows(list: [string, string | HTMLElement][]): HTMLElement[] {
  return list.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]);
}

/** An image slot in words: version, state, whether this boot runs it. */
function slotText(s: SystemStatus["slots"][number]): string {
  const state =
    s.state === "trial" ? `on trial, ${s.tries_left ?? 0} tries left` : s.state === "bad" ? "bad (its tries ran out)" : s.state;
  return `${s.version ?? "-"} ${state}${s.booted ? " (booted)" : ""}`;
}

/** The data partition's use as a meter and words (a meter reads out to screen readers). */
function dataUse(d: SystemStatus["data"]): HTMLElement {
  if (d.total_bytes === 0) return h("span", {}, "not mounted");
  const meter = h("meter", {
    id: "data-meter",
    min: "0",
    max: String(d.total_bytes),
    value: String(d.used_bytes),
    high: String(Math.floor(d.total_bytes * 0.9)),
    "aria-label": "data partition used",
  });
  return h(
    "span",
    { class: "data-use" },
    meter,
    ` ${bytes(d.used_bytes)} used of ${bytes(d.total_bytes)} (${bytes(d.available_bytes)} available)`,
  );
}

export async function boxPage(main: HTMLElement, s: Session): Promise<void> {
  const health = await api.health();
  const list: [string, string | HTMLElement][] = [
    ["Version", health.version],
    ["State", `${health.state} (${health.status})`],
    ["Up for", span(health.uptime_s)],
    ["Workspaces", String(health.workspaces)],
  ];
  if (!may(s, "admin")) {
    clear(main, h("h2", {}, "This box"), h("dl", { id: "box" }, ...rows(list)));
    return;
  }
  // The box's own page still shows when the system call cannot answer.
  const system = await api.system().catch((e: unknown) => (e instanceof ApiError ? e.message : String(e)));
  if (typeof system === "string") {
    list.push(["Details", `no answer (${system})`]);
  } else {
    list.push(
      ["TLS fingerprint", h("code", { id: "tls-fingerprint" }, system.tls_fingerprint ?? "none")],
      ["Disk keys", `${system.keys.state}: ${system.keys.detail}`],
      ["Data partition", dataUse(system.data)],
    );
    if (system.host) list.push(["Host", `${system.host.cpus} CPU, ${bytes(system.host.memory_total_bytes)} memory`]);
    for (const slot of system.slots) list.push([`Slot ${slot.slot.toUpperCase()}`, slotText(slot)]);
    if (system.update) {
      const u = system.update;
      const state = u.state === "failed" ? `failed: ${u.detail ?? "?"}` : u.state === "ready" ? "written; the next boot tries it" : "being written";
      list.push(["Update", `${u.version} to slot ${u.slot.toUpperCase()}: ${state}`]);
    }
  }
  const graphs = h("section", { id: "host-graphs", "aria-label": "The host over the last hour" });
  clear(main, h("h2", {}, "This box"), h("dl", { id: "box" }, ...rows(list)), h("h3", {}, "The host, last hour"), graphs);
  const draw = async () => {
    try {
      const { samples } = await api.hostMetrics();
      if (samples.length === 0) {
        clear(graphs, h("p", { class: "hint" }, "No samples yet: the host is sampled every 5 s."));
        return;
      }
      const pts = (f: (x: (typeof samples)[number]) => number) => samples.map((x) => [x.t, f(x)] as [number, number]);
      const last = samples[samples.length - 1];
      clear(
        graphs,
        chart("graph-host-cpu", "CPU", [{ name: "used", points: pts((x) => x.cpu_pct) }], (v) => `${v.toFixed(1)} %`, 100),
        chart("graph-host-memory", "Memory", [{ name: "used", points: pts((x) => x.memory_used_bytes) }], bytes, last.memory_total_bytes),
        chart("graph-host-load", "Load", [{ name: "1 min", points: pts((x) => x.load1) }], (v) => v.toFixed(2), last.cpus),
      );
    } catch (err) {
      clear(graphs, notice(err instanceof ApiError ? err.message : String(err)));
    }
  };
  await draw();
  every(5000, () => void draw());
}
