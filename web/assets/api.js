// REST calls to ecomd (same origin). Every error the API returns has one shape,
// {"error":{"code","message","field"?}}; it is raised as an ApiError the views show to the user.

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the server could not be reached)
   * @param {string} code   e.g. VALIDATION_FAILED, CONFLICT, NETWORK
   * @param {string} message human-readable, from the server when it sent one
   * @param {string} [field] the request field at fault, e.g. "customerId", "items[0].quantity"
   */
  constructor(status, code, message, field = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field ?? '';
  }
}

const STATUS_TEXT = {
  404: 'Not found.',
  405: 'This action is not allowed here.',
  409: 'Conflict with the current state.',
  413: 'The request is too large.',
  429: 'Too many requests; try again in a moment.',
  500: 'The server failed to handle the request.',
  502: 'The server is not reachable right now.',
  503: 'The service is unavailable right now; try again in a moment.',
};

/**
 * Sends a request and returns the parsed JSON body (null for an empty body).
 * @param {string} method
 * @param {string} path e.g. "/api/orders"
 * @param {{body?: unknown, headers?: Record<string,string>, signal?: AbortSignal}} [options]
 * @returns {Promise<{status: number, body: any, headers: Headers}>}
 */
export async function request(method, path, { body, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    throw new ApiError(0, 'NETWORK', 'Could not reach the server. Check that ecomd is running, then try again.');
  }
  const text = await res.text().catch(() => '');
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!res.ok) {
    const err = parsed?.error;
    if (err && typeof err === 'object') {
      throw new ApiError(res.status, String(err.code ?? `HTTP_${res.status}`),
        String(err.message ?? STATUS_TEXT[res.status] ?? `Request failed (${res.status}).`), err.field ?? '');
    }
    throw new ApiError(res.status, `HTTP_${res.status}`, STATUS_TEXT[res.status] ?? `Request failed (HTTP ${res.status}).`);
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** GET a JSON document. */
export async function getJson(path, options) {
  return (await request('GET', path, options)).body;
}

/** POST a JSON body. */
export async function postJson(path, body, options = {}) {
  return request('POST', path, { ...options, body });
}
