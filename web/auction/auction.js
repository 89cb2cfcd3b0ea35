// The auction sample (samples/auction): `catalog` lists the items, one
// server-written object `items/<id>` per item, auction.bid / auction.create,
// and the auctionClosed message at the end.
import { NetConnection, SharedObject } from '../lib/sohub.js';
import { $, el, params, wsUrl, showConnection, alertUser, describe, joinForm } from '../common.js';

const fmt = (n) => Number(n).toLocaleString(undefined, { maximumFractionDigits: 2 });

function clock(ms) {
  if (ms <= 0) return 'closing…';
  const s = Math.ceil(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return `${h ? `${h}:${String(m).padStart(2, '0')}` : m}:${String(r).padStart(2, '0')}`;
}

joinForm($('join'), ({ user, room, token }) => {
  const url = wsUrl('auction', room);
  const nc = new NetConnection({ user, token: token || undefined });
  showConnection(nc, $('conn'));
  $('where').textContent = `auction “${room}” as ${user}`;
  $('app').hidden = false;
  document.title = `${room} · Auction · sohub`;
  nc.addEventListener('netStatus', (e) => {
    if (e.info.code === 'NetConnection.Connect.Rejected') alertUser(`Could not enter: ${e.info.description}`);
  });

  const cards = new Map(); // id -> {li, so, ...}

  function note(card, kind, text, tone) {
    const p = card.li.querySelector('.note');
    p.dataset.note = kind;
    p.className = `note notice ${tone}`;
    p.textContent = text;
  }

  function render(card) {
    const d = card.so.data;
    const li = card.li;
    const state = d.state === 'closed' ? 'closed' : 'open';
    li.dataset.state = state;
    li.querySelector('.title').textContent = d.title ?? card.id;
    const badge = li.querySelector('.badge');
    badge.className = `badge ${state}`;
    badge.textContent = state;
    li.querySelector('.price').textContent = d.price == null ? '–' : fmt(d.price);
    const who = state === 'closed' ? d.winner : d.leader;
    li.querySelector('.leader-label').textContent = state === 'closed' ? 'Winner' : 'Leader';
    li.querySelector('.leader').textContent = who ? String(who) + (who === user ? ' (you)' : '') : state === 'closed' ? 'nobody' : 'no bids yet';
    li.querySelector('.bids').textContent = d.bids == null ? '0' : String(Number(d.bids));
    li.querySelector('.clock-label').textContent = state === 'open' ? 'Ends in' : 'Ended';
    const next = Number(d.bids) > 0 ? Number(d.price) + Number(d.increment ?? 1) : Number(d.price);
    const input = li.querySelector('input[name=amount]');
    if (Number.isFinite(next)) {
      input.min = String(next);
      if (!input.dataset.touched || Number(input.value) < next) input.value = String(next);
    }
    if (state === 'closed') {
      const w = d.winner;
      if (!w) note(card, 'unsold', 'Closed without bids.', 'warn');
      else if (w === user) note(card, 'won', `You won at ${fmt(d.price)}!`, 'ok');
      else note(card, 'sold', `Sold to ${w} for ${fmt(d.price)}.`, 'warn');
    }
    tick(card);
  }

  function tick(card) {
    const d = card.so.data;
    const c = card.li.querySelector('.clock');
    if (d.state === 'closed') {
      c.textContent = d.endsAt ? new Date(Number(d.endsAt)).toLocaleTimeString() : '';
      c.classList.remove('soon');
      return;
    }
    const left = Number(d.endsAt) - Date.now();
    c.textContent = Number.isFinite(left) ? clock(left) : '';
    c.classList.toggle('soon', left < 10000);
  }

  function addCard(id) {
    if (cards.has(id)) return cards.get(id);
    const li = el('li', { class: 'panel item', 'data-item': id, 'data-state': 'open', 'aria-labelledby': `t-${id}` },
      el('h3', { id: `t-${id}` }, el('span', { class: 'title', text: id }), el('span', { class: 'badge open', text: 'open' })),
      el('span', { class: 'muted id', text: `item ${id}` }),
      el('dl', {},
        el('dt', { text: 'Price' }), el('dd', { class: 'price', text: '–' }),
        el('dt', { class: 'leader-label', text: 'Leader' }), el('dd', { class: 'leader', text: '' }),
        el('dt', { text: 'Bids' }), el('dd', { class: 'bids', text: '0' }),
        el('dt', { class: 'clock-label', text: 'Ends in' }), el('dd', { class: 'clock', 'aria-live': 'off' })),
      el('p', { class: 'note', role: 'status' }));
    const form = el('form', { class: 'row bid', novalidate: true },
      el('label', {}, 'Your bid', el('input', { name: 'amount', type: 'number', step: 'any', required: true, inputmode: 'decimal' })),
      el('button', { type: 'submit', text: 'Bid' }));
    li.append(form);
    const card = { id, li, so: SharedObject.getRemote(`items/${id}`, url, true) };
    const input = form.querySelector('input');
    input.addEventListener('input', () => { input.dataset.touched = '1'; });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const amount = Number(input.value);
      const button = form.querySelector('button');
      button.disabled = true;
      try {
        const r = await nc.invoke('auction.bid', id, amount);
        delete input.dataset.touched;
        note(card, 'leading', `Your bid of ${fmt(r.price)} leads.`, 'ok');
      } catch (err) {
        note(card, 'refused', `Bid refused: ${describe(err)}`, 'bad');
      } finally {
        button.disabled = false;
      }
    });
    card.so.addEventListener('sync', (e) => {
      for (const c of e.changeList) {
        if (c.name === 'leader' && c.code === 'change' && c.oldValue === user && card.so.data.leader !== user) {
          note(card, 'outbid', `You have been outbid by ${card.so.data.leader} (${fmt(card.so.data.price)}).`, 'warn');
          alertUser(`Outbid on ${card.so.data.title ?? id} by ${card.so.data.leader}`, 'warn');
        }
      }
      if (e.changeList.some((c) => c.code === 'clear') && card.so.data.leader === user && card.so.data.state !== 'closed')
        note(card, 'leading', 'You are the highest bidder.', 'ok');
      render(card);
    });
    card.so.client = {
      auctionClosed(info) {
        const title = card.so.data.title ?? id;
        if (!info.winner) alertUser(`${title}: closed without bids.`, 'warn');
        else if (info.winner === user) alertUser(`You won ${title} at ${fmt(info.price)}!`, 'ok');
        else alertUser(`${title} sold to ${info.winner} for ${fmt(info.price)}.`, 'warn');
      },
    };
    card.so.connect(nc);
    // newest first
    $('items').prepend(li);
    $('no-items').hidden = true;
    cards.set(id, card);
    return card;
  }

  const catalog = SharedObject.getRemote('catalog', url, true);
  catalog.addEventListener('sync', (e) => {
    for (const c of e.changeList) if (c.name !== undefined && catalog.data[c.name]) addCard(c.name);
  });
  catalog.connect(nc);

  setInterval(() => { for (const card of cards.values()) tick(card); }, 250);

  if (user === (params.get('admin') || 'admin')) {
    $('admin').hidden = false;
    $('create').addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      const args = [f.id.trim(), f.title.trim(), Number(f.price), Number(f.duration)];
      if (f.increment) args.push(Number(f.increment));
      try {
        await nc.invoke('auction.create', ...args);
        e.target.reset();
      } catch (err) {
        alertUser(`Not created: ${describe(err)}`);
      }
    });
  }

  window.app = { nc, catalog, cards };
  nc.connect(url);
});
