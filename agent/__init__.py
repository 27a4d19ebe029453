"""vks-agent: runs on every courtroom and SIZO terminal.

It speaks the shared contract (`contract`: wire protocol, quality model, config loading,
sd_notify) and imports nothing of the controller.
"""
