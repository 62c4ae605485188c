// The API as the console uses it: the types come from docs/openapi.yaml
// (schema.d.ts, generated), and every call goes to this origin with the
// session cookie. Changes carry the session's CSRF token.
import type { components } from "./schema";

type S = components["schemas"];
export type Session = S["Session"];
export type Workspace = S["Workspace"];
export type WorkspaceSpec = S["WorkspaceSpec"];
export type Token = S["Token"];
export type TokenRequest = S["TokenRequest"];
export type AuditEvent = S["AuditEvent"];
export type Health = S["Health"];
export type KeyStatus = S["KeyStatus"];
export type SystemStatus = S["SystemStatus"];
export type HostSample = S["HostSample"];
export type Scope = S["Scope"];
export type Minted = { id: string; secret: string; scopes: Scope[]; expires_at: number | null; note?: string };
export type Rotated = S["TokenRotated"];
export type Sample = S["WorkspaceSample"];
export type NetworkRecord = S["NetworkRecord"];
export type Approval = S["Approval"];
export type ApprovalDecision = S["ApprovalDecision"];

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

let csrf = "";

export function useSession(s: Session): void {
  csrf = s.csrf_token;
}

/** The open session's CSRF token, for calls made outside `call` (streams). */
export function csrfToken(): string {
  return csrf;
}

export function forgetSession(): void {
  csrf = "";
}

/** One call; `bearer` only for signing in (the one time the page holds a secret). */
export async function call<T>(method: string, path: string, body?: unknown, bearer?: string): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (bearer !== undefined) headers["Authorization"] = `Bearer ${bearer}`;
  else if (method !== "GET" && method !== "HEAD") headers["X-Paddock-CSRF"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  const text = await r.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) {
    const said = (data as { error?: string } | null)?.error;
    throw new ApiError(r.status, said ?? `${r.status} ${r.statusText}`);
  }
  return data as T;
}

export const api = {
  signIn: (secret: string) => call<Session>("POST", "/v1/session", undefined, secret),
  session: () => call<Session>("GET", "/v1/session"),
  signOut: () => call<{ signed_out: boolean }>("DELETE", "/v1/session"),
  health: () => call<Health>("GET", "/v1/health"),
  keys: () => call<KeyStatus>("GET", "/v1/keys"),
  system: () => call<SystemStatus>("GET", "/v1/system"),
  hostMetrics: () => call<{ samples: HostSample[] }>("GET", "/v1/system/metrics"),
  workspaces: () => call<{ workspaces: Workspace[] }>("GET", "/v1/workspaces"),
  workspace: (id: string) => call<Workspace>("GET", `/v1/workspaces/${encodeURIComponent(id)}`),
  create: (spec: WorkspaceSpec) => call<Workspace>("POST", "/v1/workspaces", spec),
  act: (id: string, action: "stop" | "pause" | "resume" | "quarantine") =>
    call<unknown>("POST", `/v1/workspaces/${encodeURIComponent(id)}/${action}`),
  remove: (id: string) => call<unknown>("DELETE", `/v1/workspaces/${encodeURIComponent(id)}`),
  metrics: (id: string) => call<{ samples: Sample[] }>("GET", `/v1/workspaces/${encodeURIComponent(id)}/metrics`),
  network: (id: string) =>
    call<{ records: NetworkRecord[] }>("GET", `/v1/workspaces/${encodeURIComponent(id)}/network?limit=100`),
  approvals: (state: string) =>
    call<{ approvals: Approval[] }>("GET", state ? `/v1/approvals?state=${encodeURIComponent(state)}` : "/v1/approvals"),
  decide: (id: string, decision: ApprovalDecision) =>
    call<Approval>("POST", `/v1/approvals/${encodeURIComponent(id)}`, decision),
  tokens: () => call<{ tokens: Token[] }>("GET", "/v1/tokens"),
  mint: (request: TokenRequest) => call<Minted>("POST", "/v1/tokens", request),
  revoke: (id: string) => call<unknown>("DELETE", `/v1/tokens/${encodeURIComponent(id)}`),
  rotate: (id: string) => call<Rotated>("POST", `/v1/tokens/${encodeURIComponent(id)}/rotate`),
  audit: (filter: Record<string, string>) => {
    const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v !== ""));
    return call<{ events: AuditEvent[] }>("GET", `/v1/audit?${q.toString()}`);
  },
};

/** Whether the session's token has a scope (admin has them all). */
export function may(s: Session, scope: Scope): boolean {
  return s.admin || s.scopes.includes(scope);
}
