'use strict';

const { baseUrl } = require('../lib');

const perform = async (z, bundle) => {
  const response = await z.request({
    url: `${baseUrl(bundle)}/v1/runs/${encodeURIComponent(bundle.inputData.run_id)}`,
    skipThrowForStatus: true,
  });
  if (response.status === 404) {
    return []; // "nothing found" is an answer for a search, not an error
  }
  response.throwForStatus();
  return [response.data];
};

module.exports = {
  key: 'find_run',
  noun: 'Run',
  display: {
    label: 'Find Run',
    description: 'Finds an approval run by its ID: its status, action, decision and delivery.',
  },
  operation: {
    inputFields: [{ key: 'run_id', label: 'Run ID', required: true }],
    perform,
    sample: {
      id: '01JD8Z6Q3X8Y2T5R4W7V9N0M1K',
      flow: 'refund',
      status: 'pending',
      title: 'Refund order 1042',
      action: { order: '1042', amount: '120' },
      created_at: '2026-11-25T09:00:00Z',
      deadline: '2026-11-26T09:00:00Z',
    },
    outputFields: [
      { key: 'id', label: 'Run ID' },
      { key: 'flow', label: 'Flow' },
      { key: 'status', label: 'Status (pending, approved, rejected or cancelled)' },
      { key: 'title', label: 'Title' },
      { key: 'deadline', label: 'Deadline', type: 'datetime' },
      { key: 'decision__decision', label: 'Decision' },
      { key: 'delivery__status', label: 'Delivery status' },
    ],
  },
};
