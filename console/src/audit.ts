// The audit log (admin): filter by event, workspace, token and time, and
// export what is shown as JSON lines.
import { api, ApiError, type AuditEvent } from "./api";
import { clear, h, notice, when } from "./dom";

function fields(e: AuditEvent): string {
  return Object.entries(e)
    .filter(([k]) => k !== "ts" && k !== "event")
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
}

export async function auditPage(main: HTMLElement): Promise<void> {
  const input = (name: string, placeholder: string) => h("input", { type: "text", name, placeholder });
  const event = input("event", "workspace_created");
  const workspace = input("workspace", "ws_…");
  const token = input("token", "tok_…");
  const since = h("input", { type: "datetime-local", name: "since" });
  const table = h("div", { class: "table-wrap" });
  let shown: AuditEvent[] = [];
  const load = async () => {
    try {
      const { events } = await api.audit({
        event: event.value.trim(),
        workspace: workspace.value.trim(),
        token: token.value.trim(),
        limit: "1000",
      });
      const from = since.value ? Date.parse(since.value) / 1000 : 0;
      shown = events.filter((e) => e.ts >= from);
      clear(
        table,
        h(
          "table",
          { id: "audit" },
          h("thead", {}, h("tr", {}, ...["When", "Event", "Details"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            ...shown
              .slice()
              .reverse()
              .map((e) => h("tr", {}, h("td", {}, when(e.ts)), h("td", {}, e.event), h("td", { class: "fields" }, fields(e)))),
          ),
        ),
      );
    } catch (err) {
      clear(table, notice(err instanceof ApiError ? err.message : String(err)));
    }
  };
  const exportLines = () => {
    const blob = new Blob([shown.map((e) => JSON.stringify(e)).join("\n") + "\n"], { type: "application/x-ndjson" });
    const a = h("a", { href: URL.createObjectURL(blob), download: "paddock-audit.jsonl" });
    a.click();
    URL.revokeObjectURL(a.href);
  };
  clear(
    main,
    h("h2", {}, "Audit log"),
    h(
      "form",
      {
        id: "audit-filter",
        onsubmit: (e: Event) => {
          e.preventDefault();
          void load();
        },
      },
      h("label", {}, "Event", event),
      h("label", {}, "Workspace", workspace),
      h("label", {}, "Token", token),
      h("label", {}, "Since", since),
      h("button", { type: "submit" }, "Filter"),
      h("button", { type: "button", id: "export", onclick: exportLines }, "Export JSON lines"),
    ),
    table,
  );
  await load();
}
