// The box: version, uptime, state, the disk keys.
import { api, ApiError, may, type Session } from "./api";
import { clear, h, span } from "./dom";

export async function boxPage(main: HTMLElement, s: Session): Promise<void> {
  const health = await api.health();
  const rows: [string, string][] = [
    ["Version", health.version],
    ["State", `${health.state} (${health.status})`],
    ["Up for", span(health.uptime_s)],
    ["Workspaces", String(health.workspaces)],
  ];
  if (may(s, "admin")) {
    // The box's own page still shows when the key store cannot answer.
    const keys = await api.keys().then(
      (k) => `${k.state}: ${k.detail}`,
      (e: unknown) => `no answer (${e instanceof ApiError ? e.message : String(e)})`,
    );
    rows.push(["Disk keys", keys]);
  }
  clear(
    main,
    h("h2", {}, "This box"),
    h("dl", { id: "box" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
  );
}
