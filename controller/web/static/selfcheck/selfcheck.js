// The self-check page (issue 14): a person with the link, no account, on a phone or a laptop.
// Camera and microphone (getUserMedia), a preview and a level meter, then a WebRTC session of about
// `duration_s` with the controller's own peer; what this browser received (getStats inbound-rtp:
// loss, jitter, bitrate; the selected candidate pair's currentRoundTripTime and local type) and what
// it found of its devices go to the server, which adds what it received and answers the verdict in
// this page's language (kk/ru/en by the browser's language).
//
// Devices: ok | denied (NotAllowedError) | missing (NotFoundError) | black (the frames' mean luma,
// sampled on a canvas, below BLACK_LUMA in every sample) | frozen (every sample identical over the
// window) | silent (the level never above SILENT_RMS over the window; Chromium's fake microphone beeps
// about once a second, so a window of 2 s or more sees a beep). body[data-state] tells tests where it is.

const BLACK_LUMA = 16;          // of 255: darker than a lens in a dark room
const SILENT_RMS = 0.01;        // of full scale
const MIN_WINDOW_MS = 2000;     // a device is judged over at least this long
const SAMPLE_MS = 250;
// The browser says "connected" once its side of the DTLS handshake is done; the server's side may
// still wait for a lost flight (retried after 1, 2, 4 ... s on a lossy link), and until then it
// neither sends nor takes media. The window is measured from the first media the server sends
// (both sides are then under way), waiting at most this long for it.
const MEDIA_WAIT_MS = 15000;
const secret = location.pathname.split("/")[2] || "";
const base = `/self-check/${encodeURIComponent(secret)}`;
const $ = (id) => document.getElementById(id);

let words = {};
let lang = "ru";

function pickLang(available) {
  for (const l of navigator.languages || [navigator.language || ""]) {
    const short = String(l).toLowerCase().split("-")[0];
    if (available.includes(short)) return short;
  }
  return "ru";
}

function t(key, vars = {}) {
  const s = words[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] ?? m));
}

function state(s) { document.body.dataset.state = s; }

function show(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = false;
}

// As the staff's page writes them (i18n.js): "04.12.2026, 16:44", the language's decimal mark.
const LOCALES = { kk: "kk-KZ", ru: "ru-RU", en: "en-GB" };

