// Resume: the page's socket is cut (a TCP proxy between the browser and
// the server drops it and refuses new connections for a while) while an
// RTMP client posts; the page comes back by itself and its `use` is
// answered with a diff: no `clear` on the wire, only the new messages.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromiumMissing, cliOk, launchBrowser, screenshot, spawnCli, startProxy, startServer, explained, assertCleanStop } from './harness.mjs';

const skip = chromiumMissing() ?? false;
let server;
let browser;
const ctx = () => ({ server, browser });
let proxy;

before(async () => {
  if (skip) return;
  server = await startServer();
  proxy = await startProxy(server.httpPort);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  await server?.stop();
});

test('resume: a dropped page comes back with a diff, not a reload', { skip }, explained(ctx, async (t) => {
  const room = 'resume';
  const url = `${server.rtmp}/chat/${room}`;
  const post = (text) => cliOk(['-u', url, '--user', 'carol', 'call', 'room.post', JSON.stringify(text)]);

  // an RTMP subscriber stays in the room the whole time
  const witness = spawnCli(['-u', url, '--user', 'carol', 'so', 'watch', 'room', '--persistent']);
  t.after(() => witness.stop());
  await witness.waitLine('"event":"use"');
  await post('before 1');
  await post('before 2');

  const page = await browser.newPage();
  // every WebSocket the page opens, with the frames each way
  const sockets = [];
  page.on('websocket', (ws) => {
    const s = { url: ws.url(), sent: [], received: [] };
    sockets.push(s);
    ws.on('framesent', (f) => s.sent.push(JSON.parse(f.payload)));
    ws.on('framereceived', (f) => s.received.push(JSON.parse(f.payload)));
  });
  await page.goto(`http://127.0.0.1:${proxy.port}/chat/?user=alice&room=${room}`);
  await page.locator('#conn[data-state="connected"]').waitFor();
  await page.locator('#messages li', { hasText: 'before 2' }).waitFor();
  assert.equal(sockets.length, 1);
  const first = sockets[0].received.find((m) => m.op === 'so' && m.name === 'room');
  assert.ok(first.events.some((e) => e.t === 'clear'), 'the first use is answered with the whole state');
  const held = await page.evaluate(() => window.app.room.version);
  assert.ok(held > 0);

  await page.evaluate(() => {
    window.statusCodes = [];
    window.app.nc.addEventListener('netStatus', (e) => window.statusCodes.push(e.info));
  });

  // cut the page off; it keeps trying while the others write
  proxy.block(true);
  const accepted = proxy.accepted;
  proxy.drop();
  await page.locator('#conn[data-state="reconnecting"]').waitFor();
  await post('while away 1');
  await post('while away 2');
  await post('while away 3');
  await witness.waitLine('while away 3');
  // at least one attempt was turned away by the blocked proxy
  await proxy.waitAccepted(accepted + 1);
  const away = await page.evaluate(() => window.app.room.version);
  assert.equal(away, held, 'nothing reached the page while it was away');

  proxy.block(false);
  await page.locator('#conn[data-state="connected"]').waitFor();
  await page.locator('#messages li', { hasText: 'while away 3' }).waitFor();
  const texts = await page.locator('#messages li .text').allTextContents();
  assert.deepEqual(texts, ['before 1', 'before 2', 'while away 1', 'while away 2', 'while away 3']);

  // on the wire: the new socket asked with the version it held ...
  const again = sockets.at(-1);
  assert.ok(sockets.length >= 2);
  const use = again.sent.find((m) => m.op === 'so' && m.name === 'room');
  assert.deepEqual(use.events, [{ t: 'use' }]);
  assert.equal(use.version, held);
  // ... and got only what it missed: no clear, the three new messages
  const answers = again.received.filter((m) => m.op === 'so' && m.name === 'room');
  assert.ok(answers.length >= 1);
  assert.ok(answers[0].events.some((e) => e.t === 'use_success'));
  for (const m of answers) assert.ok(!m.events.some((e) => e.t === 'clear'), `a clear on the resumed socket: ${JSON.stringify(m)}`);
  const changed = answers.flatMap((m) => m.events.filter((e) => e.t === 'change').flatMap((e) => e.slots.map(([, v]) => v.text)));
  assert.deepEqual(changed.sort(), ['while away 1', 'while away 2', 'while away 3']);
  assert.ok(answers.at(-1).version > held);

  // the drop was announced (Reconnecting, with growing waits), then Success with reconnected: true
  const infos = await page.evaluate(() => window.statusCodes);
  const retries = infos.filter((i) => i.code === 'NetConnection.Connect.Reconnecting');
  assert.ok(retries.length >= 2, JSON.stringify(infos));
  assert.deepEqual(retries.map((i) => i.attempt), retries.map((_, k) => k + 1));
  assert.ok(retries.every((i) => i.delayMs > 0 && i.delayMs <= 10000));
  assert.deepEqual(infos.at(-1), { ...infos.at(-1), code: 'NetConnection.Connect.Success', reconnected: true });
  assert.ok(!infos.some((i) => i.code === 'NetConnection.Connect.Closed'));
  console.log(`# screenshot ${await screenshot(page, 'chat-resumed')}`);
  assert.deepEqual(browser.errors.filter((e) => !/WebSocket/.test(e)), []);
}));

test('the server stops cleanly (exit status 0)', { skip }, async () => {
  await browser.close();
  await assertCleanStop(server);
});
