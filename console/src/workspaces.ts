// Workspaces: the list, one workspace, creating one, and what may be done
// to them. A button shows only when the session's scopes allow its call.
import { api, ApiError, may, type Session, type Workspace, type WorkspaceSpec } from "./api";
import { clear, every, h, notice, now, span, when } from "./dom";
import { bytes, chart, rates } from "./graphs";

function labels(w: Workspace): string {
  return Object.entries(w.labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

function ttlLeft(w: Workspace): string {
  return w.state === "paused" ? `paused (${span(w.expires_at - now())} to resume)` : span(w.expires_at - now());
}

/** The buttons a session may press for a workspace, each doing its call. */
function actions(s: Session, w: Workspace, done: (msg: string) => void, fail: (msg: string) => void): HTMLElement {
  const button = (label: string, run: () => Promise<unknown>, confirmText?: string) =>
    h(
      "button",
      {
        type: "button",
        "data-action": label.toLowerCase(),
        onclick: async () => {
          if (confirmText && !window.confirm(confirmText)) return;
          try {
            await run();
            done(`${label}: done for ${w.id}`);
          } catch (err) {
            fail(err instanceof ApiError ? `${label} ${w.id}: ${err.message}` : String(err));
          }
        },
      },
      label,
    );
  const live = w.state === "running" || w.state === "starting";
  return h(
    "span",
    { class: "actions" },
    may(s, "exec") && w.state === "running"
      ? h("a", { class: "button", href: `#/workspaces/${encodeURIComponent(w.id)}/terminal`, "data-action": "terminal" }, "Terminal")
      : null,
    may(s, "delete") && live ? button("Stop", () => api.act(w.id, "stop")) : null,
    may(s, "delete") && w.state === "running" ? button("Pause", () => api.act(w.id, "pause")) : null,
    may(s, "create") && w.state === "paused" ? button("Resume", () => api.act(w.id, "resume")) : null,
    may(s, "admin") && w.state !== "quarantined"
      ? button(
          "Quarantine",
          () => api.act(w.id, "quarantine"),
          `Quarantine ${w.id}? Its network is cut and its VM frozen at once, and its memory and disk are kept for forensics. Only an admin can delete it afterwards.`,
        )
      : null,
    may(s, "delete") ? button("Delete", () => api.remove(w.id), `Delete ${w.id} and its disk for good?`) : null,
  );
}

function createForm(refresh: (msg: string) => void): HTMLElement {
  const field = (label: string, input: HTMLInputElement) => h("label", {}, label, input);
  const ttl = h("input", { type: "number", name: "ttl_s", min: "1", max: "604800", value: "3600", required: true });
  const vcpus = h("input", { type: "number", name: "vcpus", min: "1", max: "16", value: "1" });
  const memory = h("input", { type: "number", name: "memory_mib", min: "128", max: "65536", value: "512" });
  const disk = h("input", { type: "number", name: "disk_mib", min: "256", max: "1048576", value: "1024" });
  const label = h("input", { type: "text", name: "labels", placeholder: "key=value, key=value" });
  const status = h("div", { class: "form-status" });
  return h(
    "form",
    {
      id: "create-workspace",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const spec: WorkspaceSpec = { ttl_s: Number(ttl.value) };
        if (vcpus.value) spec.vcpus = Number(vcpus.value);
        if (memory.value) spec.memory_mib = Number(memory.value);
        if (disk.value) spec.disk_mib = Number(disk.value);
        const pairs = label.value.split(",").map((p) => p.trim()).filter((p) => p !== "");
        if (pairs.length > 0) {
          const out: Record<string, string> = {};
          for (const p of pairs) {
            const [k, v] = p.split("=", 2);
            if (!k || v === undefined) {
              clear(status, notice(`label ${JSON.stringify(p)}: write key=value`));
              return;
            }
            out[k.trim()] = v.trim();
          }
          spec.labels = out;
        }
        try {
          const w = await api.create(spec);
          refresh(`Created ${w.id}`);
        } catch (err) {
          clear(status, notice(err instanceof ApiError ? err.message : String(err)));
        }
      },
    },
    h("h3", {}, "New workspace"),
    field("TTL (s)", ttl),
    field("vCPUs", vcpus),
    field("Memory (MiB)", memory),
    field("Disk (MiB)", disk),
    field("Labels", label),
    h("button", { type: "submit" }, "Create"),
    status,
  );
}

function listing(s: Session, workspaces: Workspace[], again: (msg: string) => void, fail: (msg: string) => void): HTMLElement {
  if (workspaces.length === 0) return h("p", { id: "no-workspaces" }, "No workspaces this token can see.");
  const rows = workspaces.map((w) =>
    h(
      "tr",
      { "data-workspace": w.id },
      h("td", {}, h("a", { href: `#/workspaces/${encodeURIComponent(w.id)}` }, w.id)),
      h("td", { class: `state ${w.state}` }, w.state),
      h("td", {}, w.template),
      h("td", {}, `${w.vcpus} vCPU, ${w.memory_mib} MiB, ${w.disk_mib} MiB disk`),
      h("td", {}, span(now() - w.created_at)),
      h("td", {}, ttlLeft(w)),
      h("td", {}, labels(w)),
      h("td", {}, actions(s, w, again, fail)),
    ),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id: "workspaces" },
      h(
        "thead",
        {},
        h("tr", {}, ...["Id", "State", "Template", "Size", "Age", "TTL left", "Labels", ""].map((c) => h("th", { scope: "col" }, c))),
      ),
      h("tbody", {}, ...rows),
    ),
  );
}

