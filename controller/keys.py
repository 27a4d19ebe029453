"""The application's state keys (aiohttp AppKey / request keys). No module globals."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from controller.checks import CheckService
from controller.diagnosis import DiagnosisService
from controller.gateway import AgentGateway
from controller.hub import Hub
from controller.live.service import LiveService
from controller.scheduler import Scheduler
from controller.settings import ControllerSettings
from controller.store.db import Database

SETTINGS_KEY = web.AppKey("settings", ControllerSettings)
DB_KEY = web.AppKey("db", Database)
CLOCK_KEY: web.AppKey[Callable[[], dt.datetime]] = web.AppKey("clock")
# The agent gateway in use (controller.gateway.AgentGateway); the hub replaces the
# default OfflineGateway by setting this key before the app starts.
GATEWAY_KEY = web.AppKey("gateway", AgentGateway)
# The object the hub reports session results to (controller.checks.CheckService).
RESULTS_KEY = web.AppKey("results", CheckService)
# Which side (issue 12): each side of a degraded check or test tested against the reference.
DIAGNOSIS_KEY = web.AppKey("vks_diagnosis", DiagnosisService)
SCHEDULER_KEY = web.AppKey("scheduler", Scheduler)
METRICS_KEY = web.AppKey("metrics", CollectorRegistry)
# The agent hub (controller.hub), when this app serves agents.
HUB_KEY = web.AppKey("vks_agent_hub", Hub)
# Live monitoring during hearings (controller.live, rule 22).
LIVE_KEY = web.AppKey("vks_live", LiveService)
# The authenticated user of a request (a dict: id, name, role, scope).
USER_KEY = web.RequestKey("vks_user", dict)
