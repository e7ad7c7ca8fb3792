// The experiment page (definition, variants, health banner, per-metric
// forest plot, summary and numbers, lift over time, segments, who responds
// (uplift.js), sample size,
// freshness, and for admins the start/stop/archive controls) and its audit
// history.

import {allPages, api, path, query} from './api.js';
import {h, replace} from './dom.js';
import {defined, int, interval, num, pct, pval, when} from './format.js';
import {canWrite, errorAlert, field, loading, setTitle, statusBadge} from './ui.js';
import {forestPlot, measure, timeChart} from './charts.js';
import {notes, trustProblems} from './health.js';
import {upliftSection} from './uplift.js';
import {banditSection} from './bandit.js';

export function chartWidth(page) {
  return Math.min(760, Math.max(260, page.clientWidth - 4));
}

export async function experimentPage(page, ctx, key) {
  setTitle(key);
  replace(page, loading('the experiment'));
  let e;
  try {
    e = await api('GET', path('experiments', key));
  } catch (err) {
    replace(page, h('h1', {}, key), errorAlert(err));
    return;
  }
  if (!ctx.alive()) return;
  setTitle(e.name || e.key);
  const segment = (ctx.params.get('segment') || '').trim();
  const banner = h('div');
  const fresh = h('p', {class: 'freshness muted'});
  const results = h('div', {}, e.started_at ? loading('results') : h('p', {}, 'Not started yet: there are no results.'));
  const segments = h('div');
  replace(page,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/'}, 'Experiments'), ' › ', e.key),
    h('div', {class: 'title-row'},
      h('h1', {}, e.name || e.key, ' ', statusBadge(e.status)),
      actions(e, ctx)),
    h('p', {class: 'key'}, e.key),
    e.hypothesis ? h('p', {class: 'hypothesis'}, h('strong', {}, 'Hypothesis: '), e.hypothesis) : null,
    banner,
    fresh,
    h('section', {'aria-labelledby': 'results-h'}, h('h2', {id: 'results-h'}, 'Results'), results),
    e.started_at ? h('section', {'aria-labelledby': 'seg-h'}, h('h2', {id: 'seg-h'}, 'Segments ', h('span', {class: 'badge exploratory'}, 'exploratory')),
      segmentSwitcher(e, ctx, segment), segments) : null,
    e.started_at ? upliftSection(e) : null,
    e.allocation === 'bandit' ? banditSection(e, ctx) : null,
    definition(e),
    h('p', {}, h('a', {href: '#/experiments/' + encodeURIComponent(e.key) + '/history'}, 'Audit history of this experiment')));
  if (!e.started_at) return;

  let res;
  try {
    res = await api('GET', path('experiments', e.key, 'results') + query({segment}));
  } catch (err) {
    replace(results, errorAlert(err, 'The results could not be computed'));
    if (segment) replace(segments, errorAlert(err));
    return;
  }
  if (!ctx.alive()) return;
  showBanner(banner, res.health);
  fresh.textContent = freshness(res);
  const width = chartWidth(page);
  // Each primary metric also gets its cumulative lift over time (the
  // heaviest read, so only for them and one after the other).
  const overTime = new Map();
  replace(results, overview(e, res), res.metrics.map((m) => {
    const place = m.role === 'primary' ? h('div', {class: 'over-time'}, h('h4', {}, 'Lift over time'), loading('the daily series')) : null;
    if (place) overTime.set(m, place);
    return metricBlock(m, res, width, place);
  }), notesList(res.health));
  if (segment) replace(segments, segmentResults(res, segment));
  for (const [m, place] of overTime) {
    try {
      const ts = await api('GET', path('experiments', e.key, 'results', 'timeseries') + query({metric: m.metric}));
      place.lastChild.replaceWith(timeChart(ts, m, width));
    } catch (err) {
      place.lastChild.replaceWith(errorAlert(err, m.metric + ': the daily series could not be computed'));
    }
    if (!ctx.alive()) return;
  }
}

