"""vks-controller: registry, hearings and the clock of the rules, live quality,
escalation, the event record and the people's API and page."""
