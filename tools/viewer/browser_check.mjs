// Drive the system Chromium (no browser download) through playwright-core: open the viewer page,
// wait until video frames are decoded, print ONE JSON line with what the page saw.
//   node browser_check.mjs <viewer-url> [timeout-ms]
import { chromium } from "playwright-core";

const url = process.argv[2];
const timeoutMs = Number(process.argv[3] || 20000);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
];

const browser = await chromium.launch({ executablePath, args, headless: true });
const out = { url, framesDecoded: 0, width: 0, height: 0, state: null, error: null, codec: null, console: [] };
try {
  const page = await browser.newPage();
  page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`.slice(0, 300)));
  page.on("pageerror", (e) => out.console.push(`pageerror: ${e.message}`.slice(0, 300)));
  await page.goto(url);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const s = await page.evaluate(async () => {
      const v = window.viewer;
      const video = document.getElementById("video");
      const r = { state: v.state, error: v.error, framesDecoded: 0, codec: null,
                  width: video.videoWidth, height: video.videoHeight };
      if (v.pc) {
        const stats = await v.pc.getStats();
        const codecs = {};
        stats.forEach((x) => { if (x.type === "codec") codecs[x.id] = x.mimeType; });
        stats.forEach((x) => {
          if (x.type === "inbound-rtp" && x.kind === "video") {
            r.framesDecoded = x.framesDecoded || 0;
            r.codec = codecs[x.codecId] || null;
          }
        });
      }
      return r;
    });
    Object.assign(out, s);
    if (out.error) break;
    if (out.framesDecoded >= 10 && out.width > 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  if (process.argv[4] === "--stop") {
    await page.evaluate(() => window.viewer.stop());
    out.afterStop = await page.evaluate(() => window.viewer.state);
  }
} catch (e) {
  out.error = String(e && e.message || e);
} finally {
  await browser.close();
}
out.console = out.console.slice(-20);
console.log(JSON.stringify(out));
