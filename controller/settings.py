"""The controller's settings (a YAML file such as configs/controller.yaml), validated.

Loaded with the shared loader (contract.configfile): errors name the file and the
key; `VKS_CONTROLLER__<KEY>=value` environment variables override the file.
Every key has its default here, in the models, so `vks-controller migrate --db URL`
needs no file and an installed controller reads nothing from a source checkout:
the file is `--config`, else `$VKS_CONTROLLER_CONFIG`, else none.
`configs/controller.yaml` is the example an operator copies (every key, commented).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator

from contract import configfile
from controller import credentials
from controller.auth import AuthSettings
from controller.selfcheck.settings import SelfCheckSettings

DEFAULT_PATH_ENV = "VKS_CONTROLLER_CONFIG"


class Strict(BaseModel):
    """A settings section: an unknown key is an error (a typo is not silently ignored)."""
    model_config = ConfigDict(extra="forbid")


class SchedulerSettings(Strict):
    """The job scheduler: how often it looks, how long a claim lasts, how often a job is retried."""
    # How often the loop looks for due jobs (seconds).
    poll_s: float = Field(default=1.0, gt=0, le=60)
    # A claimed job is the claimer's for this long; after that another
    # controller (or this one after a restart) takes it over.
    lease_s: float = Field(default=60.0, ge=1, le=3600)
    # Jobs claimed per round.
    batch: int = Field(default=20, ge=1, le=1000)
    # A session that was started but reported nothing after its duration plus
    # this grace is treated as failed (and retried while before the deadline).
    result_grace_s: float = Field(default=120.0, ge=1)
    # While the agent is not connected, retry starting a check this often.
    retry_s: float = Field(default=30.0, ge=1)
    # A job that raised this many times is marked failed.
    max_attempts: int = Field(default=20, ge=1)


class CheckSettings(Strict):
    """What the test session and the pre-connect check send (agent profiles)."""
    test_profile: str = "hearing"
    test_duration_s: float = Field(default=30.0, gt=0, le=600)
    preconnect_profile: str = "hearing"
    preconnect_duration_s: float = Field(default=15.0, gt=0, le=600)
    # The rule-13 test also ramps each direction to what it carries (agent/capacity.py; issue 12),
    # up to ~30 s after its media (inside scheduler.result_grace_s). Never during monitoring.
    test_capacity: bool = True


class DiagnosisSettings(Strict):
    """Which side (issue 12): a degraded or failed check or test tests each side against a reference
    terminal in the data centre (controller.diagnosis)."""
    enabled: bool = True
    # The reference terminal's id; None: the first terminal (by id) of a datacentre institution online.
    reference_terminal: str | None = None
    # A side session that reported nothing after its duration plus this grace counts as untested.
    result_grace_s: float = Field(default=60.0, ge=1)
    # The side sessions' agent profile and length (None: checks.test_profile, checks.test_duration_s).
    profile: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,32}$")
    duration_s: float | None = Field(default=None, gt=0, le=600)
    # Diagnoses run at once per reference terminal (each is two sessions at the reference; the
    # agent answers session.max_sessions, default 2); the others wait their turn.
    max_concurrent: int = Field(default=1, ge=1, le=16)
    # Diagnoses that may wait their turn (on this controller); beyond, the finding is reference_unavailable.
    max_waiting: int = Field(default=20, ge=0, le=1000)


class LiveSettings(Strict):
    """Rule 22: live monitoring during a hearing, the detector and the reconnect flow
    (controller.live, controller.detector)."""
    enabled: bool = True
    # The agents' media profile of the monitoring session and the thresholds it is judged by.
    profile: str = "monitor"
    thresholds_profile: str = "monitor"
    # Start monitoring once the pre-connect check passed (else only on POST .../start).
    start_after_preconnect: bool = True
    # Detector: a break when `stall_s` consecutive seconds had no packets, or `unusable_n` of the
    # last `window_s` seconds were unusable, or no interval arrived for `silent_s`.
    stall_s: int = Field(default=2, ge=1, le=60)
    window_s: int = Field(default=6, ge=1, le=120)
    unusable_n: int = Field(default=4, ge=1, le=120)
    silent_s: float = Field(default=3.0, gt=0, le=120)
    # ... or this many seconds in a row without usable video (seconds unusable only for their
    # frame rate or freeze, while packets flow, count here and not in the window above). Long:
    # aiortc's receiver recovers from a packet lost for good only when its jitter buffer
    # overflows (~5 s at the monitor's rate) and a key frame follows; two such cycles in a row
    # happen under 0.5 % loss (benchmarks/breaks.py). A terminal's own video recovers sooner.
    freeze_break_s: int = Field(default=30, ge=1, le=600)
    # ... or `dropouts_n` dropouts (runs of seconds stalled or ending a gap in packet arrival of
    # `dropout_ms` or more) within the newest `dropouts_window_s` seconds: interruptions that recur
    # so that speech cannot be followed (controller/detector.py says why 3 in 30 s).
    dropout_ms: float = Field(default=1000.0, gt=0, le=10000)
    dropouts_n: int = Field(default=3, ge=2, le=60)
    dropouts_window_s: int = Field(default=30, ge=2, le=300)
    # Ready to resume after this many consecutive usable (good or degraded) seconds.
    resume_good_s: int = Field(default=8, ge=1, le=600)
    # A new monitoring session must report its first second within this long (it connects).
    start_grace_s: float = Field(default=8.0, gt=0, le=120)
    # A reconnect attempt that has reported nothing within this long is abandoned.
    attempt_grace_s: float = Field(default=4.0, gt=0, le=120)
    # Backoff between reconnect attempts: initial * 2^(n-1), at most max, +- jitter (a ratio).
    # An attempt costs two signalling messages and a few STUN packets; a small cap keeps the
    # time from a restored link to a connected session short (ICE checks of an attempt are sent
    # at 0, 0.5, 1.5, 3.5 s: the cap bounds the gap after the last one).
    backoff_initial_s: float = Field(default=0.5, ge=0, le=60)
    backoff_max_s: float = Field(default=1.5, ge=0, le=600)
    backoff_jitter: float = Field(default=0.2, ge=0, le=1)
    # Not ready to resume this long after the break: escalate (rules 16, 17); attempts go on.
    reconnect_timeout_s: float = Field(default=120.0, gt=0)
    # Monitoring goes on this long after the planned end unless the secretary ends the hearing.
    end_margin_s: float = Field(default=900.0, ge=0)
    # A monitoring session is replaced (new session id) this long before its planned end.
    renew_before_s: float = Field(default=30.0, ge=1)
    # The flow's loop period, and how often it looks at the database for hearings to start,
    # ended ones and suspensions (rule 24).
    tick_s: float = Field(default=0.25, gt=0, le=5)
    reconcile_s: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _window(self):
        if self.unusable_n > self.window_s:
            raise ValueError(f"unusable_n ({self.unusable_n}) must not exceed window_s ({self.window_s})")
        return self


class AgentLinkSettings(Strict):
    """The agents' link (controller.hub; issue 11): what one terminal may make the controller write."""
    # Records a terminal's reports create in hearings (today: a failed endpoint hook -> a `hook_failed`
    # event) are limited per terminal: a bucket of `events_burst`, refilled at `events_per_minute`.
    # Above it they are dropped and counted (vks_controller_agent_writes_dropped_total{reason=
    # "rate_limited"}); the reports themselves are always stored and acked. Why 60 and 120: the
    # controller fires a terminal's hooks once per break, reconnect attempt and resumption, and
    # attempts come at least ~1.2 s apart (live.backoff_max_s 1.5 s - 20 % jitter), so a terminal
    # whose hook fails every time in a long break reports about 50 a minute - within 60, with a
    # burst of 120 for two hearings' flows at once. A flooding terminal gets 1 a second at most.
    events_per_minute: float = Field(default=60.0, gt=0, le=60_000)
    events_burst: int = Field(default=120, ge=1, le=100_000)


