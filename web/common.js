// Helpers shared by the sample pages (not part of the library).

/** Query parameters of the page: ?user=&room=&token=&ws= ... */
export const params = new URLSearchParams(location.search);

/** The WebSocket URL of APP/INSTANCE on the server that served the page (or ?ws=BASE). */
export function wsUrl(app, instance) {
  const base = params.get('ws') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  return `${base.replace(/\/+$/, '')}/${encodeURIComponent(app)}/${encodeURIComponent(instance)}`;
}

/** document.getElementById */
export const $ = (id) => document.getElementById(id);

/** Creates an element: el('li', {class: 'x', text: 'hi'}, child...) */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

export function time(ms) {
  const d = new Date(Number(ms));
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Keeps the connection pill (role=status) in step with the NetConnection. */
export function showConnection(nc, pill) {
  const labels = {
    idle: 'not connected', connecting: 'connecting…', connected: 'connected',
    reconnecting: 'reconnecting…', closed: 'disconnected',
  };
  const update = (info) => {
    pill.dataset.state = nc.state;
    pill.textContent = labels[nc.state] ?? nc.state;
    if (info?.code === 'NetConnection.Connect.Rejected' || (nc.state === 'closed' && info?.description))
      pill.title = info.description;
  };
  // the connection's history, for the console (and the tests' failure reports)
  const log = (window.sohubLog = []);
  nc.addEventListener('netStatus', (e) => {
    const { code, description, wsCode, attempt, delayMs } = e.info;
    log.push({ t: Math.round(performance.now()), code, description, wsCode, attempt, delayMs });
    if (log.length > 200) log.shift();
    update(e.info);
  });
  update();
}

/** Shows a message in the page's alert region for a while. */
export function alertUser(text, kind = 'bad') {
  const box = $('errors');
  if (!box) return;
  const n = el('p', { class: `notice ${kind}`, text });
  box.append(n);
  setTimeout(() => n.remove(), 8000);
}

/** "Code: description" of a CallError or an info object. */
export function describe(err) {
  const info = err?.info ?? err;
  return info?.description ? `${info.description} (${info.code})` : String(err?.message ?? err);
}

/**
 * The join form: fills it from the query, and calls start(values) on
 * submit or at once when ?user= is given.  Returns nothing.
 */
export function joinForm(form, start) {
  for (const input of form.querySelectorAll('input[name]')) {
    const v = params.get(input.name);
    if (v) input.value = v;
  }
  const go = () => {
    const values = Object.fromEntries(new FormData(form));
    for (const k of Object.keys(values)) values[k] = String(values[k]).trim();
    form.closest('section').hidden = true;
    start(values);
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (form.reportValidity()) go();
  });
  if (params.get('user')) go();
}
