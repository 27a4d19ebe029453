"""A closed responder (issue 11, item 5): offers need its token, are limited per source address,
and of an offer's candidates at most 16 allowed addresses are ever contacted.

The candidate filter and the rate limiter are tested alone on their inputs; the rest with a real
`vks-agent responder` process over real sockets."""
import asyncio
import json
import subprocess

import aiohttp

from agent.ice import MAX_REMOTE_CANDIDATES, remote_candidates
from agent.responder import OfferLimiter
from agent.session import PeerSession
from agent.settings import AgentSettings
from tests.procs import REPO, agent_argv, env_with, free_port, responder, stop, token_file, wait_http, write_config

LOOPBACK = "session:\n  host_addresses: ['127.0.0.1']\n"
OFFER_SDP = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 5000 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 10.0.0.5", "a=mid:0",
    "{candidates}", "a=end-of-candidates", "a=ice-ufrag:abcd",
    "m=application 5000 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 10.0.0.5", "a=mid:1",
    "{candidates}", "a=end-of-candidates", "a=ice-ufrag:abcd", ""])


def candidate(n: int, address: str, port: int) -> str:
    return f"a=candidate:f{n} 1 udp {2130706431 - n} {address} {port} typ host"


def test_the_filter_drops_what_must_not_be_contacted_and_keeps_at_most_16_addresses():
    bad = ["169.254.10.20", "fe80::1", "224.0.0.251", "ff02::fb", "255.255.255.255", "0.0.0.0",
           "::ffff:169.254.1.1", "abc-123.local"]
    lines = [candidate(i, a, 4000 + i) for i, a in enumerate(bad)]
    lines += ["a=candidate:broken 1 udp 1 10.0.0.9", "a=candidate:x 1 udp 1 10.0.0.9 notaport typ host"]
    lines += [candidate(100 + i, f"127.0.0.{2 + i % 200}", 10000 + i) for i in range(150)]
    lines += [candidate(300 + i, "10.0.0.5", 20000 + i) for i in range(150)]
    sdp = OFFER_SDP.replace("{candidates}", "\r\n".join(lines))

    closed = remote_candidates(sdp, allow_loopback=False)
    kept = [line for line in closed.sdp.split("\r\n") if line.startswith("a=candidate:")]
    assert closed.kept == MAX_REMOTE_CANDIDATES == 16
    # The same 16 addresses in both sections (a bundled offer repeats them): 16 distinct in all.
    assert len(kept) == 32 and len({" ".join(k.split()[4:6]) for k in kept}) == 16
    assert all(" 10.0.0.5 " in k for k in kept)           # no loopback, link-local, multicast, ...
    assert closed.dropped == 2 * (len(lines) - 16)
    # Everything that is not a candidate passes as it was, in order, line endings included.
    assert [x for x in closed.sdp.split("\r\n")] == [x for x in sdp.split("\r\n") if not x.startswith("a=candidate:")
                                                    or x in kept]
    assert closed.sdp.count("a=end-of-candidates") == 2 and closed.sdp.endswith("\r\n")

    lab = remote_candidates(sdp, allow_loopback=True)     # this side offers loopback itself
    kept = [line for line in lab.sdp.split("\r\n") if line.startswith("a=candidate:")]
    assert lab.kept == 16 and all(" 127.0.0." in k for k in kept)
    assert not any(a in lab.sdp for a in ("169.254.", "fe80::", "224.0.0.", "ff02::", "255.255.255.255", ".local"))
    assert remote_candidates(sdp, allow_loopback=True, limit=3).kept == 3
    # An SDP with \n line endings is filtered the same.
    assert remote_candidates(sdp.replace("\r\n", "\n"), allow_loopback=False).kept == 16


def test_the_limiter_counts_per_source_in_a_sliding_minute_in_bounded_memory():
    now = [0.0]
    limiter = OfferLimiter(30, max_sources=100, clock=lambda: now[0])
    assert all(limiter.allow("10.0.0.1") for _ in range(30))
    assert not limiter.allow("10.0.0.1")                     # the 31st in the minute
    assert limiter.allow("10.0.0.2")                          # another address is not affected
    now[0] = 59.0
    assert not limiter.allow("10.0.0.1")
    now[0] = 60.5                                             # the first 30 are a minute old
    assert limiter.allow("10.0.0.1")
    for i in range(10_000):                                   # an attacker with many addresses
        limiter.allow(f"192.0.2.{i}")
    assert len(limiter) <= 100
    now[0] = 200.0                                            # a minute of silence: all pruned
    assert limiter.allow("10.0.0.3") and len(limiter) == 1


