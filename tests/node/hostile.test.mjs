// dsv4 serve against hostile clients (issue 19): bodies nested deep enough to overflow a stack
// if anything recursed over them, a 200 MB body, 10,000 messages, invalid UTF-8, cross-site
// shapes (a text/plain body, a foreign Host header), numbers beyond double's range, and more
// requests than --parallel + --queue. Each is refused with a 4xx / 503 naming the limit or
// served; /health answers throughout, also while the slow clients hold their connections; the
// server stays up and its resident memory returns to its baseline (the figures are printed for
// the README).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const binary = process.env.DSV4_BINARY ?? new URL('../../build/dsv4', import.meta.url).pathname;
// Time limits are for the release build; .ci/sanitizers sets DSV4_TIME_SCALE (ASan + UBSan run
// the server several times slower) and they stretch by that factor.
const scale = Number(process.env.DSV4_TIME_SCALE ?? 1);
let dir, server, port, log = '', watching = true, watcher;
const healthAnswers = [];  // {sent, answered}: performance.now() of each /health round trip

const httpTimeout = 2 * scale;  // seconds a connection has to send a whole request
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const status = (key) => Number(readFileSync(`/proc/${server.pid}/status`, 'utf8').match(new RegExp(`${key}:\\s+(\\d+)`))[1]);
const rssMiB = () => status('VmRSS') / 1024;
let baselineRss, baselineThreads;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dsv4-hostile-'));
  execFileSync(binary, ['synth', '-o', join(dir, 'model'), '--preset', 'tiny', '--seed', '3'], { stdio: 'ignore' });
  server = spawn(binary, ['serve', '-m', join(dir, 'model'), '--port', '0', '--parallel', '2', '--queue', '0',
                          '--threads', '1', '--test-hooks', '--http-timeout', String(httpTimeout)], { stdio: ['ignore', 'ignore', 'pipe'] });
  port = await new Promise((resolve, reject) => {
    server.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    server.on('exit', (code) => reject(new Error(`server exited with ${code}: ${log}`)));
  });
  // A sanitizer report ends the server: show it.
  server.on('exit', (code) => { if (code) console.log(`server exited with ${code}:\n${log}`); });
  // /health, polled throughout: every answer must be 200. Its round trip is bounded only loosely
  // (on two busy cores this process's own event loop, opening 500 connections, dominates it:
  // 1.1 s seen in CI); what is asserted closely is that answers come while slow clients hold
  // connections (the test of those).
  watcher = (async () => {
    while (watching) {
      const sent = performance.now();
      const r = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(r.status, 200);
      await r.json();
      healthAnswers.push({ sent, answered: performance.now() });
      await sleep(50);
    }
  })();
});

after(async () => {
  watching = false;
  try {
    await watcher;
  } finally {
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server.on('exit', resolve));
      server.kill('SIGTERM');
      assert.equal(await exited, 0, 'the server exits cleanly after it all');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});

// A POST with a body (string or Buffer) and headers; resolves with {status, body} or {error}.
function post(path, body, headers = {}) {
  return new Promise((resolve) => {
    const data = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const req = request({ host: '127.0.0.1', port, method: 'POST', path,
                          headers: { 'Content-Type': 'application/json', 'Content-Length': data.length, ...headers } },
                        (res) => {
                          let text = '';
                          res.on('data', (d) => { text += d; });
                          res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
                        });
    req.on('error', (error) => resolve({ error }));
    req.end(data);
  });
}

const chat = (extra) => JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
const nested = (n, inner = '1') => '['.repeat(n) + inner + ']'.repeat(n);

test('bodies nested far past the limit are refused, not recursed over', async () => {
  const cases = {
    'temperature nested 100,000 deep': `{"messages": [{"role": "user", "content": "hi"}], "temperature": ${nested(100000)}}`,
    'a tool schema nested 50,000 deep': chat({}).replace(/}$/, `, "tools": [{"type": "function", "function": {"name": "f", "parameters": ${'{"a":'.repeat(50000)}1${'}'.repeat(50000)}}}]}`),
    'an unknown key nested 300,000 deep': chat({}).replace(/}$/, `, "x": ${nested(300000)}}`),
  };
  for (const [what, body] of Object.entries(cases)) {
    const r = await post('/v1/chat/completions', body);
    assert.equal(r.status, 400, what);
    assert.equal(r.body.error.code, 'json_too_deep', what);
    assert.match(r.body.error.message, /nested deeper than 128 levels/, what);
  }
  // Tool-call arguments are a JSON string that the encoder parses: nested 50,000 deep inside it.
  const calls = { messages: [{ role: 'user', content: 'q' },
                             { role: 'assistant', content: '', tool_calls: [{ id: 'c', type: 'function',
                               function: { name: 'f', arguments: `{"x": ${nested(50000)}}` } }] },
                             { role: 'tool', tool_call_id: 'c', content: 'r' }], max_tokens: 2 };
  const r = await post('/v1/chat/completions', JSON.stringify(calls));
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /nested deeper than 128 levels/);
});

