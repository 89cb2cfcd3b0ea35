// sohub.js - a client of sohub's `sohub.v1` WebSocket protocol with the
// shape of Flash's NetConnection / SharedObject API.
//
// One ES module, no dependencies, no build step.  Runs in browsers (native
// WebSocket) and in Node (pass a WebSocket constructor, e.g. the `ws`
// package's, as `new NetConnection({ WebSocket })`).
//
// The protocol is docs/websocket.md, values are docs/amf-json.md; the
// decisions this file makes where Flash or the protocol leave room are in
// web/lib/README.md.

export const VERSION = '0.1.0';
export const PROTOCOL = 'sohub.v1';

// ---------------------------------------------------------------- events

/** Event type names, as Flash spells them. */
export const NetStatusEvent = Object.freeze({ NET_STATUS: 'netStatus' });
export const SyncEvent = Object.freeze({ SYNC: 'sync' });

/**
 * A small event target that works the same in browsers and Node.  Events
 * are plain objects: `{type, target, ...}`.
 */
export class Emitter {
  #listeners = new Map();

  addEventListener(type, fn) {
    if (typeof fn !== 'function') return;
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(fn);
  }

  removeEventListener(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  /** addEventListener that returns a function removing the listener. */
  on(type, fn) {
    this.addEventListener(type, fn);
    return () => this.removeEventListener(type, fn);
  }

  dispatchEvent(event) {
    event.target ??= this;
    const set = this.#listeners.get(event.type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn.call(this, event);
      } catch (err) {
        reportError(err);
      }
    }
  }
}

// A listener that throws must not break the library's own bookkeeping.
function reportError(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else setTimeout(() => { throw err; });
}

// ---------------------------------------------------------------- values

/**
 * An AMF3 integer (`{"$amf":"int","value":N}`).  Behaves as a number in
 * arithmetic (`valueOf`), and is written back as an integer.
 */
export class SohubInt {
  constructor(value) {
    const n = Number(value);
    if (!Number.isInteger(n) || n < -2147483648 || n > 2147483647)
      throw new RangeError(`SohubInt: ${value} is not an int32`);
    this.value = n;
    Object.freeze(this);
  }
  valueOf() { return this.value; }
  toString() { return String(this.value); }
  toJSON() { return { $amf: 'int', value: this.value }; }
}

/**
 * Any other tagged AMF value the JSON mapping has (`undefined` and dates,
 * byte arrays and integers aside): typed objects, ECMA arrays, vectors,
 * dictionaries, XML, strings that are not UTF-8.  `tag` is the `$amf`
 * name; the other members are those of the JSON form, with the values
 * inside (`members`, `dense`, `items`, `entries`, `external`) decoded,
 * so they read like any other value.  Written back unchanged.
 */
export class AmfValue {
  constructor(tag, fields = {}) {
    this.tag = tag;
    Object.assign(this, fields);
  }
  toJSON() { return toAmfJSON(this); }
}

const VALUE_FIELDS = { members: 'map', dense: 'list', items: 'list', entries: 'pairs', external: 'one' };

