// The sohub admin page: the server's state from /metrics, /readyz and the
// server API (docs/api.md), refreshed every few seconds, and the
// operator's actions (set a slot, disconnect, send a private message).
// Every error the server gives is shown where the action was taken; a
// 401 signs out, a 403 marks the key as read-only.
import { Api, ApiError, pathOf, metric, buckets, bucketsDelta, quantile } from './api.js';
import { describeValue, toInput, fromInput, HINTS } from './values.js';

const KEY_STORE = 'sohub-admin-key';
const params = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(500, Number(params.get('refresh') || 0) * 1000 || 3000);
const OBJECT_PAGE = 100;
const MAX_LIMIT = 1000; // the API's largest page

const $ = (id) => document.getElementById(id);

/** el('td', {class: 'x', text: 'hi'}, child...) */
function el(tag, attrs = {}, ...children) {
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

// ---------------------------------------------------------------- formats

function fmtBytes(n) {
  if (n === undefined || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

function fmtRate(n) {
  if (n === undefined || !Number.isFinite(n)) return '…';
  return n >= 100 ? String(Math.round(n)) : n.toFixed(1);
}

function fmtSeconds(s) {
  if (!Number.isFinite(s)) return '—';
  return s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(2)} s`;
}

function fmtAge(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function fmtTime(ms) {
  const d = new Date(Number(ms));
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
}

function randomId() {
  const b = crypto.getRandomValues(new Uint8Array(12)); // randomUUID needs a secure context
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------- state

const state = {
  api: null,
  readOnly: false,
  paused: false,
  timer: 0,
  busy: false,
  again: false,
  prev: null,                       // the last /metrics scrape: {t, deliveries, updates, lag}
  tree: { app: null, instance: null, limit: OBJECT_PAGE, filter: '' },
  insp: null,                       // {app, instance, name, persistent, version, slots, expectTouched}
  conns: { filter: {}, after: 0, back: [], next: null, limit: 50 },
  chatUser: null,                   // {app, user} shown in "A user's messages"
  presence: null,                   // {app, instance}
};

// ---------------------------------------------------------------- messages

/** Shows text in a status element (role=status or alert), kind ok | warn | bad. */
function say(target, text, kind = 'ok') {
  target.textContent = text;
  target.className = text ? `notice ${kind}` : '';
}

/** The panel's error line (role=alert): err's summary, or nothing. */
function panelError(panel, err) {
  const line = panel.querySelector('.panel-error');
  if (line) line.textContent = err ? describeError(err) : '';
}

function describeError(err) {
  if (err instanceof ApiError) return err.request && err.status ? `${err.summary} (${err.request})` : err.summary;
  return String(err?.message ?? err);
}

/**
 * What every failed request goes through: 401 signs out (the key is no
 * longer accepted), 403 marks the key read-only.  Returns the text shown.
 */
function onError(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut(`The server refused the key: ${err.summary}`);
  } else if (err instanceof ApiError && err.status === 403) {
    setReadOnly();
  }
  return describeError(err);
}

function setReadOnly() {
  if (state.readOnly) return;
  state.readOnly = true;
  const pill = $('scope');
  pill.hidden = false;
  pill.dataset.state = 'warn';
  pill.textContent = 'read-only key';
  for (const b of document.querySelectorAll('form.write button[type="submit"], button[data-write]')) b.disabled = true;
}

/** Keeps the focus on the element with the same data-focus after container is redrawn. */
function keepFocus(container, draw) {
  const a = document.activeElement;
  const key = a && container.contains(a) ? a.dataset.focus : undefined;
  draw();
  if (key) container.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}

function writeButton(text, attrs) {
  return el('button', { type: 'button', 'data-write': true, disabled: state.readOnly, ...attrs, text });
}

// ---------------------------------------------------------------- sign in

async function signIn(key, { quiet = false } = {}) {
  const api = new Api(key);
  const status = $('signin-status');
  if (!quiet) say(status, 'Checking the key…', 'warn');
  try {
    await api.get('/apps');
  } catch (err) {
    say(status, `Sign-in failed: ${describeError(err)}`, 'bad');
    sessionStorage.removeItem(KEY_STORE);
    return;
  }
  sessionStorage.setItem(KEY_STORE, key);
  state.api = api;
  state.readOnly = false;
  state.prev = null;
  $('scope').hidden = true;
  for (const b of document.querySelectorAll('form.write button[type="submit"], button[data-write]')) b.disabled = false;
  say(status, '');
  $('key').value = '';
  $('signin').hidden = true;
  $('console').hidden = false;
  $('sign-out').hidden = false;
  $('pause').hidden = false;
  $('ready').hidden = false;
  renderCrumbs();
  refreshNow();
}

function signOut(message = '') {
  sessionStorage.removeItem(KEY_STORE);
  state.api = null;
  clearTimeout(state.timer);
  // the next key starts from the top
  state.tree = { app: null, instance: null, limit: OBJECT_PAGE, filter: '', objects: null };
  state.insp = null;
  state.chatUser = null;
  state.presence = null;
  $('tree-view').replaceChildren();
  $('insp-body').hidden = true;
  $('insp-empty').hidden = false;
  $('user-state').hidden = true;
  $('presence').hidden = true;
  for (const id of ['set-status', 'conn-status', 'chat-status']) say($(id), '');
  for (const line of document.querySelectorAll('.panel-error')) line.textContent = '';
  $('console').hidden = true;
  $('sign-out').hidden = true;
  $('pause').hidden = true;
  $('ready').hidden = true;
  $('signin').hidden = false;
  $('refreshed').textContent = '';
  say($('signin-status'), message, 'bad');
  $('key').focus();
}

// ---------------------------------------------------------------- refresh

async function refreshAll() {
  if (!state.api) return;
  if (state.busy) {
    state.again = true;
    return;
  }
  state.busy = true;
  clearTimeout(state.timer);
  try {
    // one after the other: the page keeps one keep-alive connection busy, not six
    for (const step of [refreshOverview, refreshTree, refreshInspector, refreshConns, refreshChatUser, refreshPresence]) {
      if (!state.api) break;
      await step(); // each one shows its own errors
    }
    if (state.api) $('refreshed').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } finally {
    state.busy = false;
  }
  if (state.again) {
    state.again = false;
    refreshAll();
  } else if (state.api && !state.paused) {
    state.timer = setTimeout(refreshAll, document.hidden ? REFRESH_MS * 5 : REFRESH_MS);
  }
}

function refreshNow() {
  refreshAll();
}

// ---------------------------------------------------------------- overview

async function refreshOverview() {
  const panel = $('overview');
  const api = state.api;
  try {
    const m = await api.metrics();
    const ready = await api.ready();
    if (api !== state.api) return;
    panelError(panel, null);
    renderOverview(m, ready);
  } catch (err) {
    panelError(panel, onError(err));
    const pill = $('ready');
    pill.dataset.state = 'bad';
    pill.textContent = 'no answer';
  }
}

function renderOverview(m, ready) {
  const t = performance.now();
  const now = {
    t,
    deliveries: metric(m, 'sohub_so_deliveries_total'),
    updates: metric(m, 'sohub_so_updates_total'),
    lag: buckets(m, 'sohub_event_loop_lag_seconds'),
  };
  const prev = state.prev;
  state.prev = now;
  const dt = prev ? (t - prev.t) / 1000 : 0;
  const rate = (k) => (prev && dt > 0 && now[k] !== undefined && prev[k] !== undefined ? Math.max(0, now[k] - prev[k]) / dt : undefined);
  $('st-deliveries').textContent = fmtRate(rate('deliveries'));
  $('st-updates').textContent = fmtRate(rate('updates'));
  const q = prev ? quantile(0.99, bucketsDelta(now.lag, prev.lag)) : null;
  $('st-lag').textContent = !q ? '…' : Number.isNaN(q.value) ? 'no samples' : `${q.above ? '> ' : ''}${fmtSeconds(q.value)}`;
  $('st-rss').textContent = fmtBytes(metric(m, 'sohub_process_resident_memory_bytes'));
  const commits = metric(m, 'sohub_store_commits_total');
  const failures = metric(m, 'sohub_store_failures_total');
  $('st-commits').textContent = commits === undefined ? '—' : String(commits);
  const f = $('st-failures');
  f.textContent = failures === undefined ? '—' : String(failures);
  f.dataset.state = failures > 0 ? 'bad' : '';
  const rooms = metric(m, 'sohub_so_rooms');
  const objects = metric(m, 'sohub_so_objects');
  $('st-objects').textContent = `${rooms ?? '—'} / ${objects ?? '—'}`;
  const r = $('st-ready');
  r.textContent = ready.ok ? 'ready' : `not ready: ${ready.text}`;
  r.dataset.state = ready.ok ? 'ok' : 'bad';
  const pill = $('ready');
  pill.dataset.state = ready.ok ? 'ok' : 'bad';
  pill.textContent = ready.ok ? 'ready' : `not ready: ${ready.text}`;

  // connections: one row per transport, one column per state
  const states = ['handshake', 'connected', 'closing'];
  const rows = new Map();
  for (const s of m.get('sohub_connections') ?? []) {
    const tr = s.labels.transport ?? '?';
    if (!rows.has(tr)) rows.set(tr, {});
    rows.get(tr)[s.labels.state] = s.value;
  }
  const tbody = $('conn-table').tBodies[0];
  tbody.replaceChildren(...[...rows].map(([tr, byState]) => el('tr', { 'data-transport': tr },
    el('th', { scope: 'row', text: tr }),
    ...states.map((st) => el('td', { class: 'num', 'data-state': st, text: String(byState[st] ?? 0) })))));
}

// ---------------------------------------------------------------- applications

const appPath = (app) => pathOf('apps', app);
const instPath = (app, inst) => `${appPath(app)}${pathOf('instances', inst)}`;

function treeKey() {
  const t = state.tree;
  return `${t.app}\n${t.instance}\n${t.limit}`;
}

function go(app, instance) {
  state.tree = { app: app ?? null, instance: instance ?? null, limit: OBJECT_PAGE, filter: '', objects: null };
  renderCrumbs();
  $('tree-view').replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
  refreshNow();
}

function renderCrumbs() {
  const { app, instance } = state.tree;
  const items = [];
  const crumb = (text, onclick, current) => el('li', {},
    current ? el('span', { 'aria-current': 'page', text }) : el('button', { type: 'button', class: 'link', onclick, text }));
  items.push(crumb('Applications', () => go(), !app));
  if (app) items.push(crumb(app, () => go(app), !instance));
  if (instance) items.push(crumb(instance, null, true));
  $('crumbs').replaceChildren(...items);
  $('goto-form').hidden = Boolean(app);
  $('open-form').hidden = !instance;
  $('filter-form').hidden = !instance;
  $('obj-filter').value = state.tree.filter;
}

async function refreshTree() {
  const panel = $('tree');
  const key = treeKey();
  const { app, instance, limit } = state.tree;
  try {
    let draw;
    if (!app) {
      const { apps } = await state.api.get(`/apps?limit=${MAX_LIMIT}`);
      draw = () => drawApps(apps);
    } else if (!instance) {
      const { instances } = await state.api.get(`${appPath(app)}/instances?limit=${MAX_LIMIT}`);
      draw = () => drawInstances(app, instances);
    } else {
      const { objects } = await state.api.get(`${instPath(app, instance)}/objects?limit=${limit}`);
      draw = () => drawObjects(app, instance, objects);
    }
    if (key !== treeKey()) return; // the operator went elsewhere meanwhile
    panelError(panel, null);
    keepFocus($('tree-view'), draw);
  } catch (err) {
    if (key === treeKey()) panelError(panel, onError(err));
  }
}

function table(caption, heads, rows, empty) {
  return el('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': caption },
    el('table', { class: 'grid' },
      el('caption', { text: caption }),
      el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, ...(rows.length ? rows : [el('tr', {}, el('td', { class: 'empty', colspan: String(heads.length), text: empty }))]))));
}

function drawApps(apps) {
  const rows = apps.map((a) => el('tr', { 'data-app': a.name },
    el('th', { scope: 'row' }, el('button', { type: 'button', class: 'link', 'data-focus': `app-${a.name}`, onclick: () => go(a.name), text: a.name })),
    el('td', { text: a.configured ? 'configured' : a.served === false ? 'not served' : 'open' }),
    el('td', { text: a.auth ?? '' }),
    el('td', { class: 'num', text: String(a.connections ?? 0) })));
  $('tree-view').replaceChildren(table('Applications configured, built in or in use', ['name', 'section', 'auth', 'connections'], rows, 'No application.'));
}

function drawInstances(app, instances) {
  const rows = instances.map((i) => el('tr', { 'data-instance': i.name },
    el('th', { scope: 'row' }, el('button', { type: 'button', class: 'link', 'data-focus': `inst-${i.name}`, onclick: () => go(app, i.name), text: i.name })),
    el('td', { class: 'num', text: String(i.connections) }),
    el('td', { class: 'num', text: String(i.so_clients) }),
    el('td', { class: 'num', text: String(i.objects) })));
  $('tree-view').replaceChildren(
    table(`Instances of ${app} in memory`, ['instance', 'connections', 'SO clients', 'objects'], rows,
      'No instance of this application is in memory.'));
}

function drawObjects(app, instance, objects) {
  const t = state.tree;
  t.objects = objects;
  const shown = objects.filter((o) => !t.filter || o.name.toLowerCase().includes(t.filter.toLowerCase()));
  const sel = state.insp;
  const rows = shown.map((o) => el('tr', {
    'data-object': o.name,
    class: sel && sel.app === app && sel.instance === instance && sel.name === o.name && sel.persistent === o.persistent ? 'selected' : undefined,
  },
  el('th', { scope: 'row' }, el('button', {
    type: 'button', class: 'link', 'data-focus': `obj-${o.persistent}-${o.name}`,
    onclick: () => openObject(app, instance, o.name, o.persistent, true), text: o.name,
  })),
  el('td', { text: o.persistent ? 'persistent' : 'temporary' }),
  el('td', { class: 'num', text: String(o.version) }),
  el('td', { class: 'num', text: String(o.slots) }),
  el('td', { class: 'num', text: fmtBytes(o.bytes) }),
  el('td', { class: 'num', text: String(o.subscribers) }),
  el('td', { text: o.locked ? 'locked' : '' })));
  const more = objects.length >= t.limit && t.limit < MAX_LIMIT
    ? el('button', { type: 'button', class: 'secondary', 'data-focus': 'obj-more', text: 'Show more',
      onclick: () => { t.limit = Math.min(MAX_LIMIT, t.limit + OBJECT_PAGE); refreshNow(); } })
    : null;
  const note = objects.length >= MAX_LIMIT
    ? `The first ${MAX_LIMIT} objects in memory (the API lists no more); open others by name below.`
    : `${objects.length} object${objects.length === 1 ? '' : 's'} in memory, in no particular order. Persistent objects not in memory open by name.`;
  $('tree-view').replaceChildren(
    table(`Shared objects of ${app}/${instance}`, ['name', 'kind', 'version', 'slots', 'bytes', 'subscribers', ''], rows,
      objects.length ? 'No object matches the filter.' : 'No shared object of this instance is in memory.'),
    el('p', { class: 'muted small', text: note }),
    ...(more ? [more] : []));
}

// ---------------------------------------------------------------- inspector

function objPath(i) {
  return `${instPath(i.app, i.instance)}/objects${pathOf(i.name)}?persistent=${i.persistent}`;
}

function openObject(app, instance, name, persistent, focus = false) {
  state.insp = { app, instance, name, persistent, version: null, slots: null, expectTouched: false };
  $('insp-empty').hidden = true;
  $('insp-body').hidden = false;
  $('insp-title').textContent = `${app}/${instance} · ${name} (${persistent ? 'persistent' : 'temporary'})`;
  $('slots').tBodies[0].replaceChildren();
  $('insp-version').textContent = '…';
  $('insp-subscribers').textContent = '…';
  $('insp-count').textContent = '…';
  say($('set-status'), '');
  panelError($('insp-body'), null);
  for (const tr of document.querySelectorAll('#tree-view tr.selected')) tr.classList.remove('selected');
  if (focus) $('inspector').scrollIntoView({ block: 'nearest' });
  refreshNow();
}

async function refreshInspector() {
  const i = state.insp;
  if (!i) return;
  try {
    const o = await state.api.get(objPath(i));
    if (i !== state.insp) return;
    panelError($('insp-body'), null);
    showObject(o.version, o.slots, o.subscribers);
  } catch (err) {
    if (i === state.insp) panelError($('insp-body'), onError(err));
  }
}

/** Draws the object at version with slots; the expected version follows unless the operator typed one. */
function showObject(version, slots, subscribers) {
  const i = state.insp;
  i.version = version;
  i.slots = slots;
  $('insp-version').textContent = String(version);
  if (subscribers !== undefined) $('insp-subscribers').textContent = String(subscribers);
  const keys = Object.keys(slots).sort();
  $('insp-count').textContent = String(keys.length);
  if (!i.expectTouched) $('set-expect').value = String(version);
  const tbody = $('slots').tBodies[0];
  keepFocus(tbody, () => {
    tbody.replaceChildren(...(keys.length ? keys.map((k) => {
      const d = describeValue(slots[k]);
      return el('tr', { 'data-key': k },
        el('th', { scope: 'row' }, el('code', { text: k })),
        el('td', {}, el('span', { class: 'type', text: d.type })),
        el('td', { class: 'value wide' }, d.block ? el('pre', { class: 'value', text: d.text }) : el('code', { text: d.text })),
        el('td', { class: 'actions' },
          el('button', { type: 'button', class: 'secondary small', 'data-focus': `edit-${k}`, 'aria-label': `Edit ${k}`, text: 'Edit', onclick: () => editSlot(k) }),
          writeButton('Remove', { class: 'danger small', 'data-focus': `remove-${k}`, 'aria-label': `Remove ${k}`, onclick: () => removeSlot(k) })));
    }) : [el('tr', {}, el('td', { class: 'empty', colspan: '4', text: 'No slots.' }))]));
  });
}

function showHint() {
  const type = $('set-type').value;
  $('set-hint').textContent = HINTS[type];
  $('set-value').disabled = type === 'null';
}

function editSlot(k) {
  const v = toInput(state.insp.slots[k]);
  $('set-key').value = k;
  $('set-type').value = v.type;
  $('set-value').value = v.text;
  $('set-value').rows = Math.min(14, Math.max(2, v.text.split('\n').length));
  showHint();
  $('set-value').focus();
}

/** POSTs a write of the inspected object: {set} or {remove}, compare-and-set when asked. */
async function writeObject(change, what) {
  const i = state.insp;
  const status = $('set-status');
  const body = { persistent: i.persistent, ...change };
  if ($('set-cas').checked) {
    const expect = Number($('set-expect').value);
    if (!Number.isInteger(expect) || expect < 0) {
      say(status, 'The expected version must be a whole number.', 'bad');
      return;
    }
    body.expect_version = expect;
  }
  say(status, `${what}…`, 'warn');
  try {
    const r = await state.api.post(`${instPath(i.app, i.instance)}/objects${pathOf(i.name)}`, body);
    if (i !== state.insp) return;
    // the slots and the expected version of after the write, before the next one can be made
    i.expectTouched = false;
    await refreshInspector();
    say(status, `${what}: done, the object is now at version ${r.version}.`, 'ok');
  } catch (err) {
    if (i !== state.insp) return;
    if (err instanceof ApiError && err.status === 409 && err.code === 'conflict' && err.body) {
      const v = err.body.version;
      i.expectTouched = false;
      showObject(v, err.body.slots ?? {}, undefined);
      say(status, `Conflict (409): the object is at version ${v}, not ${body.expect_version}. Nothing was changed. `
        + `The slots above are now those of version ${v}; set again to write over them.`, 'bad');
      return;
    }
    say(status, `${what} refused: ${onError(err)}`, 'bad');
    return;
  }
  refreshNow();
}

async function setSlot(e) {
  e.preventDefault();
  const key = $('set-key').value;
  let value;
  try {
    value = fromInput($('set-type').value, $('set-value').value);
  } catch (err) {
    say($('set-status'), `The value is not valid: ${err.message}`, 'bad');
    $('set-value').focus();
    return;
  }
  await writeObject({ set: { [key]: value } }, `Set ${key}`);
}

async function removeSlot(k) {
  if (!confirm(`Remove the slot "${k}" of ${state.insp.name}?`)) return;
  await writeObject({ remove: [k] }, `Remove ${k}`);
}

// ---------------------------------------------------------------- connections

function connQuery() {
  const c = state.conns;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(c.filter)) if (v) q.set(k, v);
  if (c.after) q.set('after', String(c.after));
  q.set('limit', String(c.limit));
  return q.toString();
}

async function refreshConns() {
  const panel = $('conns');
  const q = connQuery();
  try {
    const r = await state.api.get(`/connections?${q}`);
    if (q !== connQuery()) return;
    panelError(panel, null);
    state.conns.next = r.next;
    drawConns(r.connections);
  } catch (err) {
    if (q === connQuery()) panelError(panel, onError(err));
  }
}

function drawConns(list) {
  const tbody = $('conn-list').tBodies[0];
  keepFocus($('conns'), () => {
    tbody.replaceChildren(...(list.length ? list.map((c) => el('tr', { 'data-id': String(c.id), 'data-user': c.user || undefined },
      el('th', { scope: 'row', text: `#${c.id}` }),
      el('td', { 'data-label': 'transport', text: c.tls ? `${c.transport} (tls)` : c.transport }),
      el('td', { 'data-label': 'app', text: c.app ? `${c.app}/${c.instance}` : '—' }),
      el('td', { 'data-label': 'user', text: c.user || '—' }),
      el('td', { class: 'mono', 'data-label': 'peer', text: c.peer }),
      el('td', { 'data-label': 'state', text: c.transport === 'http' ? 'request' : !c.connected ? 'handshake or closing' : c.congested ? 'congested' : 'connected' }),
      el('td', { class: 'nowrap', 'data-label': 'age', text: fmtAge(c.age_ms) }),
      el('td', { class: 'num nowrap', 'data-label': 'in / out', text: `${fmtBytes(c.bytes_in)} / ${fmtBytes(c.bytes_out)}` }),
      el('td', { class: 'num', 'data-label': 'queued', text: fmtBytes(c.queued_bytes) }),
      el('td', { class: 'num', 'data-label': 'rtt', text: c.rtt_ms == null ? '—' : `${c.rtt_ms} ms` }),
      el('td', { class: 'actions' },
        c.user && c.app ? el('button', { type: 'button', class: 'secondary small', 'data-focus': `msg-${c.id}`, 'aria-label': `Message ${c.user}`, text: 'Message', onclick: () => messageUser(c.app, c.user) }) : null,
        writeButton('Disconnect', { class: 'danger small', 'data-focus': `dc-${c.id}`, 'aria-label': `Disconnect connection ${c.id}`, onclick: () => disconnect(c) }),
        c.user && c.app ? writeButton('Disconnect user', { class: 'danger small', 'data-focus': `dcu-${c.id}`, 'aria-label': `Disconnect user ${c.user} of ${c.app}`, onclick: () => disconnectUser(c.app, c.user) }) : null))) : [el('tr', {}, el('td', { class: 'empty', colspan: '11', text: 'No connection matches.' }))]));
  });
  const c = state.conns;
  $('conn-page').textContent = `page ${c.back.length + 1}`;
  $('conn-next').disabled = c.next === null || c.next === undefined;
  $('conn-first').disabled = !c.after;
}

