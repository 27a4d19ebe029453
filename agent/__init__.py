"""vks-agent: runs on every courtroom and SIZO terminal.

The modules that both sides of the system share live here and import nothing
heavy (no aiortc): `agent.quality` (the quality model), `agent.wire` (the
agent <-> controller protocol) and `agent.configfile` (the settings loader).
The controller imports them; nothing is copied.
"""
