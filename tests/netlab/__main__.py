"""Hold a lab up for manual work or shell-driven benchmarks, or talk to its router.

    python -m tests.netlab up [--impair JSON] [--mgmt] [--seed N] [--hold 600]
        prints one JSON line (namespaces, addresses, control socket), then keeps the lab
        until SIGINT/SIGTERM or --hold seconds (at most 7200) and cleans up.
    python -m tests.netlab ctl CONTROL_SOCKET OP [JSON_FIELDS]
        e.g.  ctl /tmp/vks-netlab-.../control.sock impair '{"dir": "a>b", "params": {"loss": 0.03}}'
              ctl ... truth '{"series": false}'
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .control import LabError, request
from .lab import Lab


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.netlab", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create a lab and hold it")
    up.add_argument("--impair", default=None, help='JSON, e.g. {"a>b": {"delay_ms": 40}}')
    up.add_argument("--mgmt", action="store_true")
    up.add_argument("--seed", type=int, default=None)
    up.add_argument("--hold", type=float, default=600.0)
    ctl = sub.add_parser("ctl", help="send one request to a router")
    ctl.add_argument("control")
    ctl.add_argument("op")
    ctl.add_argument("fields", nargs="?", default="{}")
    a = p.parse_args(argv)
    try:
        if a.cmd == "ctl":
            print(json.dumps(request(a.control, a.op, **json.loads(a.fields)), indent=1))
            return 0
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        with Lab(json.loads(a.impair) if a.impair else None, mgmt=a.mgmt, seed=a.seed,
                 max_lifetime=min(a.hold, 7200.0) + 60) as lab:
            print(json.dumps({"ns_a": lab.ns_a, "ns_b": lab.ns_b, "addr_a": lab.addr_a,
                              "addr_b": lab.addr_b, "iface": lab.iface, "mgmt_root": lab.mgmt_root,
                              "mgmt_a": lab.mgmt_a, "mgmt_b": lab.mgmt_b,
                              "control": lab.control_path, "t0_wall": lab.t0_wall, "seed": lab.seed}),
                  flush=True)
            done.wait(min(a.hold, 7200.0))
        return 0
    except LabError as exc:
        print(f"netlab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
