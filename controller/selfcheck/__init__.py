"""Self-check links for mobile participants (issue 14, rule 20).

- `settings`: `selfcheck:` of the controller's settings.
- `peer`: the controller's own aiortc peer that answers the page's offer, sends media back and
  measures what it receives.
- `judge`: the verdict by the `mobile` threshold profile, with what to do about it.
- `service`: creating, starting and finishing a self-check: the record's events, the escalation.
- `api`: POST/GET /api/v1/hearings/{id}/self-checks and the QR code (signed in, in scope).
- `page`: the link itself: /self-check/{secret} and its own endpoints (no account).
"""
