'use strict';
// ws-broadcast: the comparison peer for sohub's WebSocket fan-out.
//
// A plain, single-process Node.js broadcast server on the `ws` package,
// written the way such a server usually is, that speaks just enough of
// sohub.v1 (docs/websocket.md) for `sohub-benchmark --transport ws` (the
// connect, idle and fanout scenarios).  What it does and does not do is
// in README.md beside this file.
//
// usage: node server.js [--port N] [--port-file FILE] [--shared-buffer]
//   --port N          listen on 127.0.0.1:N (default 0: any free port)
//   --port-file FILE  write the port there once listening
//   --shared-buffer   encode each change to one Buffer and send that Buffer
//                     to every subscriber (default: send the string, which
//                     ws encodes once per recipient)

const fs = require('fs');
const { WebSocketServer, WebSocket } = require('ws');

const args = process.argv.slice(2);
let port = 0;
let portFile = null;
let sharedBuffer = false;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') port = Number(args[++i]);
  else if (args[i] === '--port-file') portFile = args[++i];
  else if (args[i] === '--shared-buffer') sharedBuffer = true;
  else {
    console.error(`ws-broadcast: unknown argument ${args[i]}`);
    process.exit(2);
  }
}

// ws sends a Buffer as a binary message unless told otherwise; sohub.v1 is text.
const TEXT = { binary: false };

// One room per shared-object name: its version, its slots, its members.
const rooms = new Map();
let nextClientId = 1;

function room(name) {
  let r = rooms.get(name);
  if (!r) {
    r = { version: 1, slots: new Map(), members: new Set() };
    rooms.set(name, r);
  }
  return r;
}

function soMessage(name, version, events) {
  return JSON.stringify({ op: 'so', name, version, persistent: false, events });
}

function onSo(ws, m) {
  const name = m.name;
  if (typeof name !== 'string' || !Array.isArray(m.events)) {
    ws.close(4400, 'bad so message');
    return;
  }
  for (const ev of m.events) {
    if (!ev || typeof ev !== 'object') continue;
    if (ev.t === 'use') {
      const r = room(name);
      r.members.add(ws);
      ws.rooms.add(name);
      const events = [{ t: 'use_success' }, { t: 'clear' }];
      if (r.slots.size > 0) events.push({ t: 'change', slots: [...r.slots] });
      ws.send(soMessage(name, r.version, events));
    } else if (ev.t === 'release') {
      const r = rooms.get(name);
      if (r) r.members.delete(ws);
      ws.rooms.delete(name);
    } else if (ev.t === 'change' && Array.isArray(ev.slots)) {
      const r = rooms.get(name);
      if (!r || !r.members.has(ws)) continue;
      for (const [key, value] of ev.slots) r.slots.set(key, value);
      r.version++;
      // one JSON text per change for every other subscriber ...
      const text = soMessage(name, r.version, [{ t: 'change', slots: ev.slots }]);
      const data = sharedBuffer ? Buffer.from(text) : text;
      for (const peer of r.members) {
        if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, TEXT);
      }
      // ... and a success per key for the writer
      ws.send(soMessage(name, r.version, ev.slots.map(([key]) => ({ t: 'success', key }))));
    }
    // other events (remove, send, ...) are not part of this peer
  }
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 1 << 20,
  handleProtocols: (protocols) => (protocols.has('sohub.v1') ? 'sohub.v1' : false),
});

wss.on('connection', (ws) => {
  ws.rooms = new Set();
  ws.connected = false;
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    let m;
    try {
      m = isBinary ? null : JSON.parse(data);
    } catch (e) {
      m = null;
    }
    if (!m || typeof m !== 'object') {
      ws.close(4400, 'not a JSON object');
      return;
    }
    if (m.op === 'connect') {
      ws.connected = true;
      ws.send(JSON.stringify({
        op: 'result', id: m.id, ok: true,
        value: { level: 'status', code: 'NetConnection.Connect.Success',
                 description: 'Connection succeeded.', clientId: nextClientId++ },
      }));
    } else if (!ws.connected) {
      ws.close(1008, 'connect first');
    } else if (m.op === 'so') {
      onSo(ws, m);
    }
    // calls and results are not part of this peer
  });
  ws.on('close', () => {
    for (const name of ws.rooms) {
      const r = rooms.get(name);
      if (!r) continue;
      r.members.delete(ws);
      if (r.members.size === 0) rooms.delete(name);
    }
  });
});

wss.on('listening', () => {
  const p = wss.address().port;
  if (portFile) fs.writeFileSync(portFile, `${p}\n`);
  console.log(`ws-broadcast: listening on 127.0.0.1:${p}${sharedBuffer ? ' (shared buffer)' : ''}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
