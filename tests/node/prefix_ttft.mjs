// Time to first token of `dsv4 serve` for a chat request whose first PREFIX tokens (a long
// system prompt) match an earlier request's, against the same request cold: from the RAM tier,
// then after a restart of the server with the same --cache-dir, from the disk tier. Each
// request asks for one token (max_tokens 1), so its time is the prefill's plus one step.
//   node tests/node/prefix_ttft.mjs MODEL_DIR [PREFIX] [THREADS]   (README: flash-6l, 4096, 2)
// Prints one JSON object: the times, the cached_tokens each request reported, and /health's
// prefix_cache block after each server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startServer } from './aggregate.mjs';

const [model, prefixArg = '4096', threadsArg = '2'] = process.argv.slice(2);
if (!model) {
  console.error('usage: node tests/node/prefix_ttft.mjs MODEL_DIR [PREFIX] [THREADS]');
  process.exit(2);
}
const binary = new URL('../../build/dsv4', import.meta.url).pathname;
const prefix = Number(prefixArg);

// A system prompt of about `prefix` characters (the synthetic models' tokenizers give about a
// token a character; the reported prompt_tokens say what it was), then a short question.
let system = '';
for (let i = 0; system.length < prefix + 64; ++i) system += `Rule ${i}: keep item ${(i * 7) % 1000} near ${(i * 13) % 1000}. `;
const ask = async (port, question) => {
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0, timeout: 1800000 });
  const t0 = performance.now();
  const r = await client.chat.completions.create({
    model: 'model', max_tokens: 1, temperature: 0,
    messages: [{ role: 'system', content: system }, { role: 'user', content: question }] });
  return { seconds: +((performance.now() - t0) / 1000).toFixed(3), prompt_tokens: r.usage.prompt_tokens,
           cached_tokens: r.usage.prompt_tokens_details?.cached_tokens ?? 0 };
};
const health = async (port) => (await (await fetch(`http://127.0.0.1:${port}/health`)).json()).prefix_cache;
const stop = async (proc) => {
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  proc.kill('SIGTERM');
  await exited;
};

const dir = mkdtempSync(join(tmpdir(), 'dsv4-prefix-'));
const args = ['--threads', threadsArg, '--cache-dir', dir, '--ctx', '16384'];
try {
  let { port, proc } = await startServer(binary, model, args);
  const cold = await ask(port, 'Question one: which rule comes first?');
  const ram = await ask(port, 'Question two: which rule comes last?');
  const ramHealth = await health(port);
  await stop(proc);
  ({ port, proc } = await startServer(binary, model, args));
  const disk = await ask(port, 'Question six: which rule is third?');
  const diskHealth = await health(port);
  await stop(proc);
  console.log(JSON.stringify({
    model, threads: Number(threadsArg), cold, ram, disk,
    ram_vs_cold: +(ram.seconds / cold.seconds).toFixed(3), disk_vs_cold: +(disk.seconds / cold.seconds).toFixed(3),
    ram_health: ramHealth, disk_health: diskHealth }, null, 1));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
