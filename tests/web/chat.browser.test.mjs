// Two browser pages and one RTMP client (sohub-cli chat room) in one chat
// room: group messages, private messages and presence, each way.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromiumMissing, launchBrowser, screenshot, spawnCli, startServer, explained, assertCleanStop } from './harness.mjs';

const skip = chromiumMissing() ?? false;
let server;
let browser;
const ctx = () => ({ server, browser });

before(async () => {
  if (skip) return;
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const msg = (page, from, text) =>
  page.locator('#messages li').filter({ has: page.locator('.from', { hasText: from }) }).filter({ hasText: text });

test('chat: two pages and sohub-cli see each other\'s group and private messages and presence', { skip }, explained(ctx, async (t) => {
  const room = 'lobby';
  const alice = await browser.newPage();
  await alice.goto(`${server.http}/chat/?user=alice&room=${room}`);
  await alice.locator('#conn[data-state="connected"]').waitFor();
  await alice.locator('#online li[data-user="alice"]').waitFor();

  const bob = await browser.newPage({ width: 390, height: 844 }); // a phone screen
  await bob.goto(`${server.http}/chat/`);
  // bob joins through the form, as a person would
  await bob.getByLabel('Your name', { exact: true }).fill('bob');
  await bob.getByLabel('Room', { exact: true }).fill(room);
  await bob.getByRole('button', { name: 'Join' }).click();
  await bob.locator('#conn[data-state="connected"]').waitFor();

  // presence: each page lists the other
  await alice.locator('#online li[data-user="bob"]').waitFor();
  await bob.locator('#online li[data-user="alice"]').waitFor();

  // carol on RTMP
  const carol = spawnCli(['-u', `${server.rtmp}/chat/${room}`, '--user', 'carol', '--timeout', '20', 'chat', 'room']);
  t.after(() => carol.stop());
  const who = await carol.waitLine(/^\* online:/);
  assert.match(who, /alice/);
  assert.match(who, /bob/);
  // on one server carol's own entry is there at once; over a cluster it
  // comes back from Redis a moment after the snapshot her node had
  if (!/carol/.test(who)) await carol.waitLine(/^\* carol joined$/);
  await alice.locator('#online li[data-user="carol"]').waitFor();
  await bob.locator('#online li[data-user="carol"]').waitFor();
  assert.equal(await alice.locator('#online-count').textContent(), '(3)');

  // group: a page posts, the other page and RTMP see it
  await alice.getByLabel('Message to the room').fill('hello from alice');
  await alice.getByLabel('Message to the room').press('Enter');
  await msg(bob, 'alice', 'hello from alice').waitFor();
  await carol.waitLine(/\] alice: hello from alice$/);
  await msg(alice, 'alice', 'hello from alice').waitFor();
  assert.equal(await msg(alice, 'alice', 'hello from alice').getAttribute('class'), 'mine');

  // group: RTMP posts, both pages see it
  carol.write('hi from carol\n');
  await msg(alice, 'carol', 'hi from carol').waitFor();
  await msg(bob, 'carol', 'hi from carol').waitFor();

  // group: the phone page posts
  await bob.getByLabel('Message to the room').fill('bob on a phone');
  await bob.getByRole('button', { name: 'Send', exact: true }).click();
  await msg(alice, 'bob', 'bob on a phone').waitFor();
  await carol.waitLine(/\] bob: bob on a phone$/);

  // every page shows the room in id order
  const ids = await alice.locator('#messages li').evaluateAll((lis) => lis.map((li) => Number(li.dataset.id)));
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
  assert.equal(ids.length, 3);

  // private: page -> page
  await alice.getByLabel('To', { exact: true }).fill('bob');
  await alice.getByLabel('Message', { exact: true }).fill('psst, bob');
  await alice.getByRole('button', { name: 'Send privately' }).click();
  await bob.locator('#private li[data-dir="in"]', { hasText: 'alice → you: psst, bob' }).waitFor();
  await alice.locator('#private li[data-dir="out"][data-status="delivered"]', { hasText: 'psst, bob' }).waitFor();

  // private: RTMP -> page
  carol.write('/msg alice a secret from carol\n');
  await carol.waitLine('-> alice (delivered)');
  await alice.locator('#private li[data-dir="in"]', { hasText: 'carol → you: a secret from carol' }).waitFor();

  // private: page -> RTMP, through the online list's button
  await bob.locator('#online li[data-user="carol"] button').click();
  assert.equal(await bob.getByLabel('To', { exact: true }).inputValue(), 'carol');
  await bob.getByLabel('Message', { exact: true }).fill('only for carol');
  await bob.getByLabel('Message', { exact: true }).press('Enter');
  await carol.waitLine(/\(private\) bob: only for carol$/);
  await bob.locator('#private li[data-dir="out"][data-status="delivered"]', { hasText: 'only for carol' }).waitFor();
  // private means private: nobody else got these
  assert.equal(await alice.locator('#private li', { hasText: 'only for carol' }).count(), 0);
  assert.equal(await bob.locator('#private li', { hasText: 'a secret from carol' }).count(), 0);
  assert.ok(!carol.lines.some((l) => l.includes('psst, bob')));

  console.log(`# screenshot ${await screenshot(alice, 'chat-desktop')}`);
  console.log(`# screenshot ${await screenshot(bob, 'chat-phone')}`);

  // presence: RTMP leaves, then a page leaves
  carol.write('/quit\n');
  assert.equal((await carol.done).code, 0);
  await alice.locator('#online li[data-user="carol"]').waitFor({ state: 'detached' });
  await bob.locator('#online li[data-user="carol"]').waitFor({ state: 'detached' });
  await bob.close();
  await alice.locator('#online li[data-user="bob"]').waitFor({ state: 'detached' });
  assert.equal(await alice.locator('#online-count').textContent(), '(1)');
  assert.deepEqual(browser.errors, []);
}));

test('the server stops cleanly (exit status 0)', { skip }, async () => {
  await browser.close();
  await assertCleanStop(server);
});
