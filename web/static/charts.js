// Hand-written SVG charts: a forest plot of each variant's lift with its
// interval against zero, and the cumulative lift over time. Colours are
// the Okabe-Ito palette (safe for every common colour-vision deficiency),
// and nothing is told by colour alone: markers differ in shape and fill,
// lines in dash pattern, and every number is also written out.

import {h, s} from './dom.js';
import {defined, num, pct, pval} from './format.js';

export const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9'];
const DASHES = ['', '7 4', '2 3', '9 3 2 3', '4 2', '12 4'];
const INK = '#1a1a1a';
const GRID = '#d0d0d0';
const MUTED = '#4d4d4d';

// ticks returns round values covering [lo, hi], about n of them.
export function ticks(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = (f >= 7.5 ? 10 : f >= 3.5 ? 5 : f >= 1.5 ? 2 : 1) * mag;
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

// domain is [lo, hi] around the values, zero included, padded.
function domain(values) {
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (lo === hi) {
    lo -= 0.01;
    hi += 0.01;
  }
  const pad = (hi - lo) * 0.08;
  const t = ticks(lo - pad, hi + pad, 5);
  return [Math.min(lo - pad, t[0]), Math.max(hi + pad, t[t.length - 1])];
}

// scale maps [d0, d1] onto [r0, r1].
function scale(d0, d1, r0, r1) {
  return (v) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0);
}

// measure is how a metric's comparison is drawn: the relative lift when the
// control's mean allows one, else the difference in the metric's units.
export function measure(m) {
  const control = m.variants[0] || {};
  const useLift = defined(control.mean) && control.mean > 0 &&
    m.variants.slice(1).some((v) => v.lift && defined(v.lift.estimate));
  return useLift
    ? {field: 'lift', label: 'Lift vs control (%)', fmt: (x) => pct(x, true)}
    : {field: 'diff', label: 'Difference vs control (' + m.metric + ' units)', fmt: (x) => (x > 0 ? '+' : '') + num(x)};
}

// verdict says whether a variant's comparison is good, bad or unclear for
// a metric of that direction.
export function verdict(v, direction) {
  if (!v.significant || !v.diff || !defined(v.diff.estimate)) return 'unclear';
  const up = v.diff.estimate > 0;
  return up === (direction !== 'decrease') ? 'good' : 'bad';
}

const LOOK = {
  good: {colour: COLOURS[0], label: 'significant, better'},
  bad: {colour: COLOURS[1], label: 'significant, worse'},
  unclear: {colour: MUTED, label: 'not significant'},
};

function marker(kind, x, y, size) {
  const c = LOOK[kind].colour;
  if (kind === 'good') return s('circle', {cx: x, cy: y, r: size, fill: c, stroke: c});
  if (kind === 'bad') {
    const r = size * 1.3;
    return s('path', {d: `M${x} ${y - r}L${x + r} ${y}L${x} ${y + r}L${x - r} ${y}Z`, fill: c, stroke: c});
  }
  return s('circle', {cx: x, cy: y, r: size, fill: '#ffffff', stroke: c, 'stroke-width': 2});
}

function legendItem(icon, text) {
  return h('span', {class: 'legend-item'}, s('svg', {width: 28, height: 14, viewBox: '0 0 28 14', 'aria-hidden': 'true'}, icon), text);
}

function clip(text, chars) {
  return text.length <= chars ? text : text.slice(0, Math.max(1, chars - 1)) + '…';
}

