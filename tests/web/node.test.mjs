// web/lib/sohub.js in Node, with the `ws` package's WebSocket, against a
// real sohub-server: calls, shared-object codes, batching, offline writes
// and resume, AMF values, chat and presence, rejected connects.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { Chat, CallError, NetConnection, Responder, SharedObject, SohubInt, AmfValue } from '../../web/lib/sohub.js';
import { WAIT_MS, cliOk, runCli, startProxy, startServer, explained, assertCleanStop, until } from './harness.mjs';

let server;
let proxy;
const ctx = () => ({ server });

before(async () => {
  server = await startServer();
  proxy = await startProxy(server.httpPort);
});

after(async () => {
  await proxy?.close();
  await server?.stop();
});

/** ws's WebSocket, keeping every message each way (in `log`). */
const sockets = [];
class RecordingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.log = { sent: [], received: [] };
    sockets.push(this);
    this.addEventListener('message', (e) => this.log.received.push(JSON.parse(e.data)));
  }
  send(data, ...rest) {
    this.log.sent.push(JSON.parse(data));
    return super.send(data, ...rest);
  }
}

/** The socket of nc's current connection, whose connect named user (when
 * given: a clientId is unique on one server only, so over a cluster two
 * connections on two nodes may have the same). */
const socketOf = (nc, user) => sockets.findLast((s) =>
  (user === undefined || s.log.sent.some((m) => m.op === 'connect' && m.user === user)) &&
  s.log.received.some((m) => m.op === 'result' && m.value?.code === 'NetConnection.Connect.Success' && m.value.clientId === nc.clientId));

const FAST = { initialDelayMs: 50, maxDelayMs: 400 };

/** The next event of `type` on target that passes pred. */
function next(target, type, pred = () => true, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { off(); reject(new Error(`timed out waiting for ${type}`)); }, timeoutMs);
    const off = target.on(type, (e) => {
      if (!pred(e)) return;
      clearTimeout(t);
      off();
      resolve(e);
    });
  });
}

const status = (nc, code) => next(nc, 'netStatus', (e) => e.info.code === code);

/** Sync events of so until every `code:name` in want was seen; returns the items. */
function syncUntil(so, want) {
  const left = new Set(want);
  const seen = [];
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { off(); reject(new Error(`timed out waiting for ${[...left]} (saw ${JSON.stringify(seen)})`)); }, WAIT_MS);
    const off = so.on('sync', (e) => {
      for (const c of e.changeList) {
        seen.push(c);
        left.delete(c.name === undefined ? c.code : `${c.code}:${c.name}`);
      }
      if (!left.size) {
        clearTimeout(t);
        off();
        resolve(seen);
      }
    });
  });
}

async function open(path, opts = {}, via = server.httpPort) {
  const nc = new NetConnection({ WebSocket: RecordingWebSocket, reconnect: FAST, ...opts });
  const ok = status(nc, 'NetConnection.Connect.Success');
  nc.connect(`ws://127.0.0.1:${via}/ws/${path}`);
  await ok;
  return nc;
}

/** A subscribed object: resolves after its first sync. */
async function subscribe(nc, name, persistent = false) {
  const so = new SharedObject(name, nc.uri, persistent);
  const first = next(so, 'sync');
  so.connect(nc);
  await first;
  return so;
}

test('node: connect, calls as Promise and Responder, calls from the server', explained(ctx, async (t) => {
  const early = new NetConnection({ WebSocket: RecordingWebSocket });
  await assert.rejects(early.invoke('echo', 1), (e) => e instanceof CallError && e.info.description === 'Not connected.');

  const nc = await open('chat/calls', { user: 'dora' });
  t.after(() => nc.close());
  assert.equal(nc.connected, true);
  assert.equal(typeof nc.clientId, 'number');
  assert.deepEqual(await nc.invoke('echo', { a: [1, 'two'] }), { a: [1, 'two'] });
  assert.equal(await nc.call('echo', null, 'x'), 'x');

  const viaResponder = await new Promise((resolve) => nc.call('echo', new Responder((v) => resolve(['result', v]), (i) => resolve(['status', i])), 7));
  assert.deepEqual(viaResponder, ['result', 7]);
  const failed = await new Promise((resolve) => nc.call('no.such.method', { result: resolve, status: (i) => resolve(i) }));
  assert.equal(failed.code, 'NetConnection.Call.Failed');
  await assert.rejects(nc.invoke('room.post', ''), (e) => e.code === 'Room.BadRequest');

  // the server calls the client: chat.onPrivate from an RTMP sender
  const got = new Promise((resolve) => { nc.client = { chat: { onPrivate: resolve } }; });
  const sent = await cliOk(['-u', `${server.rtmp}/chat/other`, '--user', 'erin', 'chat', 'send', 'dora', 'hello dora']);
  const m = await got;
  assert.equal(m.from, 'erin');
  assert.equal(m.to, 'dora');
  assert.equal(m.text, 'hello dora');
  assert.equal(m.id, sent.id);
  assert.deepEqual(await nc.invoke('chat.ack', m.id), { acked: m.id });

  const closed = status(nc, 'NetConnection.Connect.Closed');
  nc.close();
  assert.equal((await closed).info.level, 'status');
  assert.equal(nc.connected, false);
  await assert.rejects(nc.invoke('echo', 1), /Not connected/);
}));

