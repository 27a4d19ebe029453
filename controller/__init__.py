"""vks-controller: registry, hearings and the clock of the rules, live quality,
escalation, the event record and the people's API and page."""

__version__ = "0.1.0"
