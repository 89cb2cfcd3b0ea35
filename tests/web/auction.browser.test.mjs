// Auction: the admin's page puts an item up, a bidder's page and an RTMP
// bidder outbid each other; both see every bid, the outbid and the close.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromiumMissing, cliOk, launchBrowser, runCli, screenshot, spawnCli, startServer, explained, assertCleanStop } from './harness.mjs';

const skip = chromiumMissing() ?? false;
let server;
let browser;
const ctx = () => ({ server, browser });

// No anti-sniping extension: the item closes at the time it was given.
const CONFIG = `[sample auction]
snipe_window_ms = 0
`;
const DURATION_S = 15;

before(async () => {
  if (skip) return;
  server = await startServer({ config: CONFIG });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('auction: bids from a page and from RTMP, outbid and close seen by both', { skip }, explained(ctx, async (t) => {
  const inst = 'spring';
  const url = `${server.rtmp}/auction/${inst}`;

  const bob = await browser.newPage();
  await bob.goto(`${server.http}/auction/?user=bob&room=${inst}`);
  await bob.locator('#conn[data-state="connected"]').waitFor();
  assert.equal(await bob.locator('#admin').isHidden(), true);

  // the admin creates the item through the page's form
  const admin = await browser.newPage({ width: 390, height: 900 });
  await admin.goto(`${server.http}/auction/?user=admin&room=${inst}`);
  await admin.locator('#admin').waitFor();
  await admin.getByLabel('Id', { exact: true }).fill('lamp');
  await admin.getByLabel('Title').fill('Brass desk lamp');
  await admin.getByLabel('Start price').fill('100');
  await admin.getByLabel('Duration (s)').fill(String(DURATION_S));
  await admin.getByLabel('Increment').fill('10');
  await admin.getByRole('button', { name: 'Start' }).click();

  const card = bob.locator('li.item[data-item="lamp"]');
  await card.locator('.title', { hasText: 'Brass desk lamp' }).waitFor();
  assert.equal(await card.getAttribute('data-state'), 'open');
  assert.equal(await card.locator('.price').textContent(), '100');
  assert.equal(await card.getByLabel('Your bid').inputValue(), '100');

  // RTMP watcher of the item (carol's view)
  const watch = spawnCli(['-u', url, '--user', 'carol', 'so', 'watch', 'items/lamp', '--persistent']);
  t.after(() => watch.stop());
  await watch.waitLine((l) => l.includes('"event":"change"') && l.includes('"key":"title"'));

  // bob bids on the page
  await card.getByRole('button', { name: 'Bid' }).click();
  await card.locator('.note[data-note="leading"]').waitFor();
  await watch.waitLine((l) => l.includes('"key":"leader"') && l.includes('"value":"bob"'));

  // carol outbids on RTMP: the page says so
  const r1 = await cliOk(['-u', url, '--user', 'carol', 'call', 'auction.bid', '"lamp"', '110']);
  assert.equal(r1.price, 110);
  await card.locator('.note[data-note="outbid"]', { hasText: 'outbid by carol (110)' }).waitFor();
  assert.equal(await card.locator('.leader').textContent(), 'carol');
  assert.equal(await card.locator('.leader-label').textContent(), 'Leader');
  await bob.locator('#errors', { hasText: 'Outbid on Brass desk lamp by carol' }).waitFor();
  assert.equal(await card.getByLabel('Your bid').inputValue(), '120'); // price + increment

  // too low from the page: refused, said on the card
  await card.getByLabel('Your bid').fill('115');
  await card.getByRole('button', { name: 'Bid' }).click();
  await card.locator('.note[data-note="refused"]', { hasText: 'Auction.TooLow' }).waitFor();

  // bob takes the lead again; RTMP sees carol outbid
  const fromLine = watch.lines.length;
  await card.getByLabel('Your bid').fill('120');
  await card.getByRole('button', { name: 'Bid' }).click();
  await card.locator('.note[data-note="leading"]').waitFor();
  await watch.waitLine((l) => l.includes('"key":"leader"') && l.includes('"value":"bob"'), { from: fromLine });
  await watch.waitLine((l) => l.includes('"key":"price"') && l.includes('"value":120'), { from: fromLine });

  // RTMP too low
  const low = await runCli(['-u', url, '--user', 'carol', 'call', 'auction.bid', '"lamp"', '125']);
  assert.equal(low.code, 1);
  assert.match(low.stdout + low.stderr, /Auction\.TooLow/);

  // the countdown runs on both pages
  assert.match(await card.locator('.clock').textContent(), /^\d+:\d\d$|closing/);
  console.log(`# screenshot ${await screenshot(bob, 'auction-open')}`);

  // the close: the watcher gets auctionClosed, both pages show the winner
  const closeWait = { timeoutMs: DURATION_S * 1000 + 20000 };
  const closed = await watch.waitLine((l) => l.includes('"handler":"auctionClosed"'), closeWait);
  const info = JSON.parse(closed).args[0];
  assert.equal(info.winner, 'bob');
  assert.equal(info.price, 120);
  assert.equal(info.bids, 3); // bob 100, carol 110, bob 120
  await card.locator('.note[data-note="won"]', { hasText: 'You won at 120!' }).waitFor({ timeout: closeWait.timeoutMs });
  assert.equal(await card.getAttribute('data-state'), 'closed');
  assert.equal(await card.locator('.leader-label').textContent(), 'Winner');
  assert.equal(await card.locator('.leader').textContent(), 'bob (you)');
  await bob.locator('#errors', { hasText: 'You won Brass desk lamp at 120!' }).waitFor();
  const adminCard = admin.locator('li.item[data-item="lamp"]');
  await adminCard.locator('.note[data-note="sold"]', { hasText: 'Sold to bob for 120.' }).waitFor();
  assert.equal(await adminCard.locator('form.bid').isHidden(), true);

  // and bids are over
  const late = await runCli(['-u', url, '--user', 'carol', 'call', 'auction.bid', '"lamp"', '500']);
  assert.equal(late.code, 1);
  assert.match(late.stdout + late.stderr, /Auction\.Closed/);

  console.log(`# screenshot ${await screenshot(bob, 'auction-won')}`);
  console.log(`# screenshot ${await screenshot(admin, 'auction-admin-phone')}`);
  assert.deepEqual(browser.errors, []);
}));

test('the server stops cleanly (exit status 0)', { skip }, async () => {
  await browser.close();
  await assertCleanStop(server);
});