function hexToBytes(hex) {
  if (typeof hex !== 'string' || hex.length % 2 || /[^0-9a-fA-F]/.test(hex))
    throw new TypeError('bad hex in AMF JSON');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function bytesToHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function tagNumber(n) {
  if (Number.isNaN(n)) return { $amf: 'number', value: 'NaN' };
  if (n === Infinity) return { $amf: 'number', value: 'Infinity' };
  if (n === -Infinity) return { $amf: 'number', value: '-Infinity' };
  if (Object.is(n, -0)) return { $amf: 'number', value: '-0' };
  return n;
}

function untagNumber(v) {
  if (typeof v === 'number') return v;
  if (v && v.$amf === 'number') {
    switch (v.value) {
      case 'NaN': return NaN;
      case 'Infinity': return Infinity;
      case '-Infinity': return -Infinity;
      case '-0': return -0;
      default: return Number(v.value);
    }
  }
  return NaN;
}

function isPlainObject(v) {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/**
 * JSON form (docs/amf-json.md) -> JavaScript value.
 *   null, booleans, finite numbers, strings, arrays, objects: as they are
 *   {"$amf":"int"}        -> SohubInt
 *   {"$amf":"number"}     -> number (NaN, Infinity, -Infinity, -0)
 *   {"$amf":"undefined"}  -> undefined;  {"$amf":"null"} -> null
 *   {"$amf":"date"}       -> Date (`amfTz` own property when tz is not 0)
 *   {"$amf":"bytes"}      -> Uint8Array
 *   {"$amf":"string"}     -> string when its bytes are UTF-8, else AmfValue
 *   anything else tagged  -> AmfValue
 */
export function fromAmfJSON(j) {
  if (j === null || typeof j !== 'object') return j;
  if (Array.isArray(j)) return j.map(fromAmfJSON);
  if (!Object.prototype.hasOwnProperty.call(j, '$amf')) {
    const o = {};
    for (const [k, v] of Object.entries(j)) defineValue(o, k, fromAmfJSON(v));
    return o;
  }
  switch (j.$amf) {
    case 'int': return new SohubInt(j.value);
    case 'number': return untagNumber(j);
    case 'undefined': return undefined;
    case 'null': return null;
    case 'date': {
      const d = new Date(untagNumber(j.ms));
      if (j.tz) Object.defineProperty(d, 'amfTz', { value: j.tz, enumerable: false, writable: true, configurable: true });
      return d;
    }
    case 'bytes': return hexToBytes(j.hex ?? '');
    case 'string':
      if (typeof j.text === 'string') return j.text;
      try {
        return utf8Strict.decode(hexToBytes(j.hex ?? ''));
      } catch {
        return new AmfValue('string', { hex: j.hex });
      }
    default: {
      const fields = {};
      for (const [k, v] of Object.entries(j)) {
        if (k === '$amf') continue;
        switch (VALUE_FIELDS[k]) {
          case 'map': {
            const o = {};
            for (const [mk, mv] of Object.entries(v ?? {})) defineValue(o, mk, fromAmfJSON(mv));
            fields[k] = o;
            break;
          }
          case 'list': fields[k] = (v ?? []).map(fromAmfJSON); break;
          case 'pairs': fields[k] = (v ?? []).map(([a, b]) => [fromAmfJSON(a), fromAmfJSON(b)]); break;
          case 'one': fields[k] = fromAmfJSON(v); break;
          default: fields[k] = v;
        }
      }
      return new AmfValue(j.$amf, fields);
    }
  }
}

// obj[k] = v without the "__proto__" setter.
function defineValue(o, k, v) {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/**
 * JavaScript value -> JSON form; the inverse of fromAmfJSON.  Also takes
 * a Map (written as an AMF3 dictionary) and an ArrayBuffer (bytes).
 * Throws TypeError for what AMF cannot hold (functions, symbols, bigints,
 * cycles, typed arrays other than Uint8Array).
 */
export function toAmfJSON(v, seen = new Set()) {
  if (v === null) return null;
  switch (typeof v) {
    case 'undefined': return { $amf: 'undefined' };
    case 'boolean': return v;
    case 'number': return tagNumber(v);
    case 'string':
      return v.includes('\0') ? { $amf: 'string', hex: bytesToHex(utf8.encode(v)) } : v;
    case 'object': break;
    default: throw new TypeError(`sohub: a ${typeof v} cannot be sent`);
  }
  if (v instanceof SohubInt) return v.toJSON();
  if (v instanceof Number || v instanceof String || v instanceof Boolean) return toAmfJSON(v.valueOf(), seen);
  if (v instanceof Date) {
    return { $amf: 'date', ms: tagNumber(v.getTime()), tz: v.amfTz ?? 0 };
  }
  if (v instanceof Uint8Array) return { $amf: 'bytes', hex: bytesToHex(v) };
  if (v instanceof ArrayBuffer) return { $amf: 'bytes', hex: bytesToHex(new Uint8Array(v)) };
  if (ArrayBuffer.isView(v)) throw new TypeError('sohub: only Uint8Array byte arrays can be sent');
  if (seen.has(v)) throw new TypeError('sohub: a value that contains itself cannot be sent');
  seen.add(v);
  try {
    if (Array.isArray(v)) {
      const out = [];
      for (let i = 0; i < v.length; i++) out.push(toAmfJSON(v[i], seen));
      return out;
    }
    if (v instanceof Map)
      return { $amf: 'dict', weak: false, entries: [...v].map(([a, b]) => [toAmfJSON(a, seen), toAmfJSON(b, seen)]) };
    if (v instanceof AmfValue) {
      const out = { $amf: v.tag };
      for (const [k, f] of Object.entries(v)) {
        if (k === 'tag') continue;
        switch (VALUE_FIELDS[k]) {
          case 'map': out[k] = membersJSON(f, seen); break;
          case 'list': out[k] = f.map((x) => toAmfJSON(x, seen)); break;
          case 'pairs': out[k] = f.map(([a, b]) => [toAmfJSON(a, seen), toAmfJSON(b, seen)]); break;
          case 'one': out[k] = toAmfJSON(f, seen); break;
          default: out[k] = f;
        }
      }
      return out;
    }
    const members = membersJSON(v, seen);
    // a plain object with a member called $amf would read as a tag
    return Object.prototype.hasOwnProperty.call(v, '$amf') ? { $amf: 'object', members } : members;
  } finally {
    seen.delete(v);
  }
}

function membersJSON(o, seen) {
  const out = {};
  for (const k of Object.keys(o)) {
    const x = o[k];
    if (typeof x === 'function') continue; // methods are not data, as in Flash
    defineValue(out, k, toAmfJSON(x, seen));
  }
  return out;
}

// Keys of slots: strings, or tagged strings when not UTF-8 / with a NUL.
function keyFromJSON(k) {
  if (typeof k === 'string') return k;
  if (k && k.$amf === 'string') {
    if (typeof k.text === 'string') return k.text;
    const bytes = hexToBytes(k.hex ?? '');
    try {
      return utf8Strict.decode(bytes);
    } catch {
      return String.fromCharCode(...bytes); // Latin-1 view; written back from rawKeys
    }
  }
  return String(k);
}

function keyToJSON(k, rawKeys) {
  const raw = rawKeys?.get(k);
  if (raw !== undefined) return raw;
  return k.includes('\0') ? { $amf: 'string', hex: bytesToHex(utf8.encode(k)) } : k;
}

function sameValue(a, b) {
  return JSON.stringify(toAmfJSON(a)) === JSON.stringify(toAmfJSON(b));
}

// ---------------------------------------------------------------- calls

/** Flash's Responder: `new Responder(result, status)`. */
export class Responder {
  constructor(result, status) {
    this.result = result;
    this.status = status;
  }
}

/** The rejection of a call's promise: `info` is the server's (or our) info object. */
export class CallError extends Error {
  constructor(info) {
    super(`${info?.code ?? 'NetConnection.Call.Failed'}: ${info?.description ?? ''}`);
    this.name = 'CallError';
    this.info = info;
    this.code = info?.code;
  }
}

function callFailed(description) {
  return { level: 'error', code: 'NetConnection.Call.Failed', description };
}

// Close codes after which reconnecting cannot help (docs/websocket.md).
const FINAL_CLOSE = new Set([1003, 1007, 1008, 1009, 4400, 4403]);

const DEFAULT_RECONNECT = Object.freeze({
  initialDelayMs: 500, // first wait after a drop
  maxDelayMs: 10000,   // cap of the exponential growth
  factor: 2,
  jitter: 0.5,         // each wait is drawn in [d * (1 - jitter), d]
  maxAttempts: Infinity,
});

// ---------------------------------------------------------------- NetConnection

/**
 * Flash's NetConnection over sohub.v1.
 *
 *   const nc = new NetConnection({ user: 'alice' });
 *   nc.addEventListener('netStatus', (e) => console.log(e.info.code));
 *   nc.connect('ws://127.0.0.1:8080/ws/chat/room1');
 *
 * Options: WebSocket (a constructor; default globalThis.WebSocket), user,
 * token, app (default: the path after /ws/), reconnect (false, or
 * {initialDelayMs, maxDelayMs, factor, jitter, maxAttempts}), queueCalls
 * (default true: calls made while reconnecting wait for the connection).
 */
export class NetConnection extends Emitter {
  /** Handlers of the server's calls (`chat.onPrivate` -> client.chat.onPrivate or client['chat.onPrivate']). */
  client = {};
  /** Flash AS2 style: `nc.onStatus = (info) => ...` is called for every netStatus. */
  onStatus = null;

  #opts;
  #WS;
  #ws = null;
  #state = 'idle'; // idle | connecting | connected | reconnecting | closed
  #url = null;
  #args = [];
  #nextId = 1;
  #connectId = 0;
  #pending = new Map(); // id -> {resolve, reject, method, args, retry}
  #queue = [];          // calls waiting for the connection
  #handlers = new Map(); // internal handlers of server calls (Chat)
  #objects = new Set();  // SharedObjects attached to this connection
  #attempt = 0;
  #timer = null;
  #everConnected = false;
  #final = null;         // set when the connection must not come back
  #onlineHook = null;
  #clientId = null;
  #connectInfo = null;

  constructor(options = {}) {
    super();
    this.#opts = { queueCalls: true, ...options };
    const r = options.reconnect;
    this.#opts.reconnect = r === false ? false : { ...DEFAULT_RECONNECT, ...(r && typeof r === 'object' ? r : {}) };
    this.#WS = options.WebSocket ?? globalThis.WebSocket;
  }

  /** True while the server has accepted this connection and the socket is open. */
  get connected() { return this.#state === 'connected'; }
  /** idle, connecting, connected, reconnecting or closed. */
  get state() { return this.#state; }
  /** The URL given to connect(). */
  get uri() { return this.#url; }
  /** The server's id of this connection (changes on every reconnect). */
  get clientId() { return this.#clientId; }
  /** The info object of the last NetConnection.Connect.Success. */
  get connectInfo() { return this.#connectInfo; }

  /**
   * Opens `url` (ws://HOST:PORT/ws/APP/INSTANCE) and sends connect with
   * `args` (Flash's connect arguments: the first two strings are user
   * and token unless the options or the URL's ?user=&token= give them).
   */
  connect(url, ...args) {
    if (!this.#WS) throw new Error('sohub: no WebSocket constructor (pass options.WebSocket in Node)');
    this.#teardown();
    // calls of a previous connection get no answer on this one
    this.#failAll('The connection was replaced.', false);
    this.#url = String(url);
    this.#args = args;
    this.#final = null;
    this.#attempt = 0;
    this.#everConnected = false;
    this.#installOnlineHook();
    this.#open();
  }

  /**
   * Flash's call.  With a responder ({result, status} or a Responder) its
   * functions get the answer and nothing is returned; with null a Promise
   * is returned that resolves to the result and rejects with a CallError.
   */
  call(method, responder, ...args) {
    const p = this.#call(method, args, {});
    if (responder) {
      p.then(
        (v) => responder.result?.(v),
        (e) => responder.status?.(e instanceof CallError ? e.info : callFailed(String(e?.message ?? e)))
      );
      return undefined;
    }
    return p;
  }

  /** The Promise form of call without the responder slot. */
  invoke(method, ...args) {
    return this.#call(method, args, {});
  }

  /** Closes for good: no reconnect.  Pending calls fail. */
  close() {
    const was = this.#state;
    this.#final = { code: 'NetConnection.Connect.Closed', description: 'Closed by the client.' };
    this.#teardown();
    this.#state = 'closed';
    this.#failAll('The connection was closed.', true);
    for (const so of this.#objects) so._detached();
    this.#removeOnlineHook();
    if (was !== 'idle' && was !== 'closed')
      this.#status({ level: 'status', code: 'NetConnection.Connect.Closed', description: 'Closed by the client.' });
  }

  /** Skips the wait before the next reconnect attempt (e.g. when the network is back). */
  reconnectNow() {
    if (this.#state !== 'reconnecting' || !this.#timer) return;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#open();
  }

  // -- internal API used by SharedObject and Chat --

  _send(obj) {
    if (this.#state !== 'connected' || !this.#ws) return false;
    this.#ws.send(JSON.stringify(obj));
    return true;
  }

  _attach(so) {
    for (const o of this.#objects)
      if (o !== so && o.name === so.name && o.persistent === so.persistent)
        throw new Error(`sohub: a SharedObject ${so.name} (persistent: ${so.persistent}) already uses this connection`);
    this.#objects.add(so);
    if (this.connected) so._connected();
  }

  _detach(so) {
    this.#objects.delete(so);
  }

  _handle(method, fn) {
    this.#handlers.set(method, fn);
    return () => { if (this.#handlers.get(method) === fn) this.#handlers.delete(method); };
  }

  _call(method, args, opts) {
    return this.#call(method, args, opts);
  }

  // -- connection --

  #open() {
    this.#timer = null;
    this.#state = this.#everConnected || this.#attempt > 0 ? 'reconnecting' : 'connecting';
    let ws;
    try {
      ws = new this.#WS(this.#url, PROTOCOL);
    } catch (err) {
      this.#final = { code: 'NetConnection.Connect.InvalidApp', description: String(err?.message ?? err) };
      this.#state = 'closed';
      this.#status({ level: 'error', ...this.#final });
      return;
    }
    this.#ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this.#ws !== ws) return;
      opened = true;
      const id = this.#nextId++;
      this.#connectId = id;
      const msg = { op: 'connect', id, args: this.#args.map((a) => toAmfJSON(a)) };
      const q = urlQuery(this.#url);
      const user = this.#opts.user ?? q.user;
      const token = this.#opts.token ?? q.token;
      if (user != null) msg.user = String(user);
      if (token != null) msg.token = String(token);
      if (this.#opts.app != null) msg.app = String(this.#opts.app);
      ws.send(JSON.stringify(msg));
    };
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return;
      const text = typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data);
      let m;
      try {
        m = JSON.parse(text);
      } catch {
        return;
      }
      this.#onMessage(m);
    };
    ws.onerror = () => {}; // a close event follows
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#onClose(ev?.code ?? 1006, ev?.reason ?? '', opened);
    };
  }

  #onMessage(m) {
    switch (m.op) {
      case 'result':
        if (m.id === this.#connectId && this.#state !== 'connected') return this.#onConnectResult(m);
        return this.#onResult(m);
      case 'call':
        return this.#onServerCall(m);
      case 'so':
        for (const so of this.#objects) if (so._matches(m)) so._onMessage(m);
        return;
      default:
        return;
    }
  }

  #onConnectResult(m) {
    const info = fromAmfJSON(m.value) ?? {};
    if (!m.ok) {
      this.#final = { code: 'NetConnection.Connect.Rejected', description: info.description };
      this.#status({ level: 'error', code: 'NetConnection.Connect.Rejected', description: info.description ?? '', ...info });
      return; // the server closes with 4403; #onClose reports Closed
    }
    const reconnected = this.#everConnected;
    this.#state = 'connected';
    this.#everConnected = true;
    this.#attempt = 0;
    this.#clientId = info.clientId ?? null;
    this.#connectInfo = info;
    this.#status({ ...info, reconnected });
    if (this.#state !== 'connected') return; // a listener closed it
    for (const so of this.#objects) so._connected();
    const q = this.#queue;
    this.#queue = [];
    for (const c of q) this.#transmit(c);
  }

  #onClose(code, reason, opened) {
    const wasConnected = this.#state === 'connected';
    if (this.#state === 'closed') return;
    for (const so of this.#objects) so._disconnected();
    if (this.#final || FINAL_CLOSE.has(code) || !this.#opts.reconnect) {
      const info = {
        level: this.#final?.code === 'NetConnection.Connect.Rejected' ? 'error' : 'status',
        code: 'NetConnection.Connect.Closed',
        description: this.#final?.description ?? (reason || `WebSocket closed (${code})`),
        wsCode: code,
      };
      this.#state = 'closed';
      this.#failAll('The connection was closed.', true);
      this.#removeOnlineHook();
      if (!wasConnected && !this.#everConnected && !this.#final && !opened)
        this.#status({ level: 'error', code: 'NetConnection.Connect.Failed', description: info.description, wsCode: code });
      this.#status(info);
      return;
    }
    // a drop: calls whose answer is lost fail, unless they may be sent again
    this.#failAll('The connection was lost before the answer came.', false);
    if (!this.#everConnected && this.#attempt === 0)
      this.#status({ level: 'error', code: 'NetConnection.Connect.Failed', description: reason || `WebSocket closed (${code})`, wsCode: code });
    const r = this.#opts.reconnect;
    if (this.#attempt >= r.maxAttempts) {
      this.#state = 'closed';
      this.#failAll('The connection was closed.', true);
      this.#removeOnlineHook();
      this.#status({ level: 'status', code: 'NetConnection.Connect.Closed', description: 'Gave up reconnecting.', wsCode: code });
      return;
    }
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * Math.pow(r.factor, this.#attempt));
    const delay = Math.round(base * (1 - r.jitter * Math.random()));
    this.#attempt++;
    this.#state = 'reconnecting';
    this.#status({ level: 'status', code: 'NetConnection.Connect.Reconnecting', description: `Reconnecting in ${delay} ms.`, attempt: this.#attempt, delayMs: delay, wsCode: code });
    if (this.#state !== 'reconnecting') return; // a listener closed it
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  #teardown() {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
      try {
        ws.close(1000);
      } catch {
        /* not open yet */
      }
      for (const so of this.#objects) so._disconnected();
    }
  }

  #status(info) {
    this.dispatchEvent({ type: 'netStatus', info });
    if (typeof this.onStatus === 'function') {
      try {
        this.onStatus(info);
      } catch (err) {
        reportError(err);
      }
    }
  }

  #installOnlineHook() {
    if (this.#onlineHook || typeof globalThis.addEventListener !== 'function' || typeof window === 'undefined') return;
    this.#onlineHook = () => this.reconnectNow();
    globalThis.addEventListener('online', this.#onlineHook);
  }

  #removeOnlineHook() {
    if (!this.#onlineHook) return;
    globalThis.removeEventListener('online', this.#onlineHook);
    this.#onlineHook = null;
  }

  // -- calls --

  #call(method, args, opts) {
    let encoded;
    try {
      encoded = args.map((a) => toAmfJSON(a));
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const c = { method, args: encoded, resolve, reject, retry: !!opts.retry, id: 0 };
      if (this.#state === 'connected') this.#transmit(c);
      else if ((this.#state === 'connecting' || this.#state === 'reconnecting') && (this.#opts.queueCalls || c.retry)) this.#queue.push(c);
      else reject(new CallError(callFailed('Not connected.')));
    });
  }

  #transmit(c) {
    c.id = this.#nextId++;
    this.#pending.set(c.id, c);
    this._send({ op: 'call', id: c.id, method: c.method, args: c.args });
  }

  #onResult(m) {
    const c = this.#pending.get(m.id);
    if (!c) return;
    this.#pending.delete(m.id);
    const v = fromAmfJSON(m.value);
    if (m.ok) c.resolve(v);
    else c.reject(new CallError(v && typeof v === 'object' ? v : callFailed(String(v))));
  }

  // Calls in flight: fail them, or (retry, not final) queue them again.
  #failAll(description, final) {
    const again = [];
    for (const c of this.#pending.values()) {
      if (c.retry && !final) again.push(c);
      else c.reject(new CallError(callFailed(description)));
    }
    this.#pending.clear();
    if (final) {
      for (const c of this.#queue) c.reject(new CallError(callFailed(description)));
      this.#queue = [];
    } else {
      this.#queue = again.concat(this.#queue);
    }
  }

  async #onServerCall(m) {
    const args = (m.args ?? []).map(fromAmfJSON);
    const own = this.#handlers.get(m.method);
    const fn = own ? { fn: own, self: this } : lookupHandler(this.client, m.method, this);
    let ok = true;
    let value;
    if (!fn) {
      ok = false;
      value = callFailed(`Method not found (${m.method}).`);
      if (!m.id) this.dispatchEvent({ type: 'asyncError', error: new Error(value.description), method: m.method, args });
    } else {
      try {
        value = await fn.fn.apply(fn.self, args);
      } catch (err) {
        ok = false;
        value = callFailed(String(err?.message ?? err));
        if (!m.id) reportError(err);
      }
    }
    if (m.id) {
      let json;
      try {
        json = toAmfJSON(value);
      } catch (err) {
        ok = false;
        json = callFailed(String(err.message));
      }
      this._send({ op: 'result', id: m.id, ok, value: json });
    }
  }
}

// client['a.b'] or client.a.b; only own properties when the target is one
// of ours, so that the server cannot call the library's methods.
function lookupHandler(client, method, owner) {
  if (!client || typeof method !== 'string') return null;
  const own = (o, k) => o != null && Object.prototype.hasOwnProperty.call(o, k);
  const strict = client === owner;
  if ((strict ? own(client, method) : true) && typeof client[method] === 'function')
    return { fn: client[method], self: client };
  let self = client;
  const parts = method.split('.');
  for (let i = 0; i < parts.length; i++) {
    const k = parts[i];
    if (self == null || (strict && !own(self, k)) || (!strict && !(k in Object(self)))) return null;
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') return null;
    if (i === parts.length - 1) {
      const f = self[k];
      return typeof f === 'function' ? { fn: f, self } : null;
    }
    self = self[k];
  }
  return null;
}

function urlQuery(url) {
  try {
    const u = new URL(url);
    return { user: u.searchParams.get('user') ?? undefined, token: u.searchParams.get('token') ?? undefined };
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------- SharedObject

const DELETE = Symbol('delete');
const registry = new Map();

/**
 * Flash's remote SharedObject.
 *
 *   const so = SharedObject.getRemote('room', nc.uri, true);
 *   so.addEventListener('sync', (e) => render(so.data, e.changeList));
 *   so.connect(nc);
 *   so.setProperty('topic', 'lunch');
 *
 * `data` is a read-only view: write with setProperty (or change a nested
 * value in place and call setDirty).  Writes made in one turn of the event
 * loop go out as one message: the server applies them together as one
 * version.
 */
export class SharedObject extends Emitter {
  /** Target of `send` messages; the object itself by default (own properties only). */
  client = this;
  /** Flash AS2 style: `so.onSync = (changeList) => ...`. */
  onSync = null;

  #name;
  #uri;
  #persistent;
  #nc = null;
  #offs = [];
  #version = 0;
  #ready = false;         // use answered on the current connection
  #confirmed = new Map(); // the server's values as far as we know them
  #unsent = new Map();    // key -> value | DELETE, not sent yet
  #maybeSent = new Set(); // unsent keys that were in flight when the socket dropped
  #unsentBase = null;     // version the first unsent write was made at
  #inflight = [];         // [{writes: Map, base}] sent, not answered, oldest first
  #outbox = [];           // sends waiting for the connection, in order
  #flushQueued = false;
  #rawKeys = new Map();
  #data = {};
  #view;
  #closed = false;

  /** One instance per (name, uri, persistent), as in Flash. */
  static getRemote(name, uri, persistent = false) {
    const key = `${uri}\n${name}\n${!!persistent}`;
    let so = registry.get(key);
    if (!so || so.#closed) {
      so = new SharedObject(name, uri, persistent);
      registry.set(key, so);
    }
    return so;
  }

  constructor(name, uri, persistent = false) {
    super();
    this.#name = String(name);
    this.#uri = uri;
    this.#persistent = !!persistent;
    const ro = () => {
      throw new TypeError(`SharedObject ${this.#name}: data is read-only, use setProperty()`);
    };
    this.#view = new Proxy(this.#data, { set: ro, deleteProperty: ro, defineProperty: ro, setPrototypeOf: ro });
  }

  get name() { return this.#name; }
  get uri() { return this.#uri; }
  get persistent() { return this.#persistent; }
  /** The slots, read-only. */
  get data() { return this.#view; }
  /** The object's version this client holds (0: none yet). */
  get version() { return this.#version; }
  /** True once the server answered `use` on the current connection. */
  get ready() { return this.#ready; }
  /** Writes not yet applied by the server (queued or in flight). */
  get pendingWrites() { return this.#unsent.size + this.#inflight.reduce((n, b) => n + b.writes.size, 0); }

  /** Subscribes through nc (now, or as soon as it connects; again after every reconnect). */
  connect(nc) {
    if (this.#closed) throw new Error(`SharedObject ${this.#name} is closed`);
    if (this.#nc === nc) return true;
    if (this.#nc) this.#release();
    this.#nc = nc;
    try {
      nc._attach(this);
    } catch (err) {
      this.#nc = null;
      throw err;
    }
    return true;
  }

  /** Sets one slot; null or undefined removes it (as Flash does). */
  setProperty(name, value) {
    const key = String(name);
    if (value === null || value === undefined) {
      this.#write(key, DELETE);
    } else {
      toAmfJSON(value); // throws now for what cannot be sent
      this.#write(key, value);
    }
  }

  /** Sends data[name] again, after changing a value inside it in place. */
  setDirty(name) {
    const key = String(name);
    if (Object.prototype.hasOwnProperty.call(this.#data, key)) this.#write(key, this.#data[key]);
  }

  /** Calls `handler` on every subscriber's `client`, this one included. */
  send(handler, ...args) {
    const json = args.map((a) => toAmfJSON(a));
    this.#outbox.push({ handler: keyToJSON(String(handler)), args: json });
    this.#scheduleFlush();
  }

  /** Unsubscribes and forgets the data. */
  close() {
    if (this.#closed) return;
    this.#release();
    this.#closed = true;
    for (const [k, so] of registry) if (so === this) registry.delete(k);
  }

  // -- called by NetConnection --

  _matches(m) {
    return keyFromJSON(m.name) === this.#name && !!m.persistent === this.#persistent;
  }

  _connected() {
    if (this.#closed) return;
    this.#ready = false;
    this.#nc._send({ op: 'so', name: this.#name, version: this.#version, persistent: this.#persistent, events: [{ t: 'use' }] });
  }

  _disconnected() {
    this.#ready = false;
    // in flight: the answer is lost; send again after the resume unless
    // the server turns out to hold the value already
    if (!this.#inflight.length) return;
    const back = new Map();
    for (const b of this.#inflight) {
      for (const [k, v] of b.writes) back.set(k, v);
      this.#unsentBase = this.#unsentBase == null ? b.base : Math.min(this.#unsentBase, b.base);
    }
    for (const [k, v] of back) {
      if (!this.#unsent.has(k)) {
        this.#unsent.set(k, v);
        this.#maybeSent.add(k);
      }
    }
    this.#inflight = [];
  }

  _detached() {
    this._disconnected();
  }

  _onMessage(m) {
    const events = Array.isArray(m.events) ? m.events : [];
    const isUse = events.some((e) => e.t === 'use_success');
    const before = this.#version;
    const version = typeof m.version === 'number' ? m.version : before;
    this.#version = isUse ? version : Math.max(before, version);
    // the write this message answers: the oldest in flight it names (over a
    // cluster a later write's refusals may come before an earlier one's
    // answer from Redis)
    const head = !isUse ? this.#inflight.find((b) => isReply(events, version <= before, b.writes)) : undefined;
    const reply = !!head;
    const changeList = [];
    const statuses = [];
    const sends = [];
    let cleared = false;
    for (const ev of events) {
      switch (ev.t) {
        case 'clear':
          cleared = true;
          this.#confirmed.clear();
          changeList.push({ code: 'clear' });
          break;
        case 'change':
          for (const [k, v] of ev.slots ?? []) this.#serverValue(this.#key(k), fromAmfJSON(v), reply ? head : null, changeList);
          break;
        case 'remove':
          this.#serverValue(this.#key(ev.key), DELETE, reply ? head : null, changeList);
          break;
        case 'success': {
          const key = this.#key(ev.key);
          if (!reply || !head.writes.has(key)) break;
          const v = head.writes.get(key);
          head.writes.delete(key);
          const old = this.#confirmed.get(key);
          if (v === DELETE) this.#confirmed.delete(key);
          else this.#confirmed.set(key, v);
          this.#refresh(key);
          changeList.push({ code: 'success', name: key, oldValue: old });
          break;
        }
        case 'status':
          statuses.push({ level: ev.level ?? 'error', code: ev.code, description: ev.description });
          break;
        case 'send':
          sends.push(ev);
          break;
        default:
          break;
      }
    }
    // The server names every key of a write in its answers: one message on
    // one node; over a cluster the keys its node refused come at once and
    // the others once Redis stored them (docs/cluster.md), so a write is
    // done when all its keys were answered.
    if (reply && head.writes.size === 0) this.#inflight.splice(this.#inflight.indexOf(head), 1);
    if (cleared) this.#rebuild(changeList);
    if (isUse) {
      this.#ready = true;
      this.#settleMaybeSent(changeList);
    }
    if (changeList.length || isUse) this.#sync(changeList);
    for (const s of statuses) this.#status(s);
    for (const s of sends) this.#deliver(s);
    if (isUse) this.#scheduleFlush();
  }

  // -- internals --

  #key(k) {
    const key = keyFromJSON(k);
    if (typeof k !== 'string') this.#rawKeys.set(key, k);
    return key;
  }

  // A value from the server: the answer to our write (reply) or news.
  #serverValue(key, value, head, changeList) {
    if (head && head.writes.has(key)) {
      const attempted = head.writes.get(key);
      head.writes.delete(key);
      if (value === DELETE) this.#confirmed.delete(key);
      else this.#confirmed.set(key, value);
      this.#refresh(key);
      changeList.push({ code: 'reject', name: key, oldValue: attempted === DELETE ? undefined : attempted });
      return;
    }
    const had = Object.prototype.hasOwnProperty.call(this.#data, key);
    const old = this.#data[key];
    if (value === DELETE) this.#confirmed.delete(key);
    else this.#confirmed.set(key, value);
    if (this.#shadowed(key)) return; // our own pending write stays on top
    this.#refresh(key);
    if (value === DELETE) {
      if (had) changeList.push({ code: 'delete', name: key, oldValue: old });
    } else {
      changeList.push({ code: 'change', name: key, oldValue: old });
    }
  }

  #shadowed(key) {
    return this.#unsent.has(key) || this.#inflight.some((b) => b.writes.has(key));
  }

  // data[key] = unsent, else the newest in-flight value, else the server's
  #refresh(key) {
    let v;
    if (this.#unsent.has(key)) v = this.#unsent.get(key);
    else {
      v = this.#confirmed.has(key) ? this.#confirmed.get(key) : DELETE;
      for (const b of this.#inflight) if (b.writes.has(key)) v = b.writes.get(key);
    }
    if (v === DELETE) delete this.#data[key];
    else defineValue(this.#data, key, v);
  }

  // After a clear: the view is the server's state plus our pending writes;
  // Flash reports one `change` per slot after the `clear`.
  #rebuild(changeList) {
    const listed = new Set(changeList.filter((c) => c.name !== undefined).map((c) => c.name));
    for (const k of Object.keys(this.#data)) if (!this.#confirmed.has(k) && !this.#shadowed(k)) delete this.#data[k];
    for (const k of this.#confirmed.keys()) {
      this.#refresh(k);
      if (!listed.has(k)) changeList.push({ code: 'change', name: k });
    }
  }

  // Writes that were in flight when the socket dropped: if the server
  // holds exactly that value now, they were applied: report success.
  #settleMaybeSent(changeList) {
    for (const k of this.#maybeSent) {
      if (!this.#unsent.has(k)) continue;
      const v = this.#unsent.get(k);
      const applied = v === DELETE ? !this.#confirmed.has(k) : this.#confirmed.has(k) && sameValue(this.#confirmed.get(k), v);
      if (applied) {
        this.#unsent.delete(k);
        this.#refresh(k);
        changeList.push({ code: 'success', name: k });
      }
    }
    this.#maybeSent.clear();
    if (!this.#unsent.size) this.#unsentBase = null;
  }

  #write(key, value) {
    if (this.#closed) throw new Error(`SharedObject ${this.#name} is closed`);
    if (!this.#unsent.size) this.#unsentBase = this.#version;
    this.#unsent.set(key, value);
    this.#maybeSent.delete(key);
    this.#refresh(key);
    this.#scheduleFlush();
  }

  #scheduleFlush() {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  #flush() {
    if (!this.#ready || !this.#nc?.connected || this.#closed) return;
    if (this.#unsent.size) {
      const writes = this.#unsent;
      const base = this.#unsentBase ?? this.#version;
      const slots = [];
      const events = [];
      for (const [k, v] of writes) {
        if (v === DELETE) events.push({ t: 'remove', key: keyToJSON(k, this.#rawKeys) });
        else slots.push([keyToJSON(k, this.#rawKeys), toAmfJSON(v)]);
      }
      if (slots.length) events.unshift({ t: 'change', slots });
      if (!this.#nc._send({ op: 'so', name: this.#name, version: base, persistent: this.#persistent, events })) return;
      this.#inflight.push({ writes, base });
      this.#unsent = new Map();
      this.#unsentBase = null;
    }
    while (this.#outbox.length) {
      const s = this.#outbox[0];
      if (!this.#nc._send({ op: 'so', name: this.#name, version: this.#version, persistent: this.#persistent, events: [{ t: 'send', handler: s.handler, args: s.args }] })) return;
      this.#outbox.shift();
    }
  }

  #release() {
    if (this.#nc) {
      if (this.#ready) this.#nc._send({ op: 'so', name: this.#name, version: this.#version, persistent: this.#persistent, events: [{ t: 'release' }] });
      this.#nc._detach(this);
    }
    this.#nc = null;
    this.#ready = false;
  }

  #sync(changeList) {
    this.dispatchEvent({ type: 'sync', changeList });
    if (typeof this.onSync === 'function') {
      try {
        this.onSync(changeList);
      } catch (err) {
        reportError(err);
      }
    }
  }

  #status(info) {
    this.dispatchEvent({ type: 'netStatus', info });
  }

  #deliver(ev) {
    const handler = keyFromJSON(ev.handler);
    const args = (ev.args ?? []).map(fromAmfJSON);
    const target = this.client;
    const own = target === this
      ? Object.prototype.hasOwnProperty.call(this, handler) && handler !== 'client' && handler !== 'onSync'
      : target != null && handler in Object(target) && handler !== 'constructor' && handler !== '__proto__';
    const fn = own ? target[handler] : undefined;
    if (typeof fn !== 'function') {
      this.dispatchEvent({ type: 'asyncError', error: new Error(`No handler ${handler} on the client`), handler, args });
      return;
    }
    try {
      fn.apply(target, args);
    } catch (err) {
      reportError(err);
    }
  }
}

// A message answers our oldest write when it carries `success`, or when
// it carries values only for keys of that write and moves no version
// forward (a refusal changes nothing).  A broadcast always brings a new
// version; the server never claims a newer version in a reply to a
// congested client (so.c, reply_version).
function isReply(events, noNewVersion, writes) {
  let values = 0;
  for (const e of events) {
    if (e.t === 'success') return writes.has(keyFromJSON(e.key));
    if (e.t === 'send' || e.t === 'clear' || e.t === 'use_success') return false;
    if (e.t === 'change') {
      for (const [k] of e.slots ?? []) {
        if (!writes.has(keyFromJSON(k))) return false;
        values++;
      }
    } else if (e.t === 'remove') {
      if (!writes.has(keyFromJSON(e.key))) return false;
      values++;
    } else if (e.t === 'status' && e.code === 'SharedObject.NoObject') {
      return true;
    }
  }
  return values > 0 && noNewVersion;
}

// ---------------------------------------------------------------- Chat

/**
 * Private messages and presence (docs/chat.md).
 *
 *   const chat = new Chat(nc);
 *   chat.onPrivate = (msg) => { show(msg); chat.ack(msg.id); };
 *   chat.addEventListener('presence', (e) => showOnline(e.users));
 *   const { id, status } = await chat.sendPrivate('bob', 'lunch?');
 *
 * Delivery is at least once: messages the server sends again (on every
 * reconnect, until acknowledged) reach onPrivate once per Chat.
 */
export class Chat extends Emitter {
  /** Called with {id, from, to, text, ts} for each new private message. */
  onPrivate = null;

  #nc;
  #off;
  #seen = new Set();
  #seenFloor = 0;
  #n = 0;
  #prefix = Math.random().toString(36).slice(2, 10);
  #autoAck;
  /** The `presence` object (null with {presence: false}). */
  presence = null;

  constructor(nc, { presence = true, autoAck = false } = {}) {
    super();
    this.#nc = nc;
    this.#autoAck = autoAck;
    this.#off = nc._handle('chat.onPrivate', (msg) => this.#onPrivate(msg));
    if (presence) {
      this.presence = SharedObject.getRemote('presence', nc.uri, false);
      this.presence.addEventListener('sync', (e) => this.#onPresence(e.changeList));
      this.presence.connect(nc);
    }
  }

  /**
   * Sends `text` to `to`.  Resolves to {id, status} ("delivered" or
   * "queued"), rejects with a CallError (Chat.UnknownUser, Chat.TooLong,
   * ...).  The clientId (made up when absent) lets the library send the
   * message again after a dropped connection without a duplicate.
   */
  sendPrivate(to, text, clientId) {
    const cid = clientId ?? `${this.#prefix}-${++this.#n}`;
    return this.#nc._call('chat.sendPrivate', [to, text, cid], { retry: true });
  }

  /** Acknowledges every message up to id (from any of the user's connections). */
  ack(id) {
    return this.#nc._call('chat.ack', [id], {});
  }

  /** The users online in this instance, sorted. */
  online() {
    return this.presence ? Object.keys(this.presence.data).sort() : [];
  }

  close() {
    this.#off();
    this.presence?.close();
  }

  #onPrivate(msg) {
    const id = Number(msg?.id);
    if (Number.isFinite(id)) {
      if (id <= this.#seenFloor || this.#seen.has(id)) return;
      this.#seen.add(id);
      if (this.#seen.size > 4096) {
        const ids = [...this.#seen].sort((a, b) => a - b);
        for (const x of ids.slice(0, 2048)) this.#seen.delete(x);
        this.#seenFloor = Math.max(this.#seenFloor, ids[2047]);
      }
    }
    this.dispatchEvent({ type: 'private', message: msg });
    if (typeof this.onPrivate === 'function') {
      try {
        this.onPrivate(msg);
      } catch (err) {
        reportError(err);
      }
    }
    if (this.#autoAck && Number.isFinite(id)) this.ack(id).catch(() => {});
  }

  #onPresence(changeList) {
    const joined = [];
    const left = [];
    let cleared = false;
    for (const c of changeList) {
      if (c.code === 'clear') cleared = true;
      else if (c.code === 'change' && c.oldValue === undefined) joined.push(c.name);
      else if (c.code === 'delete') left.push(c.name);
    }
    this.dispatchEvent({ type: 'presence', users: this.online(), joined: cleared ? [] : joined, left, initial: cleared });
  }
}

export default { NetConnection, SharedObject, Chat, Responder, CallError, SohubInt, AmfValue, fromAmfJSON, toAmfJSON, NetStatusEvent, SyncEvent, VERSION };
