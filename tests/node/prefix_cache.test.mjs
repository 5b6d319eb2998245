// The prefix cache and saved slots of dsv4 serve, driven by the real `openai` npm client:
// an agent loop (the same long system prompt and tools, a conversation growing with tool calls
// and their results, several clients at once on fewer slots than clients) re-prefills only
// what is new in each turn (less than one snapshot unit of the old); after a restart with the
// same --cache-dir the first request sharing the system prompt starts from the disk; a server
// killed while writing leaves nothing a restart trusts; and POST /slots/{id}?action=save|
// restore|erase, with its refusals. The model is a random-weight
// synthetic one; the model's turns are scripted (--test-hooks: dsv4_forced_text).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startServer } from './aggregate.mjs';

const binary = process.env.DSV4_BINARY ?? new URL('../../build/dsv4', import.meta.url).pathname;
const unit = 16;  // the tiny preset's snapshot unit: lcm(4, 16)
let dir, model, cacheDir, slotDir;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dsv4-prefix-'));
  model = join(dir, 'model');
  cacheDir = join(dir, 'cache');
  slotDir = join(dir, 'slots');
  execFileSync(binary, ['synth', '-o', model, '--preset', 'tiny', '--seed', '4'], { stdio: 'ignore' });
});

after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

const serve = (parallel = 2) => startServer(binary, model, ['--parallel', String(parallel), '--ctx', '100000',
                                                            '--cache-dir', cacheDir, '--slot-save-path', slotDir]);
const stop = async (proc) => {
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  proc.kill('SIGTERM');
  assert.equal(await exited, 0);
};
const clientOf = (port) => new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0, timeout: 120000 });

const tools = [{
  type: 'function',
  function: { name: 'read_file', description: 'Read a file of the project',
              parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] } },
}];
let system = 'You are a coding agent. ';
for (let i = 0; system.length < 1500; ++i) system += `Rule ${i}: prefer small changes to file ${i % 17}. `;
const call = (path) => '<｜DSML｜tool_calls>\n<｜DSML｜invoke name="read_file">\n' +
  `<｜DSML｜parameter name="path" string="true">${path}</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>`;

test('an agent loop re-prefills only the new tokens of each turn', async () => {
  const { port, proc } = await serve();
  try {
    const client = clientOf(port);
    // Three agents on two slots: a turn may land in another slot than its previous one, where
    // only the prefix cache has its conversation.
    const agent = async (k) => {
      const messages = [{ role: 'system', content: system }, { role: 'user', content: `Agent ${k}: fix the bug.` }];
      let previous = 0;
      const turns = [];
      for (let turn = 0; turn < 4; ++turn) {
        const r = await client.chat.completions.create({
          model: 'model', messages, tools, dsv4_forced_text: call(`src/file${k}_${turn}.cpp`) });
        const u = r.usage;
        turns.push({ prompt: u.prompt_tokens, cached: u.prompt_tokens_details.cached_tokens });
        // At least the previous prompt up to its last snapshot boundary is cached.
        assert.ok(u.prompt_tokens_details.cached_tokens >= Math.floor(previous / unit) * unit,
                  `agent ${k} turn ${turn}: ${JSON.stringify(turns)}`);
        previous = u.prompt_tokens;
        const m = r.choices[0].message;
        assert.equal(m.tool_calls.length, 1);
        messages.push(m, { role: 'tool', tool_call_id: m.tool_calls[0].id, content: `// contents of file ${turn}\n`.repeat(3) });
      }
      return turns;
    };
    const all = await Promise.all([0, 1, 2].map(agent));
    // Every turn after the first re-prefilled less than one unit of what it had sent before.
    for (const turns of all)
      for (let t = 1; t < turns.length; ++t) assert.ok(turns[t].cached >= turns[t - 1].prompt - unit, JSON.stringify(turns));
    // The agents share the system prompt and tools: the second and third found them cached.
    const h = await (await fetch(`http://127.0.0.1:${port}/health`)).json();
    assert.ok(h.prefix_cache.hits >= 2, JSON.stringify(h.prefix_cache));
    assert.ok(h.prefix_cache.disk.written > 0, JSON.stringify(h.prefix_cache));
  } finally {
    await stop(proc);
  }
});

test('after a restart with the same --cache-dir, a shared prefix comes from the disk', async () => {
  const { port, proc } = await serve();
  try {
    // Scripted like the agents' turns, so undrafted like them: a drafting generation keeps its
    // drafter's context with a snapshot, under keys of its own.
    const r = await clientOf(port).chat.completions.create({
      model: 'model', messages: [{ role: 'system', content: system }, { role: 'user', content: 'A new task.' }], tools,
      dsv4_forced_text: 'ok' });
    assert.ok(r.usage.prompt_tokens_details.cached_tokens >= 1500, JSON.stringify(r.usage));
    const h = await (await fetch(`http://127.0.0.1:${port}/health`)).json();
    assert.equal(h.prefix_cache.disk_hits, 1);
    assert.equal(h.prefix_cache.disk.bad_files, 0);
  } finally {
    await stop(proc);
  }
});

