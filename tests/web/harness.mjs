// Test harness of the web tests: a real sohub-server per test (127.0.0.1,
// port 0, its own data directory), sohub-cli processes, Chromium through
// playwright-core, a TCP proxy that can drop connections, raw HTTP
// requests, screenshots.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');
export const SERVER = process.env.SOHUB_SERVER || path.join(repo, 'build/app/sohub-server');
export const CLI = process.env.SOHUB_CLI || path.join(repo, 'build/app/cli/sohub-cli');
export const WEB_ROOT = process.env.SOHUB_WEB_ROOT || path.join(repo, 'web');
export const ADMIN_ROOT = process.env.SOHUB_ADMIN_ROOT || path.join(repo, 'admin');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = process.env.SOHUB_WEB_ARTIFACTS || path.join(here, 'artifacts');

/** How long a wait for something that must happen may take (a loaded 2-core machine). */
export const WAIT_MS = Number(process.env.SOHUB_WEB_WAIT_MS || 20000);

export function chromiumMissing() {
  try {
    fs.accessSync(CHROMIUM, fs.constants.X_OK);
    return null;
  } catch {
    return `${CHROMIUM} not found: install Debian's chromium (scripts/install-deps.sh)`;
  }
}

/** Resolves when cond() is true; checks again whenever poke() is called or every `every` ms. */
export async function until(cond, what, timeoutMs = WAIT_MS, every = 25) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// ---------------------------------------------------------------- server

/**
 * Starts sohub-server with HTTP/WebSocket on; `config` is INI text.
 * Returns {rtmp, http, ws, rtmpPort, httpPort, dataDir, log(), stop()},
 * and {admin, adminPort} when args turn admin_listen on.
 */
export async function startServer({ config = '', args = [] } = {}) {
  const nodes = clusterNodes();
  return nodes ? startCluster(nodes, { config, args }) : startOne({ config, args });
}

async function startOne({ config = '', args = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sohub-web-'));
  const portFile = path.join(dir, 'ports');
  const argv = ['--listen', '127.0.0.1:0', '--port-file', portFile, '--data-dir', path.join(dir, 'data'),
    '--set', 'http_listen=127.0.0.1:0', '--set', `web_root=${WEB_ROOT}`, ...args];
  if (config) {
    fs.writeFileSync(path.join(dir, 'sohub.ini'), config);
    argv.push('--config', path.join(dir, 'sohub.ini'));
  }
  fs.mkdirSync(path.join(dir, 'data'));
  const proc = spawn(SERVER, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  let exited = null;
  const exit = new Promise((r) => proc.on('exit', (code, sig) => { exited = { code, sig }; r(exited); }));
  let ports;
  try {
    ports = await until(() => {
      if (exited) throw new Error(`sohub-server exited (${JSON.stringify(exited)}):\n${log}`);
      let text = '';
      try {
        text = fs.readFileSync(portFile, 'utf8');
      } catch {
        return null;
      }
      const rtmp = text.match(/^(\d+)\s*$/m);
      const http = text.match(/^http (\d+)\s*$/m);
      const admin = text.match(/^admin (\d+)\s*$/m);
      return rtmp && http ? { rtmp: Number(rtmp[1]), http: Number(http[1]), admin: admin && Number(admin[1]) } : null;
    }, 'the server port file', 15000, 20);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  return {
    rtmpPort: ports.rtmp,
    httpPort: ports.http,
    rtmp: `rtmp://127.0.0.1:${ports.rtmp}`,
    http: `http://127.0.0.1:${ports.http}`,
    ws: `ws://127.0.0.1:${ports.http}/ws`,
    adminPort: ports.admin,
    admin: ports.admin ? `http://127.0.0.1:${ports.admin}` : null,
    dataDir: dir,
    log: () => log,
    get exited() { return exited; },
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exit;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
}

// ---------------------------------------------------------------- cluster mode

/**
 * SOHUB_E2E_CLUSTER=N (issue 15): startServer starts a redis-server of its
 * own (free loopback port, AOF with appendfsync always), N nodes sharing
 * it (the test's config plus a [cluster] section) and HAProxy in front of
 * them, round robin: RTMP as TCP, the pages and the WebSocket endpoint in
 * HTTP mode, so the page loads and WebSocket connections of one test are
 * spread over the nodes.  The object it returns is the one of a single
 * server: its ports are HAProxy's, log() is every node's log, stop() stops
 * everything and answers the worst exit of the nodes.
 */
export function clusterNodes() {
  const v = process.env.SOHUB_E2E_CLUSTER;
  if (!v || v === '0') return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 8) throw new Error(`SOHUB_E2E_CLUSTER=${v}: 1..8 nodes`);
  return n;
}

export const HAPROXY = process.env.HAPROXY || '/usr/sbin/haproxy';

/** A loopback port nobody listens on now (a caller that loses it to someone else retries). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A child with its output in a file; exited (null while it runs) and exit (a promise). */
function spawnLogged(cmd, argv, logPath) {
  const out = fs.openSync(logPath, 'a');
  const proc = spawn(cmd, argv, { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const child = { proc, exited: null };
  child.exit = new Promise((r) => proc.on('exit', (code, sig) => { child.exited = { code, sig }; r(child.exited); }));
  child.stop = async (ms = 10000) => {
    if (!child.exited) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), ms);
      await child.exit;
      clearTimeout(t);
    }
    return child.exited;
  };
  return child;
}

function tcpAnswers(port, send, expect) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    const t = setTimeout(() => { sock.destroy(); resolve(false); }, 1000);
    sock.on('connect', () => { if (send) sock.write(send); else { clearTimeout(t); sock.destroy(); resolve(true); } });
    sock.on('data', (d) => { got += d; if (got.includes(expect)) { clearTimeout(t); sock.destroy(); resolve(true); } });
    sock.on('error', () => { clearTimeout(t); resolve(false); });
  });
}

