"""Bearer tokens and roles with least privilege (rules 5, 6).

| role        | may                                                          |
|-------------|--------------------------------------------------------------|
| viewer      | read                                                         |
| technician  | read, run tests                                              |
| secretary   | read, schedule / change / cancel hearings                    |
| head_of_office | as a secretary; signs acts as the head of the court office (rule 18) |
| coordinator | read, give agreement (rules 11, 12), suspend / lift (rule 24)|
| admin       | everything, including the registry, users and the audit trail|
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

READ = "read"
TESTS_RUN = "tests.run"
HEARINGS_WRITE = "hearings.write"
AGREEMENTS = "agreements.give"
SUSPENSIONS = "suspensions.write"
REGISTRY = "registry.write"
USERS = "users.write"
AUDIT = "audit.read"

# The web page's session cookie (controller.web) and the header its changes carry.
SESSION_COOKIE = "vks_session"
PAGE_HEADER = "vks-web"

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({READ}),
    "technician": frozenset({READ, TESTS_RUN}),
    "secretary": frozenset({READ, HEARINGS_WRITE}),
    "head_of_office": frozenset({READ, HEARINGS_WRITE}),
    "coordinator": frozenset({READ, AGREEMENTS, SUSPENSIONS}),
    "admin": frozenset({READ, TESTS_RUN, HEARINGS_WRITE, AGREEMENTS, SUSPENSIONS, REGISTRY, USERS, AUDIT}),
}


def allowed(role: str, permission: str) -> bool:
    """Whether `role` has `permission`."""
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class AuthSettings(BaseModel):
    """Sign-in settings (`auth:` of the controller's settings): the password hash's cost and the
    limits on guessing (controller.web.signin)."""
    model_config = ConfigDict(extra="forbid")
    # scrypt's N for new password hashes (r=8, p=1): 2^17 (128 MiB) is OWASP's current figure; a
    # stored hash records its own parameters, so old hashes keep verifying after a change.
    scrypt_n: int = Field(default=2 ** 17, ge=2 ** 10, le=2 ** 20)
    # Password checks running at once (each holds scrypt's memory); the rest wait their turn.
    max_checks: int = Field(default=2, ge=1, le=64)
    # Sign-in attempts per client address within the window; the attempt is counted before the
    # password is checked, a successful one is given back. Above the limit: 429 with Retry-After.
    login_limit: int = Field(default=5, ge=1)
    login_window_s: float = Field(default=300.0, ge=1)
    # A user name with more failed attempts than this in the window is slowed, never locked:
    # each further check waits name_delay_s * 2^k (at most name_max_delay_s) before it runs.
    name_free: int = Field(default=5, ge=0)
    name_delay_s: float = Field(default=1.0, ge=0)
    name_max_delay_s: float = Field(default=30.0, ge=0)

    @field_validator("scrypt_n")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError("scrypt_n: a power of two, e.g. 131072 (2^17)")
        return v

    def name_delay(self, failures: int) -> float:
        """Seconds a check for a name waits with `failures` counted in the window (0: none)."""
        over = failures - self.name_free
        if over <= 0 or self.name_delay_s == 0:
            return 0.0
        return min(self.name_max_delay_s, self.name_delay_s * 2 ** min(over - 1, 30))
