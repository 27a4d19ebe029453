// A small line chart on <canvas>: time on x, one or more series on y, drawn by hand
// (no library: a few lines here are easier to keep than a vendored dependency).

const PAD = { left: 48, right: 12, top: 10, bottom: 26 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function cssVar(el, name, dflt) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || dflt;
}

// series: [{label, color, dash, points: [[ms, value], ...]}];
// opts: {from, to, fmtX, minMax, marks: [ms of seconds to shade (e.g. stalled: no packets)],
//        dots: also a dot at each point}
export function drawChart(canvas, series, opts) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 600;
  const cssH = canvas.clientHeight || 160;
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const fg = cssVar(canvas, "--chart-fg", "#222");
  const grid = cssVar(canvas, "--chart-grid", "#ddd");
  const w = cssW - PAD.left - PAD.right;
  const h = cssH - PAD.top - PAD.bottom;
  const from = opts.from;
  const to = Math.max(opts.to, from + 1000);
  let max = opts.minMax || 0;
  for (const s of series) for (const [, v] of s.points) if (v != null && v > max) max = v;
  max = niceMax(max);
  const x = (ms) => PAD.left + ((ms - from) / (to - from)) * w;
  const y = (v) => PAD.top + h - (v / max) * h;

  ctx.fillStyle = cssVar(canvas, "--chart-mark", "rgba(200, 30, 30, 0.18)");
  const secW = Math.max(1, (1000 / (to - from)) * w);
  for (const ms of opts.marks || []) if (ms >= from) ctx.fillRect(x(ms) - secW / 2, PAD.top, secW, h);

  ctx.font = "12px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeStyle = grid;
  ctx.fillStyle = fg;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(PAD.left, yy); ctx.lineTo(PAD.left + w, yy); ctx.stroke();
    ctx.fillText(v >= 10 ? v.toFixed(0) : v.toFixed(v >= 1 ? 1 : 2), PAD.left - 6, yy);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const ticks = w < 260 ? 3 : 4;
  for (let i = 0; i <= ticks; i++) {
    const ms = from + ((to - from) * i) / ticks;
    ctx.fillText(opts.fmtX(ms), Math.min(Math.max(x(ms), PAD.left + 20), PAD.left + w - 20), PAD.top + h + 6);
  }
  ctx.strokeStyle = fg;
  ctx.beginPath(); ctx.moveTo(PAD.left + 0.5, PAD.top); ctx.lineTo(PAD.left + 0.5, PAD.top + h); ctx.stroke();

  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    for (const [ms, v] of s.points) {
      if (v == null || ms < from) { pen = false; continue; }
      if (pen) ctx.lineTo(x(ms), y(v)); else { ctx.moveTo(x(ms), y(v)); pen = true; }
    }
    ctx.stroke();
    ctx.setLineDash([]);
    if (opts.dots) {                         // sparse series (one point a day): each point shown
      ctx.fillStyle = s.color;
      for (const [ms, v] of s.points) {
        if (v == null || ms < from) continue;
        ctx.beginPath(); ctx.arc(x(ms), y(v), 3, 0, 2 * Math.PI); ctx.fill();
      }
    }
  }
}
