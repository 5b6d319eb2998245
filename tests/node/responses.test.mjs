// dsv4 serve's Responses API (POST /v1/responses) driven by the real `openai` client:
// instructions, reasoning items, the event stream (its order, and the SDK's own assembly of
// it), a tool loop continued by previous_response_id and by the whole conversation as items
// (the same prompt either way, and the earlier turns served by the prefix cache),
// max_output_tokens, stored responses (GET, DELETE, store: false) and the refusals. Model
// output is scripted where the test needs a given answer (--test-hooks, dsv4_forced_text); the
// model is a random-weight synthetic one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startSynthServer, stopSynthServer } from './synth_server.mjs';

const unit = 16;  // the tiny preset's snapshot unit (prefix_cache.test.mjs)
let s, client, base;

before(async () => {
  s = await startSynthServer('responses', ['--threads', '1', '--test-hooks', '--api-key', 'sk-resp-test']);
  base = s.base;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-resp-test', maxRetries: 0 });
});

after(() => stopSynthServer(s));

const tools = [{ type: 'function', name: 'get_weather', description: 'Get the weather for a city', strict: false,
                 parameters: { type: 'object', properties: { location: { type: 'string' }, days: { type: 'integer' } },
                               required: ['location'] } }];
const call = '\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n' +
  '<｜DSML｜parameter name="location" string="true">Paris</｜DSML｜parameter>\n' +
  '<｜DSML｜parameter name="days" string="false">2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>';
// Items with their ids and the call ids (random) replaced, and without what the SDK's stream
// helper adds (parsed, parsed_arguments), to compare two answers.
const strip = (output) => JSON.parse(JSON.stringify(output, (k, v) => (k === 'parsed' || k === 'parsed_arguments' ? undefined
                                                                        : k === 'id' || k === 'call_id' ? 'x' : v)));

test('a response: output text, instructions, usage, the settings echoed', async () => {
  const r = await client.responses.create({ model: 'dsv4', input: 'Hi', instructions: 'You are terse.',
                                            metadata: { run: '1' }, dsv4_forced_text: 'Hello there.' });
  assert.equal(r.object, 'response');
  assert.ok(r.id.startsWith('resp_'));
  assert.equal(r.status, 'completed');
  assert.equal(r.model, 'dsv4');
  assert.equal(r.output.length, 1);
  const m = r.output[0];
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.status, 'completed');
  assert.ok(m.id.startsWith('msg_'));
  assert.deepEqual(m.content, [{ type: 'output_text', annotations: [], logprobs: [], text: 'Hello there.' }]);
  assert.equal(r.output_text, 'Hello there.');  // the SDK's sum of the output_text parts
  assert.equal(r.instructions, 'You are terse.');
  assert.deepEqual(r.metadata, { run: '1' });
  assert.equal(r.incomplete_details, null);
  assert.equal(r.error, null);
  const u = r.usage;
  assert.ok(u.input_tokens > 0);
  assert.equal(u.output_tokens_details.reasoning_tokens, 0);
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens);
  assert.ok(u.input_tokens_details.cached_tokens >= 0);
  // The instructions reached the prompt, and input items are the same prompt as a string.
  const items = await client.responses.create({ model: 'dsv4', input: [{ role: 'user', content: [{ type: 'input_text', text: 'Hi' }] }],
                                                max_output_tokens: 1 });
  const plain = await client.responses.create({ model: 'dsv4', input: 'Hi', max_output_tokens: 1 });
  assert.equal(items.usage.input_tokens, plain.usage.input_tokens);
  assert.ok(u.input_tokens > plain.usage.input_tokens, `${u.input_tokens} ${plain.usage.input_tokens}`);
});

