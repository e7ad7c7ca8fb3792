// The power calculator: POST /v1/power, asked either how many units detect
// a change, or what change a number of units can detect.

import {api} from './api.js';
import {h, replace} from './dom.js';
import {int, num, pct} from './format.js';
import {clearErrors, field, setTitle, showErrors} from './ui.js';

export async function powerPage(page) {
  setTitle('Power calculator');
  const num0 = (name, value, hint) => h('input', {type: 'number', name, value, step: 'any', inputmode: 'decimal', autocomplete: 'off'});
  const f = {
    type: h('select', {name: 'type'}, ['conversion', 'mean', 'count', 'retention'].map((t) => h('option', {value: t}, t))),
    baseline_rate: num0('baseline_rate', '0.05'),
    baseline_mean: num0('baseline_mean', ''),
    sd: num0('sd', ''),
    question: h('select', {name: 'question'}, h('option', {value: 'size'}, 'How many units detect a change?'),
      h('option', {value: 'mde'}, 'What change can these units detect?')),
    relative_mde: num0('relative_mde', '0.1'),
    units_per_arm: num0('units_per_arm', ''),
    alpha: num0('alpha', '0.05'),
    power: num0('power', '0.8'),
    variants: num0('variants', '2'),
  };
  const w = {
    type: field('Metric type', f.type),
    baseline_rate: field('Baseline rate (control’s conversion rate, 0 to 1)', f.baseline_rate),
    baseline_mean: field('Baseline mean (per unit)', f.baseline_mean),
    sd: field('Standard deviation (per unit)', f.sd),
    question: field('Question', f.question),
    relative_mde: field('Relative change to detect (0.1 = 10%)', f.relative_mde),
    units_per_arm: field('Units per arm available', f.units_per_arm),
    alpha: field('Significance level alpha', f.alpha),
    power: field('Power', f.power),
    variants: field('Arms, control included', f.variants),
  };
  const show = () => {
    const rate = f.type.value === 'conversion' || f.type.value === 'retention';
    w.baseline_rate.hidden = !rate;
    w.baseline_mean.hidden = rate;
    w.sd.hidden = rate;
    w.relative_mde.hidden = f.question.value !== 'size';
    w.units_per_arm.hidden = f.question.value === 'size';
  };
  f.type.addEventListener('change', show);
  f.question.addEventListener('change', show);
  show();
  const out = h('div', {'aria-live': 'polite'});
  const form = h('form', {class: 'edit', novalidate: true}, Object.values(w),
    h('div', {class: 'form-actions'}, h('button', {type: 'submit', class: 'primary'}, 'Calculate')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const body = {type: f.type.value};
    for (const k of ['baseline_rate', 'baseline_mean', 'sd', 'relative_mde', 'units_per_arm', 'alpha', 'power', 'variants']) {
      if (!w[k].hidden && f[k].value.trim() !== '') body[k] = Number(f[k].value);
    }
    try {
      const a = await api('POST', '/v1/power', body);
      replace(out, h('h2', {}, 'Answer'), h('dl', {class: 'definition'},
        h('dt', {}, 'Units per arm'), h('dd', {}, int(a.units_per_arm_ceiling)),
        h('dt', {}, 'Units in all'), h('dd', {}, int(a.total_units)),
        h('dt', {}, 'Relative change detected'), h('dd', {}, pct(a.relative_mde, true)),
        h('dt', {}, 'Absolute change detected'), h('dd', {}, num(a.absolute_mde)),
        h('dt', {}, 'Alpha per comparison'), h('dd', {}, num(a.alpha_per_comparison)),
        h('dt', {}, 'Power'), h('dd', {}, pct(a.power))),
        h('p', {class: 'muted'}, 'Two-sided test, equal arms; with more than two arms each comparison is planned at alpha divided by the comparisons.'));
    } catch (err) {
      replace(out);
      showErrors(form, err);
    }
  });
  replace(page, h('h1', {}, 'Power calculator'),
    h('p', {}, 'Plan an experiment: how many units it needs, or how small a change it can see.'), form, out);
}