class EscalationSettings(Strict):
    """Rules 16, 17: who is told when a check fails, and when step 2 follows."""
    # Not resolved this long after opening: notify the court / institution
    # organising the VKS (rule 17, step 2).
    step2_after_s: float = Field(default=900.0, ge=1)
    # At step 2, draft the act of technical impossibility (rule 18) when the
    # hearing starts within this many seconds (or has started).
    act_lead_s: float = Field(default=1800.0, ge=0)
    # Extra webhook URLs told at every step (e.g. a duty chat bridge), besides
    # the institutions' contacts.
    webhooks: list[str] = Field(default_factory=list)
    # A notification that could not be delivered is retried with exponential
    # backoff (with jitter) from retry_initial_s up to retry_max_s between tries,
    # at most max_attempts times (the escalation stays visible on the web page).
    retry_initial_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=30, ge=1)
    # One webhook POST may take this long.
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # When set, each webhook carries X-VKS-Signature: sha256=<HMAC-SHA256 of the body
    # with this key>, so a receiver can check it came from this controller. Never logged.
    webhook_secret: SecretStr | None = None
    # ... or the file holding it (first line; a relative name inside $CREDENTIALS_DIRECTORY when
    # systemd gives credentials; the credential `webhook_secret` is used when neither is set).
    webhook_secret_file: Path | None = None
    # The web page's address, for links in the messages (optional).
    page_url: str | None = None