test('node: writes of one turn are one version; success, change, delete, send', explained(ctx, async (t) => {
  const a = await open('sohub/batch');
  const b = await open('sohub/batch');
  t.after(() => { a.close(); b.close(); });
  const sa = await subscribe(a, 'scratch');
  const sb = await subscribe(b, 'scratch');
  assert.throws(() => { sa.data.x = 1; }, TypeError);

  const v0 = sb.version;
  const bSees = next(sb, 'sync');
  const aHears = syncUntil(sa, ['success:x', 'success:y', 'success:z']);
  sa.setProperty('x', 1);
  sa.setProperty('y', { deep: ['a', 'b'] });
  sa.setProperty('z', 'zed');
  sa.setProperty('x', 2); // the same slot twice: its last value
  assert.equal(sa.data.x, 2); // shown at once
  const e = await bSees; // all three in one sync event ...
  assert.deepEqual(e.changeList.map((c) => `${c.code}:${c.name}`).sort(), ['change:x', 'change:y', 'change:z']);
  assert.equal(sb.version, v0 + 1); // ... and one version
  assert.deepEqual({ ...sb.data }, { x: 2, y: { deep: ['a', 'b'] }, z: 'zed' });
  await aHears;
  assert.equal(sa.version, sb.version);
  assert.equal(sa.pendingWrites, 0);

  // delete: null removes, the other side gets code delete with the old value
  const del = next(sb, 'sync');
  sa.setProperty('z', null);
  assert.equal('z' in sa.data, false);
  assert.deepEqual((await del).changeList, [{ code: 'delete', name: 'z', oldValue: 'zed' }]);

  // setDirty: a value changed in place goes out again
  const dirty = next(sa, 'sync', (ev) => ev.changeList.some((c) => c.code === 'change' && c.name === 'y'));
  const y = sb.data.y;
  y.deep.push('c');
  sb.setDirty('y');
  await dirty;
  assert.deepEqual(sa.data.y, { deep: ['a', 'b', 'c'] });

  // send: every subscriber's client, the sender's too
  const onA = new Promise((resolve) => { sa.client = { hello: (...args) => resolve(args) }; });
  const onB = new Promise((resolve) => { sb.hello = (...args) => resolve(args); }); // the default client is the object
  sb.send('hello', 1, 'two', { three: 3 });
  assert.deepEqual(await onA, [1, 'two', { three: 3 }]);
  assert.deepEqual(await onB, [1, 'two', { three: 3 }]);
  // the library's own methods are not handlers
  const noHandler = next(sa, 'asyncError');
  sa.client = sa;
  sb.send('close');
  assert.equal((await noHandler).handler, 'close');
}));

test('node: a refused write is reported as reject with the server value', explained(ctx, async (t) => {
  const nc = await open('chat/refused', { user: 'eve' });
  t.after(() => nc.close());
  await nc.invoke('room.post', 'the real one');
  const room = new SharedObject('room', nc.uri, true);
  room.connect(nc);
  await next(room, 'sync', () => room.data['1']);
  const noWrite = next(room, 'netStatus');
  const sync = next(room, 'sync', (e) => e.changeList.some((c) => c.code === 'reject'));
  room.setProperty('1', 'forged');
  assert.equal(room.data['1'], 'forged');
  const r = (await sync).changeList.find((c) => c.code === 'reject');
  assert.deepEqual(r, { code: 'reject', name: '1', oldValue: 'forged' });
  assert.equal(room.data['1'].text, 'the real one');
  assert.deepEqual((await noWrite).info, { level: 'error', code: 'SharedObject.NoWriteAccess', description: undefined });
}));