/** Starts cmd on a free port (portArgs(port) -> argv) until ready(port) within 10 s; 3 tries. */
async function startOnFreePort(name, logPath, start, ready) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = start(port);
    const ok = await until(async () => child.exited || (await ready(port)), `${name} on port ${port}`, 10000, 20)
      .catch(() => false);
    if (ok === true && !child.exited) return { child, port };
    await child.stop(1000);
  }
  throw new Error(`${name} did not start: ${fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8').slice(-3000) : ''}`);
}

/** RTMP as TCP and the web listener in HTTP mode, round robin over the nodes. */
function haproxyConfig(nodes, rtmpPort, httpPort) {
  return ['global', '    maxconn 4000',
    'defaults', '    timeout connect 2s', '    timeout client 1h', '    timeout server 1h',
    '    timeout tunnel 1h', '    timeout client-fin 5s', '    timeout http-request 10s',
    'frontend rtmp', '    mode tcp', `    bind 127.0.0.1:${rtmpPort}`, '    default_backend rtmp',
    'backend rtmp', '    mode tcp', '    balance roundrobin',
    ...nodes.map((x) => `    server n${x.k} 127.0.0.1:${x.ports.rtmp}`),
    'frontend web', '    mode http', `    bind 127.0.0.1:${httpPort}`, '    default_backend web',
    'backend web', '    mode http', '    balance roundrobin',
    ...nodes.map((x) => `    server n${x.k} 127.0.0.1:${x.ports.http}`), ''].join('\n');
}

