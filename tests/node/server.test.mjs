// dsv4 serve driven by the real `openai` npm client: models, chat (plain and streaming),
// reasoning, a tool-call round trip with scripted model output (the server's --test-hooks
// field dsv4_forced_text), errors in OpenAI's shape, cancellation by disconnect, seeded
// reproducibility, content-part arrays, chat_template_kwargs, /tokenize and /detokenize,
// penalties and logit_bias, logprobs against dsv4 logits, broken tool calls answered as text,
// /metrics, and a bounded load test (16 clients x 20 requests) that reports requests/s and time
// to first token, and the aggregate decode tokens/s at 1, 4 and 8 streams. The model is a
// random-weight synthetic one written by dsv4 synth.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import Ajv from 'ajv';
import { sweep } from './aggregate.mjs';

const binary = process.env.DSV4_BINARY ?? new URL('../../build/dsv4', import.meta.url).pathname;
let dir, server, port, client, base;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dsv4-server-'));
  execFileSync(binary, ['synth', '-o', join(dir, 'model'), '--preset', 'tiny', '--seed', '3'], { stdio: 'ignore' });
  server = spawn(binary, ['serve', '-m', join(dir, 'model'), '--port', '0', '--parallel', '4', '--queue', '64',
                          '--ctx', '1000000', '--max-tokens', '400', '--test-hooks'], { stdio: ['ignore', 'ignore', 'pipe'] });
  port = await new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error('server did not start: ' + err)), 30000);
    server.stderr.on('data', (d) => {
      if (process.env.DSV4_SERVER_LOG) process.stderr.write(d);
      err += d;
      const m = err.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    server.on('exit', (code) => reject(new Error(`server exited with ${code}: ${err}`)));
  });
  base = `http://127.0.0.1:${port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'not-needed', maxRetries: 0, timeout: 60000 });
});

after(async () => {
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.on('exit', resolve));
    server.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 0, 'server exits cleanly on SIGTERM');
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const user = (text) => [{ role: 'user', content: text }];
const health = async () => (await fetch(`${base}/health`)).json();

test('lists the model', async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].id, 'model');
});

test('non-streaming chat with usage', async () => {
  const r = await client.chat.completions.create({ model: 'model', messages: user('Hello'), max_tokens: 8, seed: 3 });
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.equal(c.finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 8);
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 8);
});

test('the same seed gives the same text; streaming gives what non-streaming gives', async () => {
  const ask = (seed, stream) => client.chat.completions.create({ model: 'model', messages: user('Tell me a story'), max_tokens: 12, seed, stream });
  const a = (await ask(11, false)).choices[0].message.content;
  const b = (await ask(11, false)).choices[0].message.content;
  const c = (await ask(12, false)).choices[0].message.content;
  assert.equal(a, b);
  assert.notEqual(a, c);
  let streamed = '';
  for await (const chunk of await ask(11, true)) streamed += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(streamed, a);
});

test('streaming chat: role first, finish reason, usage chunk', async () => {
  const stream = await client.chat.completions.create({
    model: 'model', messages: user('Hi'), max_tokens: 5, seed: 21, stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const finish = chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0].finish_reason);
  assert.deepEqual(finish, ['length']);
  assert.equal(chunks.at(-1).usage.completion_tokens, 5);
});

test('thinking: reasoning_content apart from content', async () => {
  const r = await client.chat.completions.create({
    model: 'model', messages: user('What is 6 x 7?'), thinking: { type: 'enabled' },
    dsv4_forced_text: 'Six sevens are forty-two.</think>The answer is 42.' });
  const m = r.choices[0].message;
  assert.equal(m.reasoning_content, 'Six sevens are forty-two.');
  assert.equal(m.content, 'The answer is 42.');
  assert.equal(r.choices[0].finish_reason, 'stop');
  // reasoning_effort selects thinking too, and streams reasoning before content.
  const stream = await client.chat.completions.create({
    model: 'model', messages: user('What is 6 x 7?'), reasoning_effort: 'high', stream: true,
    dsv4_forced_text: 'Six sevens.</think>42.' });
  let reasoning = '', content = '';
  for await (const chunk of stream) {
    reasoning += chunk.choices[0]?.delta?.reasoning_content ?? '';
    content += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(reasoning, 'Six sevens.');
  assert.equal(content, '42.');
});

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Get the weather for a city',
    parameters: { type: 'object', properties: { location: { type: 'string' }, days: { type: 'integer' } }, required: ['location'] },
  },
}];
const call = '<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n' +
  '<｜DSML｜parameter name="location" string="true">Beijing</｜DSML｜parameter>\n' +
  '<｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>\n' +
  '</｜DSML｜invoke>\n</｜DSML｜tool_calls>';

test('tool call round trip', async () => {
  const messages = user('Weather in Beijing for 3 days?');
  const r = await client.chat.completions.create({
    model: 'model', messages, tools, thinking: { type: 'enabled' },
    dsv4_forced_text: 'I should call the tool.</think>\n\n' + call });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.reasoning_content, 'I should call the tool.');
  assert.equal(c.message.tool_calls.length, 1);
  const tc = c.message.tool_calls[0];
  assert.equal(tc.type, 'function');
  assert.equal(tc.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(tc.function.arguments), { location: 'Beijing', days: 3 });
  assert.ok(tc.id.startsWith('call_'));
  assert.ok(!(c.message.content ?? '').includes('DSML'));

  // Send the result back; the model answers in text.
  messages.push(c.message, { role: 'tool', tool_call_id: tc.id, content: '{"temperature": 22, "condition": "sunny"}' });
  const r2 = await client.chat.completions.create({
    model: 'model', messages, tools, thinking: { type: 'enabled' },
    dsv4_forced_text: 'Got it.</think>Sunny, 22°C.' });
  assert.equal(r2.choices[0].message.content, 'Sunny, 22°C.');
  assert.equal(r2.choices[0].finish_reason, 'stop');

  // The same call streamed: deltas assemble into the same call, no markup in content.
  const stream = await client.chat.completions.create({
    model: 'model', messages: user('Weather?'), tools, stream: true, dsv4_forced_text: call });
  let content = '', name = '', args = '', finish;
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta ?? {};
    content += d.content ?? '';
    for (const t of d.tool_calls ?? []) { name += t.function?.name ?? ''; args += t.function?.arguments ?? ''; }
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(content, '');
  assert.equal(name, 'get_weather');
  assert.deepEqual(JSON.parse(args), { location: 'Beijing', days: 3 });
  assert.equal(finish, 'tool_calls');
});

const tokenize = async (body) => (await fetch(`${base}/tokenize`, {
  method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })).json();

test('content as an array of text parts: the prompt of the text joined by blank lines; other parts refused by name', async () => {
  const parts = [{ role: 'system', content: [{ type: 'text', text: 'Be brief.' }] },
    { role: 'user', content: [{ type: 'text', text: 'Tell me' }, { type: 'text', text: 'a story' }] }];
  const joined = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me\n\na story' }];
  assert.deepEqual((await tokenize({ messages: parts })).tokens, (await tokenize({ messages: joined })).tokens);
  const ask = (messages) => client.chat.completions.create({ model: 'model', messages, max_tokens: 8, seed: 5 });
  assert.equal((await ask(parts)).choices[0].message.content, (await ask(joined)).choices[0].message.content);
  await assert.rejects(
    ask([{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'data:,' } }] }]),
    (e) => e.status === 400 && /content\[1\].*'image_url' are not supported/.test(e.message));
});

test('chat_template_kwargs: thinking and reasoning_effort as vLLM takes them; unknown settings refused', async () => {
  const r = await client.chat.completions.create({
    model: 'model', messages: user('What is 6 x 7?'), chat_template_kwargs: { thinking: true },
    dsv4_forced_text: 'Six sevens.</think>42.' });
  assert.equal(r.choices[0].message.reasoning_content, 'Six sevens.');
  assert.equal(r.choices[0].message.content, '42.');
  const plain = await tokenize({ messages: user('Hi') });
  const think = await tokenize({ messages: user('Hi'), chat_template_kwargs: { thinking: true } });
  const effort = await tokenize({ messages: user('Hi'), chat_template_kwargs: { reasoning_effort: 'max' } });
  assert.deepEqual(think.tokens, (await tokenize({ messages: user('Hi'), thinking: true })).tokens);
  assert.notDeepEqual(plain.tokens, think.tokens);
  assert.deepEqual(effort.tokens, (await tokenize({ messages: user('Hi'), reasoning_effort: 'max' })).tokens);
  // The request's own field wins over the template setting.
  assert.deepEqual((await tokenize({ messages: user('Hi'), thinking: false, chat_template_kwargs: { thinking: true } })).tokens,
    plain.tokens);
  await assert.rejects(
    client.chat.completions.create({ model: 'model', messages: user('Hi'), chat_template_kwargs: { add_generation_prompt: false } }),
    (e) => e.status === 400 && e.param === 'chat_template_kwargs' && /'add_generation_prompt'/.test(e.message));
});

test('/tokenize and /detokenize, in llama-server\'s and vLLM\'s shapes', async () => {
  const plain = await tokenize({ content: 'Hello world' });
  assert.equal(plain.count, plain.tokens.length);
  assert.equal(plain.max_model_len, 1000000);
  const withBos = await tokenize({ prompt: 'Hello world' });  // vLLM adds special tokens by default
  assert.deepEqual(withBos.tokens.slice(1), plain.tokens);
  assert.deepEqual((await tokenize({ content: 'Hello world', add_special: true })).tokens, withBos.tokens);
  assert.deepEqual((await tokenize({ prompt: 'Hello world', add_special_tokens: false })).tokens, plain.tokens);
  const pieces = await tokenize({ content: 'Hello world', with_pieces: true });
  assert.equal(pieces.tokens.map((t) => t.piece).join(''), 'Hello world');
  const detok = async (tokens) => fetch(`${base}/detokenize`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ tokens }) });
  const back = await (await detok(plain.tokens)).json();
  assert.equal(back.content, 'Hello world');
  assert.equal(back.prompt, 'Hello world');
  const bad = await detok([plain.tokens[0], 1e9]);
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error.message, /tokens\[1\] = 1000000000 is not a token id/);
});

// What the model wrote that is not a whole tool call comes back as text, with its raw
// characters and the right finish reason, streaming or not; never a half call.
test('broken tool calls are answered as their text: malformed, end of sequence inside, cut by max_tokens', async () => {
  const param = '<｜DSML｜parameter name="location" string="true">';
  const head = '\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n' + param;
  const malformed = '\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke nome="get_weather">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>';
  const cases = [
    { forced: 'Let me check.' + malformed, content: 'Let me check.' + malformed, finish: 'stop' },
    { forced: 'Looking.' + head + 'Bei<｜end▁of▁sentence｜>', content: 'Looking.' + head + 'Bei', finish: 'stop' },
    { forced: 'Looking.' + call, max_tokens: 40, finish: 'length' },
  ];
  for (const c of cases) {
    const params = { model: 'model', messages: user('Weather?'), tools, dsv4_forced_text: c.forced, max_tokens: c.max_tokens ?? 400 };
    const r = await client.chat.completions.create(params);
    const m = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, c.finish, c.forced);
    assert.equal(m.tool_calls, undefined, c.forced);
    if (c.content) assert.equal(m.content, c.content);
    else assert.ok(m.content.startsWith('Looking.<｜DSML｜tool_calls>') && m.content.length > 30 && c.forced.startsWith(m.content), m.content);
    assert.ok(!m.content.includes('end▁of▁sentence'));
    let content = '', calls = 0, finish;
    for await (const chunk of await client.chat.completions.create({ ...params, stream: true })) {
      content += chunk.choices[0]?.delta?.content ?? '';
      calls += (chunk.choices[0]?.delta?.tool_calls ?? []).length;
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(content, m.content);
    assert.equal(calls, 0);
    assert.equal(finish, c.finish);
  }
});

test('logit_bias and penalties shape what is sampled', async () => {
  const [x, y] = (await tokenize({ content: 'xy' })).tokens;
  // (The prompt has neither x nor y: the repetition penalty counts the prompt's tokens too.)
  const ask = (extra) => client.chat.completions.create({ model: 'model', messages: user('Go on'), max_tokens: 8,
                                                         temperature: 0, ...extra });
  const text = async (extra) => (await ask(extra)).choices[0].message.content;
  // +100 on one token: greedy decoding says nothing else; +100 on two, the larger wins.
  assert.equal(await text({ logit_bias: { [x]: 100 } }), 'xxxxxxxx');
  assert.equal(await text({ logit_bias: { [x]: 60, [y]: 100 } }), 'yyyyyyyy');
  // With a frequency and presence penalty of 2 the repeated token loses its lead (60 vs 55)
  // after a few times, and the two take turns.
  const taking = await text({ logit_bias: { [x]: 60, [y]: 55 }, frequency_penalty: 2, presence_penalty: 2 });
  assert.match(taking, /^x+y[xy]*$/);
  assert.ok(taking.includes('y') && taking.startsWith('x'), taking);
  // The repetition penalty divides positive logits of tokens seen: 60 / 2 < 55.
  assert.match(await text({ logit_bias: { [x]: 60, [y]: 55 }, repetition_penalty: 2 }), /^xy/);
  // The completions endpoint takes them too.
  const c = await client.completions.create({ model: 'model', prompt: 'a', max_tokens: 4, temperature: 0, logit_bias: { [y]: 100 } });
  assert.equal(c.choices[0].text, 'yyyy');
});

// The log-probabilities the server reports are the model's: log-softmax of what `dsv4 logits`
// writes for the same tokens (computed here in double).
test('logprobs agree with dsv4 logits; chat and completions, streaming and not', async () => {
  const prompt = 'Once upon';
  const r = await client.completions.create({ model: 'model', prompt, max_tokens: 5, temperature: 0, logprobs: 3,
                                              return_tokens_as_token_ids: true });
  const lp = r.choices[0].logprobs;
  const generated = lp.tokens.map((t) => Number(t.replace('token_id:', '')));
  assert.equal(generated.length, 5);
  const promptIds = (await tokenize({ prompt })).tokens;  // BOS first, as the completions endpoint
  const out = join(dir, 'logits.bin');
  execFileSync(binary, ['logits', '-m', join(dir, 'model'), '--ids', [...promptIds, ...generated].join(','),
                        '--prefill', String(promptIds.length), '-o', out], { stdio: 'ignore' });
  const buf = readFileSync(out);
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const vocab = all.length / (generated.length + 1);
  for (let i = 0; i < generated.length; ++i) {
    const row = Array.from(all.subarray(i * vocab, (i + 1) * vocab));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
    assert.ok(Math.abs(lp.token_logprobs[i] - (row[generated[i]] - lse)) < 1e-5, `token ${i}`);
    const top = Object.entries(lp.top_logprobs[i]);
    assert.equal(top.length, 3);
    const best = row.map((x, id) => [x, id]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, 3).map(([, id]) => `token_id:${id}`);
    assert.deepEqual(top.map(([k]) => k), best);
    assert.equal(top[0][0], lp.tokens[i]);  // greedy: the most likely one
  }
  assert.deepEqual(lp.text_offset.slice(0, 1), [0]);
  // Streamed: the same entries, spread over the chunks.
  const streamed = { tokens: [], token_logprobs: [] };
  for await (const chunk of await client.completions.create({ model: 'model', prompt, max_tokens: 5, temperature: 0,
                                                              logprobs: 3, return_tokens_as_token_ids: true, stream: true })) {
    const l = chunk.choices[0]?.logprobs;
    if (l) { streamed.tokens.push(...l.tokens); streamed.token_logprobs.push(...l.token_logprobs); }
  }
  assert.deepEqual(streamed.tokens, lp.tokens);
  assert.deepEqual(streamed.token_logprobs, lp.token_logprobs);

  // Chat: OpenAI's shape, streaming or not.
  const params = { model: 'model', messages: user('Hi'), max_tokens: 6, seed: 4, logprobs: true, top_logprobs: 2 };
  const c = await client.chat.completions.create(params);
  const content = c.choices[0].logprobs.content;
  assert.equal(content.length, c.usage.completion_tokens - (c.choices[0].finish_reason === 'stop' ? 1 : 0));
  for (const e of content) {
    assert.equal(typeof e.token, 'string');
    assert.ok(e.logprob <= 0 && Array.isArray(e.bytes));
    assert.equal(e.top_logprobs.length, 2);
    assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob && e.top_logprobs[0].logprob >= e.logprob);
  }
  const chunks = [];
  for await (const chunk of await client.chat.completions.create({ ...params, stream: true }))
    chunks.push(...(chunk.choices[0]?.logprobs?.content ?? []));
  assert.deepEqual(chunks, content);
  await assert.rejects(client.chat.completions.create({ model: 'model', messages: user('x'), top_logprobs: 2 }),
                       (e) => e.status === 400 && e.param === 'top_logprobs');
  await assert.rejects(client.chat.completions.create({ model: 'model', messages: user('x'), logprobs: true, top_logprobs: 21 }),
                       (e) => e.status === 400 && e.param === 'top_logprobs');
});

test('n samples: each the answer its own seed gives, the prompt counted once; streamed by index', async () => {
  const params = { model: 'model', messages: user('Tell me a story'), max_tokens: 8, seed: 40 };
  const r = await client.chat.completions.create({ ...params, n: 3 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  let completion = 0;
  for (let i = 0; i < 3; ++i) {
    // Samples decode without the drafter (which draws its own random numbers); so do requests
    // with logprobs, which this one asks for to compare like with like.
    const alone = await client.chat.completions.create({ ...params, seed: 40 + i, logprobs: true });
    assert.equal(r.choices[i].message.content, alone.choices[0].message.content, `sample ${i}`);
    assert.equal(r.choices[i].finish_reason, alone.choices[0].finish_reason);
    completion += alone.usage.completion_tokens;
    if (i === 0) assert.equal(r.usage.prompt_tokens, alone.usage.prompt_tokens);
  }
  assert.equal(r.usage.completion_tokens, completion);
  const c = await client.completions.create({ model: 'model', prompt: 'Once', max_tokens: 5, seed: 9, n: 2 });
  assert.equal(c.choices.length, 2);
  assert.equal(c.choices[1].text, (await client.completions.create({ model: 'model', prompt: 'Once', max_tokens: 5, seed: 10,
                                                                     logprobs: 0 })).choices[0].text);
  await assert.rejects(client.chat.completions.create({ ...params, n: 17 }), (e) => e.status === 400 && e.param === 'n');
  // Streamed: each choice's chunks carry its index and add up to the same answers; usage once.
  const stream = await client.chat.completions.create({ ...params, n: 3, stream: true, stream_options: { include_usage: true } });
  const text = ['', '', ''], finish = [];
  let usage;
  for await (const chunk of stream) {
    for (const ch of chunk.choices) {
      text[ch.index] += ch.delta?.content ?? '';
      if (ch.finish_reason) finish[ch.index] = ch.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.deepEqual(text, r.choices.map((ch) => ch.message.content));
  assert.deepEqual(finish, r.choices.map((ch) => ch.finish_reason));
  assert.equal(usage.prompt_tokens, r.usage.prompt_tokens);  // (cached_tokens differ: the prefix cache has it now)
  assert.equal(usage.completion_tokens, r.usage.completion_tokens);
  await assert.rejects(client.completions.create({ model: 'model', prompt: 'Once', max_tokens: 5, n: 2, stream: true }),
                       (e) => e.status === 400 && e.param === 'n');
});

// A bounded schema (short strings, few items): every answer ends within max_tokens even from a
// random-weight model (2000 tokens cover the longest answer the matcher allows, whitespace gaps
// included), so every one must parse and validate (ajv, an independent validator).
const person = { type: 'object', additionalProperties: false, required: ['name', 'age', 'pets'],
  properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer' },
                pets: { type: 'array', maxItems: 3, items: { enum: ['cat', 'dog', null] } },
                address: { type: 'object', required: ['city'], properties: { city: { type: 'string', maxLength: 8 },
                                                                             zip: { type: ['string', 'null'], maxLength: 5 } } },
                score: { type: 'number' }, ok: { type: 'boolean' } } };

test('response_format json_schema and json_object: answers that parse and validate, streaming and not, n samples, thinking', async () => {
  const validate = new Ajv({ strict: false }).compile(person);
  const format = { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } };
  const answers = [];
  for (let seed = 0; seed < 4; seed++) {
    const r = await client.chat.completions.create({ model: 'model', messages: user('A person, please.'), seed, temperature: 1,
                                                     response_format: format, n: 4, max_tokens: 2000 });
    for (const c of r.choices) {
      assert.equal(c.finish_reason, 'stop');
      answers.push(c.message.content);
    }
  }
  const stream = await client.chat.completions.create({ model: 'model', messages: user('A person, please.'), seed: 9,
                                                        temperature: 1, response_format: format, stream: true, max_tokens: 2000 });
  let streamed = '';
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? '';
  answers.push(streamed);
  const thinking = await client.chat.completions.create({ model: 'model', messages: user('A person.'), seed: 3,
    reasoning_effort: 'high', response_format: format, max_tokens: 2400 });
  // The reasoning is free; the answer after it is the document (unless the reasoning used up the tokens).
  if (thinking.choices[0].finish_reason === 'stop') answers.push(thinking.choices[0].message.content);
  for (const a of answers) {
    const doc = JSON.parse(a);
    assert.ok(validate(doc), `${a}: ${JSON.stringify(validate.errors)}`);
  }
  // json_object: any JSON object.
  const o = await client.chat.completions.create({ model: 'model', messages: user('JSON please'), seed: 1, temperature: 1,
                                                   response_format: { type: 'json_object' }, max_tokens: 400 });
  if (o.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(o.choices[0].message.content), 'object');
  else assert.equal(o.choices[0].finish_reason, 'length');
  // The schema reaches the prompt as the official encoder writes it.
  const tok = async (extra) => (await (await fetch(`${base}/tokenize`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: user('x'), ...extra }) })).json()).tokens.length;
  assert.ok(await tok({ response_format: format }) > await tok({}));
});

test('/metrics: Prometheus text whose counters follow the requests', async () => {
  const scrape = async () => {
    const res = await fetch(`${base}/metrics`);
    assert.match(res.headers.get('content-type'), /^text\/plain; version=0.0.4/);
    const values = new Map();
    for (const line of (await res.text()).split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = line.match(/^([a-z0-9_]+(?:\{[^}]*\})?) (\S+)$/);
      assert.ok(m, `not a sample line: ${line}`);
      values.set(m[1], Number(m[2]));
    }
    return values;
  };
  const before = await scrape();
  const chats = 'dsv4_requests_total{route="/v1/chat/completions",status="200"}';
  const r = await client.chat.completions.create({ model: 'model', messages: user('Count me'), max_tokens: 5, seed: 1 });
  await fetch(`${base}/no/such/route`);
  const after = await scrape();
  assert.equal((after.get(chats) ?? 0) - (before.get(chats) ?? 0), 1);
  assert.ok(after.get('dsv4_requests_total{route="other",status="404"}') >= 1);
  assert.equal(after.get('dsv4_generation_tokens_total') - before.get('dsv4_generation_tokens_total'), r.usage.completion_tokens);
  assert.equal(after.get('dsv4_prompt_tokens_total') - before.get('dsv4_prompt_tokens_total'), r.usage.prompt_tokens);
  assert.ok(after.get('dsv4_steps_total') > before.get('dsv4_steps_total'));
  // Histograms: buckets cumulative, +Inf equal to the count.
  for (const h of ['dsv4_step_duration_seconds', 'dsv4_request_duration_seconds']) {
    const buckets = [...after].filter(([k]) => k.startsWith(`${h}_bucket`)).map(([, v]) => v);
    for (let i = 1; i < buckets.length; ++i) assert.ok(buckets[i] >= buckets[i - 1], h);
    assert.equal(buckets.at(-1), after.get(`${h}_count`));
  }
  assert.equal(after.get('dsv4_step_duration_seconds_count'), after.get('dsv4_steps_total'));
});

test('completions endpoint, plain and streaming', async () => {
  const r = await client.completions.create({ model: 'model', prompt: 'Once upon a time', max_tokens: 6, seed: 1 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.usage.completion_tokens, 6);
  let text = '';
  for await (const chunk of await client.completions.create({ model: 'model', prompt: 'Once upon a time', max_tokens: 6, seed: 1, stream: true }))
    text += chunk.choices[0]?.text ?? '';
  assert.equal(text, r.choices[0].text);
});

test('errors come back in OpenAI shape, and the server stays up', async () => {
  const expect400 = async (params, param) => {
    await assert.rejects(client.chat.completions.create({ model: 'model', messages: user('x'), ...params }), (e) => {
      assert.equal(e.status, 400, JSON.stringify(e.error));
      assert.equal(e.error.type, 'invalid_request_error');
      if (param) assert.equal(e.error.param, param);
      return true;
    });
  };
  await expect400({ temperature: 'hot' }, 'temperature');
  await expect400({ top_p: 1.5 }, 'top_p');
  await expect400({ max_tokens: 0 }, 'max_tokens');
  await expect400({ n: 0 }, 'n');
  await expect400({ stop: [1, 2] }, 'stop');
  await expect400({ messages: [] }, 'messages');
  await expect400({ messages: [{ role: 'wizard', content: 'hi' }] }, 'messages');
  await expect400({ tools: 'nope' }, 'tools');
  await expect400({ thinking: 'maybe' }, 'thinking');
  // Not done yet, so refused rather than ignored.
  await expect400({ presence_penalty: 2.5 }, 'presence_penalty');
  await expect400({ repetition_penalty: 0 }, 'repetition_penalty');
  await expect400({ logit_bias: { abc: 1 } }, 'logit_bias');
  await expect400({ logit_bias: { 17: 101 } }, 'logit_bias');
  await expect400({ logit_bias: { 999999: 1 } }, 'logit_bias');
  await expect400({ response_format: { type: 'xml' } }, 'response_format');
  await expect400({ response_format: {} }, 'response_format');
  await expect400({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } } },
                  'response_format');
  await assert.rejects(client.chat.completions.create({ model: 'model', messages: user('x'), max_tokens: 2000000 }),
    (e) => e.status === 400 && e.error.code === 'context_length_exceeded');
  const raw = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: '{"messages": [', headers: { 'content-type': 'application/json' } });
  assert.equal(raw.status, 400);
  assert.equal((await raw.json()).error.code, 'invalid_json');
  const missing = await fetch(`${base}/v1/nothing`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, 'not_found');
  assert.equal((await health()).status, 'ok');
});

test('a client that disconnects cancels its generation', async () => {
  const before = await health();
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    // A scripted long answer: a random model could sample its end-of-sentence token first.
    { model: 'model', messages: user('Talk for a long time'), max_tokens: 500000, stream: true,
      dsv4_forced_text: 'la '.repeat(20000) },
    { signal: controller.signal });
  let n = 0;
  try {
    for await (const chunk of stream) {
      if (++n === 3) { controller.abort(); break; }
    }
  } catch (e) {
    assert.equal(e.name, 'APIUserAbortError');  // how the SDK may report our own abort
  }
  assert.equal(n, 3);
  for (let i = 0; i < 150; ++i) {  // up to 15 s; the generation itself would take minutes
    const h = await health();
    if (h.cancelled > before.cancelled && h.active === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail('the generation was not cancelled: ' + JSON.stringify(await health()));
});

test('load: 16 concurrent clients x 20 requests, all answered or cleanly refused', async () => {
  const clients = 16, perClient = 20;
  // Requests answered alone first: under load they must give the same text (no mixing).
  const probe = (k) => client.chat.completions.create({ model: 'model', messages: user(`probe ${k}`), max_tokens: 8, seed: 77 + k });
  const alone = [];
  for (let k = 0; k < 3; ++k) alone.push((await probe(k)).choices[0].message.content);
  const underLoad = [];
  const ttft = [];
  let ok = 0, refused = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, ci) => {
    for (let k = 0; k < perClient; ++k) {
      const start = performance.now();
      try {
        const stream = await client.chat.completions.create({
          model: 'model', messages: user(`client ${ci} request ${k}`), max_tokens: 4, stream: true, seed: ci * 100 + k });
        let first = true, finish;
        for await (const chunk of stream) {
          // Time to first token: the first chunk that carries generated text (not the role chunk).
          if (first && chunk.choices[0]?.delta?.content) { ttft.push(performance.now() - start); first = false; }
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        assert.ok(finish === 'length' || finish === 'stop', `finish ${finish}`);
        ++ok;
      } catch (e) {
        assert.equal(e.status, 503, `request failed: ${e}`);
        ++refused;
      }
    }
  }));
  for (let k = 0; k < 3; ++k) underLoad.push(probe(k));
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(ok + refused, clients * perClient);
  assert.ok(ok > 0);
  ttft.sort((a, b) => a - b);
  const q = (p) => ttft[Math.min(ttft.length - 1, Math.floor(p * ttft.length))].toFixed(1);
  const report = { requests: clients * perClient, answered: ok, refused, seconds: +seconds.toFixed(2),
    requests_per_s: +(ok / seconds).toFixed(1), ttft_ms_p50: +q(0.5), ttft_ms_p95: +q(0.95) };
  // Aggregate decode throughput at 1, 4 and 8 concurrent streams (one forward pass per step
  // for all of them: continuous batching), on a server of its own. Fewer tokens under a
  // sanitizer (.ci/sanitizers sets DSV4_SANITIZER), where the rate means nothing anyway.
  const sweepTokens = process.env.DSV4_SANITIZER ? 12 : 48;
  report.aggregate = await sweep(binary, join(dir, 'model'), [1, 4, 8], sweepTokens);
  console.log('load test:', JSON.stringify(report));
  if (process.env.DSV4_LOAD_REPORT) writeFileSync(process.env.DSV4_LOAD_REPORT, JSON.stringify(report, null, 2) + '\n');
  for (const r of report.aggregate) assert.equal(r.generated, r.clients * sweepTokens);
  assert.deepEqual((await Promise.all(underLoad)).map((r) => r.choices[0].message.content), alone);
  const h = await health();
  assert.equal(h.status, 'ok');
  assert.equal(h.active, 0);
});

test('a full queue refuses with 503 in OpenAI shape', async () => {
  const small = spawn(binary, ['serve', '-m', join(dir, 'model'), '--port', '0', '--parallel', '1', '--queue', '1', '--test-hooks'],
                      { stdio: ['ignore', 'ignore', 'pipe'] });
  const smallPort = await new Promise((resolve, reject) => {
    let err = '';
    small.stderr.on('data', (d) => { err += d; const m = err.match(/:(\d+) \(parallel/); if (m) resolve(Number(m[1])); });
    small.on('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  try {
    const c = new OpenAI({ baseURL: `http://127.0.0.1:${smallPort}/v1`, apiKey: 'x', maxRetries: 0 });
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, k) =>
      // Scripted long answers keep the one slot busy while the others arrive.
      c.chat.completions.create({ model: 'model', messages: user(`r${k}`), max_tokens: 1000, dsv4_forced_text: 'la '.repeat(300) })));
    const refused = results.filter((r) => r.status === 'rejected');
    assert.ok(results.some((r) => r.status === 'fulfilled'));
    assert.ok(refused.length >= 1, 'some requests are refused');
    for (const r of refused) {
      assert.equal(r.reason.status, 503);
      assert.equal(r.reason.error.code, 'server_busy');
    }
    assert.equal((await (await fetch(`http://127.0.0.1:${smallPort}/health`)).json()).status, 'ok');
  } finally {
    small.kill('SIGTERM');
  }
});
