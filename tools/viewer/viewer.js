// Minimal live viewer: the browser offers (recvonly H.264), the console relays the offer to the
// agent over MQTT with a grant bound to this page's DTLS fingerprint, the agent answers.
// Non-trickle: the offer waits for ICE gathering, the answer carries the agent's candidates.
"use strict";

const $ = (id) => document.getElementById(id);
const viewer = { pc: null, session: null, state: "idle", error: null };
window.viewer = viewer; // for tests and debugging (getStats, state)

function status(text, isError = false) {
  viewer.state = text;
  if (isError) viewer.error = text;
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function preferH264(transceiver) {
  // Only H.264: the agent forwards the camera's H.264 as is and cannot send anything else.
  if (!window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities || !transceiver.setCodecPreferences) return;
  const codecs = RTCRtpReceiver.getCapabilities("video").codecs.filter((c) =>
    ["video/h264", "video/rtx"].includes(c.mimeType.toLowerCase()));
  if (codecs.some((c) => c.mimeType.toLowerCase() === "video/h264")) transceiver.setCodecPreferences(codecs);
}

function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, timeoutMs); // host candidates are enough on a LAN; do not hang on a slow STUN
  });
}

async function api(path, body) {
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok || !data || data.ok === false) {
    const err = data && data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${resp.status}`;
    throw new Error(err);
  }
  return data.result || {};
}

async function start(device, camera, stream) {
  await stop();
  viewer.error = null;
  status("connecting...");
  const pc = new RTCPeerConnection({ iceServers: window.VIEWER_ICE_SERVERS || [] });
  viewer.pc = pc;
  const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
  preferH264(transceiver);
  pc.ontrack = (ev) => {
    $("video").srcObject = ev.streams[0] || new MediaStream([ev.track]);
  };
  pc.onconnectionstatechange = () => {
    if (viewer.pc !== pc) return;
    if (pc.connectionState === "connected") status(`live: ${camera} (${stream})`);
    else if (pc.connectionState === "failed" || pc.connectionState === "closed") status(`ended (${pc.connectionState})`, true);
    else if (pc.connectionState === "disconnected") {
      status("connection lost, waiting...");
      // The agent ends sessions without a signaling message (grant expiry, limits, camera gone):
      // its side just closes. Do not wait for the browser's ~30 s ICE failure to say so.
      setTimeout(() => {
        if (viewer.pc === pc && pc.connectionState === "disconnected") end(pc, "ended (connection lost)");
      }, 5000);
    }
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 2000);
  try {
    const result = await api("api/stream/start", { device_id: device, camera, stream, sdp: pc.localDescription.sdp });
    viewer.session = { device, camera, id: result.session_id, endsAt: result.ends_at };
    if (result.ends_at) {
      // The agent stops forwarding when the grant expires; the page follows (after a grace, so that
      // clock skew cannot make the page end first and hide the agent's own enforcement).
      const ms = Math.max(0, result.ends_at * 1000 - Date.now()) + 2000;
      viewer.timer = setTimeout(() => { if (viewer.pc === pc) end(pc, "ended (grant expired)"); }, ms);
    }
    await pc.setRemoteDescription({ type: "answer", sdp: result.sdp });
    $("stop").disabled = false;
  } catch (e) {
    status(`refused: ${e.message}`, true);
    pc.close();
    viewer.pc = null;
  }
}

function end(pc, why) {
  clearTimeout(viewer.timer);
  pc.close();
  viewer.pc = null;
  viewer.session = null;
  $("stop").disabled = true;
  status(why, true);
}

async function stop() {
  clearTimeout(viewer.timer);
  const { pc, session } = viewer;
  viewer.pc = null;
  viewer.session = null;
  $("stop").disabled = true;
  if (session) {
    // Tell the agent first, so its audit says "stopped by requester" rather than "peer closed".
    try {
      await api("api/stream/stop", { device_id: session.device, camera: session.camera, session_id: session.id });
    } catch (_) { /* already ended on the agent (grant expiry, limit) */ }
  }
  if (pc) pc.close();
  if (session) status("stopped");
}

viewer.start = start;
viewer.stop = stop;

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  start($("device").value, $("camera").value, $("stream").value);
});
$("stop").addEventListener("click", () => stop());

// ?device=box-01&camera=gate&stream=sub&autoplay=1 pre-fills (and starts) the viewer.
const q = new URLSearchParams(location.search);
for (const k of ["device", "camera", "stream"]) if (q.get(k)) $(k).value = q.get(k);
if (q.get("autoplay") === "1" && $("device").value && $("camera").value) {
  start($("device").value, $("camera").value, $("stream").value);
}
