"""Live monitoring during a hearing and the break -> reconnect -> resume flow (rule 22).

From the passed pre-connect check (or the secretary's `POST /api/v1/hearings/{id}/start`) until
the hearing ends, the courtroom terminal (caller) and the remote terminal (callee) keep a
monitoring session (kind "monitor", the agents' `monitor` profile) whose per-second intervals
the hub hands over as it stores them. `controller.detector` judges them; this package acts:

- `machine`: the flow as a pure state machine (states, transitions, timers; tested alone);
- `intake`: the flows in memory and what the hub hands over for them (synchronous, no I/O);
- `service`: the loop, the database writes, the sessions and the commands to the agents;
- `views`: what the API shows (controller.api.live serves it).

Every step appends an event to the hearing's record (rule 21): monitoring_started, break (cause,
detector evidence, the terminal), break_declared, break_continued, reconnect (per attempt),
reconnect_attempt_failed, ready_to_resume, ready_withdrawn, resume (duration and cause),
link_restored, reconnect_timeout, monitoring_renewed,
monitoring_stopped, hook_failed, hearing_started, hearing_ended. The agents at both ends get the
`break` / `reconnect` / `resume` commands (contract.wire.LiveEvent) and fire their endpoint hooks.

One flow per remote participant (the courtroom terminal calls each); a break is the software's
recommendation, the judge's decision is recorded (`break_declared` / `break_continued`): docs/live.md.

Limits: the flow runs in the controller whose hub receives the intervals (one controller, or
agents of a hearing on the same controller); the hearing's stored live verdict is the first
participant's flow's (the others' breaks are in the record and the live view).
"""