async def test_offers_without_the_token_get_401_and_start_nothing(tmp_path):
    """The token comes from `responder.token_file` in the config here (procs.responder gives
    --token-file): both are the same file's first line, trimmed."""
    token = token_file(tmp_path)
    token.write_text("  s3cret-token  \nsecond line ignored\n", encoding="utf-8")
    config = write_config(tmp_path, LOOPBACK + f"responder:\n  token_file: {token}\n")
    port = free_port()
    proc = subprocess.Popen(agent_argv("responder", "--listen", f"127.0.0.1:{port}"), env=env_with(config),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc=proc)
        offer = {"type": "offer", "sdp": OFFER_SDP.replace("{candidates}", candidate(1, "10.0.0.5", 5000))}
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"},
                            {"Authorization": "Bearer s3cret-tokenX"}):
                async with http.post(url + "/offer", json=offer, headers=headers) as resp:
                    body = await resp.json()
                    assert resp.status == 401 and body["error"] == "unauthorized" and body["message"], headers
            async with http.get(url + "/healthz") as resp:
                assert (await resp.json())["sessions"] == 0

        def run_test(*args):
            return subprocess.run(agent_argv("test", "--peer", url, "--duration", "3", "--json", *args),
                                  env=env_with(config), cwd=REPO, capture_output=True, text=True, timeout=90)
        wrong = tmp_path / "wrong.token"
        wrong.write_text("not-it\n", encoding="utf-8")
        for args in ((), ("--token-file", str(wrong))):
            r = await asyncio.to_thread(run_test, *args)
            report = json.loads(r.stdout)
            assert r.returncode == 4 and report["connected"] is False, r.stderr
            assert "refused the token" in report["error"] and "401" in report["error"], report["error"]
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
            assert (await resp.json())["sessions"] == 0

        good = tmp_path / "good.token"
        good.write_text("s3cret-token\n", encoding="utf-8")
        r = await asyncio.to_thread(run_test, "--token-file", str(good))
        report = json.loads(r.stdout)
        assert r.returncode in (0, 1) and report["connected"] is True, (r.stderr, report["error"])
        assert report["verdict"] in ("good", "degraded")
    finally:
        stop(proc)


def test_no_token_configured_is_exit_2_unless_open(tmp_path):
    config = write_config(tmp_path, LOOPBACK)
    r = subprocess.run(agent_argv("responder", "--listen", f"127.0.0.1:{free_port()}"), env=env_with(config),
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--token-file" in r.stderr and "--open" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(agent_argv("responder", "--listen", f"127.0.0.1:{free_port()}",
                                  "--token-file", str(tmp_path / "missing.token")), env=env_with(config),
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "missing.token" in r.stderr and "Traceback" not in r.stderr, r.stderr

    port = free_port()
    proc = subprocess.Popen(agent_argv("responder", "--listen", f"127.0.0.1:{port}", "--open"),
                            env=env_with(config), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        r2 = subprocess.run(agent_argv("test", "--peer", f"http://127.0.0.1:{port}", "--duration", "2", "--json"),
                            env=env_with(config), cwd=REPO, capture_output=True, text=True, timeout=90)
        assert json.loads(r2.stdout)["connected"] is True, r2.stderr
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "--open" in err and "anyone" in err


async def test_an_offer_with_300_candidates_has_at_most_16_contacted(tmp_path):
    """300 candidates on 127.0.0.2-7, each a UDP socket here counting what arrives, plus
    link-local and multicast ones: the responder sends STUN checks to at most 16 of them."""
    config = write_config(tmp_path, LOOPBACK)
    loop = asyncio.get_running_loop()
    received: dict[tuple[str, int], int] = {}

    class Counter(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.address: tuple[str, int] | None = None

        def connection_made(self, transport) -> None:
            self.address = transport.get_extra_info("sockname")[:2]

        def datagram_received(self, data: bytes, addr) -> None:
            assert self.address is not None
            received[self.address] = received.get(self.address, 0) + 1

    listeners = [await loop.create_datagram_endpoint(Counter, local_addr=(f"127.0.0.{2 + i % 6}", 0))
                 for i in range(290)]
    caller = PeerSession(AgentSettings.model_validate({"session": {"host_addresses": ["127.0.0.1"]}}), "caller")
    try:
        offer = await caller.make_offer()
        lines = [candidate(i, *t.get_extra_info("sockname")[:2]) for i, (t, _) in enumerate(listeners)]
        lines += [candidate(400 + i, f"169.254.7.{1 + i}", 7000 + i) for i in range(5)]
        lines += [candidate(500 + i, f"239.1.1.{1 + i}", 7100 + i) for i in range(5)]
        fake = "\r\n".join(lines) + "\r\n"
        # The fakes first in every media section, the caller's own candidate after them.
        sdp = offer["sdp"].replace("a=candidate:", fake + "a=candidate:")
        assert sdp.count("a=candidate:") == 3 * 301 and len(sdp) > 22_000
        bearer = {"Authorization": "Bearer " + token_file(tmp_path).read_text().strip()}
        with responder(config) as url:
            async with aiohttp.ClientSession(headers=bearer) as http:
                async with http.post(url + "/offer", json={"type": "offer", "sdp": sdp}) as resp:
                    assert resp.status == 200, await resp.text()
                # aioice paces its checks 20 ms apart: in 6 s it would reach all 300.
                await asyncio.sleep(6)
    finally:
        await caller.close()
        for transport, _ in listeners:
            transport.close()
    assert 0 < len(received) <= MAX_REMOTE_CANDIDATES, received
    assert sum(received.values()) < 16 * 20


async def test_the_31st_offer_in_a_minute_from_one_address_is_429(tmp_path):
    """Counted before anything else: 30 offers without a token get 401, the 31st - with the right
    token - 429; another source address is still served."""
    config = write_config(tmp_path, LOOPBACK)
    bearer = {"Authorization": "Bearer " + token_file(tmp_path).read_text().strip()}
    with responder(config) as url:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(30):
                async with http.post(url + "/offer", data=b"{}") as resp:
                    statuses.append(resp.status)
            assert statuses == [401] * 30
            async with http.post(url + "/offer", data=b"{not json", headers=bearer) as resp:
                body = await resp.json()
                assert resp.status == 429 and body["error"] == "rate_limited" and body["message"]
        other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=other, headers=bearer) as http:
            async with http.post(url + "/offer", data=b"{not json") as resp:
                assert (resp.status, (await resp.json())["error"]) == (400, "bad_json")
