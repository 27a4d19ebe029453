// The controller's REST API from the page: the session cookie goes along by itself
// (HttpOnly, SameSite=Strict); changes carry X-Requested-With: vks-web.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.body = body;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Requested-With"] = "vks-web";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  const ctype = resp.headers.get("Content-Type") || "";
  const data = ctype.startsWith("application/json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new ApiError(resp.status, typeof data === "object" ? data : { message: data });
  return data;
}

// A file sent as a form (its part `file`): POST /api/v1/hearings/import.
export async function upload(path, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const resp = await fetch(path, { method: "POST", credentials: "same-origin", body: form,
    headers: { Accept: "application/json", "X-Requested-With": "vks-web" } });
  const data = await resp.json().catch(() => ({ message: `HTTP ${resp.status}` }));
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const patch = (path, body) => api("PATCH", path, body);
export const post = (path, body) => api("POST", path, body ?? {});
export const del = (path) => api("DELETE", path);

// What this controller serves and who may do it, from its OpenAPI document:
// can("POST", "/api/v1/hearings/{id}/resume") is false when the route is missing or the role lacks its permission.
export class Capabilities {
  constructor(openapi, permissions) {
    this.ops = new Map();
    for (const [path, item] of Object.entries((openapi && openapi.paths) || {})) {
      for (const [method, op] of Object.entries(item)) {
        this.ops.set(`${method.toUpperCase()} ${path}`, op["x-permission"] || null);
      }
    }
    this.permissions = new Set(permissions || []);
  }
  exists(method, path) { return this.ops.has(`${method} ${path}`); }
  can(method, path) {
    if (!this.exists(method, path)) return false;
    const perm = this.ops.get(`${method} ${path}`);
    return perm === null || this.permissions.has(perm);
  }
}
