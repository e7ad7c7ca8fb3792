// The experiments list: key and name (links), status, unit type, days
// running, units, the primary metric's verdict and a health flag, filtered
// by status and by text.

import {allPages, api, path, query} from './api.js';
import {h, replace} from './dom.js';
import {daysRunning, int} from './format.js';
import {canWrite, errorAlert, field, loading, setTitle, statusBadge} from './ui.js';
import {trustProblems} from './health.js';
import {measure, verdict} from './charts.js';

const STATUSES = [['', 'Not archived'], ['draft', 'Draft'], ['running', 'Running'], ['stopped', 'Stopped'], ['archived', 'Archived'], ['all', 'All']];

export async function listPage(page, ctx) {
  setTitle('Experiments');
  const status = ctx.params.get('status') || '';
  const text = ctx.params.get('q') || '';
  const statusSel = h('select', {name: 'status'}, STATUSES.map(([v, l]) => h('option', {value: v, selected: v === status}, l)));
  const search = h('input', {type: 'search', name: 'q', value: text, autocomplete: 'off'});
  const filters = h('form', {class: 'filters', role: 'search'},
    field('Status', statusSel), field('Search', search, {hint: 'Key, name or hypothesis'}));
  const body = h('div', {}, loading('experiments'));
  replace(page,
    h('div', {class: 'title-row'}, h('h1', {}, 'Experiments'),
      canWrite() ? h('a', {class: 'button primary', href: '#/experiments/new'}, 'New experiment') : null),
    filters, body);

  const update = () => {
    const q = query({status: statusSel.value, q: search.value.trim()});
    history.replaceState(null, '', '#/' + q);
  };
  filters.addEventListener('submit', (ev) => ev.preventDefault());

  let items;
  try {
    items = await allPages('/v1/experiments', {status}, 1000);
  } catch (err) {
    replace(body, errorAlert(err, 'The experiments could not be loaded'));
    return;
  }
  if (!ctx.alive()) return;
  statusSel.addEventListener('change', () => {
    update();
    ctx.go('#/' + query({status: statusSel.value, q: search.value.trim()}));
  });

  const rows = new Map();
  const tbody = h('tbody');
  for (const e of items) {
    const cells = {units: h('td', {'data-label': 'Units', class: 'num'}, '…'), verdict: h('td', {'data-label': 'Primary metric'}, '…'),
      health: h('td', {'data-label': 'Health'}, '…')};
    const days = daysRunning(e);
    const tr = h('tr', {},
      h('td', {'data-label': 'Experiment'}, h('a', {href: '#/experiments/' + encodeURIComponent(e.key)}, e.name || e.key),
        h('div', {class: 'key'}, e.key)),
      h('td', {'data-label': 'Status'}, statusBadge(e.status)),
      h('td', {'data-label': 'Unit type'}, e.unit_type),
      h('td', {'data-label': 'Days running', class: 'num'}, days === null ? '—' : String(days)),
      cells.units, cells.verdict, cells.health);
    rows.set(e.key, {e, tr, cells, haystack: (e.key + ' ' + e.name + ' ' + e.hypothesis).toLowerCase()});
    tbody.append(tr);
  }
  const count = h('p', {class: 'muted', role: 'status'});
  const table = h('table', {class: 'list responsive'},
    h('caption', {class: 'visually-hidden'}, 'Experiments'),
    h('thead', {}, h('tr', {}, ['Experiment', 'Status', 'Unit type', 'Days running', 'Units', 'Primary metric', 'Health'].map((t) => h('th', {scope: 'col'}, t)))),
    tbody);
  const filter = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const r of rows.values()) {
      const ok = words.every((w) => r.haystack.includes(w));
      r.tr.hidden = !ok;
      if (ok) shown++;
    }
    count.textContent = shown === rows.size ? `${rows.size} experiments` : `${shown} of ${rows.size} experiments match`;
  };
  search.addEventListener('input', () => {
    filter();
    update();
  });
  filter();
  replace(body, items.length ? [count, table] : h('p', {}, 'No experiments here yet.',
    canWrite() ? [' ', h('a', {href: '#/experiments/new'}, 'Create one'), '.'] : null));

  // Results of started experiments, a few at a time.
  const queue = [...rows.values()];
  const worker = async () => {
    while (queue.length && ctx.alive()) {
      const r = queue.shift();
      await fillResults(r);
    }
  };
  await Promise.all([worker(), worker(), worker()]);
}

async function fillResults(r) {
  const {e, cells} = r;
  if (!e.started_at) {
    cells.units.textContent = '—';
    cells.verdict.textContent = e.metrics.primary.length ? e.metrics.primary[0] + ': not started' : 'none';
    cells.health.textContent = '—';
    return;
  }
  const primary = e.metrics.primary[0];
  let res;
  try {
    res = await api('GET', path('experiments', e.key, 'results') + query({metric: primary}));
  } catch (err) {
    cells.units.textContent = 'n/a';
    cells.verdict.textContent = 'results unavailable';
    cells.health.textContent = 'n/a';
    return;
  }
  cells.units.textContent = int(res.units);
  const m = res.metrics.find((x) => x.metric === primary);
  cells.verdict.replaceChildren(m ? verdictText(m) : 'no primary metric');
  const problems = trustProblems(res.health);
  cells.health.replaceChildren(problems.length
    ? h('span', {class: 'flag bad', title: problems.map((p) => p.text).join('\n')}, '⚠ ' + problems.map((p) => p.name).join(', '))
    : h('span', {class: 'flag ok'}, '✓ OK'));
}

// verdictText sums up the primary metric: the best significant variant,
// or why there is none.
function verdictText(m) {
  const how = measure(m);
  const arms = m.variants.slice(1);
  if (!arms.some((v) => v.p_value !== null && v.p_value !== undefined)) return m.metric + ': not enough data';
  const good = arms.filter((v) => verdict(v, m.direction) === 'good');
  const bad = arms.filter((v) => verdict(v, m.direction) === 'bad');
  const fmt = (v) => v.variant + ' ' + (v[how.field] ? how.fmt(v[how.field].estimate) : '');
  if (good.length) return h('span', {class: 'verdict good'}, m.metric + ': ' + good.map(fmt).join(', ') + ' better');
  if (bad.length) return h('span', {class: 'verdict bad'}, m.metric + ': ' + bad.map(fmt).join(', ') + ' worse');
  return h('span', {class: 'verdict'}, m.metric + ': no significant difference');
}
