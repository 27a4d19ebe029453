"""Secrets from files and systemd credentials (issue 11): the settings' secrets need not sit in the
settings file.

Each secret has a `*_file` key naming the file that holds it (its first line, trimmed): `db_file`,
`smtp.password_file`, `escalation.webhook_secret_file` (and `metrics.token_file`, read by the app at
start). A relative name is looked up in `$CREDENTIALS_DIRECTORY` when that is set (systemd's
`LoadCredential=NAME:PATH` puts the file there, readable by the service alone), else taken from the
working directory. When a secret's key and its `*_file` are both unset and `$CREDENTIALS_DIRECTORY`
holds a credential of its conventional name (CREDENTIAL_NAMES), that one is used. A secret given
both ways is an error; with no credentials at all the settings are what they were.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from contract import configfile

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"

# (section or "" for the top level, the secret's key, its *_file key, the credential's conventional name)
SECRETS = (
    ("", "db", "db_file", "db"),
    ("smtp", "password", "password_file", "smtp_password"),
    ("escalation", "webhook_secret", "webhook_secret_file", "webhook_secret"),
)
# metrics.token_file is only resolved here (to a path): the app reads the token at start.
METRICS_TOKEN = ("metrics", "token_file", "metrics_token")
CREDENTIAL_NAMES = tuple(s[3] for s in SECRETS) + (METRICS_TOKEN[2],)


def credentials_dir() -> Path | None:
    """$CREDENTIALS_DIRECTORY (set by systemd for a unit with LoadCredential=), or None."""
    value = os.environ.get(CREDENTIALS_ENV)
    return Path(value) if value else None


def resolve(name: str | os.PathLike) -> Path:
    """A `*_file` value as a path: relative names inside $CREDENTIALS_DIRECTORY when it is set."""
    path = Path(name).expanduser()
    base = credentials_dir()
    return base / path if base is not None and not path.is_absolute() else path


def read_secret(path: Path, key: str) -> str:
    """The first line of the file, trimmed; a ValueError naming the key and the file (never the content)
    when it cannot be read or is empty (the settings' validation reports it under the key)."""
    try:
        return configfile.read_secret(path, key)
    except configfile.ConfigError as exc:
        raise ValueError(f"{key}: {str(path)!r}: {exc.problem}") from None


def _section(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    if not name:
        return data
    section = data.get(name, {})
    if section is None:
        section = {}
    if not isinstance(section, dict):       # not a mapping (or a model already): the model judges it
        return None
    section = data[name] = dict(section)    # a copy: the caller's mapping is left as it was
    return section


def apply(data: Any) -> Any:
    """The raw settings (a mapping, before validation) with every secret's `*_file` read into its key
    (the `*_file` key then cleared, so validating the result again reads nothing twice) and the
    conventional credentials filled into secrets given no other way."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    base = credentials_dir()
    for section_name, key, file_key, credential in SECRETS:
        section = _section(data, section_name)
        if section is None:
            continue
        dotted = f"{section_name}.{file_key}" if section_name else file_key
        given = section.get(file_key)
        if given is not None:
            if section.get(key) is not None:
                raise ValueError(f"{dotted}: give {key} or {file_key}, not both")
            section[key] = read_secret(resolve(given), dotted)
            section[file_key] = None
        elif section.get(key) is None and base is not None and (base / credential).is_file():
            section[key] = read_secret(base / credential, f"credential {credential!r}")
    section_name, file_key, credential = METRICS_TOKEN
    section = _section(data, section_name)
    if section is not None:
        given = section.get(file_key)
        if given is not None:
            section[file_key] = resolve(given)
        elif base is not None and (base / credential).is_file():
            section[file_key] = base / credential
    return data
