// Slideshow: the presenter on RTMP with the viewer in a page, and the
// presenter in a page with the viewer on RTMP.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromiumMissing, cliOk, launchBrowser, runCli, screenshot, spawnCli, startServer, explained, assertCleanStop } from './harness.mjs';

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

const slideIs = (page, n) => page.locator(`#slide[data-slide="${n}"]`).waitFor();

test('slideshow: presenter on RTMP, viewer in a page', { skip }, explained(ctx, async () => {
  const url = `${server.rtmp}/slideshow/rtmp-led`;
  const set = (k, v) => cliOk(['-u', url, '--user', 'alice', 'so', 'set', 'show', k, v, '--persistent']);
  await set('slide', '2'); // alice is first: she presents
  assert.deepEqual(await cliOk(['-u', url, 'so', 'get', 'stage', '--persistent']), { presenter: 'alice' });

  const bob = await browser.newPage({ width: 390, height: 844 });
  await bob.goto(`${server.http}/slideshow/?user=bob&room=rtmp-led`);
  await bob.locator('#role[data-presenter="alice"]', { hasText: 'alice is presenting.' }).waitFor();
  await slideIs(bob, 2); // a late viewer gets the current slide
  assert.equal(await bob.locator('#controls').isHidden(), true);

  await set('slide', '4');
  await slideIs(bob, 4);
  assert.equal(await bob.locator('#slide-title').textContent(), 'Durable when it matters');
  assert.equal(await bob.locator('#counter').textContent(), 'Slide 4 of 6');

  await set('pointer', '{"x":0.25,"y":0.5}');
  const ptr = bob.locator('#pointer:not([hidden])');
  await ptr.waitFor();
  assert.equal(await ptr.evaluate((e) => e.style.left), '25%');
  assert.equal(await ptr.evaluate((e) => e.style.top), '50%');
  console.log(`# screenshot ${await screenshot(bob, 'slideshow-viewer-phone')}`);

  // a viewer's write is refused by the server: reported as reject, the slide snaps back
  const rejected = await bob.evaluate(() => new Promise((resolve) => {
    window.app.show.addEventListener('sync', (e) => {
      const r = e.changeList.find((c) => c.code === 'reject');
      if (r) resolve({ name: r.name, oldValue: r.oldValue, now: window.app.show.data.slide });
    });
    window.app.show.setProperty('slide', 6);
  }));
  assert.deepEqual(rejected, { name: 'slide', oldValue: 6, now: 4 });
  await slideIs(bob, 4);
  await bob.locator('#errors', { hasText: 'Only the presenter can change the slides.' }).waitFor();

  // the RTMP presenter hands over to the page
  assert.deepEqual(await cliOk(['-u', url, '--user', 'alice', 'call', 'slideshow.handoff', '"bob"']), { presenter: 'bob' });
  await bob.locator('#role', { hasText: 'You are presenting.' }).waitFor();
  await bob.locator('#controls').waitFor();
  await bob.getByRole('button', { name: 'Next →' }).click();
  await slideIs(bob, 5);
  const show = await cliOk(['-u', url, 'so', 'get', 'show', '--persistent']);
  assert.equal(show.slide, 5);
  assert.equal('pointer' in show, false); // the page moved on and hid the pointer in the same change
  const refused = await runCli(['-u', url, '--user', 'alice', 'so', 'set', 'show', 'slide', '1', '--persistent']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /NoWriteAccess/);
  assert.deepEqual(browser.errors, []);
}));

test('slideshow: presenter in a page, viewer on RTMP', { skip }, explained(ctx, async (t) => {
  const url = `${server.rtmp}/slideshow/page-led`;
  const alice = await browser.newPage();
  await alice.goto(`${server.http}/slideshow/?user=alice&room=page-led`);
  await alice.locator('#role', { hasText: 'You are presenting.' }).waitFor();
  await slideIs(alice, 1);

  const watch = spawnCli(['-u', url, '--user', 'bob', 'so', 'watch', 'show', '--persistent']);
  t.after(() => watch.stop());
  await watch.waitLine('"event":"use"');

  await alice.getByRole('button', { name: 'Next →' }).click();
  await slideIs(alice, 2);
  await alice.keyboard.press('ArrowRight');
  await slideIs(alice, 3);
  await watch.waitLine((l) => l.includes('"key":"slide"') && l.includes('"value":3'));

  const box = await alice.locator('#slide').boundingBox();
  await alice.locator('#slide').click({ position: { x: box.width * 0.75, y: box.height * 0.25 } });
  const line = await watch.waitLine((l) => l.includes('"key":"pointer"'));
  const p = JSON.parse(line).value;
  assert.ok(Math.abs(p.x - 0.75) < 0.01 && Math.abs(p.y - 0.25) < 0.01, JSON.stringify(p));
  await alice.locator('#pointer:not([hidden])').waitFor();

  // the RTMP viewer cannot move the show
  const refused = await runCli(['-u', url, '--user', 'bob', 'so', 'set', 'show', 'slide', '6', '--persistent']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /NoWriteAccess/);
  assert.equal(await alice.locator('#slide').getAttribute('data-slide'), '3');
  assert.equal((await cliOk(['-u', url, 'so', 'get', 'show', '--persistent'])).slide, 3);

  console.log(`# screenshot ${await screenshot(alice, 'slideshow-presenter')}`);

  // hand over to the RTMP viewer through the page
  await alice.getByLabel('Hand over to').fill('bob');
  await alice.getByRole('button', { name: 'Hand over' }).click();
  await alice.locator('#role', { hasText: 'bob is presenting.' }).waitFor();
  assert.equal(await alice.locator('#controls').isHidden(), true);
  await cliOk(['-u', url, '--user', 'bob', 'so', 'set', 'show', 'slide', '6', '--persistent']);
  await slideIs(alice, 6);
  assert.deepEqual(browser.errors, []);
}));

test('the server stops cleanly (exit status 0)', { skip }, async () => {
  await browser.close();
  await assertCleanStop(server);
});