// forestPlot draws each non-control variant of metric result m: its
// estimate and interval, against zero, width pixels wide.
export function forestPlot(m, width, alpha) {
  const how = measure(m);
  const rows = m.variants.slice(1);
  const W = Math.max(260, Math.round(width));
  const labelW = Math.min(130, Math.round(W * 0.28));
  const rowH = 44;
  const top = 10;
  const x0 = labelW + 10;
  const x1 = W - 14;
  const H = top + rows.length * rowH + 42;
  const values = [];
  for (const v of rows) {
    const e = v[how.field];
    if (e && defined(e.estimate)) values.push(e.estimate);
    if (e && e.ci) values.push(...e.ci.filter(defined));
  }
  const [d0, d1] = domain(values);
  const x = scale(d0, d1, x0, x1);
  const level = defined(alpha) ? Math.round((1 - alpha) * 1000) / 10 + '%' : '95%';
  const label = m.metric + ': lift by variant';
  const svg = s('svg', {class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label},
    s('title', {}, label));
  const axisY = top + rows.length * rowH + 4;
  for (const t of ticks(d0, d1, W < 420 ? 3 : 5)) {
    svg.append(s('line', {x1: x(t), x2: x(t), y1: top - 4, y2: axisY, stroke: GRID}),
      s('text', {x: x(t), y: axisY + 15, 'text-anchor': 'middle', 'font-size': 12, fill: INK}, how.fmt(t)));
  }
  svg.append(s('line', {x1: x(0), x2: x(0), y1: top - 6, y2: axisY, stroke: INK, 'stroke-width': 1.5, 'stroke-dasharray': '4 3'}),
    s('text', {x: x1, y: axisY + 33, 'text-anchor': 'end', 'font-size': 12, fill: INK}, how.label + ', ' + level + ' interval'));
  rows.forEach((v, i) => {
    const cy = top + i * rowH + 16;
    const e = v[how.field];
    svg.append(s('text', {x: 0, y: cy + 4, 'font-size': 13, fill: INK}, s('title', {}, v.variant), clip(v.variant, Math.floor(labelW / 7.5))));
    if (!e || !defined(e.estimate) || !defined(v.p_value)) {
      svg.append(s('text', {x: (x0 + x1) / 2, y: cy + 4, 'text-anchor': 'middle', 'font-size': 12, fill: MUTED, stroke: '#ffffff', 'stroke-width': 4, 'paint-order': 'stroke'}, 'not enough data'));
      return;
    }
    const kind = verdict(v, m.direction);
    const c = LOOK[kind].colour;
    if (e.ci && defined(e.ci[0]) && defined(e.ci[1])) {
      const a = x(e.ci[0]);
      const b = x(e.ci[1]);
      svg.append(s('line', {x1: a, x2: b, y1: cy, y2: cy, stroke: c, 'stroke-width': 3}),
        s('line', {x1: a, x2: a, y1: cy - 6, y2: cy + 6, stroke: c, 'stroke-width': 2}),
        s('line', {x1: b, x2: b, y1: cy - 6, y2: cy + 6, stroke: c, 'stroke-width': 2}));
    }
    svg.append(marker(kind, x(e.estimate), cy, 6));
    const ci = e.ci && defined(e.ci[0]) ? ' (' + how.fmt(e.ci[0]) + ' to ' + how.fmt(e.ci[1]) + ')' : '';
    svg.append(s('text', {x: (x0 + x1) / 2, y: cy + 22, 'text-anchor': 'middle', 'font-size': 12, fill: INK, stroke: '#ffffff', 'stroke-width': 4, 'paint-order': 'stroke'},
      how.fmt(e.estimate) + ci + ', p ' + (pval(v.p_value_adjusted ?? v.p_value).startsWith('<') ? '' : '= ') + pval(v.p_value_adjusted ?? v.p_value)));
  });
  const legend = h('figcaption', {class: 'legend'},
    legendItem(marker('good', 14, 7, 5), LOOK.good.label),
    legendItem(marker('bad', 14, 7, 4), LOOK.bad.label),
    legendItem(marker('unclear', 14, 7, 5), LOOK.unclear.label),
    legendItem(s('line', {x1: 3, x2: 25, y1: 7, y2: 7, stroke: INK, 'stroke-width': 2}), level + ' interval'),
    legendItem(s('line', {x1: 14, x2: 14, y1: 0, y2: 14, stroke: INK, 'stroke-dasharray': '4 3', 'stroke-width': 1.5}), 'no change'));
  return h('figure', {class: 'plot'}, svg, legend);
}

