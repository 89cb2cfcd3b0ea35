// The chat sample (samples/chat): the `room` object (written by the
// server through room.post), presence, and private messages.
import { NetConnection, SharedObject, Chat } from '../lib/sohub.js';
import { $, el, wsUrl, time, showConnection, alertUser, describe, joinForm } from '../common.js';

joinForm($('join'), ({ user, room, token }) => {
  const url = wsUrl('chat', room);
  const nc = new NetConnection({ user, token: token || undefined });
  showConnection(nc, $('conn'));
  $('where').textContent = `room “${room}” as ${user}`;
  $('app').hidden = false;
  document.title = `${room} · Chat · sohub`;

  nc.addEventListener('netStatus', (e) => {
    const { code, description } = e.info;
    if (code === 'NetConnection.Connect.Rejected') alertUser(`Could not join: ${description}`);
  });

  // ---- the room: one slot per message, {id, from, text, ts}
  const roomSo = SharedObject.getRemote('room', url, true);
  const list = $('messages');
  const items = new Map(); // id -> li

  function renderMessage(key) {
    const m = roomSo.data[key];
    items.get(key)?.remove();
    items.delete(key);
    if (!m || typeof m !== 'object') return;
    const id = Number(m.id);
    const li = el('li', { 'data-id': String(id), class: m.from === user ? 'mine' : undefined },
      el('time', { datetime: new Date(Number(m.ts)).toISOString(), text: time(m.ts) }),
      el('span', { class: 'from', text: String(m.from) }),
      el('span', { class: 'text', text: String(m.text) }));
    // keep the list in id order
    let next = null;
    for (const other of list.children) if (Number(other.dataset.id) > id) { next = other; break; }
    list.insertBefore(li, next);
    items.set(key, li);
  }

  roomSo.addEventListener('sync', (e) => {
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    for (const c of e.changeList) {
      if (c.code === 'clear') {
        list.replaceChildren();
        items.clear();
      } else if (c.name !== undefined) {
        renderMessage(c.name);
      }
    }
    $('empty').hidden = list.children.length > 0;
    if (nearBottom) list.scrollTop = list.scrollHeight;
  });
  roomSo.connect(nc);

  $('post').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('text');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    try {
      await nc.invoke('room.post', text);
    } catch (err) {
      input.value = input.value || text;
      alertUser(`Not sent: ${describe(err)}`);
    }
  });

  // ---- private messages and presence (app/chat)
  const chat = new Chat(nc);
  const pm = $('private');

  function addPrivate(dir, who, text, ts, id) {
    const li = el('li', { 'data-dir': dir, 'data-id': id != null ? String(id) : undefined },
      el('time', { text: time(ts) }),
      el('strong', { text: dir === 'in' ? `${who} → you: ` : `you → ${who}: ` }),
      el('span', { class: 'text', text }),
      el('span', { class: 'state' }));
    pm.append(li);
    pm.scrollTop = pm.scrollHeight;
    return li;
  }

  chat.onPrivate = (m) => {
    addPrivate('in', String(m.from), String(m.text), m.ts, m.id);
    chat.ack(m.id).catch(() => {}); // shown: the server may forget it
  };

  $('pm').addEventListener('submit', async (e) => {
    e.preventDefault();
    const to = $('pm-to').value.trim();
    const text = $('pm-text').value.trim();
    if (!to || !text) return;
    $('pm-text').value = '';
    const li = addPrivate('out', to, text, Date.now());
    const state = li.querySelector('.state');
    state.textContent = '(sending…)';
    try {
      const r = await chat.sendPrivate(to, text);
      li.dataset.id = String(r.id);
      li.dataset.status = r.status;
      state.textContent = r.status === 'delivered' ? '(delivered)' : '(queued until they connect)';
    } catch (err) {
      li.dataset.status = 'failed';
      state.textContent = `(not sent: ${describe(err)})`;
    }
  });

  const online = $('online');
  chat.addEventListener('presence', (e) => {
    online.replaceChildren(...e.users.map((name) => {
      const p = chat.presence.data[name] ?? {};
      const li = el('li', { 'data-user': name },
        el('span', {}, el('strong', { text: name }), name === user ? el('span', { class: 'muted', text: ' (you)' }) : null,
          el('br'), el('span', { class: 'muted since', text: `since ${time(p.since)}${Number(p.connections) > 1 ? ` · ${p.connections} tabs` : ''}` })));
      if (name !== user) {
        li.append(el('button', {
          type: 'button', class: 'secondary', text: 'Message', 'aria-label': `Send ${name} a private message`,
          onclick: () => { $('pm-to').value = name; $('pm-text').focus(); },
        }));
      }
      return li;
    }));
    $('online-count').textContent = `(${e.users.length})`;
    $('pm-users').replaceChildren(...e.users.filter((n) => n !== user).map((n) => el('option', { value: n })));
    const news = [...e.joined.map((n) => `${n} joined`), ...e.left.map((n) => `${n} left`)];
    if (news.length) $('presence-news').textContent = news.join(', ');
  });

  window.app = { nc, room: roomSo, chat };
  nc.connect(url);
  $('text').focus();
});
