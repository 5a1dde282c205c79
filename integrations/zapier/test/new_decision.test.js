'use strict';

const zapier = require('zapier-platform-core');

const App = require('../index');
const { api, authData, decide, eventually, pauseRun, startTarget } = require('./helpers');

const appTester = zapier.createAppTester(App);
const trigger = App.triggers.new_decision.operation;

let target;

beforeEach(async () => {
  target = await startTarget();
});

afterEach(async () => {
  await target.close();
});

test('subscribe, receive a decision, list it, unsubscribe', async () => {
  const subscribeData = await appTester(trigger.performSubscribe, {
    authData: authData(),
    inputData: { flow: 'publish' },
    targetUrl: `${target.url}/hooks/standard/1/abc`,
  });
  expect(Object.keys(subscribeData)).toEqual(['id']);

  const runId = await pauseRun('publish', { title: 'Post to the blog', post: 'Hello world' });
  await decide(runId, 'approve', { comment: 'Ship it' });
  const [call] = await target.waitFor(1);
  expect(call.path).toBe('/hooks/standard/1/abc');
  expect(call.headers['webhook-id']).toMatch(/^msg_/);
  const body = JSON.parse(call.body);
  expect(body).toMatchObject({ run_id: runId, flow: 'publish', decision: 'approved' });

  // Zapier hands the hook's JSON body to perform as bundle.cleanedRequest.
  const items = await appTester(trigger.perform, { authData: authData(), cleanedRequest: body });
  expect(items).toEqual([{ ...body, id: runId }]);

  const listed = await appTester(trigger.performList, {
    authData: authData(),
    inputData: { flow: 'publish' },
  });
  expect(listed[0]).toEqual({ ...body, id: runId });
  expect(listed.every((item) => item.flow === 'publish')).toBe(true);

  // Decisions of another flow do not reach a subscription to "publish".
  const other = await pauseRun('refund', { title: 'Other flow', order: '3' });
  await decide(other, 'reject');

  const unsubscribed = await appTester(trigger.performUnsubscribe, {
    authData: authData(),
    subscribeData,
  });
  expect(unsubscribed).toEqual({ id: subscribeData.id, unsubscribed: true });

  // A second subscription (to every flow) proves the next decision was fanned out, and that
  // the removed subscription was not among its targets.
  const sentinel = await appTester(trigger.performSubscribe, {
    authData: authData(),
    inputData: {},
    targetUrl: `${target.url}/sentinel`,
  });
  const later = await pauseRun('publish', { title: 'After unsubscribing', post: 'Bye' });
  await decide(later, 'approve');
  const calls = await target.waitFor(2);
  expect(calls.map((c) => c.path)).toEqual(['/hooks/standard/1/abc', '/sentinel']);
  expect(JSON.parse(calls[1].body).run_id).toBe(later);
  await appTester(trigger.performUnsubscribe, { authData: authData(), subscribeData: sentinel });
});

test('unsubscribing twice is not an error', async () => {
  const subscribeData = await appTester(trigger.performSubscribe, {
    authData: authData(),
    inputData: {},
    targetUrl: `${target.url}/twice`,
  });
  const bundle = { authData: authData(), subscribeData };
  await appTester(trigger.performUnsubscribe, bundle);
  await expect(appTester(trigger.performUnsubscribe, bundle)).resolves.toEqual({
    id: subscribeData.id,
    unsubscribed: true,
  });
});

test('a target that answers 410 Gone loses its subscription', async () => {
  target.statuses.push(410);
  const subscribeData = await appTester(trigger.performSubscribe, {
    authData: authData(),
    inputData: { flow: 'publish' },
    targetUrl: `${target.url}/gone`,
  });
  await decide(await pauseRun('publish', { title: 'Gone target', post: 'x' }), 'approve');
  await target.waitFor(1);
  await eventually(
    async () => (await api('DELETE', `/zapier/subscriptions/${subscribeData.id}`)).status === 404,
  );
});