class FreshnessSettings(Strict):
    """Results that stay fresh (issue 12 part 5; rules 13, 14, 16 - controller.freshness)."""
    # A hearing booked further ahead than the window's opening is tested again inside it, hours before
    # the start, at a minute picked by a hash of the hearing's id; [] turns the re-test off.
    retest_window_h: list[float] = Field(default_factory=lambda: [48.0, 24.0])
    # Nightly pair tests in each court's local time ("HH:MM-HH:MM", may cross midnight), spread across
    # it, for every pair with a hearing within horizon_days; null turns them off.
    nightly_window: str | None = "01:00-05:00"
    horizon_days: float = Field(default=7.0, gt=0, le=60)
    skip_tested_h: float = Field(default=20.0, ge=0, le=72)      # a pair tested this recently is skipped
    defer_s: float = Field(default=600.0, ge=1)                    # a terminal in a live hearing: ask again after
    # A failed test (did not connect, or failed its thresholds) is run again after each of these delays
    # before it escalates (test_retries_failed); [] escalates at once. The pre-connect check is not retried.
    retry_delays_min: list[float] = Field(default_factory=lambda: [10.0, 30.0, 90.0])
    # Terminal watch (rule 14): every watch_s (0: off) a terminal offline longer than offline_after_s,
    # or with failing health, with a hearing within watch_horizon_h, opens an escalation.
    watch_s: float = Field(default=60.0, ge=0)
    offline_after_s: float = Field(default=300.0, ge=0)
    watch_horizon_h: float = Field(default=48.0, gt=0, le=24 * 14)

    @field_validator("retest_window_h")
    @classmethod
    def _window_h(cls, v: list[float]) -> list[float]:
        if v and (len(v) != 2 or not v[0] > v[1] >= 0):
            raise ValueError("expected [opens_h, closes_h] hours before the start, opens > closes >= 0, or []")
        return v

    @field_validator("nightly_window")
    @classmethod
    def _nightly(cls, v: str | None) -> str | None:
        if v is not None:
            parse_window(v)
        return v

    @field_validator("retry_delays_min")
    @classmethod
    def _delays(cls, v: list[float]) -> list[float]:
        if any(d <= 0 for d in v) or len(v) > 10:
            raise ValueError("expected at most 10 positive delays in minutes")
        return v


def parse_window(value: str) -> tuple[int, int]:
    """"HH:MM-HH:MM" -> (start, end) in minutes after midnight; the end may be after midnight (a
    window that crosses it) but the two may not be equal."""
    try:
        a, b = value.split("-")
        (h1, m1), (h2, m2) = (map(int, x.strip().split(":")) for x in (a, b))
    except ValueError:
        raise ValueError(f"expected HH:MM-HH:MM, got {value!r}") from None
    if not (0 <= h1 < 24 and 0 <= h2 < 24 and 0 <= m1 < 60 and 0 <= m2 < 60) or (h1, m1) == (h2, m2):
        raise ValueError(f"expected HH:MM-HH:MM with two different times, got {value!r}")
    return h1 * 60 + m1, h2 * 60 + m2


class SmtpSettings(Strict):
    """E-mail for escalations; off while `host` is unset."""
    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    # "starttls" (upgrade a plain connection), "tls" (implicit TLS) or "none" (loopback relays).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None       # never logged
    # ... or the file holding it (as escalation.webhook_secret_file; credential `smtp_password`).
    password_file: Path | None = None
    from_addr: str = "vks-controller@localhost"
    timeout_s: float = Field(default=30.0, gt=0, le=300)