test('a 200 MB body is refused with 413 and the memory comes back', async () => {
  const baseline = rssMiB();
  const r = await post('/v1/chat/completions', Buffer.alloc(200 << 20, 0x20));
  // The server answers 413 from the Content-Length alone and may close before all is sent.
  if (!r.error) {
    assert.equal(r.status, 413);
    assert.equal(r.body.error.code, 'body_too_large');
  }
  const after = rssMiB();
  console.log(`rss before ${baseline.toFixed(1)} MiB, after the 200 MB body ${after.toFixed(1)} MiB`);
  assert.ok(after < baseline + 32, `rss ${after} MiB after, ${baseline} MiB before`);
});

test('10,000 messages, invalid UTF-8, 1e400, foreign shapes: each refused or served', async () => {
  const many = { messages: Array.from({ length: 10000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `m${i}` })), max_tokens: 2 };
  many.messages.push({ role: 'user', content: 'last' });
  const m = await post('/v1/chat/completions', JSON.stringify(many));
  assert.ok(m.status === 200 || m.status === 400, `status ${m.status}`);
  const utf8 = Buffer.concat([Buffer.from('{"messages": [{"role": "user", "content": "'), Buffer.from([0xff, 0xfe, 0xc3]),
                              Buffer.from('"}]}')]);
  const u = await post('/v1/chat/completions', utf8);
  assert.equal(u.status, 400);
  assert.equal(u.body.error.code, 'invalid_json');
  const big = await post('/v1/chat/completions', chat({}).replace(/}$/, ', "temperature": 1e400}'));
  assert.equal(big.status, 400);
  assert.equal(big.body.error.code, 'invalid_json');
  const plain = await post('/v1/chat/completions', chat({}), { 'Content-Type': 'text/plain' });
  assert.equal(plain.status, 415);
  assert.equal(plain.body.error.code, 'unsupported_media_type');
  const foreign = await post('/v1/chat/completions', chat({}), { Host: 'attacker.example' });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.body.error.code, 'host_not_allowed');
  const ok = await post('/v1/chat/completions', chat({}), { Host: `localhost:${port}` });
  assert.equal(ok.status, 200);
});

