// Tokens (admin): every token, minting one (its secret shown once),
// revoking and rotating.
import { api, ApiError, type Scope, type Token, type TokenRequest } from "./api";
import { clear, h, notice, now, span } from "./dom";

const SCOPES: Scope[] = ["read", "create", "exec", "files", "delete", "admin"];

function expiry(t: Token): string {
  if (t.revoked) return "revoked";
  if (t.expires_at === null) return "never";
  return t.expires_at <= now() ? "expired" : `in ${span(t.expires_at - now())}`;
}

/** A secret shown once, in a box the user can copy from. */
function shown(title: string, id: string, secret: string): HTMLElement {
  return h(
    "div",
    { class: "secret", role: "status" },
    h("p", {}, `${title} ${id}. Its secret is shown this once:`),
    h("code", { id: "new-secret" }, secret),
  );
}

function mintForm(after: (what: HTMLElement) => void): HTMLElement {
  const name = h("input", { type: "text", name: "name", required: true, pattern: "[A-Za-z0-9._ -]{1,64}" });
  const ttl = h("input", { type: "number", name: "ttl_s", min: "1", value: "86400" });
  const boxes = SCOPES.map((sc) => h("input", { type: "checkbox", name: "scope", value: sc, checked: sc === "read" }));
  const maxWs = h("input", { type: "number", name: "max_workspaces", min: "0", placeholder: "no limit" });
  const status = h("div", { class: "form-status" });
  return h(
    "form",
    {
      id: "mint-token",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const request: TokenRequest = {
          name: name.value.trim(),
          scopes: boxes.filter((b) => b.checked).map((b) => b.value as Scope),
        };
        if (ttl.value) request.ttl_s = Number(ttl.value);
        if (maxWs.value) request.quotas = { max_workspaces: Number(maxWs.value) };
        try {
          const m = await api.mint(request);
          after(shown("Minted", m.id, m.secret));
        } catch (err) {
          clear(status, notice(err instanceof ApiError ? err.message : String(err)));
        }
      },
    },
    h("h3", {}, "Mint a token"),
    h("label", {}, "Name", name),
    h("label", {}, "Expires after (s)", ttl),
    h(
      "fieldset",
      {},
      h("legend", {}, "Scopes"),
      ...SCOPES.map((sc, i) => h("label", { class: "check" }, boxes[i], sc)),
    ),
    h("label", {}, "Most workspaces", maxWs),
    h("button", { type: "submit" }, "Mint"),
    status,
  );
}

export async function tokensPage(main: HTMLElement, shownFirst?: HTMLElement): Promise<void> {
  const { tokens } = await api.tokens();
  const again = (what: HTMLElement) => void tokensPage(main, what).catch((e) => clear(main, notice(String(e))));
  const fail = (msg: string) => main.querySelector(".page-status")?.replaceChildren(notice(msg));
  const rows = tokens.map((t) =>
    h(
      "tr",
      { "data-token": t.id },
      h("td", {}, t.id),
      h("td", {}, t.name),
      h("td", {}, t.scopes.join(", ")),
      h("td", {}, expiry(t)),
      h("td", {}, t.parent ?? ""),
      h(
        "td",
        {},
        t.revoked
          ? null
          : h(
              "span",
              { class: "actions" },
              h(
                "button",
                {
                  type: "button",
                  "data-action": "rotate",
                  onclick: async () => {
                    if (!window.confirm(`Rotate ${t.id}? Its old secret stops working now.`)) return;
                    try {
                      const r = await api.rotate(t.id);
                      again(shown("Rotated", r.id, r.secret));
                    } catch (err) {
                      fail(err instanceof ApiError ? err.message : String(err));
                    }
                  },
                },
                "Rotate",
              ),
              h(
                "button",
                {
                  type: "button",
                  "data-action": "revoke",
                  onclick: async () => {
                    if (!window.confirm(`Revoke ${t.id} and every token minted from it?`)) return;
                    try {
                      await api.revoke(t.id);
                      again(notice(`Revoked ${t.id}`, "ok"));
                    } catch (err) {
                      fail(err instanceof ApiError ? err.message : String(err));
                    }
                  },
                },
                "Revoke",
              ),
            ),
      ),
    ),
  );
  clear(
    main,
    h("h2", {}, "Tokens"),
    h("div", { class: "page-status" }, shownFirst ?? null),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "tokens" },
        h("thead", {}, h("tr", {}, ...["Id", "Name", "Scopes", "Expires", "Minted by", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, ...rows),
      ),
    ),
    mintForm(again),
  );
}