async function startCluster(n, { config = '', args = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sohub-web-'));
  const children = [];
  const stopAll = async () => {
    const st = [];
    for (const c of children.reverse()) st.push(await c.stop());
    return st;
  };
  try {
    const redisDir = path.join(dir, 'redis');
    fs.mkdirSync(redisDir);
    const redisLog = path.join(redisDir, 'redis.log');
    const redis = await startOnFreePort('redis-server', redisLog, (port) => {
      const c = spawnLogged('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', redisDir,
        '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--protected-mode', 'yes'], redisLog);
      return c;
    }, (port) => tcpAnswers(port, 'PING\r\n', '+PONG'));
    children.push(redis.child);

    const nodes = [];
    for (let k = 1; k <= n; k++) {
      const ini = path.join(dir, `n${k}.ini`);
      fs.writeFileSync(ini, `${config}\n[cluster]\nredis = 127.0.0.1:${redis.port}\nnode = n${k}\n`);
      const data = path.join(dir, `data-n${k}`);
      fs.mkdirSync(data);
      const portFile = path.join(dir, `n${k}.ports`);
      const logPath = path.join(dir, `n${k}.log`);
      const child = spawnLogged(SERVER, ['--listen', '127.0.0.1:0', '--port-file', portFile, '--data-dir', data,
        '--set', 'http_listen=127.0.0.1:0', '--set', `web_root=${WEB_ROOT}`, ...args, '--config', ini], logPath);
      children.push(child);
      nodes.push({ k, child, portFile, logPath });
    }
    for (const node of nodes) {
      node.ports = await until(() => {
        if (node.child.exited) throw new Error(`node n${node.k} exited (${JSON.stringify(node.child.exited)}):\n${fs.readFileSync(node.logPath, 'utf8')}`);
        let text = '';
        try {
          text = fs.readFileSync(node.portFile, 'utf8');
        } catch {
          return null;
        }
        const rtmp = text.match(/^(\d+)\s*$/m);
        const http = text.match(/^http (\d+)\s*$/m);
        const admin = text.match(/^admin (\d+)\s*$/m);
        const up = fs.readFileSync(node.logPath, 'utf8').includes('up: clustered');
        return rtmp && http && up ? { rtmp: Number(rtmp[1]), http: Number(http[1]), admin: admin && Number(admin[1]) } : null;
      }, `node n${node.k} up in the cluster`, 15000, 20);
    }

    const cfgPath = path.join(dir, 'haproxy.cfg');
    const hpLog = path.join(dir, 'haproxy.log');
    let lb = null;
    let rtmpPort = 0;
    let httpPort = 0;
    for (let attempt = 0; attempt < 3 && !lb; attempt++) {
      // a port taken meanwhile makes haproxy exit: draw both again
      rtmpPort = await freePort();
      httpPort = await freePort();
      fs.writeFileSync(cfgPath, haproxyConfig(nodes, rtmpPort, httpPort));
      const child = spawnLogged(HAPROXY, ['-db', '-f', cfgPath], hpLog);
      const ok = await until(async () => child.exited || ((await tcpAnswers(rtmpPort)) && (await tcpAnswers(httpPort))),
        'haproxy', 10000, 20).catch(() => false);
      if (ok === true && !child.exited) lb = child;
      else await child.stop(1000);
    }
    if (!lb) throw new Error(`haproxy did not start: ${fs.readFileSync(hpLog, 'utf8').slice(-3000)}`);
    children.push(lb);
    const logs = () => nodes.map((x) => { try { return fs.readFileSync(x.logPath, 'utf8'); } catch { return ''; } }).join('\n');
    return {
      nodes: nodes.length,
      rtmpPort,
      httpPort,
      rtmp: `rtmp://127.0.0.1:${rtmpPort}`,
      http: `http://127.0.0.1:${httpPort}`,
      ws: `ws://127.0.0.1:${httpPort}/ws`,
      // the admin listener describes one node: the first one's
      adminPort: nodes[0].ports.admin,
      admin: nodes[0].ports.admin ? `http://127.0.0.1:${nodes[0].ports.admin}` : null,
      dataDir: dir,
      log: logs,
      get exited() { return nodes.map((x) => x.child.exited).find((e) => e) ?? null; },
      async stop() {
        const st = await Promise.all(nodes.map((x) => x.child.stop()));
        await stopAll();
        fs.rmSync(dir, { recursive: true, force: true });
        // the worst of the nodes: a signal, else the highest exit code
        return st.find((e) => e.sig) ?? st.reduce((a, b) => (b.code > a.code ? b : a));
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

// ---------------------------------------------------------------- raw HTTP

/**
 * Sends `request` (the bytes of one HTTP request, sent as they are: no
 * URL normalisation, unlike fetch) to 127.0.0.1:port and reads until
 * the server closes.  Returns {status, headers (lower-case names), body}.
 */
export function rawHttp(port, request, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    const t = setTimeout(() => { sock.destroy(); reject(new Error(`no answer to ${JSON.stringify(request.slice(0, 80))}`)); }, timeoutMs);
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', (e) => { clearTimeout(t); reject(e); });
    sock.on('close', () => {
      clearTimeout(t);
      const all = Buffer.concat(chunks).toString('latin1');
      const end = all.indexOf('\r\n\r\n');
      const head = (end < 0 ? all : all.slice(0, end)).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
      const headers = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status, headers, body: end < 0 ? '' : all.slice(end + 4) });
    });
    sock.end(request);
  });
}

