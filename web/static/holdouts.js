// Holdouts: the list, and a holdout's page (definition, the admin's
// start/stop/archive controls, and its results: held out against exposed
// to the program, drawn with the experiment page's pieces).

import {allPages, api, path} from './api.js';
import {h, replace} from './dom.js';
import {pct, when} from './format.js';
import {errorAlert, loading, setTitle, statusBadge} from './ui.js';
import {chartWidth, freshness, lifecycleActions, metricBlock, notesList, overview, showBanner} from './experiment.js';

export async function holdoutsPage(page, ctx) {
  setTitle('Holdouts');
  replace(page, h('h1', {}, 'Holdouts'), loading('holdouts'));
  let items;
  try {
    items = await allPages('/v1/holdouts', {status: 'all'}, 1000);
  } catch (err) {
    replace(page, h('h1', {}, 'Holdouts'), errorAlert(err, 'The holdouts could not be loaded'));
    return;
  }
  if (!ctx.alive()) return;
  const covers = (x) => [...x.experiments, ...x.layers.map((l) => 'layer ' + l)].join(', ');
  replace(page,
    h('h1', {}, 'Holdouts'),
    h('p', {class: 'muted'}, 'A holdout keeps a small, stable share of units out of a program of experiments, to measure the program’s total effect against them.'),
    items.length ? h('table', {class: 'list responsive'},
      h('caption', {class: 'visually-hidden'}, 'Holdouts'),
      h('thead', {}, h('tr', {}, ['Holdout', 'Status', 'Unit type', 'Held out', 'Covers'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, items.map((x) => h('tr', {},
        h('td', {'data-label': 'Holdout'}, h('a', {href: '#/holdouts/' + encodeURIComponent(x.key)}, x.name || x.key), h('div', {class: 'key'}, x.key)),
        h('td', {'data-label': 'Status'}, statusBadge(x.status)),
        h('td', {'data-label': 'Unit type'}, x.unit_type),
        h('td', {'data-label': 'Held out', class: 'num'}, pct(x.fraction)),
        h('td', {'data-label': 'Covers'}, covers(x)))))) : h('p', {}, 'No holdouts yet (create one with POST /v1/holdouts).'));
}

export async function holdoutPage(page, ctx, key) {
  setTitle(key);
  replace(page, loading('the holdout'));
  let x;
  try {
    x = await api('GET', path('holdouts', key));
  } catch (err) {
    replace(page, h('h1', {}, key), errorAlert(err));
    return;
  }
  if (!ctx.alive()) return;
  setTitle(x.name || x.key);
  const banner = h('div');
  const fresh = h('p', {class: 'freshness muted'});
  const results = h('div', {}, x.started_at ? loading('results') : h('p', {}, 'Not started yet: there are no results.'));
  replace(page,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/holdouts'}, 'Holdouts'), ' › ', x.key),
    h('div', {class: 'title-row'}, h('h1', {}, x.name || x.key, ' ', statusBadge(x.status)), actions(x, ctx)),
    h('p', {class: 'key'}, x.key),
    x.description ? h('p', {class: 'hypothesis'}, x.description) : null,
    banner,
    fresh,
    h('section', {'aria-labelledby': 'results-h'}, h('h2', {id: 'results-h'}, 'Held out vs. exposed to the program'), results),
    definition(x));
  if (!x.started_at) return;
  let res;
  try {
    res = await api('GET', path('holdouts', x.key, 'results'));
  } catch (err) {
    replace(results, errorAlert(err, 'The results could not be computed'));
    return;
  }
  if (!ctx.alive()) return;
  showBanner(banner, res.health);
  fresh.textContent = freshness(res);
  const arms = {variants: [{key: 'holdout', weight: x.fraction}, {key: 'exposed', weight: 1 - x.fraction}]};
  const width = chartWidth(page);
  replace(results,
    h('p', {class: 'muted'}, 'Arm holdout: units held out that would have been enrolled in a covered experiment. Arm exposed: units enrolled in one. The lift is the program’s total effect.'),
    overview(arms, res), res.metrics.map((m) => metricBlock(m, res, width, null)), notesList(res.health));
}

function actions(x, ctx) {
  return lifecycleActions('holdouts', x, ctx, {
    stop: 'Stop this holdout? Its units join the program’s experiments, and a stopped holdout cannot run again.',
    archive: 'Archive this holdout? It leaves the default list.',
  });
}

function definition(x) {
  const dl = h('dl', {class: 'definition'});
  const add = (term, ...value) => dl.append(h('dt', {}, term), h('dd', {}, ...value));
  add('Unit type', x.unit_type);
  add('Held out', pct(x.fraction) + ' of units');
  add('Experiments', x.experiments.length ? h('ul', {class: 'plain'}, x.experiments.map((k) => h('li', {}, h('a', {href: '#/experiments/' + encodeURIComponent(k)}, k)))) : 'none listed');
  add('Layers', x.layers.length ? x.layers.join(', ') : 'none');
  const roles = [['Primary', x.metrics.primary], ['Guardrails', x.metrics.guardrails], ['Secondary', x.metrics.secondary]];
  add('Metrics', h('ul', {class: 'plain'}, roles.filter(([, list]) => list && list.length).map(([r, list]) => h('li', {}, r + ': ' + list.join(', ')))));
  add('Created', when(x.created_at));
  if (x.started_at) add('Started', when(x.started_at));
  if (x.stopped_at) add('Stopped', when(x.stopped_at));
  return h('section', {'aria-labelledby': 'def-h'}, h('h2', {id: 'def-h'}, 'Definition'), dl,
    h('p', {}, 'Audit history: GET ', h('code', {}, '/v1/holdouts/' + x.key + '/history')));
}
