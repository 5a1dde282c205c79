'use strict';

const zapier = require('zapier-platform-core');

const App = require('../index');
const { authData, pauseRun } = require('./helpers');

const appTester = zapier.createAppTester(App);
const search = App.searches.find_run.operation;

test('finds a run by its id', async () => {
  const runId = await pauseRun('refund', { title: 'Find me', order: '11', amount: '3' });
  const found = await appTester(search.perform, { authData: authData(), inputData: { run_id: runId } });
  expect(found).toHaveLength(1);
  expect(found[0]).toMatchObject({
    id: runId,
    flow: 'refund',
    status: 'pending',
    title: 'Find me',
    action: { order: '11', amount: '3' },
  });
});

test('an unknown id finds nothing instead of failing', async () => {
  const found = await appTester(search.perform, {
    authData: authData(),
    inputData: { run_id: '01J0000000000000000000NONE' },
  });
  expect(found).toEqual([]);
});