class TlsSettings(Strict):
    """HTTPS and wss:// for the API, the web page and the agents (rules 5, 6; issue 7): the server's
    certificate chain and private key as PEM files. Off while both are unset."""
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both(self):
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file (or neither)")
        for name in ("cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file {str(path)!r}")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class MetricsSettings(Strict):
    """Who may read /metrics: open on the main address by default; a bearer token and/or an address
    of its own (then the main address does not serve it)."""
    # The file whose first line (trimmed) is the token a scrape must send as `Authorization: Bearer`;
    # read once at start. A relative name is inside $CREDENTIALS_DIRECTORY when systemd gives
    # credentials (the credential `metrics_token` is used when this is unset).
    token_file: Path | None = None
    # HOST:PORT of a listener that serves /metrics only (e.g. 127.0.0.1:9464 for a local Prometheus).
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is not None:
            parse_listen(v)
        return v


class HistorySettings(Strict):
    """The history of checks and tests (issue 12: controller.store.history, GET .../history) and
    the last check per pair on /metrics (controller.metrics_history)."""
    # Results older than this many days are deleted (a daily job); GET .../history?days= at most this.
    keep_days: int = Field(default=400, ge=1, le=3660)
    # /metrics shows the last check of each pair checked within this many days ...
    metrics_days: int = Field(default=14, ge=1, le=366)
    # ... at most this many pairs (the most recently checked): the labels stay bounded.
    metrics_max_pairs: int = Field(default=2000, ge=0, le=100_000)


class ControllerSettings(Strict):
    """Every setting of the controller, each with its default."""
    listen: str = "127.0.0.1:8080"
    tls: TlsSettings = Field(default_factory=TlsSettings)
    # Sign-in: the password hash's cost and the limits on guessing (controller.auth.AuthSettings).
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # Reverse proxies (addresses or CIDRs) whose X-Forwarded-For / X-Forwarded-Proto are believed.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # A connection that has not sent a complete request this long after opening (or after its
    # last response) is closed: slow clients (slowloris) cannot hold sockets for ever.
    idle_timeout_s: float = Field(default=75.0, gt=0, le=3600)
    # sqlite:///path (embedded default) or postgresql://user:pass@host:port/db
    db: str = "sqlite:///var/vks-controller.sqlite"
    # ... or the file holding the URL (first line), so its password stays out of the settings file:
    # a relative name inside $CREDENTIALS_DIRECTORY under systemd (credential `db` when unset).
    db_file: Path | None = None
    # Largest request body the API reads (bytes); larger gets 413.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Run pending migrations when `serve` starts.
    migrate_on_start: bool = True
    # A name for this controller in job leases (default: host name and pid).
    instance_id: str | None = None
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    checks: CheckSettings = Field(default_factory=CheckSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    diagnosis: DiagnosisSettings = Field(default_factory=DiagnosisSettings)
    agent_link: AgentLinkSettings = Field(default_factory=AgentLinkSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    sites_file: Path | None = None
    # The quality model's threshold profiles the controller judges every report and live second
    # by (default: the packaged contract/thresholds.yaml). Missing or invalid: the controller
    # does not start.
    thresholds_file: Path | None = None
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    selfcheck: SelfCheckSettings = Field(default_factory=SelfCheckSettings)   # issue 14: self-check links

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data):
        return credentials.apply(data)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        parse_listen(v)
        return v

    @field_validator("db")
    @classmethod
    def _db_url(cls, v: str) -> str:
        from controller.store.db import to_async_url
        to_async_url(v)  # raises ValueError with a readable message
        return v

    def owner_id(self) -> str:
        return self.instance_id or f"{os.uname().nodename}:{os.getpid()}"


def parse_listen(value: str) -> tuple[str, int]:
    """"HOST:PORT" -> (host, port); IPv6 as "[::1]:8080"."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def default_path() -> Path | None:
    """The settings file named by $VKS_CONTROLLER_CONFIG, or None (the models' defaults)."""
    env = os.environ.get(DEFAULT_PATH_ENV)
    return Path(env) if env else None


def load_settings(path: str | os.PathLike | None = None) -> ControllerSettings:
    """Load the controller's settings: `path`, else $VKS_CONTROLLER_CONFIG, else the defaults."""
    path = path or default_path()
    return configfile.load(ControllerSettings, path, section="controller")
