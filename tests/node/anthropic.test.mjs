// dsv4 serve's Anthropic Messages API driven by the real `@anthropic-ai/sdk` client: system and
// multi-turn messages, thinking blocks, a tool_use / tool_result loop, stop sequences,
// streaming (the event sequence, and the SDK's own assembly of it), count_tokens, and errors
// in Anthropic's shape. Model output is scripted where the test needs a given answer
// (--test-hooks, dsv4_forced_text); the model is a random-weight synthetic one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { startSynthServer, stopSynthServer } from './synth_server.mjs';

let s, client, base;

before(async () => {
  s = await startSynthServer('anthropic', ['--threads', '1', '--test-hooks', '--api-key', 'sk-ant-test', '--cache-ram', '0']);
  base = s.base;
  client = new Anthropic({ baseURL: base, apiKey: 'sk-ant-test', maxRetries: 0 });
});

after(() => stopSynthServer(s));

const tools = [{ name: 'get_weather', description: 'Get the weather for a city',
                 input_schema: { type: 'object', properties: { location: { type: 'string' }, days: { type: 'integer' } },
                                 required: ['location'] } }];
const call = '\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n' +
  '<｜DSML｜parameter name="location" string="true">Paris</｜DSML｜parameter>\n' +
  '<｜DSML｜parameter name="days" string="false">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>';

test('a message with a system prompt and turns: text block, stop reason, usage', async () => {
  const m = await client.messages.create({
    model: 'dsv4', max_tokens: 6, system: 'You are terse.',
    messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' },
               { role: 'user', content: [{ type: 'text', text: 'And now?' }] }] });
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.ok(m.id.startsWith('msg_'));
  assert.equal(m.model, 'dsv4');
  assert.ok(['max_tokens', 'end_turn'].includes(m.stop_reason));
  assert.ok(m.usage.input_tokens > 0 && m.usage.output_tokens > 0);
  const scripted = await client.messages.create({ model: 'dsv4', max_tokens: 50, messages: [{ role: 'user', content: 'Hi' }],
                                                  dsv4_forced_text: 'Hello there.' });
  assert.deepEqual(scripted.content, [{ type: 'text', text: 'Hello there.' }]);
  assert.equal(scripted.stop_reason, 'end_turn');
  assert.equal(scripted.stop_sequence, null);
});

test('thinking: budget_tokens selects thinking, answered as a thinking block then text', async () => {
  const m = await client.messages.create({
    model: 'dsv4', max_tokens: 100, thinking: { type: 'enabled', budget_tokens: 2048 },
    messages: [{ role: 'user', content: 'What is 6 x 7?' }], dsv4_forced_text: 'Six sevens.</think>42.' });
  assert.equal(m.content.length, 2);
  assert.equal(m.content[0].type, 'thinking');
  assert.equal(m.content[0].thinking, 'Six sevens.');
  assert.deepEqual(m.content[1], { type: 'text', text: '42.' });
  // The prompt is the think-mode one: longer than without thinking, the max preamble from 65536.
  const count = async (thinking) => (await client.messages.countTokens({
    model: 'dsv4', messages: [{ role: 'user', content: 'Hi' }], ...(thinking ? { thinking } : {}) })).input_tokens;
  const plain = await count(null), high = await count({ type: 'enabled', budget_tokens: 2048 });
  const max = await count({ type: 'enabled', budget_tokens: 65536 });
  assert.ok(plain > 0);
  assert.ok(max > high, `${max} ${high}`);
});

