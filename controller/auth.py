"""Bearer tokens and roles with least privilege (rules 5, 6).

| role        | may                                                          |
|-------------|--------------------------------------------------------------|
| viewer      | read                                                         |
| technician  | read, run tests                                              |
| secretary   | read, schedule / change / cancel hearings                    |
| coordinator | read, give agreement (rules 11, 12), suspend / lift (rule 24)|
| admin       | everything, including the registry, users and the audit trail|
"""
from __future__ import annotations

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