test('reasoning: an effort selects thinking, answered as a reasoning item then the message', async () => {
  const r = await client.responses.create({ model: 'dsv4', input: 'What is 6 x 7?', reasoning: { effort: 'high' },
                                            dsv4_forced_text: 'Six sevens.</think>42.' });
  assert.equal(r.output.length, 2);
  const [thought, m] = r.output;
  assert.equal(thought.type, 'reasoning');
  assert.ok(thought.id.startsWith('rs_'));
  assert.deepEqual(thought.content, [{ type: 'reasoning_text', text: 'Six sevens.' }]);
  assert.deepEqual(thought.summary, []);
  assert.equal(m.content[0].text, '42.');
  assert.equal(r.output_text, '42.');
  assert.equal(r.reasoning.effort, 'high');
  // The tokens before "</think>": the reasoning's, less than all of them.
  assert.ok(r.usage.output_tokens_details.reasoning_tokens > 0);
  assert.ok(r.usage.output_tokens_details.reasoning_tokens < r.usage.output_tokens);
  // Sampled (a random model's tokens, not scripted), never more than the output either.
  const sampled = await client.responses.create({ model: 'dsv4', input: 'Think.', reasoning: { effort: 'high' },
                                                  max_output_tokens: 40 });
  assert.ok(sampled.usage.output_tokens_details.reasoning_tokens <= sampled.usage.output_tokens, JSON.stringify(sampled.usage));
  // Without an effort the server's default (non-think here): no reasoning item; effort none too.
  for (const reasoning of [undefined, { effort: 'none' }]) {
    const plain = await client.responses.create({ model: 'dsv4', input: 'What is 6 x 7?', reasoning, dsv4_forced_text: '42.' });
    assert.deepEqual(plain.output.map((i) => i.type), ['message']);
    assert.equal(plain.reasoning.effort, reasoning ? 'none' : null);
  }
  // xhigh is think max: its prompt has the max preamble.
  const max = await client.responses.create({ model: 'dsv4', input: 'What is 6 x 7?', reasoning: { effort: 'xhigh' },
                                              max_output_tokens: 1 });
  assert.ok(max.usage.input_tokens > r.usage.input_tokens, `${max.usage.input_tokens} ${r.usage.input_tokens}`);
});

test('streaming: the events in order, deltas summing to the text, and the SDK assembles the plain answer', async () => {
  const params = { model: 'dsv4', input: 'Weather?', tools, reasoning: { effort: 'high' },
                   dsv4_forced_text: 'Need the tool.</think>Checking the weather.' + call };
  const plain = await client.responses.create(params);
  const events = [];
  for await (const e of await client.responses.create({ ...params, stream: true })) events.push(e);
  assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
  // Runs of deltas counted as one, to compare the order.
  const order = events.map((e) => e.type).filter((t, i, all) => !(t.endsWith('.delta') && all[i - 1] === t));
  assert.deepEqual(order, [
    'response.created', 'response.in_progress',
    'response.output_item.added', 'response.content_part.added', 'response.reasoning_text.delta',
    'response.reasoning_text.done', 'response.content_part.done', 'response.output_item.done',
    'response.output_item.added', 'response.content_part.added', 'response.output_text.delta',
    'response.output_text.done', 'response.content_part.done', 'response.output_item.done',
    'response.output_item.added', 'response.function_call_arguments.delta', 'response.function_call_arguments.done',
    'response.output_item.done', 'response.completed']);
  assert.equal(events[0].response.status, 'in_progress');
  const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
  assert.equal(text, 'Checking the weather.');
  assert.equal(events.find((e) => e.type === 'response.output_text.done').text, text);
  const thought = events.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => e.delta).join('');
  assert.equal(thought, 'Need the tool.');
  const args = events.find((e) => e.type === 'response.function_call_arguments.done');
  assert.equal(args.name, 'get_weather');
  assert.deepEqual(JSON.parse(args.arguments), { location: 'Paris', days: 2 });
  const completed = events.at(-1).response;
  assert.equal(completed.status, 'completed');
  assert.deepEqual(strip(completed.output), strip(plain.output));
  assert.deepEqual(completed.usage.output_tokens_details, plain.usage.output_tokens_details);
  assert.equal(completed.usage.output_tokens, plain.usage.output_tokens);
  // Each item's id is the same from added to done and in the final response.
  const added = events.filter((e) => e.type === 'response.output_item.added').map((e) => e.item.id);
  assert.deepEqual(completed.output.map((i) => i.id), added);
  // The SDK's helper assembles the same response from the events.
  const final = await client.responses.stream(params).finalResponse();
  assert.deepEqual(strip(final.output), strip(plain.output));
  assert.equal(final.output_text, 'Checking the weather.');
});

