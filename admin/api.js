// The admin page's access to the server: the documented /api/v1 requests
// (docs/api.md) with the key, /metrics and /readyz.  Every answer that is
// not a success becomes an ApiError, for the page to show; nothing here
// retries or hides one.

/** A refused or failed request: HTTP status (0: no answer), the API's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message, body, request) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
    this.request = request;
  }

  /** "409 conflict: the object is at another version" */
  get summary() {
    return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
  }
}

/**
 * Path segments for URLs, each one percent-encoded whole: an object name's
 * slashes become %2F (the server decodes them back), so a name such as
 * "a/../b" is not folded by the browser's URL parser.
 */
export function pathOf(...segments) {
  return segments.map((s) => `/${encodeURIComponent(String(s))}`).join('');
}

async function send(method, url, headers, body) {
  const request = `${method} ${url}`;
  let res;
  try {
    res = await fetch(url, { method, headers, body, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new ApiError(0, 'network', `${request}: the server did not answer (${e.message})`, null, request);
  }
  return { res, text: await res.text(), request };
}

export class Api {
  /** key: the API key's secret, sent as Authorization: Bearer. */
  constructor(key) {
    this.key = key;
  }

  /**
   * One /api/v1 request: path below /api/v1 (with its query), body an
   * object sent as JSON.  Resolves to the parsed answer; rejects with an
   * ApiError carrying the server's {"error":{code, message}} (and the
   * rest of the body: a 409 conflict's version and slots).
   */
  async request(method, path, body, { idempotencyKey } = {}) {
    const headers = { Authorization: `Bearer ${this.key}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
    const { res, text, request } = await send(method, `/api/v1${path}`, headers,
      body === undefined ? undefined : JSON.stringify(body));
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: reported below
    }
    if (!res.ok) {
      const e = json?.error;
      throw new ApiError(res.status, e?.code ?? `http_${res.status}`,
        e?.message ?? (text.trim() || res.statusText), json, request);
    }
    if (json === null || typeof json !== 'object')
      throw new ApiError(res.status, 'bad_answer', `${request}: the answer is not a JSON object`, null, request);
    return json;
  }

  get(path) { return this.request('GET', path); }
  post(path, body, opts) { return this.request('POST', path, body, opts); }
  delete(path, opts) { return this.request('DELETE', path, undefined, opts); }

  /** The Prometheus text of /metrics (no key needed); rejects with an ApiError. */
  async metrics() {
    const { res, text, request } = await send('GET', '/metrics', {});
    if (!res.ok) throw new ApiError(res.status, `http_${res.status}`, text.trim() || res.statusText, null, request);
    return parseMetrics(text);
  }

  /** {ok, text} of /readyz: 200 or 503 with the reason; any other answer rejects. */
  async ready() {
    const { res, text, request } = await send('GET', '/readyz', {});
    if (res.status !== 200 && res.status !== 503)
      throw new ApiError(res.status, `http_${res.status}`, text.trim() || res.statusText, null, request);
    return { ok: res.ok, text: text.trim() };
  }
}

// ---------------------------------------------------------------- metrics

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gy;

function number(s) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  return Number(s); // NaN stays NaN
}

/**
 * Parses the Prometheus text exposition format (0.0.4): a Map from the
 * sample name to its samples [{labels, value}].  Comments and lines it
 * cannot read are skipped.
 */
export function parseMetrics(text) {
  const out = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      LABEL.lastIndex = 0;
      let l;
      while (LABEL.lastIndex < m[2].length && (l = LABEL.exec(m[2])))
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: number(m[3]) });
  }
  return out;
}

/** The sum of the samples of name whose labels include `match`; undefined when there is none. */
export function metric(m, name, match = {}) {
  const samples = (m.get(name) ?? []).filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v));
  return samples.length ? samples.reduce((a, s) => a + s.value, 0) : undefined;
}

/** A histogram's cumulative buckets [{le, count}], sorted by le (+Inf last). */
export function buckets(m, name) {
  return (m.get(`${name}_bucket`) ?? [])
    .map((s) => ({ le: number(s.labels.le), count: s.value }))
    .sort((a, b) => a.le - b.le);
}

/** Bucket counts of `now` minus those of `before` (the observations between two scrapes). */
export function bucketsDelta(now, before) {
  if (!before || before.length !== now.length) return now;
  return now.map((b, i) => ({ le: b.le, count: b.count - before[i].count }));
}

/**
 * The q-quantile of cumulative buckets, interpolated inside its bucket as
 * Prometheus' histogram_quantile does.  NaN without observations; the
 * highest finite bound, flagged `above`, when it falls in +Inf.
 */
export function quantile(q, bs) {
  const total = bs.length ? bs[bs.length - 1].count : 0;
  if (!(total > 0)) return { value: NaN, above: false };
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of bs) {
    if (b.count >= rank) {
      if (b.le === Infinity) return { value: prevLe, above: true };
      const inBucket = b.count - prevCount;
      const frac = inBucket > 0 ? (rank - prevCount) / inBucket : 1;
      return { value: prevLe + (b.le - prevLe) * frac, above: false };
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return { value: prevLe, above: true };
}
