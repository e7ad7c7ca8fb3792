// The experiment page's "Who responds" section: the effect per segment of
// exposure attributes, the interaction tests and the targeting policy of
// GET /v1/experiments/{key}/uplift. It is a read (viewers may use it) and
// is computed on demand: it recomputes from raw events (about a second on
// 64,000 units).

import {api, path, query} from './api.js';
import {h, replace} from './dom.js';
import {defined, int, interval, num, pct, pval} from './format.js';
import {errorAlert, field, loading} from './ui.js';

// upliftSection returns the section for experiment e.
export function upliftSection(e) {
  const metrics = [...(e.metrics.primary || []), ...(e.metrics.guardrails || []), ...(e.metrics.secondary || [])];
  const metric = h('select', {name: 'uplift_metric'}, metrics.map((m) => h('option', {value: m}, m)));
  const by = h('input', {type: 'text', name: 'uplift_by', autocomplete: 'off', spellcheck: 'false'});
  const out = h('div', {class: 'uplift-out', 'aria-live': 'polite'});
  const button = h('button', {type: 'submit'}, 'Show who responds');
  const form = h('form', {class: 'inline uplift-form'},
    field('Uplift metric', metric),
    field('Segment attributes', by, {hint: 'Up to 4 exposure attributes, comma-separated, e.g. channel,newbie; empty: the experiment’s own. Use attributes fixed before the exposure.'}),
    button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    replace(out, loading('who responds'));
    try {
      const u = await api('GET', path('experiments', e.key, 'uplift') + query({metric: metric.value, by: by.value.replace(/\s+/g, '')}));
      replace(out, upliftView(u, e));
    } catch (err) {
      replace(out, errorAlert(err, 'Who responds could not be computed'));
    } finally {
      button.disabled = false;
    }
  });
  return h('section', {'aria-labelledby': 'uplift-h'},
    h('h2', {id: 'uplift-h'}, 'Who responds ', h('span', {class: 'badge exploratory'}, 'exploratory')),
    h('p', {class: 'muted'}, 'The effect of each variant per segment, whether it differs between segments, and whom to send it to next time (estimated on held-out data).'),
    form, out);
}

// effectFormat formats an effect in the metric's unit: percentage points
// for the rates of conversion and retention metrics.
function effectFormat(u) {
  if (isRate(u)) return (x) => (defined(x) ? (x > 0 ? '+' : '') + (100 * x).toFixed(2) + ' pp' : 'n/a');
  return (x) => (defined(x) ? (x > 0 ? '+' : '') + num(x) : 'n/a');
}

function isRate(u) {
  return u.type === 'conversion' || u.type === 'retention';
}

function upliftView(u, e) {
  const fmt = effectFormat(u);
  const mean = isRate(u) ? pct : num;
  const level = u.comparisons ? 1 - u.alpha / u.comparisons : 1 - u.alpha;
  const rules = (u.policy.variants || []).map((r) => h('li', {class: 'policy-rule'},
    h('span', {class: 'badge decision-' + r.decision}, decisionLabel(r.decision)), ' ', r.summary,
    r.decision === 'target' && r.send_to.length ? h('ul', {class: 'plain send-to'}, r.send_to.map((s) => h('li', {}, Object.entries(s).map(([k, v]) => k + ' = ' + v).join(', ')))) : null));
  return h('div', {class: 'uplift'},
    h('h3', {}, 'Targeting policy'),
    h('ul', {class: 'plain policy'}, rules),
    h('p', {class: 'muted small'}, `Gains in ${u.metric} per ${int(u.policy.per)} units, estimated by ${u.policy.folds}-fold cross-fitting: the segments of each fold are chosen on the other folds.`),
    h('table', {class: 'responsive uplift-segments'},
      h('caption', {}, `Effect of each variant per segment (${u.metric}: variant mean − control mean), ${u.units ? int(u.units) + ' units' : ''}; intervals hold together at ${pct(level)} (Bonferroni over ${u.comparisons} comparisons), p adjusted by Holm`),
      h('thead', {}, h('tr', {}, ['Segment', 'Variant', 'Units', 'Control mean', 'Variant mean', 'Effect (interval)', 'p (adjusted)'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, u.segments.map((s) => h('tr', {class: s.too_small ? 'too-small' : ''},
        h('th', {scope: 'row', 'data-label': 'Segment'}, s.attribute + ' = ' + s.value),
        h('td', {'data-label': 'Variant'}, s.variant),
        h('td', {'data-label': 'Units', class: 'num'}, int(s.units)),
        h('td', {'data-label': 'Control mean', class: 'num'}, mean(s.control_mean)),
        h('td', {'data-label': 'Variant mean', class: 'num'}, mean(s.variant_mean)),
        h('td', {'data-label': 'Effect (interval)'}, s.too_small ? fmt(s.effect) + ' (too few units for an interval)' : fmt(s.effect) + ' (' + interval(s.ci, fmt) + ')'),
        h('td', {'data-label': 'p (adjusted)', class: 'num'}, s.too_small ? '—' : pval(s.p_adjusted)))))),
    u.interaction.length ? h('table', {class: 'responsive uplift-interaction'},
      h('caption', {}, 'Does the effect differ between an attribute’s values? (Cochran’s Q test, p adjusted by Holm)'),
      h('thead', {}, h('tr', {}, ['Attribute', 'Variant', 'Values', 'p (adjusted)', 'Reading'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, u.interaction.map((it) => h('tr', {},
        h('th', {scope: 'row', 'data-label': 'Attribute'}, it.attribute),
        h('td', {'data-label': 'Variant'}, it.variant),
        h('td', {'data-label': 'Values', class: 'num'}, int(it.values)),
        h('td', {'data-label': 'p (adjusted)', class: 'num'}, pval(it.p_adjusted)),
        h('td', {'data-label': 'Reading'}, !defined(it.p_adjusted) ? 'not enough segments' : it.p_adjusted < u.alpha ? 'the effect differs' : 'no evidence that it differs'))))) : null,
    (u.warnings || []).length ? h('ul', {class: 'notes'}, u.warnings.map((w) => h('li', {}, w))) : null);
}

function decisionLabel(d) {
  return {target: 'target', all: 'send to all', none: 'send to none', inconclusive: 'inconclusive'}[d] || d;
}
