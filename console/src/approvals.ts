// Approvals: what workspaces and tokens asked a person for (a destination,
// a longer TTL, a published port, a link). Admins approve for a while or
// deny, with a reason; anyone else sees its own asks.
import { api, ApiError, may, type Approval, type Session } from "./api";
import { clear, h, notice, span, when } from "./dom";

function what(a: Approval): string {
  switch (a.kind) {
    case "egress":
      return `reach ${a.host ?? "?"}${a.port ? `:${a.port}` : ""}`;
    case "extend_ttl":
      return `extend its TTL by ${span(a.ttl_s ?? 0)}`;
    case "publish_port":
      return `publish port ${a.port ?? "?"}${a.host_port ? ` on ${a.host_port}` : ""}`;
    case "link":
      return `connect to ${a.to ?? "?"}${a.port ? ` port ${a.port}` : ""}`;
    default:
      return a.kind;
  }
}

function decideForm(a: Approval, done: (msg: string) => void): HTMLElement {
  // Seconds, as the API takes them: 10 s lets one request through, 604800 is a week.
  const hold = h("input", { type: "number", name: "ttl_s", min: "10", max: "604800", value: "3600", "aria-label": "Approve for (s)" });
  const reason = h("input", { type: "text", name: "reason", maxlength: "500", placeholder: "reason (kept in the audit log)", "aria-label": "Reason" });
  const status = h("span", { class: "form-status" });
  const decide = async (approve: boolean) => {
    try {
      const r = reason.value.trim();
      await api.decide(a.id, { approve, ttl_s: Number(hold.value), ...(r ? { reason: r } : {}) });
      done(`${approve ? "Approved" : "Denied"} ${a.id}`);
    } catch (err) {
      clear(status, notice(err instanceof ApiError ? err.message : String(err)));
    }
  };
  return h(
    "form",
    { class: "decide", "data-approval": a.id, onsubmit: (e: Event) => e.preventDefault() },
    h("label", {}, "Approve for (s)", hold),
    h("label", {}, "Reason", reason),
    h("button", { type: "button", "data-action": "approve", onclick: () => void decide(true) }, "Approve"),
    h("button", { type: "button", "data-action": "deny", onclick: () => void decide(false) }, "Deny"),
    status,
  );
}

export async function approvalsPage(main: HTMLElement, s: Session, message?: string, state = "pending"): Promise<void> {
  const { approvals } = await api.approvals(state);
  const again = (msg: string) => void approvalsPage(main, s, msg, state).catch((e) => clear(main, notice(String(e))));
  const filter = h(
    "select",
    {
      name: "state",
      "aria-label": "Show",
      onchange: (e: Event) => void approvalsPage(main, s, undefined, (e.target as HTMLSelectElement).value),
    },
    ...["pending", "approved", "denied", "expired", ""].map((v) => h("option", { value: v, selected: v === state }, v || "all")),
  );
  const items = approvals.map((a) =>
    h(
      "article",
      { class: `approval ${a.state}`, "data-approval": a.id },
      h("h3", {}, `${a.workspace} asks to ${what(a)}`),
      h(
        "p",
        {},
        `${a.asked_by ? `Asked by ${a.asked_by}` : "Asked by the workspace"}, ${when(a.asked_at)}` +
          (a.asks > 1 ? ` (${a.asks} times)` : "") +
          `. State: ${a.state}` +
          (a.decided_by ? `, by ${a.decided_by}${a.decision_reason ? `: ${a.decision_reason}` : ""}` : "") +
          (a.expires_at ? `, until ${when(a.expires_at)}` : ""),
      ),
      h("blockquote", {}, a.reason || "(no reason given)"),
      a.state === "pending" && may(s, "admin") ? decideForm(a, again) : null,
    ),
  );
  clear(
    main,
    h("h2", {}, "Approvals"),
    h("label", { class: "inline" }, "Show ", filter),
    h("div", { class: "page-status" }, message ? notice(message, "ok") : null),
    approvals.length === 0 ? h("p", { id: "no-approvals" }, `No ${state || ""} approvals.`) : h("div", { id: "approvals" }, ...items),
  );
}
