"""Just enough H.264 bitstream handling to forward camera packets as they are.

Cameras over RTSP deliver Annex B (start codes) and usually repeat SPS/PPS before each IDR; MP4
files (the looped demo source) deliver AVCC (length-prefixed NAL units) with SPS/PPS only in the
``avcC`` extradata. RTP packetization (RFC 6184) needs Annex B, and a viewer can only start
decoding at an IDR that it can pair with SPS/PPS, so both cases are normalised here.
"""

from __future__ import annotations

from dataclasses import dataclass

START = b"\x00\x00\x00\x01"
NAL_SPS = 7
NAL_PPS = 8


@dataclass(frozen=True)
class Bitstream:
    """How the packets of one stream are framed, and its parameter sets as Annex B."""

    length_size: int  # 0: Annex B; 1, 2 or 4: AVCC with NAL lengths of that many bytes
    parameter_sets: bytes  # SPS/PPS with start codes, b"" if unknown


def parse_extradata(extradata: bytes | None) -> Bitstream:
    """``avcC`` (MP4, first byte 1) or Annex B (RTSP ``sprop-parameter-sets``) extradata."""
    if not extradata:
        return Bitstream(0, b"")
    if extradata[0] != 1:
        return Bitstream(0, extradata if extradata.startswith((b"\x00\x00\x01", START)) else b"")
    try:
        length_size = (extradata[4] & 0x03) + 1
        out = bytearray()
        pos = 5
        for count_mask in (0x1F, 0xFF):  # SPS count has 5 bits, PPS count 8
            count = extradata[pos] & count_mask
            pos += 1
            for _ in range(count):
                size = int.from_bytes(extradata[pos : pos + 2], "big")
                pos += 2
                nal = extradata[pos : pos + size]
                if len(nal) != size:
                    raise ValueError("truncated avcC")
                out += START + nal
                pos += size
        return Bitstream(length_size, bytes(out))
    except (IndexError, ValueError):
        return Bitstream(4, b"")


def avcc_to_annexb(data: bytes, length_size: int) -> bytes:
    """Replace NAL length prefixes by start codes (a malformed tail is dropped, never raised)."""
    out = bytearray()
    pos = 0
    n = len(data)
    while pos + length_size <= n:
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > n:
            break
        out += START
        out += data[pos : pos + size]
        pos += size
    return bytes(out)


def nal_types(annexb: bytes) -> set[int]:
    """NAL unit types present in an Annex B buffer."""
    types: set[int] = set()
    i = annexb.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(annexb):
        types.add(annexb[i + 3] & 0x1F)
        i = annexb.find(b"\x00\x00\x01", i + 3)
    return types


def has_parameter_sets(annexb: bytes) -> bool:
    types = nal_types(annexb)
    return NAL_SPS in types and NAL_PPS in types
