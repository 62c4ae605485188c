// The console: sign in with a token, then pages by the address's hash
// (#/workspaces, #/workspaces/ID, #/workspaces/ID/terminal, #/approvals,
// #/tokens, #/audit, #/box). What each page offers follows the session's
// scopes; the API enforces them regardless.
import "./nonce";
import { api, ApiError, forgetSession, may, useSession, type Session } from "./api";
import { clear, h, notice, stopTimers } from "./dom";
import { approvalsPage } from "./approvals";
import { closeTerminal, terminalPage } from "./terminal";
import { auditPage } from "./audit";
import { boxPage } from "./box";
import { tokensPage } from "./tokens";
import { workspacePage, workspacesPage } from "./workspaces";

const root = document.getElementById("app") as HTMLElement;

function signInPage(why?: string): void {
  const secret = h("input", {
    type: "password",
    id: "token",
    name: "token",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "pdk_…",
  });
  const status = h("div", { id: "sign-in-status" }, why ? notice(why) : null);
  const form = h(
    "form",
    {
      id: "sign-in",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const value = secret.value.trim();
        secret.value = "";
        if (location.protocol !== "https:") {
          clear(status, notice("Sign in only over HTTPS: the token would cross the network in the clear."));
          return;
        }
        try {
          const s = await api.signIn(value);
          start(s);
        } catch (err) {
          clear(status, notice(err instanceof ApiError ? err.message : String(err)));
        }
      },
    },
    h("h1", {}, "Paddock"),
    h("label", { for: "token" }, "API token"),
    secret,
    h("button", { type: "submit" }, "Sign in"),
    h("p", { class: "hint" }, "The token stays with this box: the browser keeps only a session cookie it cannot read."),
    status,
  );
  clear(root, h("main", { class: "sign-in" }, form));
  secret.focus();
}

function shell(s: Session): { main: HTMLElement } {
  const link = (hash: string, text: string) => h("a", { href: hash, "data-nav": hash }, text);
  const main = h("main", { id: "page", tabindex: "-1" });
  const nav = h(
    "nav",
    { "aria-label": "Sections" },
    link("#/workspaces", "Workspaces"),
    link("#/approvals", "Approvals"),
    s.admin ? link("#/tokens", "Tokens") : null,
    s.admin ? link("#/audit", "Audit") : null,
    link("#/box", "Box"),
  );
  const who = h(
    "div",
    { class: "who" },
    h("span", { id: "signed-in-as" }, `${s.token}${s.admin ? " (admin)" : ""}`),
    h(
      "button",
      {
        type: "button",
        id: "sign-out",
        onclick: async () => {
          // Signed out only when the box says so (or the session had
          // already ended): a failed sign-out must not look like one.
          try {
            await api.signOut();
          } catch (err) {
            if (!(err instanceof ApiError && err.status === 401)) {
              const at = document.getElementById("page");
              if (at) clear(at, notice(`Not signed out: ${err instanceof Error ? err.message : String(err)}`));
              return;
            }
          }
          session = null;
          forgetSession();
          signInPage("Signed out.");
        },
      },
      "Sign out",
    ),
  );
  clear(root, h("header", {}, h("strong", { class: "brand" }, "Paddock"), nav, who), main);
  return { main };
}

let session: Session | null = null;

async function route(): Promise<void> {
  stopTimers();
  closeTerminal();
  if (!session) return;
  const s = session;
  const { main } = shell(s);
  const hash = location.hash || "#/workspaces";
  for (const a of document.querySelectorAll("nav a")) {
    a.toggleAttribute("aria-current", hash.startsWith(a.getAttribute("data-nav") ?? "?"));
  }
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "workspaces" && parts[1] && parts[2] === "terminal") await terminalPage(main, parts[1]);
    else if (parts[0] === "workspaces" && parts[1]) await workspacePage(main, s, parts[1]);
    else if (parts[0] === "approvals") await approvalsPage(main, s);
    else if (parts[0] === "tokens" && may(s, "admin")) await tokensPage(main);
    else if (parts[0] === "audit" && may(s, "admin")) await auditPage(main);
    else if (parts[0] === "box") await boxPage(main, s);
    else await workspacesPage(main, s);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      session = null;
      forgetSession();
      signInPage(err.message);
      return;
    }
    clear(main, notice(err instanceof Error ? err.message : String(err)));
  }
}

function start(s: Session): void {
  session = s;
  useSession(s);
  void route();
}

window.addEventListener("hashchange", () => void route());

api
  .session()
  .then(start)
  .catch((err) => signInPage(err instanceof ApiError && err.status === 401 && /conflicting/.test(err.message) ? err.message : undefined));