test('beyond --parallel 2 + --queue 0, requests are refused at once with 503', async () => {
  // Two streamed answers of 3,000 scripted tokens hold both slots until they are aborted (a
  // client gone cancels its generation), however slow the build.
  const long = chat({ max_tokens: 5000, stream: true, dsv4_forced_text: 'la '.repeat(3000) });
  const abort = new AbortController();
  const running = [0, 1].map(async () => {
    const r = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`,
                          { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: long, signal: abort.signal });
    assert.equal(r.status, 200);
    try {
      for await (const _ of r.body);  // eslint-disable-line no-unused-vars
    } catch (e) {
      assert.equal(e.name, 'AbortError');
    }
  });
  let both = false;
  for (let i = 0; i < 250 * scale && !both; ++i) {
    both = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()).active === 2;
    if (!both) await sleep(20);
  }
  assert.ok(both, 'both slots busy');
  const t0 = performance.now();
  const refused = await post('/v1/chat/completions', chat({}));
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error.code, 'server_busy');
  assert.ok(performance.now() - t0 < 1000 * scale);
  abort.abort();
  await Promise.all(running);
  // The slots come free: a request is served again.
  let again;
  for (let i = 0; i < 100 * scale; ++i) {
    again = await post('/v1/chat/completions', chat({}));
    if (again.status === 200) break;
    await sleep(50);
  }
  assert.equal(again.status, 200);
});

test('40 slow clients are closed after --http-timeout while others are served', async () => {
  baselineRss = rssMiB();
  baselineThreads = status('Threads');
  const t0 = performance.now();
  // Each sends a request head a few bytes at a time, never finishing it.
  const connected = [];
  const slow = Array.from({ length: 40 }, () => new Promise((resolve) => {
    let opened;
    connected.push(new Promise((r) => { opened = r; }));
    const s = connect(port, '127.0.0.1', () => {
      s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      opened(performance.now());
    });
    s.on('close', () => opened(Infinity));  // never connected: no window to check (a no-op once opened)
    const drip = setInterval(() => s.write('X-Slow: 1\r\n'), 200);
    s.on('error', () => {});
    s.on('close', () => {
      clearInterval(drip);
      resolve(performance.now() - t0);
    });
  }));
  await sleep(300);
  const served = await post('/v1/chat/completions', chat({}));  // meanwhile, an ordinary client
  assert.equal(served.status, 200);
  const closedAfter = await Promise.all(slow);
  const first = Math.min(...closedAfter), last = Math.max(...closedAfter);
  console.log(`40 slow clients closed after ${(first / 1000).toFixed(2)}-${(last / 1000).toFixed(2)} s (--http-timeout ${httpTimeout})`);
  assert.ok(first >= httpTimeout * 1000, `a slow client was closed after ${first} ms`);
  assert.ok(last < (httpTimeout + 3 * scale) * 1000, `the last slow client was closed after ${last} ms`);
  // /health was asked and answered while all 40 held their connections: they starve nobody.
  const allOpen = Math.max(...await Promise.all(connected)), firstClosed = t0 + first;
  assert.ok(Number.isFinite(allOpen), 'a slow client never connected');
  const during = healthAnswers.filter((h) => h.sent >= allOpen && h.answered <= firstClosed).length;
  console.log(`/health answered ${during} times while the 40 slow clients held their connections`);
  assert.ok(during > 0, '/health not answered while the slow clients held their connections');
});

test('500 connections at once: each served or refused with 503', async () => {
  const one = (i) => new Promise((resolve) => {
    const data = Buffer.from(chat({}));
    const req = request({ host: '127.0.0.1', port, agent: false, method: i % 2 ? 'POST' : 'GET',
                          path: i % 2 ? '/v1/chat/completions' : '/v1/models',
                          headers: i % 2 ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {} },
                        (res) => {
                          res.resume();
                          res.on('end', () => resolve(res.statusCode));
                        });
    req.on('error', (e) => resolve(e.code));
    req.end(i % 2 ? data : undefined);
  });
  const statuses = await Promise.all(Array.from({ length: 500 }, (_, i) => one(i)));
  const count = {};
  for (const s of statuses) count[s] = (count[s] ?? 0) + 1;
  console.log(`500 connections at once: ${JSON.stringify(count)}`);
  assert.deepEqual(Object.keys(count).filter((s) => s !== '200' && s !== '503'), []);
  assert.equal(statuses.filter((s, i) => i % 2 === 0 && s === 200).length, 250, 'every GET /v1/models served');
  assert.ok(count[200] > 250, 'some generations served');
});

test('the threads and the memory come back to their baseline', async () => {
  // Connection threads idle for 10 s end (connection_pool.h); the memory they held goes with them.
  let threads = status('Threads');
  for (let i = 0; i < 300 && threads > baselineThreads; ++i) {
    await sleep(100);
    threads = status('Threads');
  }
  const rss = rssMiB();
  console.log(`threads ${baselineThreads} before the slow clients and the 500 connections, ${threads} after; ` +
              `rss ${baselineRss.toFixed(1)} MiB before, ${rss.toFixed(1)} MiB after`);
  assert.ok(threads <= baselineThreads, `${threads} threads, ${baselineThreads} before`);
  // Under a sanitizer (.ci/sanitizers sets DSV4_SANITIZER) the resident memory is mostly the
  // sanitizer's own (shadow memory, ASan's quarantine of freed blocks, TSan's per-thread
  // history), which grows with every thread that ever ran: only the release build's is compared.
  if (!process.env.DSV4_SANITIZER) assert.ok(rss < baselineRss + 16, `rss ${rss} MiB after, ${baselineRss} MiB before`);
});

test('/health answered throughout', async () => {
  watching = false;
  await watcher;  // rethrows a /health that failed or answered other than 200
  const slowest = Math.max(...healthAnswers.map((h) => h.answered - h.sent));
  console.log(`/health: ${healthAnswers.length} answers, the slowest round trip ${slowest.toFixed(0)} ms`);
  assert.ok(healthAnswers.length > 10);
  assert.ok(slowest < 5000 * scale, `a /health round trip took ${slowest} ms`);
});
