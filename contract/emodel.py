"""The E-model of ITU-T G.107 (06/2015): transmission rating R and MOS from network figures.

Narrowband: R 0..100, 93.2 with every default. Pure arithmetic, used by the quality model
(contract.quality) for the MOS of each direction.

- `emodel_r_g107(...)`: R with the full G.107 formulas and every parameter.
- `emodel_r(delay, jitter, loss, ...)`: R of one direction from network figures.
- `r_to_mos(r)`, `mos(...)`, `r_rating(r)`: G.107 Annex B MOS and the G.109 user satisfaction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Codec:
    """E-model values of a codec: equipment impairment Ie and packet-loss robustness Bpl."""
    name: str
    ie: float
    bpl: float
    source: str


CODECS: dict[str, Codec] = {
    # ITU-T G.113 (11/2007) Appendix I, Tables I.1 and I.3 (random loss).
    "g711": Codec("G.711, no PLC", 0.0, 4.3, "ITU-T G.113 Appendix I"),
    "g711-plc": Codec("G.711 with PLC (G.711 Appendix I)", 0.0, 25.1, "ITU-T G.113 Appendix I"),
    "g729a": Codec("G.729A + VAD", 11.0, 19.0, "ITU-T G.113 Appendix I"),
    "g723.1": Codec("G.723.1 6.3 kbit/s + VAD", 15.0, 16.1, "ITU-T G.113 Appendix I"),
    # Opus is not in G.113. Our choice, stated as such: Ie = 0 because Opus at the
    # bitrates WebRTC uses (>= 24 kbit/s, wideband/fullband) is transparent on the
    # narrowband G.107 scale (listening tests, e.g. Ramo & Toukomaa, "Voice quality
    # characterization of IETF Opus codec", Interspeech 2011, rate Opus at these
    # rates above G.711); Bpl = 20, between G.729A (19.0) and G.711 with PLC (25.1):
    # Opus has its own PLC but a hearing tolerates no optimism. A published Ie/Bpl
    # pair for Opus (ITU-T P.833/P.834 method) should replace these when adopted.
    "opus": Codec("Opus (WebRTC)", 0.0, 20.0, "project choice; not in ITU-T G.113"),
}


@dataclass(frozen=True)
class G107Params:
    """The G.107 (06/2015) Table 3 default values (all but delay, loss and codec)."""
    SLR: float = 8.0       # send loudness rating, dB
    RLR: float = 2.0       # receive loudness rating, dB
    STMR: float = 15.0     # sidetone masking rating, dB
    LSTR: float = 18.0     # listener sidetone rating, dB
    Ds: float = 3.0        # D-value of telephone, send side
    TELR: float = 65.0     # talker echo loudness rating, dB
    WEPL: float = 110.0    # weighted echo path loss, dB
    qdu: float = 1.0       # quantizing distortion units
    Nc: float = -70.0      # circuit noise, dBm0p
    Nfor: float = -64.0    # noise floor, dBmp
    Ps: float = 35.0       # room noise, send side, dB(A)
    Pr: float = 35.0       # room noise, receive side, dB(A)
    A: float = 0.0         # advantage factor
    mT: float = 100.0      # delay below which Idd = 0, ms
    sT: float = 1.0        # delay sensitivity


G107_DEFAULTS = G107Params()


def _log10(x: float) -> float:
    return math.log10(x)


def emodel_r_g107(*, T: float, Tr: float, Ta: float, ie: float, bpl: float,
                  ppl: float, burst_r: float = 1.0, p: G107Params = G107_DEFAULTS) -> float:
    """R = Ro - Is - Id - Ie,eff + A with the full G.107 formulas.

    T: mean one-way delay of the echo path (ms); Tr: round-trip delay in a
    4-wire loop (ms); Ta: absolute one-way delay (ms); ppl: packet loss in %.
    """
    # Basic signal-to-noise ratio Ro (G.107 7.2).
    olr = p.SLR + p.RLR
    nfo = p.Nfor + p.RLR
    pre = p.Pr + 10 * _log10(1 + 10 ** ((10 - p.LSTR) / 10))
    nor = p.RLR - 121 + pre + 0.008 * (pre - 35) ** 2
    nos = p.Ps - p.SLR - p.Ds - 100 + 0.004 * (p.Ps - olr - p.Ds - 14) ** 2
    no = 10 * _log10(10 ** (p.Nc / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    ro = 15 - 1.5 * (p.SLR + no)

    # Simultaneous impairment Is = Iolr + Ist + Iq (G.107 7.3).
    xolr = olr + 0.2 * (64 + no - p.RLR)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    stmro = -10 * _log10(10 ** (-p.STMR / 10) + math.exp(-T / 4) * 10 ** (-p.TELR / 10))
    ist = (12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
           - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
           - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13) + 29)
    q = 37 - 15 * _log10(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q ** 2
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * _log10(1 + 10 ** y + 10 ** z)
    is_ = iolr + ist + iq

    # Delay impairment Id = Idte + Idle + Idd (G.107 7.4).
    terv = p.TELR - 40 * _log10((1 + T / 10) / (1 + T / 150)) + 6 * math.exp(-0.3 * T ** 2)
    if p.STMR < 9:
        terv += ist / 2
    re = 80 + 2.5 * (terv - 14)
    roe = -1.5 * (no - p.RLR)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-T))
    if p.STMR > 20:
        idte = math.sqrt(idte ** 2 + ist ** 2)
    rle = 10.5 * (p.WEPL + 7) * (Tr + 1) ** -0.25
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    if Ta <= p.mT:
        idd = 0.0
    else:
        x = _log10(Ta / p.mT) / _log10(2)
        e = 6 * p.sT
        idd = 25 * ((1 + x ** e) ** (1 / e) - 3 * (1 + (x / 3) ** e) ** (1 / e) + 2)
    id_ = idte + idle + idd

    # Effective equipment impairment (G.107 7.5).
    ie_eff = ie + (95 - ie) * ppl / (ppl / burst_r + bpl)
    return ro - is_ - id_ - ie_eff + p.A


def _codec(codec: str | Codec) -> Codec:
    if isinstance(codec, Codec):
        return codec
    try:
        return CODECS[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r} (known: {', '.join(sorted(CODECS))})") from None


def emodel_r(one_way_delay_ms: float, jitter_ms: float, loss_ratio: float, burst_r: float = 1.0,
             codec: str | Codec = "opus", *, jitter_buffer_factor: float = 2.0,
             params: G107Params = G107_DEFAULTS) -> float:
    """The E-model rating R of one direction from network figures.

    Ta = T = one_way_delay + jitter_buffer_factor * jitter (mouth-to-ear delay
    after the de-jitter buffer; echo path delay taken equal to it, echo
    cancelled per the G.107 default TELR 65 dB), Tr = 2 * Ta.
    Ppl = 100 * loss_ratio; BurstR 1 for random loss, > 1 for bursty loss.
    """
    if loss_ratio < 0 or loss_ratio > 1:
        raise ValueError(f"loss_ratio must be within 0..1, got {loss_ratio}")
    if burst_r <= 0:
        raise ValueError(f"burst_r must be > 0, got {burst_r}")
    c = _codec(codec)
    ta = max(0.0, one_way_delay_ms) + jitter_buffer_factor * max(0.0, jitter_ms)
    return emodel_r_g107(T=ta, Tr=2 * ta, Ta=ta, ie=c.ie, bpl=c.bpl, ppl=100 * loss_ratio,
                         burst_r=burst_r, p=params)


def r_to_mos(r: float) -> float:
    """G.107 Annex B: MOS(CQE) from R."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


def mos(one_way_delay_ms: float, jitter_ms: float, loss_ratio: float, burst_r: float = 1.0,
        codec: str | Codec = "opus", *, jitter_buffer_factor: float = 2.0) -> float:
    """r_to_mos(emodel_r(...))."""
    return r_to_mos(emodel_r(one_way_delay_ms, jitter_ms, loss_ratio, burst_r, codec,
                             jitter_buffer_factor=jitter_buffer_factor))


def r_rating(r: float) -> str:
    """G.107 / G.109 user satisfaction for R."""
    for bound, text in ((90, "very satisfied"), (80, "satisfied"), (70, "some users dissatisfied"),
                        (60, "many users dissatisfied"), (50, "nearly all users dissatisfied")):
        if r >= bound:
            return text
    return "not recommended"
