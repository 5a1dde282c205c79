'use strict';

// Helpers shared by the app's operations.

/** The connector's base URL from the connection, without a trailing slash. */
const baseUrl = (bundle) =>
  String(bundle.authData.connector_url || '')
    .trim()
    .replace(/\/+$/, '');

/** Zapier de-duplicates trigger items by `id`: a decision's id is its run's id. */
const withId = (decision) => ({ id: decision.run_id, ...decision });

/** What every resume target receives, as Zapier shows it before a real decision exists. */
const SAMPLE_DECISION = {
  id: '01JD8Z6Q3X8Y2T5R4W7V9N0M1K',
  run_id: '01JD8Z6Q3X8Y2T5R4W7V9N0M1K',
  flow: 'refund',
  decision: 'approved',
  approved: true,
  action: { order: '1042', amount: '90' },
  edited: true,
  changes: { amount: { from: '120', to: '90' } },
  comment: 'Partial refund only',
  reviewer: { id: 'ann@example.com', name: 'Ann', channel: 'email' },
  decided_at: '2026-11-25T10:00:00Z',
  decided_by: 'reviewer',
};

/** Output fields with friendly labels for the decision payload. */
const DECISION_FIELDS = [
  { key: 'run_id', label: 'Run ID' },
  { key: 'flow', label: 'Flow' },
  { key: 'decision', label: 'Decision (approved, rejected or cancelled)' },
  { key: 'approved', label: 'Approved', type: 'boolean' },
  { key: 'edited', label: 'Edited by the reviewer', type: 'boolean' },
  { key: 'comment', label: 'Reviewer comment' },
  { key: 'reviewer__name', label: 'Reviewer name' },
  { key: 'reviewer__id', label: 'Reviewer ID' },
  { key: 'decided_at', label: 'Decided at', type: 'datetime' },
  { key: 'decided_by', label: 'Decided by (reviewer, policy, timeout or api)' },
];

module.exports = { baseUrl, withId, SAMPLE_DECISION, DECISION_FIELDS };
