'use strict';

/** Every request carries the API key. */
const addApiKey = (request, z, bundle) => {
  if (bundle.authData && bundle.authData.api_key) {
    request.headers = request.headers || {};
    request.headers['X-API-Key'] = bundle.authData.api_key;
  }
  return request;
};

/** Turn the connector's error body `{"ok": false, "error": …}` into a readable Zapier error. */
const explainErrors = (response, z) => {
  if (response.status < 400 || response.skipThrowForStatus) {
    return response;
  }
  let message = `the connector answered HTTP ${response.status}`;
  try {
    const body = JSON.parse(response.content);
    if (body && body.error) {
      message = body.error;
    }
  } catch (err) {
    // not JSON: keep the status line
  }
  if (response.status === 401) {
    throw new z.errors.Error(
      'The API key was refused: check it against api_keys in the connector configuration.',
      'AuthenticationError',
      401,
    );
  }
  throw new z.errors.Error(message, 'ConnectorError', response.status);
};

module.exports = { addApiKey, explainErrors };
