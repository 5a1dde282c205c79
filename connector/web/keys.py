"""Typed application keys shared by the app factory and the handlers."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import jinja2
from aiohttp import web

from ..config import Settings
from ..jobs import JobRunner
from ..metrics import Metrics
from ..service import RunService
from ..store import Store
from ..telegram.channel import TelegramChannel

settings_key = web.AppKey("settings", Settings)
store_key = web.AppKey("store", Store)
service_key = web.AppKey("service", RunService)
runner_key = web.AppKey("runner", JobRunner)
templates_key = web.AppKey("templates", jinja2.Environment)
metrics_key = web.AppKey("metrics", Metrics)
inbox_key: web.AppKey[deque[Any]] = web.AppKey("inbox")
clock_key: web.AppKey[Callable[[], float]] = web.AppKey("clock")
telegram_key = web.AppKey("telegram", TelegramChannel)
