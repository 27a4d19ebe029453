"""One settings loader for agent and controller: YAML -> validated pydantic model.

Errors name the file, the key and what was expected, so that a technician who
mistyped `configs/agent.yaml` is told exactly where. Environment variables
override the file: `VKS_<A>__<B>=value` sets key `a.b` (values parsed as YAML,
so `VKS_AGENT__METRICS_PORT=9101` is an int).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

M = TypeVar("M", bound=BaseModel)

ENV_PREFIX = "VKS_"


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid.

    `str()` names the file and the key, e.g.
    "configs/agent.yaml: key 'session.video.fps': Input should be a valid integer".
    """

    def __init__(self, path: str | os.PathLike | None, key: str | None, problem: str):
        self.path = str(path) if path is not None else "<defaults>"
        self.key = key
        self.problem = problem
        where = f"{self.path}: key '{key}'" if key else self.path
        super().__init__(f"{where}: {problem}")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is an empty mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, None, "file not found") from None
    except OSError as exc:
        raise ConfigError(p, None, f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(p, None, f"not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(p, None, f"expected a mapping at the top level, got {type(data).__name__}")
    return data


def read_secret(path: str | os.PathLike, key: str) -> str:
    """A token or password kept in a file: its first line, trimmed (blocking: call it in a worker
    thread while a loop runs). A ConfigError naming the file and `key` - never the content - when
    the file cannot be read or is empty. The agent's and the controller's token files and the
    controller's systemd credentials are all read here."""
    p = Path(path)
    try:
        with p.open(encoding="utf-8") as f:
            value = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(p, key, f"cannot read the secret: {reason}") from None
    if not value:
        raise ConfigError(p, key, "the file is empty (the secret is its first line)")
    return value


def env_overrides(environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """`VKS_A__B=1` -> {"a": {"b": 1}}."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix) or "__" not in name[len(prefix):]:
            continue
        parts = [p.lower() for p in name[len(prefix):].split("__") if p]
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate(model: type[M], data: Mapping[str, Any], path: str | os.PathLike | None = None) -> M:
    """Validate `data` into `model`; the first error becomes a ConfigError naming the key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or None
        raise ConfigError(path, key, err["msg"]) from None


def load(model: type[M], path: str | os.PathLike | None, *, section: str | None = None,
         environ: Mapping[str, str] | None = None) -> M:
    """Load `path` (or only defaults when None), apply env overrides, validate.

    With `section`, only the env variables under that section apply
    (`VKS_AGENT__...` for section "agent").
    """
    data = read_yaml(path) if path is not None else {}
    overrides = env_overrides(environ)
    if section is not None:
        overrides = overrides.get(section, {})
    return validate(model, deep_merge(data, overrides), path)


class IceServer(BaseModel):
    """A STUN or TURN server, as in RTCIceServer: the agents' `session.ice_servers` and the
    controller's `selfcheck.ice_servers` (its own peer) are written alike."""
    model_config = ConfigDict(extra="forbid")
    urls: list[str]
    username: str | None = None
    credential: str | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v
