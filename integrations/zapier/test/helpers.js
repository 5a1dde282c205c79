'use strict';

// What the tests share: the connector started by global-setup.js, a local target server that
// records what the connector POSTs to it, and polling (never fixed sleeps).

const http = require('http');

const connectorUrl = () => process.env.HITL_TEST_URL;
const apiKey = () => process.env.HITL_TEST_KEY;
const authData = () => ({ connector_url: `${connectorUrl()}/`, api_key: apiKey() });

/** Call the connector's API directly, as an operator or a Webhooks by Zapier step would. */
const api = async (method, path, body) => {
  const response = await fetch(`${connectorUrl()}${path}`, {
    method,
    headers: { 'X-API-Key': apiKey(), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, data: text ? JSON.parse(text) : null };
};

/** Poll `check` until it returns something truthy. */
const eventually = async (check, timeout = 10000) => {
  const deadline = Date.now() + timeout;
  for (;;) {
    const result = await check();
    if (result) {
      return result;
    }
    if (Date.now() > deadline) {
      throw new Error('timed out waiting');
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

/** A real HTTP server on 127.0.0.1 recording every request; answers 200 (or queued statuses). */
const startTarget = async () => {
  const received = [];
  const statuses = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({ method: req.method, path: req.url, headers: req.headers, body });
      res.writeHead(statuses.shift() || 200, { 'Content-Type': 'application/json' });
      res.end('{"status": "success"}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    received,
    statuses,
    waitFor: (count) => eventually(() => received.length >= count && received),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
};

/** A run created the way "Webhooks by Zapier" would, answering the Catch Hook shape. */
const pauseRun = async (flow, fields) => {
  const { status, data } = await api('POST', `/zapier/${flow}`, fields);
  if (status !== 200) {
    throw new Error(`pausing failed: ${JSON.stringify(data)}`);
  }
  return data.id;
};

/** An operator's decision through the API. */
const decide = async (runId, decision, extra = {}) => {
  const { status, data } = await api('POST', `/v1/runs/${runId}/decision`, {
    decision,
    reviewer: 'ann@example.com',
    ...extra,
  });
  if (status !== 200) {
    throw new Error(`deciding failed: ${JSON.stringify(data)}`);
  }
  return data;
};

/** The reviewer's review page path for the run titled `title`, from the dev mailbox. */
const reviewPath = (title) =>
  eventually(async () => {
    const html = await (await fetch(`${connectorUrl()}/dev/mailbox`)).text();
    const card = html.split('<div class="card">').find((part) => part.includes(title));
    const match = card && card.match(/\/r\/[A-Za-z0-9_.-]+/);
    return match && match[0];
  });

module.exports = {
  connectorUrl,
  apiKey,
  authData,
  api,
  eventually,
  startTarget,
  pauseRun,
  decide,
  reviewPath,
};
