"""`vks-agent`: the technician's command line and the terminal's service.

    vks-agent responder --listen HOST:PORT --token-file F    answer direct test sessions
    vks-agent test --peer URL --token-file F --duration S [--profile NAME] [--media devices] [--json]
    vks-agent run [--config FILE]                 the terminal's service (controller link)

Exit status of `test`: 0 good, 1 degraded, 3 unusable, 4 could not connect (also: the
peer refused the token), 2 usage or configuration error. The responder takes offers with its
token only (`--token-file` or `responder.token_file`); with neither it exits 2, unless
`--open` (a lab) is given.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from agent.daemon import add_run_parser
from agent.report import render_text
from agent.session import SignalingError, run_caller
from agent.settings import AgentSettings, load_settings, read_token_file
from contract.configfile import ConfigError
from contract.vocab import SessionMedia, words

log = logging.getLogger("agent.responder")
EXIT_GOOD, EXIT_DEGRADED, EXIT_USAGE, EXIT_UNUSABLE, EXIT_NO_CONNECT = 0, 1, 2, 3, 4
VERDICT_EXIT = {"good": EXIT_GOOD, "degraded": EXIT_DEGRADED, "unusable": EXIT_UNUSABLE}


def host_port(text: str) -> tuple[str, int]:
    """argparse type: 'HOST:PORT' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def positive_seconds(text: str) -> float:
    """argparse type: a duration of 1 s to 24 h."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 1 <= value <= 24 * 3600:
        raise argparse.ArgumentTypeError("duration must be between 1 and 86400 seconds")
    return value


def http_signal(peer: str, profile: str | None, timeout: float, ssl_ctx: ssl.SSLContext | None = None,
                token: str | None = None) -> Callable[[dict], Awaitable[dict]]:
    """Signalling by HTTP(S): POST the offer to the peer's responder with its bearer `token`, get
    the answer. For an https:// peer the certificate is verified (against `ssl_ctx`, else the
    system's CAs)."""
    url = peer.rstrip("/") + "/offer"
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def signal_offer(offer: dict) -> dict:
        body = dict(offer, profile=profile) if profile else offer
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
                async with http.post(url, json=body, headers=headers,
                                     ssl=ssl_ctx if ssl_ctx is not None else True) as resp:
                    try:
                        data = await resp.json(content_type=None)
                    except ValueError:
                        raise SignalingError(f"the peer at {peer} answered HTTP {resp.status} "
                                             f"without JSON") from None
                    message = data.get("message") if isinstance(data, dict) else None
                    if resp.status == 401:
                        given = "the one given" if token else "none was given (--token-file)"
                        raise SignalingError(f"the peer at {peer} refused the token ({given}): "
                                             f"HTTP 401 {message or ''}".strip())
                    if resp.status != 200:
                        raise SignalingError(f"the peer at {peer} refused the offer: "
                                             f"HTTP {resp.status} {message or ''}".strip())
                    return data
        except aiohttp.ClientConnectionError as exc:
            raise SignalingError(f"cannot reach the peer at {peer}: {exc}") from None
        except TimeoutError:
            raise SignalingError(f"the peer at {peer} did not answer within {timeout:g} s") from None

    return signal_offer


def _progress_line(interval: dict) -> str:
    def side(d: dict | None) -> str:
        if not d:
            return "    n/a"
        if d.get("stalled"):
            return "  STALLED (no packets)"
        jit = d.get("jitter_ms")
        return (f"loss {100 * (d.get('loss_ratio') or 0):5.1f}%  jitter "
                f"{'  n/a' if jit is None else f'{jit:5.1f}'} ms  {d.get('bitrate_kbps') or 0:6.0f} kbit/s")
    rtt = interval.get("rtt_ms")
    rtt_s = "  n/a" if rtt is None else f"{rtt:5.1f}"
    return (f"{interval['t'] + 1:5.0f} s  rtt {rtt_s} ms | in: {side(interval.get('inbound'))}"
            f" | out: {side(interval.get('outbound'))}")


async def _run_test(settings: AgentSettings, args: argparse.Namespace) -> dict:
    on_interval = None
    if not args.json:
        print(f"Testing the link to {args.peer} for {args.duration:g} s "
              f"(profile {args.profile or settings.session.default_profile})...", flush=True)
        on_interval = lambda iv: print(_progress_line(iv), flush=True)  # noqa: E731
    ssl_ctx = None
    if getattr(args, "ca_file", None):
        ssl_ctx = await asyncio.to_thread(ssl.create_default_context, cafile=args.ca_file)
    token = await asyncio.to_thread(read_token_file, args.token_file, "--token-file") if args.token_file else None
    return await run_caller(settings, signal=http_signal(args.peer, args.profile,
                                                         settings.session.connect_timeout_s, ssl_ctx, token),
                            duration_s=args.duration, profile=args.profile, on_interval=on_interval,
                            with_capacity=bool(getattr(args, "capacity", False)), media=args.media)