/** A GET of path (sent as is) with Connection: close and extra header lines. */
export function rawGet(port, target, headers = {}) {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return rawHttp(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extra}\r\n`);
}

// ---------------------------------------------------------------- sohub-cli

/** Runs sohub-cli to its end: {code, stdout, stderr}. */
export function runCli(args, { input, timeoutMs = WAIT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(CLI, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`sohub-cli ${args.join(' ')}: timed out\n${stderr}`)); }, timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
    if (input !== undefined) {
      p.stdin.on('error', () => {}); // it may have exited before reading
      p.stdin.end(input);
    }
  });
}

/** Runs sohub-cli and fails unless it exits 0; returns stdout parsed as JSON when it is JSON. */
export async function cliOk(args, opts) {
  const r = await runCli(args, opts);
  if (r.code !== 0) throw new Error(`sohub-cli ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  try {
    return JSON.parse(r.stdout);
  } catch {
    return r.stdout;
  }
}

/**
 * A long-running sohub-cli (watch, listen, chat room): its output lines,
 * waitLine(match) for the next line matching (regex, string or predicate),
 * write(text) to its stdin, end() to close stdin, stop() to kill it.
 */
export function spawnCli(args) {
  const p = spawn(CLI, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  p.stdin.on('error', () => {}); // writes after it exited: the waits report that
  const lines = [];
  let buf = '';
  let stderr = '';
  const waiters = new Set();
  let exited = null;
  const check = () => {
    for (const w of [...waiters]) {
      const i = lines.findIndex((l, k) => k >= w.from && w.test(l));
      if (i >= 0) {
        waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(lines[i]);
      } else if (exited) {
        waiters.delete(w);
        clearTimeout(w.timer);
        w.reject(new Error(`sohub-cli ${args.join(' ')} exited (${exited.code}) before ${w.what}\nout:\n${lines.join('\n')}\nerr:\n${stderr}`));
      }
    }
  };
  p.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    check();
  });
  p.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise((r) => p.on('exit', (code, sig) => { exited = { code, sig }; check(); r(exited); }));
  const toTest = (m) => (typeof m === 'function' ? m : typeof m === 'string' ? (l) => l.includes(m) : (l) => m.test(l));
  return {
    lines,
    get stderr() { return stderr; },
    /** The first line (from index `from`, default 0) matching m. */
    waitLine(m, { from = 0, timeoutMs = WAIT_MS } = {}) {
      return new Promise((resolve, reject) => {
        const w = { test: toTest(m), from, resolve, reject, what: String(m) };
        w.timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`timed out waiting for a line matching ${m} from sohub-cli ${args.join(' ')}\nout:\n${lines.join('\n')}\nerr:\n${stderr}`));
        }, timeoutMs);
        waiters.add(w);
        check();
      });
    },
    /** JSON lines (so watch) */
    json() { return lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)); },
    write(text) { p.stdin.write(text); },
    end() { p.stdin.end(); return done; },
    async stop() {
      if (!exited) {
        p.kill('SIGTERM');
        const t = setTimeout(() => p.kill('SIGKILL'), 3000);
        await done;
        clearTimeout(t);
      }
      return exited;
    },
    done,
  };
}

// ---------------------------------------------------------------- proxy

