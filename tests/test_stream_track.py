"""PassthroughTrack on a source whose packets carry no SPS/PPS in-band (MP4: AVCC + avcC extradata).

A decoder that never saw the extradata must be able to start on the track's first packet: the track
converts AVCC to Annex B and puts the parameter sets from extradata in front of each keyframe.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest

from agent.camera.manager import CameraManager
from agent.config import CameraSettings
from agent.stream.h264 import (
    NAL_PPS,
    NAL_SPS,
    avcc_to_annexb,
    has_parameter_sets,
    nal_types,
    parse_extradata,
)
from agent.stream.track import RTP_TIME_BASE, PassthroughTrack

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(params=["in-band", "extradata-only"])
async def walkway_file(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CameraManager]:
    """The walkway clip as is (SPS/PPS repeated in-band) and with SPS/PPS stripped from the packets
    (then they exist only in the MP4's avcC extradata, as with cameras that put them in the SDP)."""
    clip = SAMPLES / "walkway.mp4"
    if request.param == "extradata-only":
        stripped = tmp_path / "no-inband-params.mp4"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip), "-t", "6", "-c", "copy",
             "-bsf:v", "filter_units=remove_types=7|8", str(stripped)],
            check=True,
        )  # fmt: skip
        clip = stripped
    manager = CameraManager([CameraSettings(name="walk", file=clip)])
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


async def test_annexb_with_parameter_sets_decodes_from_the_first_packet(
    walkway_file: CameraManager, request: pytest.FixtureRequest
) -> None:
    extradata_only = "extradata-only" in request.node.callspec.id
    fanout = walkway_file.get("walk").main
    track = PassthroughTrack(fanout.subscribe(from_gop=True), "walk")
    decoder = av.CodecContext.create("h264", "r")  # no extradata: only what the track sends
    try:
        packets = [await track.recv() for _ in range(30)]
    finally:
        track.stop()
    info = fanout.info
    assert info is not None and info.extradata and info.extradata[0] == 1  # avcC: the test's premise
    first = bytes(packets[0])
    assert first.startswith(b"\x00\x00\x00\x01") and has_parameter_sets(first)
    assert track.keyframes >= 1
    assert (track.parameter_sets_added >= 1) is extradata_only  # added only when missing in-band
    frames = []
    for p in packets:
        frames += decoder.decode(av.Packet(bytes(p)))
    assert frames and (frames[0].width, frames[0].height) == (768, 576)
    # RTP clock: 90 kHz, never going back
    stamps = [int(p.pts) for p in packets]
    assert packets[0].time_base == RTP_TIME_BASE and stamps == sorted(stamps) and stamps[-1] > stamps[0]
    assert track.packets == 30 and track.bytes == sum(len(bytes(p)) for p in packets)


def test_bitstream_helpers_on_crafted_input() -> None:
    sps, pps, idr = b"\x67\x42\x00\x1f\xaa", b"\x68\xce\x3c\x80", b"\x65\x88\x84\x00"
    avcc = bytes([1, 0x42, 0, 0x1F, 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
    avcc += bytes([1]) + len(pps).to_bytes(2, "big") + pps
    bs = parse_extradata(avcc)
    assert bs.length_size == 4
    assert bs.parameter_sets == b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps
    assert nal_types(bs.parameter_sets) == {NAL_SPS, NAL_PPS}
    sample = len(idr).to_bytes(4, "big") + idr
    assert avcc_to_annexb(sample, 4) == b"\x00\x00\x00\x01" + idr
    assert avcc_to_annexb(sample + b"\x00\x00\x01", 4) == b"\x00\x00\x00\x01" + idr  # torn tail dropped
    assert parse_extradata(b"\x00\x00\x00\x01" + sps).length_size == 0  # Annex B (RTSP) extradata
    assert parse_extradata(avcc[:9]).parameter_sets == b""  # truncated avcC: no crash
    assert parse_extradata(None).parameter_sets == b""
