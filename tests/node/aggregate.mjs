// Aggregate decode throughput of `dsv4 serve` at several numbers of concurrent streaming
// clients. Each client streams one chat request that generates exactly `tokens` tokens (the
// text is scripted with the --test-hooks field dsv4_forced_text, so a random model cannot end
// early; the forward passes are the real ones). Aggregate = every generated token / the wall
// time from the first request to the last token. server.test.mjs runs it in CI on the tiny
// model; for the README on a bigger one:
//   node tests/node/aggregate.mjs MODEL_DIR [1,4,8] [TOKENS] [THREADS]
import { spawn } from 'node:child_process';
import OpenAI from 'openai';

// Starts `dsv4 serve` on a free port; resolves to { port, proc } once it listens.
export function startServer(binary, model, extraArgs = []) {
  const proc = spawn(binary, ['serve', '-m', model, '--port', '0', '--test-hooks', ...extraArgs],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error('server did not start: ' + err)), 120000);
    proc.stderr.on('data', (d) => {
      err += d;
      const m = err.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve({ port: Number(m[1]), proc }); }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}: ${err}`)));
  });
}

// One round: `clients` streams at once, each of `tokens` generated tokens.
export async function measure(port, clients, tokens) {
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0, timeout: 600000 });
  const one = async (k) => {
    const stream = await client.chat.completions.create({
      model: 'model', messages: [{ role: 'user', content: `client ${k}: tell me something` }], max_tokens: tokens,
      stream: true, stream_options: { include_usage: true }, dsv4_forced_text: 'la '.repeat(4 * tokens) });
    let usage;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    return usage.completion_tokens;
  };
  const t0 = performance.now();
  const generated = (await Promise.all(Array.from({ length: clients }, (_, k) => one(k)))).reduce((a, b) => a + b, 0);
  const seconds = (performance.now() - t0) / 1000;
  return { clients, tokens_each: tokens, generated, seconds: +seconds.toFixed(3),
           aggregate_tok_s: +(generated / seconds).toFixed(2), per_client_tok_s: +(generated / seconds / clients).toFixed(2) };
}

// Every count in turn on one server (--parallel = the largest), after a warm-up request.
export async function sweep(binary, model, counts, tokens, extraArgs = []) {
  const { port, proc } = await startServer(binary, model, ['--parallel', String(Math.max(...counts)), ...extraArgs]);
  try {
    await measure(port, 1, 4);
    const rounds = [];
    for (const c of counts) rounds.push(await measure(port, c, tokens));
    const base = rounds[0].aggregate_tok_s;
    for (const r of rounds) r.vs_first = +(r.aggregate_tok_s / base).toFixed(2);
    return rounds;
  } finally {
    const exited = new Promise((resolve) => proc.on('exit', resolve));
    proc.kill('SIGTERM');
    await exited;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [model, counts = '1,4,8', tokens = '32', threads = '0'] = process.argv.slice(2);
  if (!model) {
    console.error('usage: node aggregate.mjs MODEL_DIR [1,4,8] [TOKENS] [THREADS]');
    process.exit(2);
  }
  const binary = process.env.DSV4_BINARY ?? new URL('../../build/dsv4', import.meta.url).pathname;
  const rounds = await sweep(binary, model, counts.split(',').map(Number), Number(tokens), ['--threads', threads]);
  for (const r of rounds) console.log(JSON.stringify(r));
}