def cmd_test(settings: AgentSettings, args: argparse.Namespace) -> int:
    """`vks-agent test`: one session against a peer's responder; the exit status is the verdict."""
    profile = settings.profile(args.profile)      # a ConfigError names the known profiles
    if (args.media or settings.session.media) == SessionMedia.DEVICES:
        for name, on in (("camera", profile.video), ("microphone", profile.audio)):
            if on and getattr(settings.devices, name) is None:
                raise ConfigError(args.config, f"devices.{name}", "the test sends the terminal's devices "
                                  "(--media devices or session.media) but none is configured")
    report = asyncio.run(_run_test(settings, args))
    if args.json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        print(render_text(report))
    if not report["connected"]:
        return EXIT_NO_CONNECT
    return VERDICT_EXIT[report["verdict"]]


def cmd_responder(settings: AgentSettings, args: argparse.Namespace) -> int:
    """`vks-agent responder`: answer direct test sessions until SIGTERM."""
    from agent.metrics import for_settings
    from agent.responder import create_app
    host, port = args.listen
    token_file, key = (args.token_file, "--token-file") if args.token_file else \
        (settings.responder.token_file, "responder.token_file")
    if token_file is None and not args.open:
        print("vks-agent: the responder needs a token: --token-file F or responder.token_file in the "
              "config (the file's first line; callers give it with `vks-agent test --token-file`), "
              "or --open for a lab where anyone may start sessions", file=sys.stderr)
        return EXIT_USAGE
    ssl_ctx = None
    if args.tls_cert or args.tls_key:        # optional TLS for the offer/answer exchange (issue 7)
        if not (args.tls_cert and args.tls_key):
            print("vks-agent: give both --tls-cert and --tls-key", file=sys.stderr)
            return EXIT_USAGE
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (ssl.SSLError, OSError) as exc:
            print(f"vks-agent: cannot load {args.tls_cert} / {args.tls_key}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    async def serve() -> None:
        token = None
        if token_file is not None:
            token = await asyncio.to_thread(read_token_file, token_file, key)
        else:
            log.warning("responder started --open: anyone who reaches it can start sessions")
        # GET /metrics on the same port; the answered sessions are counted (agent/metrics.py).
        app = create_app(settings, token=token, metrics=for_settings(settings, health=False))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx)
        await site.start()
        print(f"vks-agent responder listening on {'https' if ssl_ctx else 'http'}://{host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"vks-agent: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: test, responder, run."""
    parser = argparse.ArgumentParser(prog="vks-agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="agent settings (YAML); default $VKS_AGENT_CONFIG or built-in")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    test = sub.add_parser("test", help="run a test session against a peer's responder")
    test.add_argument("--peer", required=True, help="the peer's responder, http://HOST:PORT")
    test.add_argument("--duration", type=positive_seconds, default=10.0, help="seconds (default 10)")
    test.add_argument("--profile", help="media profile from the settings (default: hearing)")
    test.add_argument("--json", action="store_true", help="print exactly one JSON report on stdout")
    test.add_argument("--media", choices=words(SessionMedia),
                      help="send synthetic media or the terminal's camera and microphone (settings "
                           "`devices`); default: session.media")
    test.add_argument("--capacity", action="store_true",
                      help="after the media, ramp each direction to what it carries (report `capacity`)")
    test.add_argument("--ca-file", help="for an https:// peer: trust this CA (PEM) instead of the system's")
    test.add_argument("--token-file", help="the peer responder's token (the file's first line)")
    test.set_defaults(func=cmd_test)

    responder = sub.add_parser("responder", help="answer test sessions from peers")
    responder.add_argument("--listen", type=host_port, default=("0.0.0.0", 8443), help="HOST:PORT")
    responder.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    responder.add_argument("--tls-key", help="... and this private key (PEM)")
    responder.add_argument("--token-file", help="offers must carry this token (the file's first line); "
                                                "default: responder.token_file")
    responder.add_argument("--open", action="store_true",
                           help="with no token configured: take offers from anyone (a lab only)")
    responder.set_defaults(func=cmd_responder)

    add_run_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`vks-agent`: parse, load the settings, run the command; its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
        return args.func(settings, args)
    except ConfigError as exc:
        print(f"vks-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
