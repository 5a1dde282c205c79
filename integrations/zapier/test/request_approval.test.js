'use strict';

const zapier = require('zapier-platform-core');
const createLambdaHandler = require('zapier-platform-core/src/tools/create-lambda-handler');

const App = require('../index');
const { api, authData, connectorUrl, decide, reviewPath, startTarget } = require('./helpers');

const appTester = zapier.createAppTester(App);
const create = App.creates.request_approval.operation;
// The Lambda handler names operations by their path in the app definition.
const PERFORM = 'creates.request_approval.operation.perform';

// createAppTester always hands out Zapier's own echo URL as the callback; to receive the
// callback locally, run the same Lambda handler with the callback URL the platform would pass.
const performWithCallback = (bundle, callbackUrl) =>
  createLambdaHandler(App)({ command: 'execute', method: PERFORM, bundle, callback_url: callbackUrl });

const bundleFor = (title, action, extra = {}) => ({
  authData: authData(),
  inputData: {
    flow: 'refund',
    title,
    summary: 'The customer asked twice',
    action,
    context: { customer: 'ACME', orders: '12' },
    requested_by: 'zap@example.com',
    ...extra,
  },
  meta: { isLoadingSample: false },
});

let target;

beforeEach(async () => {
  target = await startTarget();
});

afterEach(async () => {
  await target.close();
});

test('loading a sample answers at once and creates no run', async () => {
  const before = (await api('GET', '/v1/runs?limit=200')).data.runs.length;
  const bundle = bundleFor('Sample only', { order: '1' });
  bundle.meta.isLoadingSample = true;
  const result = await appTester(create.perform, bundle);
  expect(result.decision).toBe('approved');
  expect(result.id).toBe(result.run_id);
  expect((await api('GET', '/v1/runs?limit=200')).data.runs.length).toBe(before);
});

test('approving on the review page with an edit resumes the Zap with the decision', async () => {
  const title = 'Refund order 1042 via the review page';
  const out = await performWithCallback(
    bundleFor(title, { order: '1042', amount: '120' }),
    `${target.url}/hooks/callback/abc?secret=1`,
  );
  expect(out.status).toBe('CALLBACK'); // the Zap pauses here
  const runId = out.results.id;
  expect(out.results).toEqual({ id: runId, run_id: runId, flow: 'refund', status: 'pending' });

  const run = (await api('GET', `/v1/runs/${runId}`)).data;
  expect(run.status).toBe('pending');
  expect(run.title).toBe(title);
  expect(run.action).toEqual({ order: '1042', amount: '120' });
  expect(run.context).toEqual({ customer: 'ACME', orders: '12' });

  // The reviewer opens the emailed link and presses Approve with a smaller amount.
  const path = await reviewPath(title);
  const page = await fetch(`${connectorUrl()}${path}`);
  expect(page.status).toBe(200);
  const decided = await fetch(`${connectorUrl()}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ choice: 'approve', 'field.amount': '90', comment: 'Partial' }),
  });
  expect(decided.status).toBe(200);

  const [call] = await target.waitFor(1);
  expect(call.method).toBe('POST');
  expect(call.path).toBe('/hooks/callback/abc?secret=1');
  expect(call.headers['content-type']).toBe('application/json');
  const body = JSON.parse(call.body);
  expect(body).toMatchObject({
    run_id: runId,
    flow: 'refund',
    decision: 'approved',
    approved: true,
    action: { order: '1042', amount: '90' },
    edited: true,
    changes: { amount: { from: '120', to: '90' } },
    comment: 'Partial',
    reviewer: { id: 'ann@example.com', name: 'Ann', channel: 'email' },
    decided_by: 'reviewer',
  });

  // Zapier hands the callback's JSON body to performResume as bundle.cleanedRequest.
  const resumed = await appTester(create.performResume, {
    authData: authData(),
    inputData: bundleFor(title, {}).inputData,
    outputData: out.results,
    cleanedRequest: body,
  });
  expect(resumed).toEqual({ ...body, id: runId, status: 'pending' });
  expect(resumed.approved).toBe(true);
  expect(resumed.action.amount).toBe('90');
});

test('a rejection through the API reaches the callback and the resumed step', async () => {
  const out = await performWithCallback(
    bundleFor('Refund order 7 rejected by API', { order: '7', amount: '5000' }),
    `${target.url}/callback/reject`,
  );
  const runId = out.results.id;
  await decide(runId, 'reject', { comment: 'Too much' });
  const [call] = await target.waitFor(1);
  const body = JSON.parse(call.body);
  expect(body).toMatchObject({
    run_id: runId,
    decision: 'rejected',
    approved: false,
    action: { order: '7', amount: '5000' },
    comment: 'Too much',
    decided_by: 'api',
  });
  const resumed = await appTester(create.performResume, { outputData: out.results, cleanedRequest: body });
  expect(resumed.decision).toBe('rejected');
  expect(resumed.id).toBe(runId);
});

test('the same idempotency key waits on the same run', async () => {
  const bundle = bundleFor('Idempotent refund', { order: '8' }, { idempotency_key: 'zap-run-8' });
  const first = await performWithCallback(bundle, `${target.url}/callback/8`);
  const second = await performWithCallback(bundle, `${target.url}/callback/8`);
  expect(second.results.id).toBe(first.results.id);
});

test('a connector error is shown with its own message', async () => {
  const bundle = bundleFor('Unknown flow', { order: '9' }, { flow: 'no-such-flow' });
  await expect(appTester(create.perform, bundle)).rejects.toThrow(/unknown flow 'no-such-flow'/);
});
