'use strict';

// Starts a real hitl-connector (the repository's .venv) on a free port for the whole test run.

const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const API_KEY = 'zapier-test-key';

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

const config = (port, dir) => `
public_url = "http://127.0.0.1:${port}"
data_dir = ${JSON.stringify(path.join(dir, 'var'))}
api_keys = ["${API_KEY}"]
resume_allow = ["127.0.0.1/32"]
retry_base_delay = "0.05s"
log_level = "WARNING"

[flows.refund]
title = "Refund"
reviewers = [{ email = "ann@example.com", name = "Ann" }]
timeout = "1h"
editable = ["amount"]
zapier = true

[flows.publish]
title = "Publish"
reviewers = [{ email = "ann@example.com", name = "Ann" }]
timeout = "1h"
zapier = true
`;

const waitUntilHealthy = async (url, child, logFile) => {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      break;
    }
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) {
        return;
      }
    } catch (err) {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`the connector did not start:\n${fs.readFileSync(logFile, 'utf8')}`);
};

module.exports = async () => {
  const bin = process.env.HITL_CONNECTOR_BIN || path.join(REPO, '.venv', 'bin', 'hitl-connector');
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} not found: run "make test" at the repository root first`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hitl-zapier-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const configFile = path.join(dir, 'connector.toml');
  fs.writeFileSync(configFile, config(port, dir));
  // CONNECTOR_* variables would override the file: the test connector must use only the file.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('CONNECTOR_')),
  );
  const logFile = path.join(dir, 'connector.log');
  const log = fs.openSync(logFile, 'a');
  const child = spawn(bin, ['serve', '--config', configFile, '--port', String(port)], {
    env,
    stdio: ['ignore', log, log],
  });
  await waitUntilHealthy(url, child, logFile);
  process.env.HITL_TEST_URL = url;
  process.env.HITL_TEST_KEY = API_KEY;
  globalThis.__HITL_CONNECTOR__ = { child, dir, log };
};