test('node: offline writes wait for the resume; a stale one is rejected, the rest applied', explained(ctx, async (t) => {
  const a = await open('sohub/offline');
  const b = await open('sohub/offline', {}, proxy.port);
  t.after(() => { a.close(); b.close(); proxy.block(false); });
  const sa = await subscribe(a, 'doc');
  const sb = await subscribe(b, 'doc');
  const ready = next(sb, 'sync', (e) => e.changeList.some((c) => c.name === 'count'));
  sa.setProperty('title', 'v1');
  sa.setProperty('count', new SohubInt(1));
  await ready;
  const held = sb.version;
  const firstSocket = sockets.at(-1);

  proxy.block(true);
  const away = status(b, 'NetConnection.Connect.Reconnecting');
  proxy.drop();
  await away;
  assert.equal(b.connected, false);

  // b writes while away: shown at once, kept for later
  sb.setProperty('title', 'from b');
  sb.setProperty('note', 'written offline');
  assert.equal(sb.data.title, 'from b');
  assert.equal(sb.pendingWrites, 2);
  // a call made now waits for the connection too
  const queued = b.invoke('echo', 'queued call');
  // a changes the same slot meanwhile
  await (async () => {
    const done = syncUntil(sa, ['success:title']);
    sa.setProperty('title', 'from a');
    await done;
  })();

  const outcome = syncUntil(sb, ['reject:title', 'success:note']);
  const aGetsNote = syncUntil(sa, ['change:note']);
  proxy.block(false);
  const back = await status(b, 'NetConnection.Connect.Success');
  assert.equal(back.info.reconnected, true);
  const items = await outcome;
  assert.deepEqual(items.find((c) => c.code === 'reject'), { code: 'reject', name: 'title', oldValue: 'from b' });
  assert.equal(sb.data.title, 'from a');
  assert.equal(sb.data.note, 'written offline');
  assert.equal(sb.pendingWrites, 0);
  await aGetsNote;
  assert.equal(sa.data.note, 'written offline');
  assert.equal(await queued, 'queued call');

  // on the wire: the resumed use carried b's version and got a diff, no clear
  const socket = sockets.at(-1);
  assert.notEqual(socket, firstSocket);
  const use = socket.log.sent.find((m) => m.op === 'so' && m.events.some((e) => e.t === 'use'));
  assert.equal(use.version, held);
  const answer = socket.log.received.find((m) => m.op === 'so' && m.events.some((e) => e.t === 'use_success'));
  assert.ok(!answer.events.some((e) => e.t === 'clear'), JSON.stringify(answer));
  assert.deepEqual(answer.events.filter((e) => e.t === 'change').flatMap((e) => e.slots), [['title', 'from a']]);
  // the offline writes went out as one message, with the version they were made at
  const write = socket.log.sent.find((m) => m.op === 'so' && m.events.some((e) => e.t === 'change'));
  assert.equal(write.version, held);
  assert.deepEqual(write.events, [{ t: 'change', slots: [['title', 'from b'], ['note', 'written offline']] }]);
}));