test('a tool loop: tool_use out, tool_result in, text out', async () => {
  const messages = [{ role: 'user', content: 'Weather in Paris for 2 days?' }];
  const m = await client.messages.create({ model: 'dsv4', max_tokens: 200, tools, messages,
                                           dsv4_forced_text: 'Let me look.' + call });
  assert.equal(m.stop_reason, 'tool_use');
  assert.equal(m.content[0].type, 'text');
  assert.equal(m.content[0].text, 'Let me look.');
  const use = m.content[1];
  assert.equal(use.type, 'tool_use');
  assert.ok(use.id.startsWith('toolu_'));
  assert.equal(use.name, 'get_weather');
  assert.deepEqual(use.input, { location: 'Paris', days: 2 });
  messages.push({ role: 'assistant', content: m.content },
                { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '{"temp": 18}' },
                                          { type: 'text', text: 'Thanks.' }] });
  const m2 = await client.messages.create({ model: 'dsv4', max_tokens: 50, tools, messages, dsv4_forced_text: 'It is 18 degrees.' });
  assert.deepEqual(m2.content, [{ type: 'text', text: 'It is 18 degrees.' }]);
  // The tool result reached the prompt, as a tool result of the encoder.
  const withResult = await client.messages.countTokens({ model: 'dsv4', tools, messages });
  const without = await client.messages.countTokens({ model: 'dsv4', tools, messages: messages.slice(0, 1) });
  assert.ok(withResult.input_tokens > without.input_tokens + 10);
});

test('streaming: the event sequence, and the SDK assembles what the plain answer has', async () => {
  const params = { model: 'dsv4', max_tokens: 300, tools, thinking: { type: 'enabled', budget_tokens: 1024 },
                   messages: [{ role: 'user', content: 'Weather?' }], dsv4_forced_text: 'Need the tool.</think>Checking.' + call };
  const plain = await client.messages.create(params);
  const events = [];
  const stream = client.messages.stream(params);
  stream.on('streamEvent', (e) => events.push(e));
  const final = await stream.finalMessage();
  assert.equal(events[0].type, 'message_start');
  assert.equal(events.at(-1).type, 'message_stop');
  assert.equal(events.at(-2).type, 'message_delta');
  assert.equal(events.at(-2).delta.stop_reason, 'tool_use');
  const starts = events.filter((e) => e.type === 'content_block_start').map((e) => e.content_block.type);
  assert.deepEqual(starts, ['thinking', 'text', 'tool_use']);
  assert.equal(events.filter((e) => e.type === 'content_block_stop').length, 3);
  assert.ok(events.some((e) => e.delta?.type === 'input_json_delta'));
  const strip = (c) => c.map((b) => (b.type === 'tool_use' ? { ...b, id: 'x' } : b));
  assert.deepEqual(strip(final.content), strip(plain.content));
  assert.equal(final.stop_reason, 'tool_use');
  assert.equal(final.usage.output_tokens, plain.usage.output_tokens);
});

test('stop_sequences end the text with stop_reason stop_sequence', async () => {
  const params = { model: 'dsv4', max_tokens: 50, messages: [{ role: 'user', content: 'Count' }],
                   stop_sequences: ['three', 'END'], dsv4_forced_text: 'one two three four' };
  const m = await client.messages.create(params);
  assert.deepEqual(m.content, [{ type: 'text', text: 'one two ' }]);
  assert.equal(m.stop_reason, 'stop_sequence');
  assert.equal(m.stop_sequence, 'three');
  const final = await client.messages.stream(params).finalMessage();
  assert.equal(final.stop_reason, 'stop_sequence');
  assert.equal(final.stop_sequence, 'three');
});

test('errors come back in Anthropic\'s shape', async () => {
  const expect = async (params, status, type, message) => {
    await assert.rejects(client.messages.create({ model: 'dsv4', max_tokens: 5, messages: [{ role: 'user', content: 'x' }], ...params }),
      (e) => {
        assert.equal(e.status, status);
        assert.equal(e.error.type, 'error');
        assert.equal(e.error.error.type, type);
        assert.match(e.error.error.message, message);
        return true;
      });
  };
  await expect({ max_tokens: undefined }, 400, 'invalid_request_error', /'max_tokens' is required/);
  await expect({ messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: '' } }] }] },
               400, 'invalid_request_error', /type 'image' are not supported/);
  await expect({ messages: [{ role: 'system', content: 'x' }] }, 400, 'invalid_request_error', /'user' or 'assistant'/);
  await expect({ tool_choice: { type: 'any' } }, 400, 'invalid_request_error', /tool_choice/);
  await expect({ tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 400, 'invalid_request_error', /not available here/);
  const wrong = new Anthropic({ baseURL: base, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(wrong.messages.create({ model: 'dsv4', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
                       (e) => e.status === 401 && e.error.error.type === 'authentication_error');
});
