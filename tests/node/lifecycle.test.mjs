// dsv4 serve's life as a process: a second server on a busy port exits with an error (the
// first keeps serving); a non-streaming client that disconnects frees its slot within a
// second; SIGTERM with requests running and queued exits (status 0) within 2 s; a second
// signal during shutdown exits at once. The model is a random-weight synthetic one; long
// generations are scripted (--test-hooks, dsv4_forced_text), as a random model could end early.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const binary = process.env.DSV4_BINARY ?? new URL('../../build/dsv4', import.meta.url).pathname;
// Time limits are for the release build; .ci/sanitizers sets DSV4_TIME_SCALE (ASan + UBSan run
// the server several times slower) and they stretch by that factor.
const scale = Number(process.env.DSV4_TIME_SCALE ?? 1);
let dir, model;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dsv4-lifecycle-'));
  model = join(dir, 'model');
  execFileSync(binary, ['synth', '-o', model, '--preset', 'tiny', '--seed', '3'], { stdio: 'ignore' });
});

after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Starts `dsv4 serve`; resolves once it listens, with its process, port, stderr so far and exit.
function serve(args) {
  // One compute thread: ctest runs two tests at once on two cores, and the HTTP side must not
  // wait for a core to answer in time.
  const proc = spawn(binary, ['serve', '-m', model, '--test-hooks', '--threads', '1', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const server = { proc, log: '', port: 0 };
  server.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal, at: performance.now() })));
  proc.stderr.on('data', (d) => { server.log += d; });
  server.listening = new Promise((resolve, reject) => {
    proc.stderr.on('data', () => {
      const m = server.log.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !server.port) { server.port = Number(m[1]); resolve(server); }
    });
    server.exited.then(({ code }) => reject(new Error(`server exited with ${code}: ${server.log}`)));
  });
  server.listening.catch(() => {});  // a server meant to fail is awaited through `exited`
  return server;
}

const health = async (port) => (await fetch(`http://127.0.0.1:${port}/health`)).json();

async function until(what, predicate, ms) {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await predicate()) return;
    await sleep(20);
  }
  assert.fail(`timed out waiting for ${what}`);
}

// A non-streaming chat request whose scripted answer would take minutes; resolves with the
// response status, or the error if the connection ends first.
function longRequest(port, extra = {}) {
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'go' }], max_tokens: 500000,
                                dsv4_forced_text: 'la '.repeat(100000), ...extra });
  let req;
  const done = new Promise((resolve) => {
    req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions',
                    headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } },
                  (res) => { res.resume(); res.on('end', () => resolve({ status: res.statusCode })); res.on('error', (error) => resolve({ error })); });
    req.on('error', (error) => resolve({ error }));
    req.end(body);
  });
  return { done, abort: () => req.destroy() };
}

test('a second server on a busy port exits with an error; the first keeps serving', async () => {
  const first = await serve(['--port', '0']).listening;
  try {
    const second = serve(['--port', String(first.port)]);
    const { code } = await second.exited;
    assert.equal(code, 1);
    assert.match(second.log, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.port}: Address already in use`));
    assert.doesNotMatch(second.log, /loading/, 'the port is checked before the model is loaded');
    for (let i = 0; i < 10; ++i) assert.equal((await health(first.port)).status, 'ok');
  } finally {
    first.proc.kill('SIGTERM');
    await first.exited;
  }
});

test('a non-streaming client that disconnects frees its slot within a second', async () => {
  const s = await serve(['--port', '0', '--parallel', '1', '--ctx', '1000000']).listening;
  try {
    const r = longRequest(s.port);
    await until('the generation to start', async () => (await health(s.port)).active === 1, 10000);
    const t0 = performance.now();
    r.abort();
    await until('the slot to be freed', async () => (await health(s.port)).active === 0, 5000);
    const freedMs = performance.now() - t0;
    console.log(`slot freed ${freedMs.toFixed(0)} ms after the client disconnected`);
    assert.ok(freedMs < 1000 * scale, `freed after ${freedMs} ms`);
    const h = await health(s.port);
    assert.equal(h.cancelled, 1);
    assert.equal(h.completed, 0);
  } finally {
    s.proc.kill('SIGTERM');
    await s.exited;
  }
});

test('SIGTERM with requests running and queued exits cleanly within 2 s', async () => {
  const s = await serve(['--port', '0', '--parallel', '2', '--queue', '8', '--ctx', '1000000']).listening;
  const requests = [longRequest(s.port), longRequest(s.port), longRequest(s.port), longRequest(s.port, { stream: true })];
  await until('2 running and 2 queued', async () => {
    const h = await health(s.port);
    return h.active === 2 && h.queued === 2;
  }, 10000);
  const t0 = performance.now();
  s.proc.kill('SIGTERM');
  const { code, at } = await s.exited;
  const ms = at - t0;
  console.log(`exited ${ms.toFixed(0)} ms after SIGTERM with 4 requests in flight`);
  assert.equal(code, 0);
  assert.ok(ms < 2000 * scale, `took ${ms} ms`);
  assert.match(s.log, /cancelled 4 request\(s\)/);
  for (const r of requests) {
    const result = await r.done;  // every client has its answer (503) or a closed connection
    if (!result.error) assert.ok(result.status === 503 || result.status === 200, `status ${result.status}`);
  }
});

test('a second signal ends the server at once', async () => {
  const s = await serve(['--port', '0', '--parallel', '1', '--ctx', '1000000']).listening;
  const r = longRequest(s.port);
  await until('the generation to start', async () => (await health(s.port)).active === 1, 10000);
  const t0 = performance.now();
  s.proc.kill('SIGINT');
  s.proc.kill('SIGINT');
  const { code, at } = await s.exited;
  // 130: the second signal came while the first one's shutdown ran; 0: that shutdown had
  // already finished. Either way at once.
  assert.ok(code === 130 || code === 0, `exit status ${code}: ${s.log}`);
  assert.ok(at - t0 < 2000 * scale);
  await r.done;
});