test('node: AMF values written by RTMP come back unchanged', explained(ctx, async (t) => {
  const url = `${server.rtmp}/sohub/values`;
  const values = {
    i: '{"$amf":"int","value":42}',
    d: '{"$amf":"date","ms":1700000000123,"tz":60}',
    b: '{"$amf":"bytes","hex":"00ff10"}',
    o: '{"$amf":"object","class":"com.example.Item","members":{"id":{"$amf":"int","value":7},"title":"vase"}}',
    e: '{"$amf":"ecma","count":1,"members":{"a":1}}',
    n: '{"$amf":"number","value":"NaN"}',
    z: '{"$amf":"number","value":"-0"}',
    u: '{"$amf":"undefined"}',
    s: '{"$amf":"string","hex":"61ff62"}',
    v: '{"$amf":"vector-int","fixed":false,"items":[-1,2]}',
    p: '{"plain":[1,"two",null,true,{"$amf":"undefined"}],"nested":{"$amf":"int","value":-5}}',
  };
  for (const [k, v] of Object.entries(values)) await cliOk(['-u', url, '--amf3', 'so', 'set', 'vals', k, v, '--persistent']);
  const nc = await open('sohub/values');
  t.after(() => nc.close());
  const so = await subscribe(nc, 'vals', true);
  const d = so.data;
  assert.ok(d.i instanceof SohubInt && d.i.value === 42 && d.i + 1 === 43);
  assert.ok(d.d instanceof Date && d.d.getTime() === 1700000000123 && d.d.amfTz === 60);
  assert.ok(d.b instanceof Uint8Array);
  assert.deepEqual([...d.b], [0, 255, 16]);
  assert.ok(d.o instanceof AmfValue && d.o.tag === 'object' && d.o.class === 'com.example.Item');
  assert.ok(d.o.members.id instanceof SohubInt && d.o.members.title === 'vase');
  assert.ok(d.e instanceof AmfValue && d.e.tag === 'ecma' && d.e.members.a === 1);
  assert.ok(Number.isNaN(d.n));
  assert.ok(Object.is(d.z, -0));
  assert.ok('u' in d && d.u === undefined);
  assert.ok(d.s instanceof AmfValue && d.s.tag === 'string');
  assert.ok(d.v instanceof AmfValue && d.v.items[0] === -1);
  assert.ok(d.p.nested instanceof SohubInt);

  assert.equal(d.p.plain.length, 5);
  assert.equal(d.p.plain[4], undefined);

  // written back under new names, in one batch (not u: setProperty(k,
  // undefined) removes k, as in Flash; undefined inside p is written)
  const keys = Object.keys(values).filter((k) => k !== 'u');
  const done = syncUntil(so, keys.map((k) => `success:${k}2`));
  for (const k of keys) so.setProperty(`${k}2`, d[k]);
  await done;
  const got = await cliOk(['-u', url, '--amf3', 'so', 'get', 'vals', '--persistent']);
  for (const k of keys) {
    assert.deepEqual(got[`${k}2`], got[k], `${k}2`);
    assert.deepEqual(got[k], JSON.parse(values[k]), k);
  }
  // the JSON the library sends is the same text the server sends
  const sent = sockets.at(-1).log.sent.find((m) => m.op === 'so' && m.events.some((e) => e.t === 'change'));
  const received = sockets.at(-1).log.received.find((m) => m.events?.some((e) => e.t === 'use_success'));
  const byKey = Object.fromEntries(received.events.filter((e) => e.t === 'change').flatMap((e) => e.slots));
  for (const [k, v] of sent.events[0].slots) assert.deepEqual(v, byKey[k.slice(0, -1)], k);
}));

test('node: private messages and presence with Chat; no duplicates across drops', explained(ctx, async (t) => {
  const alice = await open('chat/pm', { user: 'alice' }, proxy.port);
  const bob = await open('chat/pm', { user: 'bob' });
  t.after(() => { alice.close(); bob.close(); proxy.block(false); });
  const ca = new Chat(alice);
  const both = next(ca, 'presence', (e) => e.users.includes('bob'));
  const cb = new Chat(bob);
  assert.deepEqual((await both).users, ['alice', 'bob']);
  assert.deepEqual(ca.online(), ['alice', 'bob']);

  const inbox = [];
  cb.onPrivate = (m) => inbox.push(m);
  const first = next(cb, 'private');
  const r = await ca.sendPrivate('bob', 'hi bob');
  assert.equal(r.status, 'delivered');
  const m1 = (await first).message;
  assert.deepEqual([m1.id, m1.from, m1.to, m1.text], [r.id, 'alice', 'bob', 'hi bob']);
  await assert.rejects(ca.sendPrivate('alice', 'me'), (e) => e.code === 'Chat.Denied');

  // alice's socket dies right as she sends: the library sends again with
  // the same clientId once back, and bob gets the message once
  const sending = ca.sendPrivate('bob', 'through the drop');
  proxy.drop();
  const r2 = await sending;
  assert.equal(typeof r2.id, 'number');
  // delivered: at once on one server; over a cluster, once bob's node has
  // it from Redis (a wait, bounded)
  await until(() => inbox.some((m) => m.text === 'through the drop'), 'bob gets the message');
  assert.equal(await bob.invoke('echo', 'flush'), 'flush'); // anything sent to bob before is in
  const copies = new Set(socketOf(bob, 'bob').log.received
    .filter((m) => m.op === 'call' && m.method === 'chat.onPrivate' && m.args[0].text === 'through the drop')
    .map((m) => m.args[0].id));
  assert.equal(copies.size, 1);
  assert.deepEqual(inbox.map((m) => m.text), ['hi bob', 'through the drop']);

  // bob never acknowledged: the server sends both again on his next
  // connection, and Chat passes each id on once
  const bobSocket = socketOf(bob, 'bob');
  const redelivered = new Promise((resolve) => {
    const off = bob.on('netStatus', (e) => {
      if (e.info.code !== 'NetConnection.Connect.Success') return;
      off();
      resolve();
    });
  });
  bobSocket.terminate(); // a dead socket, no close frame
  await redelivered;
  assert.equal(await bob.invoke('echo', 'flush'), 'flush');
  assert.notEqual(socketOf(bob, 'bob'), bobSocket);
  const redone = () => socketOf(bob, 'bob').log.received.filter((m) => m.op === 'call' && m.method === 'chat.onPrivate');
  // read from the store (Redis over a cluster) before anything live: a wait, bounded
  await until(() => redone().length >= 2, 'both messages again');
  assert.equal(await bob.invoke('echo', 'flush'), 'flush');
  const again = redone();
  assert.equal(again.length, 2);
  assert.deepEqual(inbox.map((m) => m.text), ['hi bob', 'through the drop']);
  assert.deepEqual(await cb.ack(r2.id), { acked: r2.id });

  const left = next(ca, 'presence', (e) => e.left.includes('bob'));
  bob.close();
  assert.deepEqual((await left).users, ['alice']);
}));