function fmtTime(iso, tz) {
  const opts = { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23" };
  try {
    return new Intl.DateTimeFormat(LOCALES[lang], opts).format(new Date(iso));
  } catch {
    return iso;
  }
}

async function postJSON(path, data) {
  const resp = await fetch(`${base}${path}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data),
    credentials: "omit", referrerPolicy: "no-referrer",
  });
  const out = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(out.message || `HTTP ${resp.status}`);
  return out;
}

function deviceStatus(err) {
  if (!err) return "ok";
  if (err.name === "NotAllowedError" || err.name === "SecurityError") return "denied";
  return "missing";          // NotFoundError, OverconstrainedError, NotReadableError: no usable device
}

// Camera and microphone: together first (one prompt), each alone when that fails, to tell which.
async function grab() {
  const out = { camera: "missing", microphone: "missing", video: null, audio: null };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    out.camera = out.microphone = "denied";     // not a secure context: the browser offers no devices
    return out;
  }
  try {
    const s = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    out.video = s.getVideoTracks()[0] || null;
    out.audio = s.getAudioTracks()[0] || null;
    out.camera = out.video ? "ok" : "missing";
    out.microphone = out.audio ? "ok" : "missing";
    return out;
  } catch (_) {
    // fall through: ask for each alone
  }
  for (const [kind, key, track] of [["video", "camera", "video"], ["audio", "microphone", "audio"]]) {
    try {
      const s = await navigator.mediaDevices.getUserMedia({ [kind]: true });
      out[track] = s.getTracks()[0];
      out[key] = "ok";
    } catch (err) {
      out[key] = deviceStatus(err);
    }
  }
  return out;
}

// The camera's frames, sampled small on a canvas: mean luma and a fingerprint of each sample.
function cameraWatch(video) {
  const canvas = document.createElement("canvas");
  canvas.width = 64;
  canvas.height = 48;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const samples = [];
  const started = performance.now();
  const timer = setInterval(() => {
    if (video.readyState < 2) return;
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let luma = 0, print = 0;
    for (let i = 0; i < px.length; i += 4) {
      luma += 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
      print = (print * 31 + px[i] + 7 * px[i + 1] + 13 * px[i + 2]) >>> 0;
    }
    samples.push({ luma: luma / (px.length / 4), print });
  }, SAMPLE_MS);
  return {
    stop() { clearInterval(timer); },
    status() {
      if (samples.length < 4 || performance.now() - started < MIN_WINDOW_MS) return "ok";
      if (samples.every((s) => s.luma < BLACK_LUMA)) return "black";
      if (samples.every((s) => s.print === samples[0].print)) return "frozen";
      return "ok";
    },
  };
}

// The microphone's level on the meter; its loudest moment over the window.
function microphoneWatch(track, audioCtx) {
  const source = audioCtx.createMediaStreamSource(new MediaStream([track]));
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  let loudest = 0;
  const started = performance.now();
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    loudest = Math.max(loudest, rms);
    $("level").value = Math.min(1, rms * 4);
  }, 50);
  return {
    stop() { clearInterval(timer); source.disconnect(); },
    status() {
      if (performance.now() - started < MIN_WINDOW_MS) return "ok";
      return loudest < SILENT_RMS ? "silent" : "ok";
    },
  };
}

function waitFor(pc, test, events, ms) {
  return new Promise((resolve) => {
    if (test()) return resolve(true);
    const done = (v) => { clearTimeout(timer); events.forEach((e) => pc.removeEventListener(e, check)); resolve(v); };
    const check = () => { if (test()) done(true); else if (pc.connectionState === "failed") done(false); };
    const timer = setTimeout(() => done(test()), ms);
    events.forEach((e) => pc.addEventListener(e, check));
  });
}

async function snapshot(pc) {
  const stats = await pc.getStats();
  // Loss and jitter of the audio stream (no retransmissions to hide its losses: the same figure the
  // server takes of what it receives); the bitrate of everything received.
  const snap = { at: performance.now(), lost: 0, received: 0, bytes: 0, jitter: null, rtt: null, path: null };
  let pairId = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp") {
      snap.bytes += s.bytesReceived || 0;
      if (s.kind === "audio") {
        snap.lost += Math.max(0, s.packetsLost || 0);
        snap.received += s.packetsReceived || 0;
        if (s.jitter != null) snap.jitter = s.jitter * 1000;
      }
    }
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  if (!pairId) stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pairId = s.id; });
  const pair = pairId && stats.get(pairId);
  if (pair) {
    if (pair.currentRoundTripTime != null) snap.rtt = pair.currentRoundTripTime * 1000;
    const local = stats.get(pair.localCandidateId);
    if (local) snap.path = local.candidateType || null;
  }
  return snap;
}

async function session(info, tracks) {
  const pc = new RTCPeerConnection({ iceServers: info.ice_servers || [] });
  const remote = new MediaStream();
  pc.addEventListener("track", (e) => { remote.addTrack(e.track); $("remote").srcObject = remote; });
  for (const [kind, track] of [["audio", tracks.audio], ["video", tracks.video]]) {
    if (track) pc.addTrack(track, new MediaStream([track]));
    else pc.addTransceiver(kind, { direction: "recvonly" });
  }
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await waitFor(pc, () => pc.iceGatheringState === "complete", ["icegatheringstatechange"], 3000);
    const answer = await postJSON("/offer", { sdp: pc.localDescription.sdp, type: "offer" });
    await pc.setRemoteDescription(answer);
    const connected = await waitFor(pc, () => pc.connectionState === "connected", ["connectionstatechange"], 15000);
    if (!connected) return { pc, connected: false, error: `ICE ${pc.iceConnectionState}` };
    show("progress", t("selfcheck.page.connecting"));
    const mediaBy = performance.now() + MEDIA_WAIT_MS;
    let first = await snapshot(pc);
    while (first.received === 0 && performance.now() < mediaBy) {
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
      first = await snapshot(pc);
    }
    if (first.received === 0) {
      return { pc, connected: false, error: `no media from the court within ${MEDIA_WAIT_MS / 1000} s` };
    }
    const end = performance.now() + info.duration_s * 1000;
    while (performance.now() < end) {
      show("progress", t("selfcheck.page.running", { left: Math.ceil((end - performance.now()) / 1000) }));
      await new Promise((r) => setTimeout(r, 500));
    }
    const last = await snapshot(pc);
    const lost = last.lost - first.lost, received = last.received - first.received;
    const seconds = (last.at - first.at) / 1000;
    return {
      pc, connected: true, rtt_ms: last.rtt, path_type: last.path,
      inbound: {
        loss_ratio: lost + received > 0 ? lost / (lost + received) : null,
        jitter_ms: last.jitter,
        bitrate_kbps: seconds > 0 ? ((last.bytes - first.bytes) * 8) / seconds / 1000 : null,
      },
    };
  } catch (err) {
    return { pc, connected: false, error: String(err.message || err).slice(0, 200) };
  }
}

function fmt(v, digits) {
  if (v == null) return "—";
  return new Intl.NumberFormat(LOCALES[lang], { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}

async function run(info) {
  const button = $("start");
  button.disabled = true;
  $("result").hidden = true;
  state("running");
  show("progress", t("selfcheck.page.asking"));
  const AudioCtx = window.AudioContext || window.webkitAudioContext;
  const audioCtx = AudioCtx ? new AudioCtx() : null;     // made in the click: allowed to run
  const tracks = await grab();
  $("media").hidden = false;
  const preview = $("preview");
  if (tracks.video) preview.srcObject = new MediaStream([tracks.video]);
  const cam = tracks.video ? cameraWatch(preview) : null;
  const mic = tracks.audio && audioCtx ? microphoneWatch(tracks.audio, audioCtx) : null;
  $("camera-status").textContent = t(`selfcheck.device.${tracks.camera}`);
  $("microphone-status").textContent = t(`selfcheck.device.${tracks.microphone}`);
  const got = await session(info, tracks);
  const camera = cam ? cam.status() : tracks.camera;
  const microphone = mic ? mic.status() : tracks.microphone;
  cam?.stop();
  mic?.stop();
  $("camera-status").textContent = t(`selfcheck.device.${camera}`);
  $("microphone-status").textContent = t(`selfcheck.device.${microphone}`);
  $("progress").hidden = true;
  try {
    const out = await postJSON("/result", {
      connected: got.connected, error: got.error || null, camera, microphone,
      rtt_ms: got.rtt_ms ?? null, inbound: got.inbound || null, path_type: got.path_type || null, lang,
    });
    const res = $("result");
    res.dataset.verdict = out.verdict;
    res.dataset.status = out.status;
    $("verdict").textContent = t("selfcheck.page.verdict", { verdict: t(`verdict.${out.verdict}`) });
    $("reasons").replaceChildren(...out.reasons.map((r) => { const li = document.createElement("li"); li.textContent = r; return li; }));
    $("figures").textContent = got.connected ? t("selfcheck.page.figures", {
      rtt: fmt(got.rtt_ms, 0), loss: fmt(got.inbound?.loss_ratio != null ? got.inbound.loss_ratio * 100 : null, 1),
      kbps: fmt(got.inbound?.bitrate_kbps, 0),
    }) : "";
    $("done").textContent = t("selfcheck.page.done");
    res.hidden = false;
    state("done");
  } catch (err) {
    show("message", t("selfcheck.page.error", { error: err.message }));
    state("error");
  } finally {
    got.pc.close();
    for (const tr of [tracks.video, tracks.audio]) tr?.stop();
    audioCtx?.close();
    button.textContent = t("selfcheck.page.again");
    button.disabled = false;
  }
}

async function main() {
  const resp = await fetch(`${base}/info`, { credentials: "omit", referrerPolicy: "no-referrer" });
  const info = await resp.json().catch(() => ({}));
  const all = info.words || {};
  lang = pickLang(Object.keys(all).length ? Object.keys(all) : ["kk", "ru", "en"]);
  words = all[lang] || {};
  document.documentElement.lang = lang;
  document.title = t("selfcheck.page.title");
  $("title").textContent = t("selfcheck.page.title");
  if (!resp.ok) {
    const fallback = resp.status === 410 ? "This link has expired." : "This link is not valid.";
    show("message", words["selfcheck.page." + (resp.status === 410 ? "expired" : "invalid")] || fallback);
    state(resp.status === 410 ? "expired" : "invalid");
    return;
  }
  $("intro").textContent = t("selfcheck.page.intro", { name: info.name, seconds: Math.round(info.duration_s) + 5 });
  $("hearing").textContent = t("selfcheck.page.hearing", {
    court: info.hearing.court, start: fmtTime(info.hearing.start_utc, info.hearing.timezone),
  });
  $("level-label").textContent = t("selfcheck.page.level");
  $("camera-label").textContent = t("selfcheck.page.camera");
  $("microphone-label").textContent = t("selfcheck.page.microphone");
  const button = $("start");
  button.textContent = t("selfcheck.page.start");
  button.hidden = false;
  button.addEventListener("click", () => run(info));
  state("ready");
}

main();