async function disconnect(c) {
  if (!confirm(`Disconnect connection ${c.id} (${c.user || c.peer})?`)) return;
  const status = $('conn-status');
  try {
    await state.api.delete(`/connections/${encodeURIComponent(c.id)}`);
    say(status, `Connection ${c.id} disconnected.`, 'ok');
  } catch (err) {
    say(status, `Disconnecting connection ${c.id} failed: ${onError(err)}`, 'bad');
  }
  refreshNow();
}

async function disconnectUser(app, user) {
  if (!confirm(`Disconnect every connection of user ${user} in ${app}?`)) return;
  const status = $('conn-status');
  try {
    const r = await state.api.delete(`${appPath(app)}${pathOf('users', user, 'connections')}`);
    say(status, `User ${user} (${app}): ${r.disconnected} connection${r.disconnected === 1 ? '' : 's'} disconnected.`, 'ok');
  } catch (err) {
    say(status, `Disconnecting user ${user} failed: ${onError(err)}`, 'bad');
  }
  refreshNow();
}

function messageUser(app, user) {
  $('m-app').value = app;
  $('m-to').value = user;
  $('u-app').value = app;
  $('u-user').value = user;
  $('m-text').focus();
}

// ---------------------------------------------------------------- chat

async function sendMessage(e) {
  e.preventDefault();
  const f = e.target;
  const app = $('m-app').value.trim();
  const to = $('m-to').value.trim();
  const status = $('chat-status');
  const body = { to, text: $('m-text').value, from: $('m-from').value.trim() || 'system', client_id: randomId() };
  say(status, 'Sending…', 'warn');
  try {
    const r = await state.api.post(`${appPath(app)}/chat/messages`, body);
    say(status, `Message ${r.id} to ${to}: ${r.status}.`, 'ok');
    $('m-text').value = '';
  } catch (err) {
    say(status, `The message was not sent: ${onError(err)}`, 'bad');
  }
  f.querySelector('button[type="submit"]').disabled = state.readOnly;
  if (state.chatUser) refreshNow();
}

