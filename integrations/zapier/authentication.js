'use strict';

const { baseUrl } = require('./lib');

// Custom auth: the connector's public URL and one of its API keys (sent as X-API-Key).
module.exports = {
  type: 'custom',
  fields: [
    {
      key: 'connector_url',
      label: 'Connector URL',
      type: 'string',
      required: true,
      helpText:
        'The public URL of your hitl-connector (its `public_url`), e.g. `https://approvals.example.com`.',
    },
    {
      key: 'api_key',
      label: 'API Key',
      type: 'password',
      required: true,
      helpText: 'One of the `api_keys` in the connector configuration.',
    },
  ],
  // An authenticated call the app itself uses: it fails with 401 when the key is wrong.
  test: async (z, bundle) => {
    const response = await z.request({
      url: `${baseUrl(bundle)}/zapier/decisions`,
      params: { limit: 1 },
    });
    return { connector_url: baseUrl(bundle), recent_decisions: response.data.length };
  },
  connectionLabel: '{{bundle.authData.connector_url}}',
};