test('a tool loop: function_call out, function_call_output in by previous_response_id or as items', async () => {
  const first = { model: 'dsv4', tools, reasoning: { effort: 'high' },
                  input: [{ role: 'developer', content: 'Answer in Celsius.' }, { role: 'user', content: 'Weather in Paris for 2 days?' }] };
  const r1 = await client.responses.create({ ...first, dsv4_forced_text: 'Need the tool.</think>Let me look.' + call });
  assert.deepEqual(r1.output.map((i) => i.type), ['reasoning', 'message', 'function_call']);
  const fc = r1.output[2];
  assert.ok(fc.id.startsWith('fc_'));
  assert.ok(fc.call_id.startsWith('call_'));
  assert.equal(fc.name, 'get_weather');
  assert.equal(fc.status, 'completed');
  assert.deepEqual(JSON.parse(fc.arguments), { location: 'Paris', days: 2 });
  assert.equal(r1.status, 'completed');
  const result = { type: 'function_call_output', call_id: fc.call_id, output: '{"temp": 18}' };

  const r2 = await client.responses.create({ model: 'dsv4', tools, reasoning: { effort: 'high' }, previous_response_id: r1.id,
                                             input: [result], dsv4_forced_text: 'Warm enough.</think>It is 18 degrees.' });
  assert.equal(r2.output_text, 'It is 18 degrees.');
  assert.equal(r2.previous_response_id, r1.id);
  // The earlier conversation was the start of this prompt: the prefix cache served it.
  const cached = r2.usage.input_tokens_details.cached_tokens;
  assert.ok(cached > 0 && cached >= Math.floor(r1.usage.input_tokens / unit) * unit, JSON.stringify([r1.usage, r2.usage]));
  assert.ok(r2.usage.input_tokens > r1.usage.input_tokens + r1.usage.output_tokens, JSON.stringify([r1.usage, r2.usage]));

  // The same conversation sent whole: the same prompt.
  const r3 = await client.responses.create({ ...first, input: [...first.input, ...r1.output, result],
                                             dsv4_forced_text: 'Warm enough.</think>It is 18 degrees.' });
  assert.equal(r3.output_text, 'It is 18 degrees.');
  assert.equal(r3.usage.input_tokens, r2.usage.input_tokens);
  // A third turn continues the second: the whole chain is in the prompt.
  const r4 = await client.responses.create({ model: 'dsv4', tools, reasoning: { effort: 'high' }, previous_response_id: r2.id,
                                             input: 'And tomorrow?', dsv4_forced_text: 'Same.</think>Also 18.' });
  assert.equal(r4.output_text, 'Also 18.');
  assert.ok(r4.usage.input_tokens > r2.usage.input_tokens);
  assert.ok(r4.usage.input_tokens_details.cached_tokens > 0);
});

test('max_output_tokens cuts the answer: status incomplete, streamed as response.incomplete', async () => {
  const params = { model: 'dsv4', input: 'Count', max_output_tokens: 3, dsv4_forced_text: 'one two three four five six seven' };
  const r = await client.responses.create(params);
  assert.equal(r.status, 'incomplete');
  assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
  assert.equal(r.output[0].status, 'incomplete');
  assert.equal(r.usage.output_tokens, 3);
  assert.equal(r.max_output_tokens, 3);
  const events = [];
  for await (const e of await client.responses.create({ ...params, stream: true })) events.push(e);
  assert.equal(events.at(-1).type, 'response.incomplete');
  assert.deepEqual(events.at(-1).response.incomplete_details, { reason: 'max_output_tokens' });
  assert.equal(events.at(-1).response.output[0].content[0].text, r.output_text);
});

