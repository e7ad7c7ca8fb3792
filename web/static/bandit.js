// The bandit block of the experiment page: the settings, the current
// weights, and every weight epoch with the posterior that gave it
// (GET /v1/experiments/{key}/epochs).

import {api, path} from './api.js';
import {h, replace} from './dom.js';
import {int, num, pct, when} from './format.js';
import {errorAlert, loading} from './ui.js';

// banditSection returns the section at once and fills the epochs when they
// arrive; ctx.alive() stops it after the user has left the page.
export function banditSection(e, ctx) {
  const b = e.bandit || {};
  const epochs = h('div', {}, e.started_at ? loading('the weight epochs') : h('p', {class: 'muted'}, 'Not started yet: epoch 0 begins at the start, at the weights below.'));
  const section = h('section', {'aria-labelledby': 'bandit-h', class: 'bandit'},
    h('h2', {id: 'bandit-h'}, 'Bandit'),
    h('p', {}, `Thompson sampling on ${e.metrics.primary.join(', ')}: every ${b.period} after a burn-in of ${b.burn_in}, `,
      `the weights move towards the arm most likely to be best; each arm keeps at least ${pct(b.floor)}. `,
      'A unit keeps the arm it was first given. Results compare the arms within each weight epoch and combine the epochs by their sizes (epoch-stratified), because pooling epochs with different weights is biased when the base rate drifts.'),
    h('p', {class: 'current-weights'}, 'Current weights: ', e.variants.map((v, i) => [i ? ', ' : '', h('strong', {}, v.key), ' ', pct(v.weight)])),
    epochs);
  if (e.started_at) load(e, ctx, epochs);
  return section;
}

async function load(e, ctx, place) {
  let ans;
  try {
    ans = await api('GET', path('experiments', e.key, 'epochs'));
  } catch (err) {
    replace(place, errorAlert(err, 'The weight epochs could not be read'));
    return;
  }
  if (!ctx.alive()) return;
  if (!ans.epochs.length) {
    replace(place, h('p', {class: 'muted'}, 'No epoch recorded yet: the first update cycle (within a minute of the start) records epoch 0.'));
    return;
  }
  const keys = e.variants.map((v) => v.key);
  replace(place, h('table', {class: 'responsive epochs'},
    h('caption', {}, 'Weight epochs, oldest first (P(best): the posterior probability that the arm is best, before the floor)'),
    h('thead', {}, h('tr', {}, ['Epoch', 'Started', ...keys.map((k) => k + ' weight'), ...keys.map((k) => k + ' P(best)'), 'Units so far'].map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, ans.epochs.map((ep) => {
      const post = ep.posterior || {};
      const units = keys.reduce((n, k) => n + ((post[k] || {}).n || 0), 0);
      return h('tr', {},
        h('th', {scope: 'row', 'data-label': 'Epoch'}, String(ep.epoch)),
        h('td', {'data-label': 'Started'}, when(ep.started_at)),
        keys.map((k) => h('td', {'data-label': k + ' weight', class: 'num'}, pct(ep.weights[k]))),
        keys.map((k) => h('td', {'data-label': k + ' P(best)', class: 'num'}, post[k] ? num(post[k].prob_best) : '—')),
        h('td', {'data-label': 'Units so far', class: 'num'}, ep.posterior ? int(units) : '—'));
    }))));
}
