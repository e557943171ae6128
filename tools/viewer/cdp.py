"""Drive Debian's Chromium headless over the DevTools protocol (CDP) from Python: no npm, no download.

Enough for tests and demos: open a page, evaluate JavaScript (promises awaited), collect console
messages. Chromium picks a free debugging port itself (``--remote-debugging-port=0``) and writes it
to ``DevToolsActivePort`` in its throwaway profile directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


class CdpError(RuntimeError):
    """Chromium could not start, or a CDP call / page script failed."""


class Chromium:
    """One headless browser with one page: ``async with Chromium() as browser: ...``."""

    def __init__(self, executable: str = CHROMIUM, *, start_timeout_s: float = 20.0) -> None:
        self.executable = executable
        self.start_timeout_s = start_timeout_s
        self.console: list[str] = []
        self._profile: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

    async def __aenter__(self) -> Chromium:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if not Path(self.executable).exists():
            raise CdpError(f"{self.executable} not found (Debian package: chromium)")
        self._profile = Path(tempfile.mkdtemp(prefix="cdp-chromium-"))
        self._proc = await asyncio.create_subprocess_exec(
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            "--remote-debugging-port=0",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        port_file = self._profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        while not (port_file.is_file() and "\n" in port_file.read_text()):
            if self._proc.returncode is not None or loop.time() > deadline:
                await self.close()
                raise CdpError("Chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        self._http = aiohttp.ClientSession()
        async with self._http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next((t for t in targets if t.get("type") == "page"), None)
        if page is None:
            await self.close()
            raise CdpError("Chromium has no page target")
        self._ws = await self._http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())
        await self.call("Runtime.enable")
        await self.call("Page.enable")

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                self.console.append(f"{data['params'].get('type')}: {text}"[:300])
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"].get("exceptionDetails", {})
                self.console.append(f"exception: {details.get('exception', {}).get('description', '')}"[:300])
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CdpError("DevTools connection closed"))

    async def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        if self._ws is None:
            raise CdpError("browser not started")
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        data = await asyncio.wait_for(fut, timeout)
        if "error" in data:
            raise CdpError(f"{method}: {data['error'].get('message')}")
        result: dict[str, Any] = data.get("result", {})
        return result

    async def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate in the page; a promise is awaited; the value comes back as JSON."""
        r = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout=timeout,
        )
        if "exceptionDetails" in r:
            details = r["exceptionDetails"]
            raise CdpError(f"page script failed: {details.get('exception', {}).get('description', details)}")
        return r.get("result", {}).get("value")

    async def goto(self, url: str, timeout: float = 20.0) -> None:
        await self.call("Page.navigate", {"url": url})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.evaluate("document.readyState") != "complete":
            if loop.time() > deadline:
                raise CdpError(f"{url} did not load")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
        self._ws, self._http, self._reader, self._proc, self._profile = None, None, None, None, None


# What the viewer page sees (tools/viewer/viewer.js exposes window.viewer): state, decoded frames.
VIEWER_PROBE = """(async () => {
  const v = window.viewer, video = document.getElementById("video");
  const r = { state: v.state, error: v.error, framesDecoded: 0, codec: null,
              width: video.videoWidth, height: video.videoHeight };
  if (v.pc) {
    const stats = await v.pc.getStats(), codecs = {};
    stats.forEach((x) => { if (x.type === "codec") codecs[x.id] = x.mimeType; });
    stats.forEach((x) => {
      if (x.type === "inbound-rtp" && x.kind === "video") {
        r.framesDecoded = x.framesDecoded || 0; r.codec = codecs[x.codecId] || null;
      }
    });
  }
  return r;
})()"""


async def watch(browser: Chromium, url: str, *, frames: int = 10, timeout: float = 20.0) -> dict[str, Any]:
    """Open the viewer at ``url`` (with autoplay=1); poll until ``frames`` decoded, an error, or timeout."""
    await browser.goto(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: dict[str, Any] = {}
    while loop.time() < deadline:
        seen = await browser.evaluate(VIEWER_PROBE)
        if seen.get("error") or (seen.get("framesDecoded", 0) >= frames and seen.get("width")):
            break
        await asyncio.sleep(0.2)
    return seen
