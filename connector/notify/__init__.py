"""Notifiers: how reviewers hear about a run (email, Telegram)."""