test('node: a refused connect is final; a good token connects', explained(ctx, async (t) => {
  const secret = 'web-test-secret';
  const s = await startServer({ config: `[app chat]\nauth = token\nsecret = ${secret}\n` });
  t.after(() => s.stop());
  const infos = [];
  const bad = new NetConnection({ WebSocket, user: 'mallory', token: '1.abc', reconnect: FAST });
  bad.addEventListener('netStatus', (e) => infos.push(e.info));
  const closed = status(bad, 'NetConnection.Connect.Closed');
  bad.connect(`${s.ws}/chat/locked`);
  await closed;
  assert.deepEqual(infos.map((i) => i.code), ['NetConnection.Connect.Rejected', 'NetConnection.Connect.Closed']);
  assert.equal(infos[0].level, 'error');
  assert.match(infos[0].description, /token/i);
  assert.equal(infos[1].wsCode, 4403);
  assert.equal(bad.state, 'closed');

  const token = (await runCli(['token', '--app', 'chat', '--user', 'alice', '--secret', secret])).stdout.trim();
  const good = new NetConnection({ WebSocket, reconnect: FAST });
  const ok = status(good, 'NetConnection.Connect.Success');
  good.connect(`${s.ws}/chat/locked`, 'alice', token); // Flash style: user and token as connect arguments
  await ok;
  t.after(() => good.close());
  // room.post needs a user name: the connect arguments gave it
  assert.equal((await good.invoke('room.post', 'let in')).id, 1);
  const room = new SharedObject('room', good.uri, true);
  room.connect(good);
  await next(room, 'sync', () => room.data['1']);
  assert.equal(room.data['1'].from, 'alice');
  good.close();
  await assertCleanStop(s);
}));

test('node: Origin is read on upgrade: an allowed page origin connects, another is refused', explained(ctx, async () => {
  const s = await startServer({ config: '[app slideshow]\norigins = http://allowed.test\n' });
  try {
    const from = (origin) => class extends WebSocket {
      constructor(url, protocols) { super(url, protocols, { origin }); }
    };
    const ok = new NetConnection({ WebSocket: from('http://allowed.test'), user: 'pat', reconnect: false });
    const success = status(ok, 'NetConnection.Connect.Success');
    ok.connect(`${s.ws}/slideshow/o1`);
    await success;
    ok.close();
    const no = new NetConnection({ WebSocket: from('http://elsewhere.test'), user: 'pat', reconnect: false });
    const refused = status(no, 'NetConnection.Connect.Rejected');
    no.connect(`${s.ws}/slideshow/o1`);
    assert.equal((await refused).info.description, 'Origin not allowed');
    await status(no, 'NetConnection.Connect.Closed');
  } finally {
    await assertCleanStop(s);
  }
}));

test('the server stops cleanly (exit status 0)', () => assertCleanStop(server));
