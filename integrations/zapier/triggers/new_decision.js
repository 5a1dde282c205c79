'use strict';

const { baseUrl, withId, SAMPLE_DECISION, DECISION_FIELDS } = require('../lib');

// A REST hook: the connector POSTs every decision to the subscribed Zap's target URL.
const performSubscribe = async (z, bundle) => {
  const response = await z.request({
    method: 'POST',
    url: `${baseUrl(bundle)}/zapier/subscriptions`,
    body: { target_url: bundle.targetUrl, flow: bundle.inputData.flow || undefined },
  });
  return response.data; // {"id": …}, kept by Zapier as bundle.subscribeData
};

const performUnsubscribe = async (z, bundle) => {
  const id = bundle.subscribeData && bundle.subscribeData.id;
  if (!id) {
    return {};
  }
  const response = await z.request({
    method: 'DELETE',
    url: `${baseUrl(bundle)}/zapier/subscriptions/${encodeURIComponent(id)}`,
    skipThrowForStatus: true,
  });
  if (response.status !== 204 && response.status !== 404) {
    // 404: already gone (for instance removed after a 410), which is what we wanted.
    response.throwForStatus();
  }
  return { id, unsubscribed: true };
};

// One hook call carries one decision payload.
const perform = async (z, bundle) => [withId(bundle.cleanedRequest)];

// Recent decisions, newest first, for the Zap editor's sample and for Zapier's de-duplication.
const performList = async (z, bundle) => {
  const response = await z.request({
    url: `${baseUrl(bundle)}/zapier/decisions`,
    params: bundle.inputData.flow ? { flow: bundle.inputData.flow, limit: 10 } : { limit: 10 },
  });
  return response.data.map(withId);
};

module.exports = {
  key: 'new_decision',
  noun: 'Decision',
  display: {
    label: 'New Decision',
    description: 'Triggers when a run is decided: approved, rejected or cancelled.',
  },
  operation: {
    type: 'hook',
    inputFields: [
      {
        key: 'flow',
        label: 'Flow',
        required: false,
        helpText: 'Only decisions of this flow. Leave empty for every flow.',
      },
    ],
    performSubscribe,
    performUnsubscribe,
    perform,
    performList,
    sample: SAMPLE_DECISION,
    outputFields: DECISION_FIELDS,
  },
};