// actions are the admin's controls of an experiment; a viewer gets none.
function actions(e, ctx) {
  const edit = e.status === 'archived' ? null : h('a', {class: 'button', href: '#/experiments/' + encodeURIComponent(e.key) + '/edit'}, 'Edit');
  return lifecycleActions('experiments', e, ctx, {
    stop: 'Stop this experiment? Units stop being enrolled, and a stopped experiment cannot run again.',
    archive: 'Archive this experiment? It leaves the default list and frees its layer range.',
  }, edit);
}

// lifecycleActions are an admin's controls of an experiment or a holdout x
// (collection: 'experiments' or 'holdouts'): first extra (an Edit link)
// when given, then start for a draft, and stop (running) and archive
// (draft, stopped), each after asking questions[verb]. A viewer gets none.
export function lifecycleActions(collection, x, ctx, questions, extra) {
  if (!canWrite()) return h('p', {class: 'muted'}, 'Read-only (viewer key)');
  const status = h('div', {class: 'action-status', 'aria-live': 'polite'});
  const box = h('div', {class: 'actions'});
  const run = async (verb) => {
    status.replaceChildren();
    try {
      await api('POST', path(collection, x.key, verb));
      ctx.go(location.hash);
    } catch (err) {
      status.replaceChildren(errorAlert(err, 'Could not ' + verb));
    }
  };
  const confirmThen = (verb) => {
    const yes = h('button', {type: 'button', class: 'danger', on: {click: () => run(verb)}}, 'Yes, ' + verb + ' it');
    const no = h('button', {type: 'button', on: {click: () => status.replaceChildren()}}, 'Cancel');
    status.replaceChildren(h('div', {class: 'confirm', role: 'group', 'aria-label': 'Confirm ' + verb}, h('p', {}, questions[verb]), yes, ' ', no));
    yes.focus();
  };
  if (extra) box.append(extra);
  if (x.status === 'draft') box.append(h('button', {type: 'button', class: 'primary', on: {click: () => run('start')}}, 'Start'));
  if (x.status === 'running') box.append(h('button', {type: 'button', class: 'danger', on: {click: () => confirmThen('stop')}}, 'Stop'));
  if (x.status === 'draft' || x.status === 'stopped') box.append(h('button', {type: 'button', on: {click: () => confirmThen('archive')}}, 'Archive'));
  return h('div', {class: 'action-box'}, box, status);
}

export function showBanner(banner, health) {
  const problems = trustProblems(health);
  if (!problems.length) {
    banner.replaceChildren();
    return;
  }
  const names = problems.map((p) => p.phrase);
  replace(banner, h('div', {class: 'banner', role: 'alert'},
    h('h2', {}, 'Don’t trust these numbers yet'),
    h('p', {}, 'Because of ' + (names.length === 1 ? names[0] : names.slice(0, -1).join(', ') + ' and ' + names[names.length - 1]) + ':'),
    h('ul', {}, problems.map((p) => h('li', {}, p.text)))));
}

export function freshness(r) {
  const pending = r.pending_events === 0
    ? 'every acknowledged event is counted'
    : `${int(r.pending_events)} events pending (about ${num(r.lag_seconds)} s behind)`;
  return `Results as of ${when(r.as_of)}: ${pending}.`;
}