export async function workspacesPage(main: HTMLElement, s: Session, message?: string): Promise<void> {
  const { workspaces } = await api.workspaces();
  const again = (msg: string) => void workspacesPage(main, s, msg).catch((e) => clear(main, notice(String(e))));
  const fail = (msg: string) => main.querySelector(".page-status")?.replaceChildren(notice(msg));
  const list = h("div", { id: "workspace-list" }, listing(s, workspaces, again, fail));
  clear(
    main,
    h("h2", {}, "Workspaces"),
    h("div", { class: "page-status" }, message ? notice(message, "ok") : null),
    list,
    may(s, "create") ? createForm(again) : null,
  );
  // States and TTLs change on their own: the list (not the form) follows.
  every(5000, () => {
    api.workspaces().then(
      (r) => clear(list, listing(s, r.workspaces, again, fail)),
      () => {},
    );
  });
}

export async function workspacePage(main: HTMLElement, s: Session, id: string, message?: string): Promise<void> {
  const w = await api.workspace(id);
  // After an action, the page again; a workspace that is gone, the list.
  const again = (msg: string) =>
    void workspacePage(main, s, id, msg).catch(() => void workspacesPage(main, s, msg));
  const fail = (msg: string) => main.querySelector(".page-status")?.replaceChildren(notice(msg));
  const rows: [string, string][] = [
    ["State", w.state],
    ["Template", w.template],
    ["Size", `${w.vcpus} vCPU, ${w.memory_mib} MiB memory, ${w.disk_mib} MiB disk`],
    ["Created", when(w.created_at)],
    ["TTL left", ttlLeft(w)],
    ["Labels", labels(w) || "none"],
    ["Address", w.address ?? "none"],
    ["Disk encrypted", w.disk_encrypted === false ? "no" : "yes"],
    ["CPU limit", `${w.limits.cpu_max_us_per_100ms / 100000} CPU`],
    ["Memory limit", `${Math.round(w.limits.memory_max_bytes / 1048576)} MiB`],
    ["Processes limit", String(w.limits.pids_max)],
    ["Published ports", (w.published ?? []).map((p) => `${p.port} → ${p.host_port}`).join(", ") || "none"],
  ];
  const graphs = h("section", { id: "graphs", "aria-label": "The last hour" });
  clear(
    main,
    h("h2", {}, `Workspace ${w.id}`),
    h("div", { class: "page-status" }, message ? notice(message, "ok") : null),
    h("dl", { id: "workspace" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    actions(s, w, again, fail),
    h("h3", {}, "The last hour"),
    graphs,
  );
  const draw = async () => {
    try {
      const { samples } = await api.metrics(w.id);
      if (samples.length === 0) {
        clear(graphs, h("p", { class: "hint" }, "No samples yet: a running workspace is sampled every 5 s."));
        return;
      }
      const pts = (f: (x: (typeof samples)[number]) => number) => samples.map((x) => [x.t, f(x)] as [number, number]);
      clear(
        graphs,
        chart("graph-cpu", "CPU", [{ name: "used", points: pts((x) => x.cpu_pct) }], (v) => `${v.toFixed(1)} %`, 100),
        chart(
          "graph-memory",
          "Memory",
          [{ name: "used", points: pts((x) => x.memory_bytes) }],
          bytes,
          samples[samples.length - 1].memory_limit_bytes,
        ),
        chart("graph-disk", "Disk", [{ name: "used", points: pts((x) => x.disk_used_bytes) }], bytes, samples[samples.length - 1].disk_bytes),
        chart(
          "graph-network",
          "Network",
          [
            { name: "out", points: rates(pts((x) => x.net_sent_bytes ?? 0)) },
            { name: "in", points: rates(pts((x) => x.net_received_bytes ?? 0)) },
          ],
          (v) => `${bytes(v)}/s`,
        ),
      );
    } catch (err) {
      clear(graphs, notice(err instanceof ApiError ? err.message : String(err)));
    }
  };
  await draw();
  every(5000, () => void draw());
  await activity(main, s, w.id);
}

/** Where it connected (the newest 100 windows), and, for an admin, its audit events. */
async function activity(main: HTMLElement, s: Session, id: string): Promise<void> {
  const net = await api.network(id).then(
    (r) => r.records,
    () => null,
  );
  const netPart =
    net === null
      ? notice("Its network record could not be read.")
      : net.length === 0
        ? h("p", { class: "hint", id: "no-network" }, "No connections or lookups yet.")
        : h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { id: "network" },
              h("thead", {}, h("tr", {}, ...["When", "Kind", "Name", "Where", "Decision", "Count", "Why"].map((c) => h("th", { scope: "col" }, c)))),
              h(
                "tbody",
                {},
                ...net
                  .slice()
                  .reverse()
                  .map((r) =>
                    h(
                      "tr",
                      { class: r.decision },
                      h("td", {}, when(r.to)),
                      h("td", {}, r.kind),
                      h("td", {}, r.name || "(none)"),
                      h("td", {}, r.dest ?? ""),
                      h("td", { class: `state ${r.decision === "denied" ? "lost" : "running"}` }, r.decision),
                      h("td", {}, String(r.count)),
                      h("td", {}, r.reason),
                    ),
                  ),
              ),
            ),
          );
  main.append(h("h3", {}, "Where it connected"), netPart);
  if (!may(s, "admin")) return;
  const events = await api.audit({ workspace: id, limit: "200" }).then(
    (r) => r.events,
    () => null,
  );
  main.append(
    h("h3", {}, "Its audit events"),
    events === null
      ? notice("Its audit events could not be read.")
      : h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { id: "workspace-audit" },
            h("thead", {}, h("tr", {}, ...["When", "Event"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              ...events
                .slice()
                .reverse()
                .map((e) => h("tr", {}, h("td", {}, when(e.ts)), h("td", {}, e.event))),
            ),
          ),
        ),
  );
}