test('stored responses: GET and DELETE, store: false, unknown ids are 404s', async () => {
  const r = await client.responses.create({ model: 'dsv4', input: 'Hi', dsv4_forced_text: 'Hello.' });
  const got = await client.responses.retrieve(r.id);
  assert.deepEqual(got, r);
  // A streamed response is stored too.
  const stream = client.responses.stream({ model: 'dsv4', input: 'Hi', dsv4_forced_text: 'Hello again.' });
  const streamed = await stream.finalResponse();
  assert.equal((await client.responses.retrieve(streamed.id)).output_text, 'Hello again.');

  await client.responses.delete(r.id);
  const notFound = (param, code) => (e) => {
    assert.equal(e.status, 404);
    assert.equal(e.param, param);
    assert.equal(e.code, code);
    assert.equal(e.type, 'invalid_request_error');
    return true;
  };
  await assert.rejects(client.responses.retrieve(r.id), notFound('response_id', 'not_found'));
  await assert.rejects(client.responses.delete(r.id), notFound('response_id', 'not_found'));
  await assert.rejects(client.responses.create({ model: 'dsv4', input: 'More', previous_response_id: r.id }),
                       notFound('previous_response_id', 'previous_response_not_found'));
  await assert.rejects(client.responses.create({ model: 'dsv4', input: 'More', previous_response_id: 'resp_nope' }),
                       (e) => e.status === 404 && /resp_nope/.test(e.message));
  const unstored = await client.responses.create({ model: 'dsv4', input: 'Hi', store: false, dsv4_forced_text: 'x' });
  assert.equal(unstored.store, false);
  await assert.rejects(client.responses.retrieve(unstored.id), notFound('response_id', 'not_found'));
});

test('text.format json_schema: the answer parses and validates; the format is echoed', async () => {
  const schema = { type: 'object', required: ['city', 'days'], additionalProperties: false,
                   properties: { city: { type: 'string', maxLength: 10 }, days: { type: 'integer' } } };
  for (let seed = 0; seed < 6; seed++) {
    const r = await client.responses.create({ model: 'dsv4', input: 'Weather request as JSON', temperature: 1, seed,
      text: { format: { type: 'json_schema', name: 'req', schema, strict: true } } });
    assert.equal(r.status, 'completed');
    const doc = JSON.parse(r.output_text);
    assert.deepEqual(Object.keys(doc).sort(), ['city', 'days']);
    assert.ok(Number.isInteger(doc.days) && typeof doc.city === 'string' && [...doc.city].length <= 10);
    assert.equal(r.text.format.type, 'json_schema');
  }
});

test('refusals name the field: other part, item and tool types, tool_choice, text formats; keys apply', async () => {
  const expect = async (params, param, message) => {
    await assert.rejects(client.responses.create({ model: 'dsv4', input: 'x', max_output_tokens: 2, ...params }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.type, 'invalid_request_error');
      assert.equal(e.param, param);
      assert.match(e.message, message);
      return true;
    });
  };
  await expect({ input: [{ role: 'user', content: [{ type: 'input_text', text: 'What is this?' },
                                                   { type: 'input_image', image_url: 'https://example.com/a.png' }] }] },
               'input', /input\[0\]\.content\[1\]: content parts of type 'input_image' are not supported/);
  await expect({ input: [{ type: 'web_search_call', id: 'ws_1', status: 'completed' }] }, 'input',
               /input\[0\]: items of type 'web_search_call' are not supported/);
  await expect({ input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input', /by reference/);
  await expect({ input: [] }, 'input', /non-empty/);
  await expect({ input: undefined }, 'input', /'input' is required/);
  await expect({ tools: [{ type: 'web_search' }] }, 'tools', /tools\[0\]: tools of type 'web_search' are not available/);
  await expect({ tool_choice: 'required', tools }, 'tool_choice', /auto/);
  await expect({ text: { format: { type: 'xml' } } }, 'response_format', /json_object or json_schema/);
  await expect({ reasoning: { effort: 'extreme' } }, 'reasoning', /reasoning\.effort/);
  await expect({ max_output_tokens: 0 }, 'max_output_tokens', /max_output_tokens/);
  await expect({ background: true }, 'background', /background/);
  await expect({ instructions: 7 }, 'instructions', /string/);
  const wrong = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(wrong.responses.create({ model: 'dsv4', input: 'x' }), (e) => e.status === 401);
  await assert.rejects(wrong.responses.retrieve('resp_x'), (e) => e.status === 401);
});