async function refreshChatUser() {
  const u = state.chatUser;
  if (!u) return;
  const form = $('user-form');
  try {
    const r = await state.api.get(`${appPath(u.app)}${pathOf('chat', 'users', u.user)}`);
    if (u !== state.chatUser) return;
    panelError(form, null);
    $('u-connections').textContent = String(r.connections);
    $('u-last').textContent = String(r.last_id);
    $('u-acked').textContent = String(r.acked);
    $('u-queued').textContent = String(r.queued);
    $('user-state').hidden = false;
    $('user-state').setAttribute('aria-label', `Messages of ${r.user}`);
  } catch (err) {
    if (u === state.chatUser) panelError(form, onError(err));
  }
}

async function refreshPresence() {
  const p = state.presence;
  if (!p) return;
  const form = $('presence-form');
  try {
    const r = await state.api.get(`${instPath(p.app, p.instance)}/presence`);
    if (p !== state.presence) return;
    panelError(form, null);
    const users = Object.entries(r.users ?? {}).sort(([a], [b]) => a.localeCompare(b));
    const list = $('presence');
    list.hidden = false;
    list.replaceChildren(...(users.length ? users.map(([name, info]) => el('li', { 'data-user': name },
      el('span', { text: name }),
      el('span', { class: 'muted small', text: `${info?.connections ?? '?'} conn. · since ${fmtTime(info?.since)}` })))
      : [el('li', { class: 'muted', text: 'Nobody (or presence is off for this application).' })]));
  } catch (err) {
    if (p === state.presence) panelError(form, onError(err));
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('where').textContent = location.host;
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('key').value.trim();
    if (key) signIn(key);
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  $('pause').addEventListener('click', () => {
    state.paused = !state.paused;
    $('pause').setAttribute('aria-pressed', String(state.paused));
    $('pause').textContent = state.paused ? 'Resume' : 'Pause';
    if (state.paused) clearTimeout(state.timer);
    else refreshNow();
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden && state.api && !state.paused) refreshNow(); });

  $('goto-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const app = $('goto-app').value.trim();
    const inst = $('goto-instance').value.trim();
    if (app) go(app, inst || null);
  });
  $('open-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('open-name').value;
    if (name) openObject(state.tree.app, state.tree.instance, name, $('open-persistent').checked, true);
  });

  $('filter-form').addEventListener('submit', (e) => e.preventDefault());
  $('obj-filter').addEventListener('input', (e) => {
    const t = state.tree;
    t.filter = e.target.value;
    if (t.objects && t.instance) keepFocus($('tree-view'), () => drawObjects(t.app, t.instance, t.objects));
  });
  $('set-form').addEventListener('submit', setSlot);
  $('set-type').addEventListener('change', showHint);
  $('set-expect').addEventListener('input', () => { if (state.insp) state.insp.expectTouched = true; });
  showHint();

  $('conn-filter').addEventListener('submit', (e) => {
    e.preventDefault();
    const c = state.conns;
    c.filter = {
      app: $('f-app').value.trim(), instance: $('f-instance').value.trim(),
      user: $('f-user').value.trim(), transport: $('f-transport').value,
    };
    c.limit = Math.min(MAX_LIMIT, Math.max(1, Number($('f-limit').value) || 50));
    c.after = 0;
    c.back = [];
    refreshNow();
  });
  $('conn-next').addEventListener('click', () => {
    const c = state.conns;
    if (c.next == null) return;
    c.back.push(c.after);
    c.after = c.next;
    refreshNow();
  });
  $('conn-first').addEventListener('click', () => {
    state.conns.after = 0;
    state.conns.back = [];
    refreshNow();
  });

  $('chat-send').addEventListener('submit', sendMessage);
  $('user-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.chatUser = { app: $('u-app').value.trim(), user: $('u-user').value.trim() };
    $('user-state').hidden = true;
    refreshNow();
  });
  $('presence-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.presence = { app: $('p-app').value.trim(), instance: $('p-instance').value.trim() };
    $('presence').hidden = true;
    refreshNow();
  });

  const key = sessionStorage.getItem(KEY_STORE);
  if (key) signIn(key, { quiet: true });
  else $('key').focus();
}

wire();
// for the console and the tests' failure reports
window.adminState = state;