function definition(e) {
  const dl = h('dl', {class: 'definition'});
  const add = (term, ...value) => dl.append(h('dt', {}, term), h('dd', {}, ...value));
  if (!e.hypothesis) add('Hypothesis', h('span', {class: 'muted'}, 'none written'));
  add('Unit type', e.unit_type);
  add('Analysis', e.analysis === 'sequential' ? 'sequential (always valid: safe to look at any time)' : 'fixed horizon (read at the planned sample size)');
  add('Traffic', pct(e.traffic) + ' of eligible units');
  if (e.layer) add('Layer', e.layer + (e.layer_range ? ` (buckets ${e.layer_range[0]} to ${e.layer_range[1]})` : ''));
  add('Targeting', e.targeting ? h('pre', {}, JSON.stringify(e.targeting, null, 1)) : 'every unit');
  const overrides = Object.keys(e.overrides || {});
  if (overrides.length) add('Overrides', `${overrides.length} units forced to a variant (not analysed)`);
  const roles = [['Primary', e.metrics.primary], ['Guardrails', e.metrics.guardrails], ['Secondary', e.metrics.secondary]];
  add('Metrics', h('ul', {class: 'plain'}, roles.filter(([, list]) => list && list.length).map(([r, list]) => h('li', {}, r + ': ' + list.join(', ')))));
  add('Created', when(e.created_at));
  if (e.started_at) add('Started', when(e.started_at));
  if (e.stopped_at) add('Stopped', when(e.stopped_at));
  const variants = h('table', {class: 'responsive'},
    h('caption', {}, 'Variants (the first is the control)'),
    h('thead', {}, h('tr', {}, ['Variant', 'Weight', 'Share of eligible units', 'Payload'].map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, e.variants.map((v, i) => h('tr', {},
      h('th', {scope: 'row', 'data-label': 'Variant'}, v.key, i === 0 && v.key !== 'control' ? ' (control)' : ''),
      h('td', {'data-label': 'Weight', class: 'num'}, pct(v.weight)),
      h('td', {'data-label': 'Share of eligible units', class: 'num'}, pct(v.weight * e.traffic)),
      h('td', {'data-label': 'Payload'}, v.payload === undefined ? '—' : h('code', {}, JSON.stringify(v.payload)))))));
  return h('section', {'aria-labelledby': 'def-h'}, h('h2', {id: 'def-h'}, 'Definition'), dl, variants);
}

export function overview(e, res) {
  const srm = res.health.srm || {};
  const observed = srm.observed || [];
  const total = observed.reduce((a, b) => a + b, 0);
  const stratified = res.estimator === 'epoch-stratified';
  return h('div', {class: 'overview'},
    stratified ? h('p', {class: 'estimator'}, 'Epoch-stratified: the weights of this bandit changed while it ran, so each comparison is made within each weight epoch and the epochs are combined by their sizes (a pooled comparison would be biased if the base rate drifted).') : null,
    h('p', {}, `${int(res.units)} units analysed`,
      res.health.multiple_exposures ? `; ${int(res.health.multiple_exposures)} exposed to several variants (` +
        (stratified ? 'analysed in their first arm' : 'excluded') + ')' : '',
      res.health.overridden ? `; ${int(res.health.overridden)} overridden (excluded)` : '', '.'),
    h('table', {class: 'responsive compact'},
      h('caption', {}, 'Units per variant against ' + (stratified ? 'the split the weight epochs imply' : 'the configured split') + ' (sample ratio check, p = ' + pval(srm.p_value) + (srm.ok === false ? ': mismatch' : ': fine') + ')'),
      h('thead', {}, h('tr', {}, ['Variant', 'Units', 'Observed share', 'Configured share'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, e.variants.map((v, i) => h('tr', {},
        h('th', {scope: 'row', 'data-label': 'Variant'}, v.key),
        h('td', {'data-label': 'Units', class: 'num'}, int(observed[i])),
        h('td', {'data-label': 'Observed share', class: 'num'}, total ? pct(observed[i] / total) : 'n/a'),
        h('td', {'data-label': 'Configured share', class: 'num'}, pct(srm.expected ? srm.expected[i] : v.weight)))))));
}

export function metricBlock(m, res, width, overTime) {
  const how = measure(m);
  const mean = m.type === 'conversion' || m.type === 'retention' ? pct : num;
  const sequential = res.analysis === 'sequential';
  const rows = m.variants.map((v, i) => {
    if (i === 0) {
      return h('tr', {}, h('th', {scope: 'row', 'data-label': 'Variant'}, v.variant, v.variant === 'control' ? '' : ' (control)'),
        h('td', {'data-label': 'Units', class: 'num'}, int(v.units)),
        h('td', {'data-label': 'Mean', class: 'num'}, mean(v.mean)),
        h('td', {'data-label': how.field === 'lift' ? 'Lift' : 'Difference'}, '—'),
        h('td', {'data-label': 'p (adjusted)', class: 'num'}, '—'),
        h('td', {'data-label': 'Chance to win', class: 'num'}, '—'),
        h('td', {'data-label': 'CUPED'}, '—'),
        h('td', {'data-label': 'Maturing', class: 'num'}, int(v.maturing || 0)));
    }
    const e = v[how.field] || {};
    const cuped = v.cuped
      ? 'on: ' + (v.cuped[how.field] && defined(v.cuped[how.field].estimate) ? how.fmt(v.cuped[how.field].estimate) + ', ' : '') +
        'p ' + pval(v.cuped.p_value_adjusted ?? v.cuped.p_value) + ', variance ' + pct(-(v.cuped.variance_reduction || 0), true)
      : 'off';
    return h('tr', {}, h('th', {scope: 'row', 'data-label': 'Variant'}, v.variant),
      h('td', {'data-label': 'Units', class: 'num'}, int(v.units)),
      h('td', {'data-label': 'Mean', class: 'num'}, mean(v.mean)),
      h('td', {'data-label': how.field === 'lift' ? 'Lift' : 'Difference'}, defined(e.estimate) ? how.fmt(e.estimate) + ' (' + interval(e.ci, how.fmt) + ')' : 'n/a'),
      h('td', {'data-label': 'p (adjusted)', class: 'num'}, pval(v.p_value) + (defined(v.p_value_adjusted) && v.p_value_adjusted !== v.p_value ? ' (' + pval(v.p_value_adjusted) + ')' : '') + (v.significant ? ' ✓' : '')),
      h('td', {'data-label': 'Chance to win', class: 'num'}, pct(v.chance_to_win)),
      h('td', {'data-label': 'CUPED'}, cuped),
      h('td', {'data-label': 'Maturing', class: 'num'}, int(v.maturing || 0)));
  });
  const id = 'metric-' + m.metric;
  return h('section', {class: 'metric', 'aria-labelledby': id},
    h('h3', {id}, m.metric, ' ', h('span', {class: 'badge role-' + m.role}, m.role), ' ',
      h('span', {class: 'muted small'}, m.type + (m.direction === 'decrease' ? ', lower is better' : ', higher is better'))),
    h('p', {class: 'summary'}, m.summary),
    forestPlot(m, width, res.alpha),
    h('table', {class: 'responsive numbers'},
      h('caption', {}, m.metric + ': numbers' + (sequential ? ' (always-valid p-values and confidence sequences)' : '') + '; ✓ significant at ' + pct(res.alpha)),
      h('thead', {}, h('tr', {}, ['Variant', 'Units', 'Mean', how.field === 'lift' ? 'Lift (interval)' : 'Difference (interval)', 'p (adjusted)', 'Chance to win', 'CUPED', 'Maturing']
        .map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, rows)),
    m.sample_size ? sampleSize(m.sample_size) : null,
    overTime);
}

function sampleSize(ss) {
  const need = Math.ceil(ss.units_per_arm);
  if (!defined(ss.units_per_arm)) return h('p', {class: 'sample-size'}, 'Sample size: not enough data to plan yet.');
  const left = need - ss.smallest_arm;
  return h('p', {class: 'sample-size'}, `Sample size: about ${int(need)} units per arm are needed to detect a ${pct(ss.relative_mde)} relative change with ${pct(ss.power)} power; ` +
    (left > 0 ? `the smallest arm has ${int(ss.smallest_arm)}, so ${int(left)} more are still needed.` : `the smallest arm has ${int(ss.smallest_arm)}: reached.`));
}

export function notesList(health) {
  const n = notes(health);
  if (!n.length) return null;
  return h('div', {class: 'notes'}, h('h3', {}, 'Notes'), h('ul', {}, n.map((w) => h('li', {}, w))));
}

const segmentCaveat = 'Segment results are exploratory: their p-values are not corrected for the number of segments.';

// segmentSwitcher is the form that breaks the results down by an exposure
// attribute. It offers the attributes the experiment's exposures carry
// (GET .../attributes) as suggestions and names them in its hint; any
// other name can still be typed.
function segmentSwitcher(e, ctx, segment) {
  const list = h('datalist', {id: 'segment-attributes'});
  const input = h('input', {type: 'text', name: 'segment', value: segment, autocomplete: 'off', spellcheck: 'false', list: list.id});
  const row = field('Break down by exposure attribute', input, {hint: 'An attribute sent with exposures, e.g. device. ' + segmentCaveat});
  const form = h('form', {class: 'inline'}, row, list,
    h('button', {type: 'submit'}, 'Show segments'),
    segment ? h('a', {class: 'button', href: '#/experiments/' + encodeURIComponent(e.key)}, 'All units') : null);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    ctx.go('#/experiments/' + encodeURIComponent(e.key) + query({segment: input.value.trim()}));
  });
  api('GET', path('experiments', e.key, 'attributes')).then((r) => {
    const attrs = r.attributes || [];
    replace(list, attrs.map((a) => h('option', {value: a.name}, `${a.name}: ${int(a.units)} of ${int(r.sampled_units)} units`)));
    const hint = row.querySelector('.hint');
    const named = attrs.slice(0, 8).map((a) => a.name).join(', ') + (attrs.length > 8 ? `, and ${attrs.length - 8} more` : '');
    if (hint && attrs.length) hint.textContent = `Its exposures carry ${named}. ` + segmentCaveat;
    else if (hint && r.sampled_units > 0) hint.textContent = 'Its exposures carry no attributes, so there is nothing to break down by yet.';
  }).catch(() => {}); // without suggestions the field still works
  return form;
}

function segmentResults(res, attribute) {
  const values = Object.keys(res.segments || {}).sort();
  if (!values.length) return h('p', {}, `No exposure carried the attribute ${attribute}.`);
  return h('div', {class: 'segments'},
    h('p', {class: 'alert'}, `Exploratory: ${values.length} values of ${attribute}, each analysed on its own and not corrected for the number of segments looked at. Use them to form hypotheses, not to decide.`),
    values.map((v) => {
      const sr = res.segments[v];
      return h('section', {class: 'segment'},
        h('h3', {}, `${attribute} = ${v}`, ' ', h('span', {class: 'muted small'}, int(sr.units) + ' units')),
        (sr.warnings || []).filter((w) => !w.startsWith('segments by')).map((w) => h('p', {class: 'alert warn'}, w)),
        (sr.metrics || []).map((m) => h('div', {class: 'segment-metric'}, h('h4', {}, m.metric), h('p', {class: 'summary'}, m.summary))));
    }));
}

// historyPage lists the audit log of an experiment, newest last.
export async function historyPage(page, ctx, key) {
  setTitle('History of ' + key);
  replace(page, loading('the history'));
  let items;
  try {
    items = await allPages(path('experiments', key, 'history'), {}, 5000);
  } catch (err) {
    replace(page, h('h1', {}, 'History of ' + key), errorAlert(err));
    return;
  }
  if (!ctx.alive()) return;
  const show = (v) => (v === null || v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v));
  replace(page,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/'}, 'Experiments'), ' › ',
      h('a', {href: '#/experiments/' + encodeURIComponent(key)}, key), ' › history'),
    h('h1', {}, 'History of ' + key),
    h('table', {class: 'responsive history'},
      h('caption', {}, 'Every change, with who made it (the API key’s name)'),
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Changes'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, items.map((it) => h('tr', {},
        h('td', {'data-label': 'When'}, when(it.at)),
        h('td', {'data-label': 'Who'}, it.actor),
        h('td', {'data-label': 'Action'}, it.action),
        h('td', {'data-label': 'Changes'}, h('ul', {class: 'plain changes'}, Object.entries(it.changes || {}).map(([f, c]) =>
          h('li', {}, h('code', {}, f), ': ', show(c.from), ' → ', show(c.to))))))))));
}
