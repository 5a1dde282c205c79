'use strict';

const fs = require('fs');

module.exports = async () => {
  const started = globalThis.__HITL_CONNECTOR__;
  if (!started) {
    return;
  }
  const { child, dir, log } = started;
  if (child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
  }
  fs.closeSync(log);
  fs.rmSync(dir, { recursive: true, force: true });
};
