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

export const get = (path) => api("GET", path);
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
