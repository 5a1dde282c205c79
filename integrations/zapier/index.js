'use strict';

const authentication = require('./authentication');
const { addApiKey, explainErrors } = require('./middleware');
const requestApproval = require('./creates/request_approval');
const newDecision = require('./triggers/new_decision');
const findRun = require('./searches/find_run');

module.exports = {
  version: require('./package.json').version,
  platformVersion: require('zapier-platform-core').version,

  authentication,
  beforeRequest: [addApiKey],
  afterResponse: [explainErrors],

  triggers: { [newDecision.key]: newDecision },
  searches: { [findRun.key]: findRun },
  creates: { [requestApproval.key]: requestApproval },
};
