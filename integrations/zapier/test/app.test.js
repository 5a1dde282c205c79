'use strict';

const zapier = require('zapier-platform-core');
const { prepareApp, validateApp } = require('zapier-platform-core/src/tools/schema');

const App = require('../index');
const { authData, connectorUrl } = require('./helpers');

const appTester = zapier.createAppTester(App);

describe('the app definition', () => {
  test('passes the Zapier platform schema', () => {
    expect(validateApp(prepareApp(App))).toEqual([]);
  });

  test('declares the platform version it is built with', () => {
    expect(App.platformVersion).toBe(zapier.version);
    expect(App.platformVersion).toMatch(/^19\./);
  });
});

describe('authentication', () => {
  test('the connection test passes with a valid API key', async () => {
    const result = await appTester(App.authentication.test, { authData: authData() });
    expect(result.connector_url).toBe(connectorUrl());
    expect(typeof result.recent_decisions).toBe('number');
  });

  test('the connection test fails with a clear message for a wrong key', async () => {
    const bundle = { authData: { ...authData(), api_key: 'wrong' } };
    await expect(appTester(App.authentication.test, bundle)).rejects.toThrow(/API key was refused/);
  });
});