// timeChart draws the cumulative lift (or difference) of each non-control
// variant per day, with its interval as a band, from a timeseries document.
export function timeChart(ts, m, width) {
  const how = measure(m);
  const points = (ts.points || []).filter((p) => p.variants && p.variants.length > 1);
  const label = ts.metric + ': cumulative ' + (how.field === 'lift' ? 'lift' : 'difference') + ' over time';
  if (points.length === 0) {
    return h('p', {class: 'muted', role: 'img', 'aria-label': label}, 'No days with data yet for ' + ts.metric + '.');
  }
  const names = points[0].variants.slice(1).map((v) => v.variant);
  const W = Math.max(260, Math.round(width));
  const H = W < 420 ? 220 : 260;
  const left = 58;
  const right = 12;
  const top = 26;
  const bottom = 40;
  const series = names.map((name, i) => points.map((p) => {
    const v = p.variants[i + 1] || {};
    const e = v[how.field] || {};
    return {date: p.date, est: e.estimate, lo: e.ci ? e.ci[0] : null, hi: e.ci ? e.ci[1] : null};
  }));
  // The first days' intervals are wide; the scale follows the estimates
  // and the intervals of the later half, and the bands are clipped to it.
  const values = [];
  series.forEach((pts) => pts.forEach((p, j) => {
    if (defined(p.est)) values.push(p.est);
    if (j >= Math.floor(pts.length / 2)) [p.lo, p.hi].filter(defined).forEach((v) => values.push(v));
  }));
  const [d0, d1] = domain(values);
  const n = points.length;
  const x = (j) => (n === 1 ? (left + W - right) / 2 : left + (j / (n - 1)) * (W - left - right));
  const y = scale(d0, d1, H - bottom, top);
  const clipID = 'clip-' + ts.metric.replace(/[^a-z0-9]/gi, '') + '-' + Math.random().toString(36).slice(2, 8);
  const svg = s('svg', {class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label},
    s('title', {}, label),
    s('defs', {}, s('clipPath', {id: clipID}, s('rect', {x: left, y: top, width: W - left - right, height: H - top - bottom}))));
  for (const t of ticks(d0, d1, 4)) {
    svg.append(s('line', {x1: left, x2: W - right, y1: y(t), y2: y(t), stroke: GRID}),
      s('text', {x: left - 6, y: y(t) + 4, 'text-anchor': 'end', 'font-size': 12, fill: INK}, how.fmt(t)));
  }
  svg.append(s('line', {x1: left, x2: W - right, y1: y(0), y2: y(0), stroke: INK, 'stroke-width': 1.5, 'stroke-dasharray': '4 3'}),
    s('text', {x: left - 50, y: 14, 'font-size': 12, fill: INK}, how.label + ', cumulative'));
  const every = Math.max(1, Math.ceil(n / (W < 420 ? 3 : 6)));
  points.forEach((p, j) => {
    if (j % every === 0 && n - 1 - j >= every / 2 || j === n - 1) {
      const anchor = n === 1 ? 'middle' : j === 0 ? 'start' : j === n - 1 ? 'end' : 'middle';
      svg.append(s('text', {x: x(j), y: H - bottom + 16, 'text-anchor': anchor, 'font-size': 12, fill: INK}, p.date.slice(5)));
    }
  });
  svg.append(s('text', {x: W - right, y: H - 6, 'text-anchor': 'end', 'font-size': 12, fill: INK}, 'Day (UTC, month-day)'));
  const plot = s('g', {'clip-path': `url(#${clipID})`});
  series.forEach((pts, i) => {
    const c = COLOURS[i % COLOURS.length];
    const band = pts.map((p, j) => [j, p]).filter(([, p]) => defined(p.lo) && defined(p.hi));
    if (band.length > 1) {
      const d = band.map(([j, p], k) => (k ? 'L' : 'M') + x(j) + ' ' + y(p.hi)).join('') +
        band.slice().reverse().map(([j, p]) => 'L' + x(j) + ' ' + y(p.lo)).join('') + 'Z';
      plot.append(s('path', {d, fill: c, 'fill-opacity': 0.14, stroke: 'none'}));
    }
    const line = pts.map((p, j) => [j, p]).filter(([, p]) => defined(p.est));
    if (line.length > 1) {
      plot.append(s('path', {d: line.map(([j, p], k) => (k ? 'L' : 'M') + x(j) + ' ' + y(p.est)).join(''),
        fill: 'none', stroke: c, 'stroke-width': 2.5, 'stroke-dasharray': DASHES[i % DASHES.length] || null}));
    }
    if (n <= 60) line.forEach(([j, p]) => plot.append(s('circle', {cx: x(j), cy: y(p.est), r: 3, fill: c})));
  });
  svg.append(plot);
  const legend = h('figcaption', {class: 'legend'},
    names.map((name, i) => legendItem(s('line', {x1: 2, x2: 26, y1: 7, y2: 7, stroke: COLOURS[i % COLOURS.length], 'stroke-width': 3,
      'stroke-dasharray': DASHES[i % DASHES.length] || null}), name + ' vs ' + points[0].variants[0].variant)),
    legendItem(s('rect', {x: 2, y: 2, width: 24, height: 10, fill: COLOURS[0], 'fill-opacity': 0.14}), 'shaded: ' +
      (ts.analysis === 'sequential' ? 'confidence sequence' : 'daily interval (fixed-horizon: not a stopping rule)')));
  return h('figure', {class: 'plot'}, svg, legend);
}
