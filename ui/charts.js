// SVG charts drawn by our own code: a time histogram with drag-to-zoom, a
// multi-series time chart, and a timeline of points.

import { fmtMicros, fmtNum } from './util.js';

const NS = 'http://www.w3.org/2000/svg';
export const PALETTE = ['#2f6fbd', '#e07b39', '#3a9a5b', '#c0392b', '#8e5cc2', '#8c6d31', '#d6609b', '#5f6b7a', '#1aa3a3', '#b8a000'];

function s(tag, attrs = {}, ...kids) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

function niceMax(v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * The drawing width: about the page's content width (main is at most 1600
 * px wide), so text is not stretched. Taken from the window, not from the
 * layout: reading an element's width here would force a layout of the
 * whole page (a 100-row table) in the middle of rendering.
 */
function drawWidth() {
  return Math.max(480, Math.round(Math.min(window.innerWidth - 16, 1600) - 60));
}

function timeLabel(us, spanUs) {
  const t = fmtMicros(us);
  return spanUs > 2 * 86400e6 ? t.slice(5, 16) : t.slice(11, 19);
}

function axes(svg, W, H, pad, x0, x1, yMax, fmtY = fmtNum) {
  const g = s('g', { class: 'grid' });
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (H - pad.t - pad.b) * (1 - i / 4);
    g.append(s('line', { x1: pad.l, x2: W - pad.r, y1: y, y2: y }));
    g.append(s('text', { x: pad.l - 4, y: y + 3, 'text-anchor': 'end' }, fmtY((yMax * i) / 4)));
  }
  const span = x1 - x0;
  for (let i = 0; i <= 5; i++) {
    const x = pad.l + ((W - pad.l - pad.r) * i) / 5;
    g.append(s('text', { x, y: H - 4, 'text-anchor': i === 0 ? 'start' : i === 5 ? 'end' : 'middle' },
      timeLabel(x0 + (span * i) / 5, span)));
  }
  svg.append(g);
}

/**
 * Histogram of counts per bucket ({t: start µs, n}), bucket width `width` µs,
 * over [x0, x1). Dragging selects a range: onZoom(fromUs, toUs).
 */
export function histogram(buckets, { x0, x1, width, onZoom, height = 110 }) {
  const W = drawWidth(), H = height, pad = { l: 44, r: 8, t: 6, b: 16 };
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'hist', preserveAspectRatio: 'none', role: 'img' });
  const max = niceMax(Math.max(1, ...buckets.map((b) => b.n)));
  axes(svg, W, H, pad, x0, x1, max);
  const span = Math.max(1, x1 - x0);
  const px = (t) => pad.l + ((t - x0) / span) * (W - pad.l - pad.r);
  const ih = H - pad.t - pad.b;
  for (const b of buckets) {
    const x = px(b.t), w = Math.max(1, px(b.t + width) - x - 1), bh = (b.n / max) * ih;
    const r = s('rect', { class: 'bar', x, y: pad.t + ih - bh, width: w, height: bh });
    r.append(s('title', {}, `${fmtMicros(b.t)}  ${fmtNum(b.n)} events`));
    svg.append(r);
  }
  const sel = s('rect', { class: 'sel', x: 0, y: pad.t, width: 0, height: ih, visibility: 'hidden' });
  svg.append(sel);
  let start = null;
  const toX = (ev) => {
    const box = svg.getBoundingClientRect();
    return Math.min(W - pad.r, Math.max(pad.l, ((ev.clientX - box.left) / box.width) * W));
  };
  const toT = (x) => x0 + ((x - pad.l) / (W - pad.l - pad.r)) * span;
  svg.addEventListener('mousedown', (ev) => { start = toX(ev); sel.setAttribute('visibility', 'visible'); ev.preventDefault(); });
  svg.addEventListener('mousemove', (ev) => {
    if (start === null) return;
    const x = toX(ev);
    sel.setAttribute('x', Math.min(start, x));
    sel.setAttribute('width', Math.abs(x - start));
  });
  const end = (ev) => {
    if (start === null) return;
    const x = toX(ev), a = Math.min(start, x), b = Math.max(start, x);
    start = null;
    sel.setAttribute('visibility', 'hidden');
    if (b - a > 3 && onZoom) onZoom(Math.floor(toT(a)), Math.ceil(toT(b)));
  };
  svg.addEventListener('mouseup', end);
  svg.addEventListener('mouseleave', end);
  return svg;
}

/** Lines per series ({name, points: [{t, v}]}) over [x0, x1). */
export function lineChart(series, { x0, x1, height = 200, fmtY = fmtNum }) {
  const W = drawWidth(), H = height, pad = { l: 50, r: 10, t: 8, b: 16 };
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', preserveAspectRatio: 'none', role: 'img' });
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.points.map((p) => p.v))));
  axes(svg, W, H, pad, x0, x1, max, fmtY);
  const span = Math.max(1, x1 - x0), ih = H - pad.t - pad.b;
  series.forEach((ser, i) => {
    const d = ser.points.map((p, j) => {
      const x = pad.l + ((p.t - x0) / span) * (W - pad.l - pad.r);
      const y = pad.t + ih - (p.v / max) * ih;
      return `${j ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
    }).join('');
    const path = s('path', { d, fill: 'none', stroke: PALETTE[i % PALETTE.length], 'stroke-width': 1.6, 'vector-effect': 'non-scaling-stroke' });
    path.append(s('title', {}, ser.name));
    svg.append(path);
  });
  return svg;
}

/** Points on a time axis ({t, cls, title}), with optional spans ({t0, t1, title}). */
export function timeline(points, { x0, x1, spans = [], onClick }) {
  const W = drawWidth(), H = 64, pad = { l: 10, r: 10 };
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'timeline', preserveAspectRatio: 'none', role: 'img' });
  const span = Math.max(1, x1 - x0);
  const px = (t) => pad.l + ((t - x0) / span) * (W - pad.l - pad.r);
  svg.append(s('line', { x1: pad.l, x2: W - pad.r, y1: 30, y2: 30, stroke: '#c8d1dc' }));
  for (const sp of spans) {
    const r = s('rect', { class: 's', x: px(sp.t0), y: 22, width: Math.max(2, px(sp.t1) - px(sp.t0)), height: 16, rx: 2 });
    r.append(s('title', {}, sp.title));
    svg.append(r);
  }
  points.forEach((p, i) => {
    const c = s('circle', { cx: px(p.t), cy: 30, r: 5, class: p.cls || '' });
    c.append(s('title', {}, p.title));
    if (onClick) c.addEventListener('click', () => onClick(p, i));
    svg.append(c);
  });
  svg.append(s('text', { x: pad.l, y: 60 }, fmtMicros(x0)));
  svg.append(s('text', { x: W - pad.r, y: 60, 'text-anchor': 'end' }, fmtMicros(x1)));
  return svg;
}
