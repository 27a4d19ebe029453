"""The sender's manners (agent/sender.py) on a real aiortc RTCRtpSender: what a NACK, a REMB and a
keyframe request make it do. Only the network is replaced - the DTLS transport's `_send_rtp` records
what would have gone out - and the clock is the test's, so each rule is checked at known moments."""
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
)

from agent import sender
from agent.media import PatternTrack

RTX_PT = 97


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def video():
    """A real video sender with 40 packets of 1000 bytes in its history, its RTX negotiated."""
    pc = RTCPeerConnection()
    track = PatternTrack(64, 48, 15)
    rtp_sender = pc.addTrack(track)
    sent: list[bytes] = []

    async def record(data: bytes) -> None:
        sent.append(data)

    rtp_sender.transport._send_rtp = record
    rtp_sender._RTCRtpSender__rtx_payload_type = RTX_PT
    history = rtp_sender._RTCRtpSender__rtp_history
    for seq in range(1000, 1040):
        packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 10, ssrc=rtp_sender._ssrc,
                           payload=bytes(1000))
        history[seq % 128] = packet
    clock = Clock()
    manners = sender.Manners(rtp_sender, 600_000, clock=clock)
    try:
        yield manners, clock, sent
    finally:
        track.stop()
        await pc.close()


def nack(manners, *seqs):
    packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=manners.sender._ssrc)
    packet.lost = list(seqs)
    return manners.sender._handle_rtcp_packet(packet)


def remb(manners, bps):
    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bps, [manners.sender._ssrc]))
    return manners.sender._handle_rtcp_packet(packet)


def rtx_seqs(manners, sent):
    """The original sequence numbers of the RTX packets sent (RFC 4588: the first 2 payload bytes)."""
    out = []
    for data in sent:
        packet = RtpPacket.parse(data)
        assert packet.ssrc == manners.sender._rtx_ssrc and packet.payload_type == RTX_PT
        out.append(int.from_bytes(packet.payload[:2], "big"))
    return out


async def test_the_internals_it_reads_are_there(video):
    # aiortc is pinned to 1.16.*: if a release renames these, this fails before any session does.
    manners, _, _ = video
    for name in ("rtp_history", "encoder", "rtt", "rtx_payload_type", "rtp_header_extensions_map"):
        assert hasattr(manners.sender, f"_RTCRtpSender__{name}"), name
    for method in ("_handle_rtcp_packet", "_send_keyframe", "_retransmit"):
        assert callable(getattr(manners.sender, method)), method


async def test_a_packet_is_resent_at_most_three_times_and_backed_off_by_round_trips(video):
    manners, clock, sent = video
    assert sender.MAX_RETRANSMISSIONS == 3
    await nack(manners, 1010)                   # first request: answered at once
    clock.t += 0.05
    await nack(manners, 1010)                   # within a round trip (0.1 s until RTCP gives one)
    clock.t += 0.1
    await nack(manners, 1010)                   # a round trip after the resend: answered
    clock.t += 0.15
    await nack(manners, 1010)                   # backed off: two round trips must pass now
    clock.t += 0.1
    await nack(manners, 1010)                   # 0.25 s after the second: answered
    clock.t += 1.0
    await nack(manners, 1010)                   # long enough, but three times is the most
    assert rtx_seqs(manners, sent) == [1010, 1010, 1010]
    s = manners.stats
    assert (s.requested, s.retransmitted, s.refused_recent, s.refused_count) == (6, 3, 2, 1)


async def test_retransmissions_stay_inside_their_share_of_the_estimate(video):
    manners, clock, sent = video
    await remb(manners, 500_000)
    await nack(manners, *range(1000, 1040))     # 40 kB asked for at once: 640 kb/s over the window
    budget_bytes = sender.RTX_SHARE * 500_000 * sender.RTX_WINDOW_S / 8
    assert 0 < sum(len(d) - 12 for d in sent) <= budget_bytes
    assert manners.stats.refused_rate == 40 - len(sent)
    clock.t += sender.RTX_WINDOW_S + 0.01       # the window has passed: room again
    before = len(sent)
    await nack(manners, 1039)
    assert rtx_seqs(manners, sent[before:]) == [1039]


async def test_what_is_no_longer_held_or_asked_after_the_stop_is_not_sent(video):
    manners, clock, sent = video
    await nack(manners, 999, 2000)               # never sent / long gone from the history
    manners.stop()
    await nack(manners, 1001)
    assert sent == [] and manners.stats.refused_gone == 3


async def test_the_encoder_follows_the_estimate_but_never_above_the_profile(video):
    manners, clock, sent = video
    encoder = Vp8Encoder()
    manners.sender._RTCRtpSender__encoder = encoder
    await remb(manners, 1_400_000)
    assert encoder.target_bitrate == 600_000    # aiortc alone would have set 1.4 Mb/s
    await remb(manners, 400_000)
    assert encoder.target_bitrate == 400_000
    assert manners.stats.estimate_kbps == 400.0 and manners.stats.encoder_kbps == 400.0


async def test_keyframe_requests_are_served_once_per_interval_never_dropped(video):
    manners, clock, sent = video
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=manners.sender._ssrc)
    for _ in range(5):                           # a burst of PLIs, as a lossy stretch sends them
        await manners.sender._handle_rtcp_packet(pli)
        clock.t += 0.05
    assert (manners.stats.keyframes, manners.stats.keyframes_deferred) == (1, 4)
    clock.t += sender.KEYFRAME_MIN_INTERVAL_S
    manners._keyframe_due()                      # the next media packet after the interval
    manners._keyframe_due()
    assert (manners.stats.keyframes, manners.stats.keyframes_deferred) == (2, 4)   # the four served by one