test('a server killed (SIGKILL) while writing leaves no file a restart would trust', async () => {
  const killDir = join(dir, 'killed');
  const args = ['--parallel', '2', '--ctx', '100000', '--cache-dir', killDir];
  for (let round = 0; round < 3; ++round) {
    const { port, proc } = await startServer(binary, model, args);
    const client = clientOf(port);
    // Long prompts, killed as soon as the answers arrive: their snapshots are still being written.
    await Promise.all([0, 1].map((k) => client.chat.completions.create({
      model: 'model', messages: [{ role: 'system', content: system.repeat(2 + round) }, { role: 'user', content: `kill ${k}` }],
      dsv4_forced_text: 'ok' })));
    const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve(signal)));
    proc.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
  }
  const { port, proc } = await startServer(binary, model, args);
  try {
    const r = await clientOf(port).chat.completions.create({
      model: 'model', messages: [{ role: 'system', content: system.repeat(4) }, { role: 'user', content: 'after' }],
      dsv4_forced_text: 'ok' });
    assert.equal(r.choices[0].message.content, 'ok');
    const h = await (await fetch(`http://127.0.0.1:${port}/health`)).json();
    assert.equal(h.prefix_cache.disk.bad_files, 0, JSON.stringify(h.prefix_cache));
    assert.ok(!readdirSync(killDir).some((f) => f.startsWith('.tmp-')), readdirSync(killDir).join(' '));
  } finally {
    await stop(proc);
  }
});

test('slots: save, restore, erase, and refusals by name', async () => {
  const { port, proc } = await serve(1);
  const base = `http://127.0.0.1:${port}`;
  const post = async (path, body) => {
    const r = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                         body: JSON.stringify(body ?? {}) });
    return { status: r.status, body: await r.json() };
  };
  try {
    const client = clientOf(port);
    const messages = [{ role: 'user', content: 'Remember the number 41, please, and say ok.' }];
    const first = await client.chat.completions.create({ model: 'model', messages, dsv4_forced_text: 'ok' });
    let r = await post('/slots/0?action=save', { filename: 'talk.bin' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.id_slot, 0);
    assert.ok(r.body.n_saved >= first.usage.prompt_tokens, JSON.stringify(r.body));
    assert.ok(r.body.n_written > 0);
    const saved = r.body.n_saved;

    r = await post('/slots/0?action=erase');
    assert.equal(r.status, 200);
    assert.equal(r.body.n_erased, saved);
    r = await post('/slots/0?action=restore', { filename: 'talk.bin' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.n_restored, saved);
    // The next turn continues the restored conversation: all of it cached but what is new.
    messages.push(first.choices[0].message, { role: 'user', content: 'Which number?' });
    const next = await client.chat.completions.create({ model: 'model', messages, dsv4_forced_text: '41' });
    assert.ok(next.usage.prompt_tokens_details.cached_tokens >= saved - 1, JSON.stringify([saved, next.usage]));

    for (const [path, body, status, fragment] of [
      ['/slots/0?action=save', {}, 400, 'filename'],
      ['/slots/0?action=save', { filename: '../escape' }, 400, 'plain file name'],
      ['/slots/0?action=save', { filename: 'a/b' }, 400, 'plain file name'],
      ['/slots/0?action=restore', { filename: 'missing.bin' }, 404, 'no saved slot'],
      ['/slots/0?action=bogus', { filename: 'x' }, 400, 'action must be'],
      ['/slots/7?action=save', { filename: 'x' }, 400, 'slot 7'],
      ['/slots/99999999?action=save', { filename: 'x' }, 400, 'does not exist'],
    ]) {
      r = await post(path, body);
      assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.ok(r.body.error.message.includes(fragment), JSON.stringify(r.body));
    }
    writeFileSync(join(slotDir, 'junk.bin'), 'certainly not a snapshot, but more than forty-eight bytes of it');
    r = await post('/slots/0?action=restore', { filename: 'junk.bin' });
    assert.equal(r.status, 400);
    assert.ok(r.body.error.message.includes('not a dsv4 snapshot'), JSON.stringify(r.body));
    // The server still answers.
    const ok = await client.chat.completions.create({ model: 'model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
    assert.equal(ok.choices.length, 1);
  } finally {
    await stop(proc);
  }
});
