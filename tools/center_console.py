"""A small center console: prints what agents publish, in one line per message.

Run by `make run` (tools/demo.py); standalone against any broker with a center certificate:
    python -m tools.center_console --host H --port 8883 --ca ca.crt --cert c.crt --key c.key --name center-ops
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from tools.center_client import CenterClient, CenterCreds


def _t(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts or 0).strftime("%H:%M:%S")


def _cams(cams: list[dict[str, Any]]) -> str:
    return (
        ", ".join(f"{c['name']}={c['state']}" + (f"@{c['fps']:.0f}fps" if c.get("fps") else "") for c in cams)
        or "-"
    )


def format_message(topic: str, d: dict[str, Any]) -> str | None:
    parts = topic.split("/")
    if len(parts) < 4:
        return None
    device, kind = parts[2], parts[3]
    if kind == "state":
        if d.get("status") == "online":
            loc = d.get("location") or {}
            return (
                f"[{_t(d.get('ts'))}] {device} BIRTH v{d.get('version')} owner={d.get('owner_org')!r} "
                f"loc={loc.get('province')}/{loc.get('district')}/{loc.get('commune')} "
                f"cameras=[{_cams(d.get('cameras', []))}] actions={len(d.get('actions', []))} "
                f"caps={sorted(d.get('capabilities', {}))}"
            )
        return f"[{_t(d.get('ts'))}] {device} OFFLINE ({d.get('reason')})"
    if kind == "telemetry":
        ob = d.get("outbox", {})
        feats = d.get("features", {})
        det = feats.get("detect")
        extra = ""
        if isinstance(det, dict) and det:
            extra = " detect=" + ",".join(f"{k}:{v}" for k, v in list(det.items())[:4])
        return (
            f"[{_t(d.get('ts'))}] {device} telemetry up={d.get('uptime_s', 0):.0f}s cpu={d.get('cpu_percent')}% "
            f"rss={d.get('process_rss_mb')}MB disk_free={d.get('disk_free_mb', 0) / 1024:.1f}GB "
            f"temp={d.get('temperature_c')} cams=[{_cams(d.get('cameras', []))}] "
            f"outbox pending={ob.get('pending')} sent={ob.get('delivered')} dropped={ob.get('dropped')}{extra}"
        )
    if kind in ("events", "counts", "alarms", "audit"):
        data = d.get("data", {})
        if kind == "events":
            extra = f" dwell={data['dwell_s']:.0f}s" if data.get("dwell_s") else ""
            return (
                f"[{_t(d.get('ts'))}] {device} EVENT {data.get('rule')}:{data.get('rule_name')} {data.get('label')} "
                f"track={data.get('track_id')} cam={data.get('camera')} score={data.get('score', 0):.2f}{extra} "
                f"snapshot={data.get('snapshot')}"
            )
        if kind == "counts":
            lines = ", ".join(
                f"{c['line']} {c['label']} {c['direction']}={c['count']}" for c in data.get("lines", [])
            )
            zones = ", ".join(
                f"{z['zone']} {z['label']} in={z['entries']} max={z['max_occupancy']}"
                for z in data.get("zones", [])
            )
            return (
                f"[{_t(d.get('ts'))}] {device} COUNTS cam={data.get('camera')} {data.get('bucket_s')}s "
                f"frames={data.get('frames')} paused={data.get('frames_paused')} lines[{lines or '-'}] zones[{zones or '-'}]"
            )
        if kind == "audit":
            return (
                f"[{_t(d.get('ts'))}] {device} audit {data.get('decision') or data.get('kind') or ''} "
                f"{data.get('action') or ''} by {data.get('requester') or '-'} ({data.get('role') or '-'}) "
                f"{data.get('reason') or ''}"
            )
        return f"[{_t(d.get('ts'))}] {device} ALARM {data}"
    return None


def printer(topic: str, payload: bytes, _retained: bool) -> None:
    import json

    try:
        line = format_message(topic, json.loads(payload))
    except ValueError:
        line = f"{topic}: (not JSON) {payload[:80]!r}"
    if line:
        print(line, flush=True)


async def _main(args: argparse.Namespace) -> None:
    client = CenterClient(
        CenterCreds(args.host, args.port, Path(args.ca), Path(args.cert), Path(args.key), args.name)
    )
    client.listeners.append(printer)
    await client.start()
    try:
        await asyncio.Event().wait()
    finally:
        await client.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8883)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--name", default="center-console")
    try:
        asyncio.run(_main(ap.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
