#!/usr/bin/env python3
"""Connect time and footprint of a test session, each side, during a session and idle.

A responder in namespace B and `vks-agent test` in namespace A, 20 ms one-way delay
each way; both processes sampled with psutil. Targets (issue 3): connect under
1.5 s at 20 ms delay; under 35 % of one core and under 120 MB RSS per side; issue 15 lowered
the RSS target to 110 MB.

    .venv/bin/python benchmarks/footprint.py [--runs N] [--duration S] [--profile NAME] [--maps]

--maps prints, for each side halfway through its last session, the resident memory by mapping
(anonymous, heap, each shared library): where the RSS is.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.linktest import PORT, write_agent_config  # noqa: E402
from tests.netlab.lab import Lab, unavailable_reason  # noqa: E402
from tests.procs import PYTHON, REPO, agent_argv, env_with, token_file  # noqa: E402


def mappings(pid: int, top: int = 14) -> list[tuple[str, float]]:
    """Resident MB by mapping name (a library's file name, [heap], [anon]...), largest first."""
    totals: dict[str, float] = {}
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts[0].endswith(":"):           # a mapping's header line
                name = Path(parts[5]).name if len(parts) > 5 else "[anon]"
            elif parts[0] == "Rss:":
                totals[name] = totals.get(name, 0.0) + int(parts[1]) / 1024
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def read_maps(into: dict[str, list[tuple[str, float]]], pids: dict[str, int]) -> None:
    for side, pid in pids.items():
        try:
            into[side] = mappings(pid)
        except OSError:                     # the process has ended
            pass


class Sampler(threading.Thread):
    """CPU seconds and RSS of one process, twice a second, until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.proc.oneshot():
                    t = self.proc.cpu_times()
                    self.samples.append((time.monotonic(), t.user + t.system, self.proc.memory_info().rss))
            except psutil.Error:
                return
            self.stop.wait(0.5)

    def window(self, start: float, end: float) -> tuple[float | None, int | None]:
        """(share of one core, peak RSS) between two moments."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return None, None
        (t0, c0, _), (t1, c1, _) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0), max(s[2] for s in inside)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--maps", action="store_true", help="print each side's RSS by mapping mid-session")
    args = ap.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    connects, rows = [], []
    with Lab(impair={"delay_ms": 20}) as lab, tempfile.TemporaryDirectory() as tmp:
        cfg_a = write_agent_config(Path(tmp), "a", lab.addr("a"))
        cfg_b = write_agent_config(Path(tmp), "b", lab.addr("b"))
        url = f"http://{lab.addr('b')}:{PORT}"
        token = str(token_file(Path(tmp)))
        resp = lab.popen("b", agent_argv("responder", "--listen", f"{lab.addr('b')}:{PORT}", "--token-file", token),
                         env=env_with(cfg_b), cwd=REPO)
        lab.run("a", [PYTHON, "-c", f"from tests.procs import wait_http; wait_http({url + '/healthz'!r})"],
                env=env_with(), cwd=REPO, timeout=30, check=True)
        r_sampler = Sampler(resp.pid)
        r_sampler.start()
        time.sleep(3)
        idle_r = r_sampler.window(time.monotonic() - 2.6, time.monotonic())
        for n in range(args.runs):
            argv = agent_argv("test", "--peer", url, "--duration", f"{args.duration:g}", "--json",
                              "--token-file", token)
            if args.profile:
                argv += ["--profile", args.profile]
            proc = lab.popen("a", argv, env=env_with(cfg_a), cwd=REPO, stdout=__import__("subprocess").PIPE, text=True)
            t_sampler = Sampler(proc.pid)
            t_sampler.start()
            maps: dict[str, list[tuple[str, float]]] = {}
            if args.maps and n == args.runs - 1:
                threading.Timer(3 + args.duration / 2, read_maps,
                                args=(maps, {"caller": proc.pid, "responder": resp.pid})).start()
            out, _ = proc.communicate(timeout=args.duration + 60)
            t_sampler.stop.set()
            report = json.loads(out)
            connects.append(report["connect_ms"])
            # The media phase: from a few seconds in (imports and connect done) to just before the end.
            end = t_sampler.samples[-1][0] if t_sampler.samples else time.monotonic()
            start = end - args.duration + 3
            cpu_t, rss_t = t_sampler.window(start, end - 2)
            cpu_r, rss_r = r_sampler.window(start, end - 2)
            rows.append((cpu_t, rss_t, cpu_r, rss_r))
            print(f"run {n + 1}: connect {report['connect_ms']:.0f} ms, verdict {report['verdict']}; "
                  f"caller {100 * cpu_t:.1f} % of a core, {rss_t / 2**20:.0f} MB; "
                  f"responder {100 * cpu_r:.1f} %, {rss_r / 2**20:.0f} MB")
            for side, top in maps.items():
                print(f"  {side} mid-session, MB by mapping: " + ", ".join(f"{k} {v:.1f}" for k, v in top))
        time.sleep(4)
        idle_after = r_sampler.window(time.monotonic() - 3, time.monotonic())
        r_sampler.stop.set()
        resp.terminate()
    prof = args.profile or "hearing (640x360 @ 15 fps VP8 + Opus)"
    print(f"\nprofile: {prof}, {args.duration:g} s sessions, 20 ms one-way delay each way")
    print(f"connect time: median {statistics.median(connects):.0f} ms, max {max(connects):.0f} ms (target < 1500 ms)")
    print(f"caller during session:    CPU {100 * max(r[0] for r in rows):.1f} % of one core (max of runs), "
          f"RSS {max(r[1] for r in rows) / 2**20:.0f} MB  (targets < 35 %, < 110 MB)")
    print(f"responder during session: CPU {100 * max(r[2] for r in rows):.1f} % of one core, "
          f"RSS {max(r[3] for r in rows) / 2**20:.0f} MB")
    print(f"responder idle before:    CPU {100 * (idle_r[0] or 0):.1f} %, RSS {(idle_r[1] or 0) / 2**20:.0f} MB")
    print(f"responder idle after:     CPU {100 * (idle_after[0] or 0):.1f} %, "
          f"RSS {(idle_after[1] or 0) / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
