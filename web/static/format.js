// Number and date formatting, one way everywhere.

const nf = new Intl.NumberFormat('en', {maximumSignificantDigits: 4});
const intf = new Intl.NumberFormat('en', {maximumFractionDigits: 0});

export function defined(x) {
  return typeof x === 'number' && Number.isFinite(x);
}

// num formats a metric value (4 significant digits).
export function num(x) {
  return defined(x) ? nf.format(x) : 'n/a';
}

// int formats a count with thousands separators.
export function int(x) {
  return defined(x) ? intf.format(x) : 'n/a';
}

// pct formats a share as a percentage with one decimal; signed adds "+".
export function pct(x, signed) {
  if (!defined(x)) return 'n/a';
  let v = (100 * x).toFixed(1);
  if (v === '-0.0') v = '0.0';
  return (signed && x > 0 ? '+' : '') + v + '%';
}

// pval formats a p-value as the API's summaries do.
export function pval(p) {
  if (!defined(p)) return 'n/a';
  if (p < 0.001) return '< 0.001';
  return p.toFixed(3);
}

// interval formats [lo, hi] with f.
export function interval(ci, f) {
  if (!ci || !defined(ci[0]) || !defined(ci[1])) return 'n/a';
  return f(ci[0]) + ' to ' + f(ci[1]);
}

// when formats a timestamp as "2026-11-20 09:00 UTC".
export function when(iso) {
  if (!iso) return 'n/a';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

// daysRunning is the number of whole days since the experiment started, up
// to its stop (null when it never started).
export function daysRunning(e, now) {
  if (!e.started_at) return null;
  const end = e.stopped_at ? new Date(e.stopped_at) : (now || new Date());
  return Math.max(0, Math.floor((end - new Date(e.started_at)) / 86400000));
}