/**
 * A TCP proxy to 127.0.0.1:port.  drop() cuts every connection (the
 * client sees its socket die, as on a network failure); block(true)
 * makes new connections fail at once until block(false).
 */
export async function startProxy(port) {
  const socks = new Set();
  let blocked = false;
  let accepted = 0;
  const waiters = new Set();
  const server = net.createServer((c) => {
    accepted++;
    for (const w of [...waiters]) if (accepted >= w.n) { waiters.delete(w); w.resolve(); }
    if (blocked) {
      c.destroy();
      return;
    }
    const u = net.connect(port, '127.0.0.1');
    socks.add(c);
    socks.add(u);
    const end = () => { c.destroy(); u.destroy(); socks.delete(c); socks.delete(u); };
    c.on('error', end);
    u.on('error', end);
    c.on('close', end);
    u.on('close', end);
    c.pipe(u);
    u.pipe(c);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const p = server.address().port;
  return {
    port: p,
    get accepted() { return accepted; },
    block(on = true) { blocked = on; },
    /** Resolves once n connections in all have come to the proxy. */
    waitAccepted(n, timeoutMs = WAIT_MS) {
      if (accepted >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const w = { n, resolve: () => { clearTimeout(w.t); resolve(); } };
        w.t = setTimeout(() => { waiters.delete(w); reject(new Error(`timed out waiting for connection ${n} to the proxy`)); }, timeoutMs);
        waiters.add(w);
      });
    },
    drop() { for (const s of socks) s.destroy(); socks.clear(); },
    close() {
      this.drop();
      return new Promise((r) => server.close(r));
    },
  };
}

// ---------------------------------------------------------------- browser

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Debian's Chromium through playwright-core, with a new empty profile
 * directory.  Returns {context, newPage(opts), close()}; every page's
 * console errors and page errors are collected in `errors`.
 */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sohub-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1100, height: 760 },
    timeout: 60000,
  });
  context.setDefaultTimeout(WAIT_MS);
  const errors = [];
  const pages = [];
  const watch = (page) => {
    pages.push(page);
    page.on('pageerror', (e) => errors.push(`pageerror ${page.url()}: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console ${page.url()}: ${m.text()}`); });
  };
  // the persistent context opens one blank page; reuse it first
  const spare = [...context.pages()];
  return {
    context,
    errors,
    pages,
    async newPage({ width, height } = {}) {
      const page = spare.shift() ?? (await context.newPage());
      if (width) await page.setViewportSize({ width, height: height ?? 800 });
      watch(page);
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a full-page screenshot under ARTIFACTS; returns its path. */
export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// ---------------------------------------------------------------- failures

/** What every page shows of its connection, for a failure's message. */
export async function pageStates(pages) {
  const out = [];
  for (const page of pages) {
    if (page.isClosed()) continue;
    const state = await page.evaluate(() => ({
      pill: document.getElementById('conn')?.dataset.state,
      nc: window.app?.nc?.state,
      log: window.sohubLog ?? null,
    })).catch((e) => `(page not readable: ${e.message})`);
    out.push(`${page.url()}: ${JSON.stringify(state)}`);
  }
  return out.join('\n');
}

/**
 * Wraps a test function: when it fails, the pages' connection states,
 * the browser's errors and the end of the server's log are added to the
 * error message.
 */
export function explained(getContext, fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (err) {
      const { server, browser } = getContext();
      let more = '';
      try {
        if (browser) more += `pages:\n${await pageStates(browser.pages)}\nbrowser errors: ${JSON.stringify(browser.errors)}\n`;
        if (server) more += `server log (end):\n${server.log().slice(-6000)}`;
      } catch (e) {
        more += `(no diagnostics: ${e.message})`;
      }
      err.message = `${err.message}\n--- diagnostics ---\n${more}`;
      throw err;
    }
  };
}

/** A test of its own: the server stops on SIGTERM with status 0 (no sanitizer report, no crash). */
export async function assertCleanStop(server) {
  const st = await server.stop();
  if (!st || st.code !== 0) throw new Error(`sohub-server exited with ${JSON.stringify(st)}:\n${server.log().slice(-6000)}`);
}
