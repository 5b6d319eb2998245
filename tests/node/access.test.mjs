// Who may use dsv4 serve, and what it writes down: API keys (--api-key, --api-key-file) through
// the real `openai` client and by hand (Bearer and x-api-key, 401 in OpenAI's shape, /health
// open), browser origins (--allowed-origins: preflight answered or refused, CORS headers only
// for a listed origin), and the access log (a line per request with its figures; the prompt's
// text only with --log-prompts). The model is a random-weight synthetic one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';

const binary = process.env.DSV4_BINARY ?? new URL('../../build/dsv4', import.meta.url).pathname;
let dir, model;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dsv4-access-'));
  model = join(dir, 'model');
  execFileSync(binary, ['synth', '-o', model, '--preset', 'tiny', '--seed', '3'], { stdio: 'ignore' });
});

after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

// Starts `dsv4 serve` with args; resolves once it listens, with its process, base URL and log.
async function serve(args) {
  const proc = spawn(binary, ['serve', '-m', model, '--port', '0', '--threads', '1', ...args],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
  const server = { proc, log: '' };
  server.exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  proc.stderr.on('data', (d) => { server.log += d; });
  await new Promise((resolve, reject) => {
    proc.stderr.on('data', () => {
      const m = server.log.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !server.base) { server.base = `http://127.0.0.1:${m[1]}`; resolve(); }
    });
    server.exited.then((code) => reject(new Error(`server exited with ${code}: ${server.log}`)));
  });
  server.stop = async () => { proc.kill('SIGTERM'); assert.equal(await server.exited, 0); };
  return server;
}

const chat = { model: 'm', messages: [{ role: 'user', content: 'The secret word is marmalade.' }], max_tokens: 3, seed: 1 };

test('API keys: the openai client with the key is served; without it or with a wrong one, 401', async () => {
  const keyFile = join(dir, 'keys');
  writeFileSync(keyFile, '# keys of the team\nsk-file-one\n\n  sk-file-two  \n');
  const s = await serve(['--api-key', 'sk-flag', '--api-key-file', keyFile]);
  try {
    for (const key of ['sk-flag', 'sk-file-one', 'sk-file-two']) {
      const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: key, maxRetries: 0 });
      assert.equal((await client.chat.completions.create(chat)).choices.length, 1);
      assert.equal((await client.models.list()).data.length, 1);
    }
    for (const key of ['sk-flag-', 'sk-fla', 'SK-FLAG', 'sk-file']) {
      const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: key, maxRetries: 0 });
      await assert.rejects(client.chat.completions.create(chat),
        (e) => e.status === 401 && e.code === 'invalid_api_key' && e.type === 'invalid_request_error');
    }
    // By hand: no key, the Anthropic header, and /health open to monitors.
    const get = (path, headers = {}) => fetch(`${s.base}${path}`, { headers });
    const none = await get('/v1/models');
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.match((await none.json()).error.message, /no API key given/);
    assert.equal((await get('/v1/models', { 'x-api-key': 'sk-file-two' })).status, 200);
    assert.equal((await get('/v1/models', { Authorization: 'Basic c2stZmxhZw==' })).status, 401);
    assert.equal((await get('/health')).status, 200);
    const tok = await fetch(`${s.base}/tokenize`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                                   body: JSON.stringify({ content: 'hi' }) });
    assert.equal(tok.status, 401);
  } finally {
    await s.stop();
  }
  // Bad key flags end the server before it loads anything.
  for (const [args, message] of [[['--api-key', ''], /must not be empty/], [['--api-key', 'a b'], /spaces/],
                                 [['--api-key-file', join(dir, 'missing')], /cannot open/]]) {
    const proc = spawn(binary, ['serve', '-m', model, '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (d) => { err += d; });
    assert.equal(await new Promise((resolve) => proc.on('exit', resolve)), 1);
    assert.match(err, message);
  }
});

test('CORS: a listed origin gets its preflight and the headers; another gets 403 and none', async () => {
  const s = await serve(['--allowed-origins', 'https://app.example,http://localhost:3000']);
  const other = await serve([]);
  try {
    const preflight = (base, origin) => fetch(`${base}/v1/chat/completions`, { method: 'OPTIONS', headers: {
      Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type, x-stainless-os' } });
    const ok = await preflight(s.base, 'https://app.example');
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.match(ok.headers.get('access-control-allow-methods'), /POST/);
    assert.equal(ok.headers.get('access-control-allow-headers'), 'authorization, content-type, x-stainless-os');
    const refused = await preflight(s.base, 'https://evil.example');
    assert.equal(refused.status, 403);
    assert.equal(refused.headers.get('access-control-allow-origin'), null);
    assert.equal((await refused.json()).error.code, 'origin_not_allowed');
    assert.equal((await preflight(other.base, 'https://app.example')).status, 403);  // none listed: none allowed
    // The answer itself carries the header for the listed origin only.
    const post = (origin) => fetch(`${s.base}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chat),
                                                                      headers: { 'Content-Type': 'application/json', Origin: origin } });
    const listed = await post('http://localhost:3000');
    assert.equal(listed.status, 200);
    assert.equal(listed.headers.get('access-control-allow-origin'), 'http://localhost:3000');
    assert.equal(listed.headers.get('vary'), 'Origin');
    assert.equal((await post('https://evil.example')).headers.get('access-control-allow-origin'), null);
  } finally {
    await s.stop();
    await other.stop();
  }
});

test('access log: a line per request with status, time and tokens; the prompt only with --log-prompts', async () => {
  for (const logPrompts of [false, true]) {
    const s = await serve(logPrompts ? ['--log-prompts'] : []);
    try {
      const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: 'x', maxRetries: 0 });
      const r = await client.chat.completions.create(chat);
      let streamed = 0;
      for await (const c of await client.chat.completions.create({ ...chat, stream: true })) streamed += c.choices.length;
      await assert.rejects(client.chat.completions.create({ ...chat, max_tokens: -1 }), (e) => e.status === 400);
      await fetch(`${s.base}/no/such/path`);
      await s.stop();
      const lines = s.log.split('\n').filter((l) => /^dsv4 serve: \d{4}-\d\d-\d\dT/.test(l));
      const chats = lines.filter((l) => l.includes('POST "/v1/chat/completions" 200'));
      assert.equal(chats.length, 2, s.log);
      for (const l of chats)
        assert.match(l, new RegExp(`200 [0-9.]+ ms prompt ${r.usage.prompt_tokens} cached \\d+ completion 3`));
      assert.ok(lines.some((l) => l.includes('POST "/v1/chat/completions" 400')));
      assert.ok(lines.some((l) => l.includes('GET "/no/such/path" 404')));
      assert.equal(s.log.includes('marmalade'), logPrompts);
    } finally {
      if (s.proc.exitCode === null) await s.stop();
    }
  }
  // --no-access-log: none.
  const quiet = await serve(['--no-access-log']);
  await fetch(`${quiet.base}/v1/models`);
  await quiet.stop();
  assert.ok(!/GET "\/v1\/models"/.test(quiet.log));
});
