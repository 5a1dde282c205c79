"""The Telegram channel: prompts with inline buttons, decisions by button press, both update modes.

Modules: `api` (a small Bot API client), `limits` (token buckets), `messages` (HTML and keyboards),
`channel` (the Channel: prompt and edit jobs), `updates` (button presses and commands), `poller`
(getUpdates long polling).
"""
