// The slideshow sample (samples/slideshow): `show` {slide, pointer} is
// written by the presenter (viewers' writes are refused by the server and
// snap back), `stage` {presenter} by the server; slideshow.handoff(user).
import { NetConnection, SharedObject } from '../lib/sohub.js';
import { $, el, wsUrl, showConnection, alertUser, describe, joinForm } from '../common.js';

// The deck: the pages know the slides, the shared object only says which.
const DECK = [
  { title: 'Shared objects, everywhere', points: ['One room for Flash, RTMP tools and browsers', 'Follow along: this slide is a shared object'], bg: '#1f5fbf' },
  { title: 'One room, many clients', points: ['RTMP and WebSocket clients join the same instance', 'Same rules, same status codes', 'Calls both ways'], bg: '#6b3fa0' },
  { title: 'Versions, not guesses', points: ['Every change makes one new version', 'A client that comes back gets a diff', 'Slow clients get one diff when they catch up'], bg: '#0f7b6c' },
  { title: 'Durable when it matters', points: ['Persistent objects are written before they are confirmed', 'A restart keeps the slide you were on'], bg: '#a1461a' },
  { title: 'Chat, presence, auctions', points: ['Private messages are stored until they are read', 'Who is online is a shared object too', 'Bids are applied one at a time'], bg: '#8a1c3d' },
  { title: 'Thank you', points: ['Questions?'], bg: '#2d3a4a' },
];

joinForm($('join'), ({ user, room, token }) => {
  const url = wsUrl('slideshow', room);
  const nc = new NetConnection({ user, token: token || undefined });
  showConnection(nc, $('conn'));
  $('where').textContent = `show “${room}” as ${user}`;
  $('app').hidden = false;
  document.title = `${room} · Slideshow · sohub`;
  nc.addEventListener('netStatus', (e) => {
    if (e.info.code === 'NetConnection.Connect.Rejected') alertUser(`Could not join: ${e.info.description}`);
  });

  const show = SharedObject.getRemote('show', url, true);
  const stage = SharedObject.getRemote('stage', url, true);
  const slideEl = $('slide');

  const presenting = () => stage.data.presenter === user;
  const current = () => {
    const n = Math.round(Number(show.data.slide));
    return Number.isFinite(n) && n >= 1 ? n : 1;
  };

  function renderSlide() {
    const n = current();
    const s = DECK[n - 1] ?? { title: `Slide ${n}`, points: ['(not in this deck)'], bg: '#444' };
    slideEl.dataset.slide = String(n);
    slideEl.style.setProperty('--slide-bg', s.bg);
    $('slide-title').textContent = s.title;
    $('slide-points').replaceChildren(...s.points.map((p) => el('li', { text: p })));
    $('counter').textContent = `Slide ${n} of ${DECK.length}`;
    const p = show.data.pointer;
    const ptr = $('pointer');
    if (p && Number.isFinite(Number(p.x)) && Number.isFinite(Number(p.y))) {
      ptr.hidden = false;
      ptr.style.left = `${Math.min(1, Math.max(0, Number(p.x))) * 100}%`;
      ptr.style.top = `${Math.min(1, Math.max(0, Number(p.y))) * 100}%`;
    } else {
      ptr.hidden = true;
    }
    $('prev').disabled = n <= 1;
    $('next').disabled = n >= DECK.length;
  }

  function renderRole() {
    const who = stage.data.presenter;
    const me = presenting();
    $('role').textContent = me ? 'You are presenting.' : who ? `${who} is presenting.` : 'Nobody is presenting yet.';
    $('role').dataset.presenter = who ?? '';
    $('controls').hidden = !me;
    slideEl.toggleAttribute('data-presenting', me);
  }

  show.addEventListener('sync', (e) => {
    if (e.changeList.some((c) => c.code === 'reject')) alertUser('Only the presenter can change the slides.', 'warn');
    renderSlide();
  });
  stage.addEventListener('sync', renderRole);
  show.addEventListener('netStatus', (e) => {
    if (e.info.code !== 'SharedObject.NoWriteAccess') alertUser(`Slide not changed: ${e.info.code}`);
  });

  function go(n) {
    if (n < 1 || n > DECK.length) return;
    // one message, one version: the new slide and no pointer
    show.setProperty('slide', n);
    show.setProperty('pointer', null);
  }
  $('prev').addEventListener('click', () => go(current() - 1));
  $('next').addEventListener('click', () => go(current() + 1));
  $('clear-pointer').addEventListener('click', () => show.setProperty('pointer', null));
  document.addEventListener('keydown', (e) => {
    if (!presenting() || e.target.closest?.('input, textarea, select')) return;
    if (e.key === 'ArrowRight' || e.key === 'PageDown') go(current() + 1);
    else if (e.key === 'ArrowLeft' || e.key === 'PageUp') go(current() - 1);
    else return;
    e.preventDefault();
  });
  slideEl.addEventListener('click', (e) => {
    if (!presenting()) return;
    const r = slideEl.getBoundingClientRect();
    const x = Math.round(((e.clientX - r.left) / r.width) * 1000) / 1000;
    const y = Math.round(((e.clientY - r.top) / r.height) * 1000) / 1000;
    show.setProperty('pointer', { x, y });
  });

  $('handoff').addEventListener('submit', async (e) => {
    e.preventDefault();
    const to = e.target.elements.to.value.trim();
    try {
      await nc.invoke('slideshow.handoff', to);
      e.target.reset();
    } catch (err) {
      alertUser(`Not handed over: ${describe(err)}`);
    }
  });

  renderSlide();
  renderRole();
  show.connect(nc);
  stage.connect(nc);
  window.app = { nc, show, stage };
  nc.connect(url);
});
