'use strict';

const { baseUrl, withId, SAMPLE_DECISION, DECISION_FIELDS } = require('../lib');

// Pause the Zap: send the action to the connector with Zapier's callback URL; reviewers decide;
// the connector POSTs the decision to that URL and the Zap goes on with it (performResume).
const perform = async (z, bundle) => {
  if (bundle.meta && bundle.meta.isLoadingSample) {
    // "Test step" in the Zap editor: answer with a sample instead of pausing for a person.
    return { ...SAMPLE_DECISION };
  }
  const input = bundle.inputData;
  const response = await z.request({
    method: 'POST',
    url: `${baseUrl(bundle)}/zapier/${encodeURIComponent(input.flow)}`,
    body: {
      callback_url: z.generateCallbackUrl(),
      title: input.title,
      summary: input.summary,
      action: input.action || {},
      context: input.context,
      idempotency_key: input.idempotency_key,
      requested_by: input.requested_by,
    },
  });
  return { id: response.data.id, run_id: response.data.id, flow: input.flow, status: 'pending' };
};

// The connector POSTed the decision to the callback URL: it becomes this step's output.
const performResume = async (z, bundle) => withId({ ...bundle.outputData, ...bundle.cleanedRequest });

module.exports = {
  key: 'request_approval',
  noun: 'Approval',
  display: {
    label: 'Request Approval',
    description:
      'Pauses the Zap until a reviewer approves, edits or rejects the action, then continues with the decision.',
  },
  operation: {
    inputFields: [
      {
        key: 'flow',
        label: 'Flow',
        required: true,
        helpText:
          'The flow name from the connector configuration (e.g. `refund`): it says who reviews and how long to wait (30 days at most).',
      },
      { key: 'title', label: 'Title', helpText: 'What the reviewer sees first.' },
      { key: 'summary', label: 'Summary', type: 'text' },
      {
        key: 'action',
        label: 'Action',
        dict: true,
        required: true,
        helpText:
          'The fields of the action waiting for approval. Reviewers may edit those the flow lists as `editable`; the decision carries the final values.',
      },
      { key: 'context', label: 'Context', dict: true, helpText: 'Shown to the reviewer, never edited.' },
      {
        key: 'idempotency_key',
        label: 'Idempotency Key',
        helpText: 'Optional. A replay with the same key waits on the same run.',
      },
      { key: 'requested_by', label: 'Requested By' },
    ],
    perform,
    performResume,
    sample: SAMPLE_DECISION,
    outputFields: [...DECISION_FIELDS, { key: 'status', label: 'Status' }],
  },
};
