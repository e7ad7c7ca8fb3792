// The experiment form: create a draft, or edit one (only the changed
// fields are sent, so a running experiment's allowed changes go through).
// The API validates; its errors appear at their fields with
// aria-invalid="true", and nothing is saved.

import {allPages, api, path} from './api.js';
import {h, replace} from './dom.js';
import {canWrite, clearErrors, errorAlert, field, loading, localError, parseJSON, setTitle, showErrors} from './ui.js';

const ROLES = [['', 'not used'], ['primary', 'primary'], ['guardrails', 'guardrail'], ['secondary', 'secondary']];

export async function experimentForm(page, ctx, key) {
  setTitle(key ? 'Edit ' + key : 'New experiment');
  if (!canWrite()) {
    replace(page, h('h1', {}, key ? 'Edit ' + key : 'New experiment'), h('p', {}, 'Your key is a viewer key: it cannot change experiments.'));
    return;
  }
  replace(page, loading('the form'));
  let metrics;
  let e = null;
  try {
    metrics = await allPages('/v1/metrics', {}, 1000);
    if (key) e = await api('GET', path('experiments', key));
  } catch (err) {
    replace(page, errorAlert(err));
    return;
  }
  if (!ctx.alive()) return;

  const input = (name, value, attrs) => h('input', {type: 'text', name, value: value ?? '', autocomplete: 'off', spellcheck: 'false', ...attrs});
  const f = {
    key: input('key', e ? e.key : '', {readOnly: !!e}),
    name: input('name', e ? e.name : ''),
    hypothesis: h('textarea', {name: 'hypothesis', rows: 3}, e ? e.hypothesis : ''),
    unit_type: input('unit_type', e ? e.unit_type : 'customer', {readOnly: !!e}),
    analysis: h('select', {name: 'analysis'}, ['fixed', 'sequential'].map((a) => h('option', {value: a, selected: e ? e.analysis === a : a === 'fixed'},
      a === 'fixed' ? 'fixed horizon' : 'sequential (safe to peek)'))),
    traffic: input('traffic', e ? String(e.traffic) : '1', {type: 'number', min: 0, max: 1, step: 'any', inputmode: 'decimal'}),
    layer: input('layer', e ? e.layer : ''),
    targeting: h('textarea', {name: 'targeting', rows: 3, class: 'mono', spellcheck: 'false'}, e && e.targeting ? JSON.stringify(e.targeting, null, 1) : ''),
  };
  let variants = e ? e.variants.map((v) => ({key: v.key, weight: String(v.weight), payload: v.payload === undefined ? '' : JSON.stringify(v.payload)}))
    : [{key: 'control', weight: '0.5', payload: ''}, {key: 'treatment', weight: '0.5', payload: ''}];
  const variantBox = h('fieldset', {class: 'variants', tabindex: -1, 'data-field': 'variants'});
  const drawVariants = () => {
    replace(variantBox, h('legend', {}, 'Variants (the first is the control; weights are shares that sum to 1)'),
      variants.map((v, i) => {
        const k = input('variant-key', v.key, {'data-field': `variants[${i}].key`});
        const w = input('variant-weight', v.weight, {type: 'number', min: 0, max: 1, step: 'any', inputmode: 'decimal', 'data-field': `variants[${i}].weight`});
        const p = input('variant-payload', v.payload, {class: 'mono', 'data-field': `variants[${i}].payload`});
        k.addEventListener('input', () => { v.key = k.value; });
        w.addEventListener('input', () => { v.weight = w.value; });
        p.addEventListener('input', () => { v.payload = p.value; });
        const remove = h('button', {type: 'button', class: 'link', disabled: variants.length <= 2,
          on: {click: () => { variants.splice(i, 1); drawVariants(); }}}, 'Remove variant ' + (i + 1));
        return h('div', {class: 'variant-row'},
          field(`Variant ${i + 1} key`, k, {name: `variants[${i}].key`}),
          field(`Variant ${i + 1} weight`, w, {name: `variants[${i}].weight`}),
          field(`Variant ${i + 1} payload (JSON, optional)`, p, {name: `variants[${i}].payload`}),
          remove);
      }),
      h('button', {type: 'button', disabled: variants.length >= 20, on: {click: () => { variants.push({key: '', weight: '', payload: ''}); drawVariants(); }}}, 'Add a variant'));
  };
  drawVariants();

  const roleOf = (mk) => {
    if (!e) return '';
    for (const r of ['primary', 'guardrails', 'secondary']) if ((e.metrics[r] || []).includes(mk)) return r;
    return '';
  };
  const metricSelects = metrics.map((m) => h('select', {name: 'metric-' + m.key, 'data-metric': m.key},
    ROLES.map(([v, l]) => h('option', {value: v, selected: roleOf(m.key) === v}, l))));
  const metricBox = h('fieldset', {class: 'metric-roles', tabindex: -1, 'data-field': 'metrics'},
    h('legend', {}, 'Metrics and their role'),
    metrics.length ? metricSelects.map((sel, i) => field(metrics[i].key + (metrics[i].name ? ' (' + metrics[i].name + ')' : ''), sel, {name: 'metrics.' + metrics[i].key}))
      : h('p', {}, 'No metrics yet: ', h('a', {href: '#/metrics/new'}, 'define one'), ' first, or add them later.'));

  const submit = h('button', {type: 'submit', class: 'primary'}, e ? 'Save changes' : 'Create draft');
  const form = h('form', {class: 'edit', novalidate: true},
    field('Key', f.key, {hint: e ? 'The key never changes.' : 'Lower case letters, digits, ".", "_" and "-"; used in code and URLs.'}),
    field('Name', f.name),
    field('Hypothesis', f.hypothesis, {hint: 'What should happen, and why.', wide: true}),
    field('Unit type', f.unit_type, {hint: 'What is randomised: customer, device…'}),
    field('Analysis', f.analysis),
    field('Traffic', f.traffic, {hint: 'Share of eligible units enrolled, 0 to 1.'}),
    field('Layer', f.layer, {hint: 'Optional: experiments of one layer never share a unit.'}),
    field('Targeting (JSON condition, optional)', f.targeting, {hint: 'E.g. {"country": {"$in": ["FR", "BE"]}}', wide: true}),
    variantBox,
    metricBox,
    h('div', {class: 'form-actions'}, submit, ' ',
      h('a', {class: 'button', href: e ? '#/experiments/' + encodeURIComponent(e.key) : '#/'}, 'Cancel')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    let body;
    try {
      body = collect();
    } catch (problem) {
      showErrors(form, problem);
      return;
    }
    if (e && Object.keys(body).length === 0) {
      form.prepend(h('div', {class: 'alert form-error', role: 'status'}, 'Nothing changed.'));
      return;
    }
    submit.disabled = true;
    try {
      const saved = e ? await api('PATCH', path('experiments', e.key), body) : await api('POST', '/v1/experiments', body);
      ctx.go('#/experiments/' + encodeURIComponent(saved.key));
    } catch (err) {
      showErrors(form, err);
    } finally {
      submit.disabled = false;
    }
  });

  // collect builds the request body; in an edit, only what changed.
  function collect() {
    const body = {};
    const text = (k) => f[k].value.trim();
    body.key = text('key');
    body.name = text('name');
    body.hypothesis = f.hypothesis.value.trim();
    body.unit_type = text('unit_type');
    body.analysis = f.analysis.value;
    if (text('traffic') !== '') body.traffic = Number(text('traffic'));
    body.layer = text('layer');
    let targeting;
    try {
      targeting = parseJSON(f.targeting.value, 'The targeting condition');
    } catch (err) {
      throw localError('targeting', err.message);
    }
    if (targeting !== undefined) body.targeting = targeting;
    else if (e && e.targeting) body.targeting = null;
    body.variants = variants.map((v, i) => {
      const out = {key: v.key.trim()};
      if (v.weight.trim() !== '') out.weight = Number(v.weight);
      let payload;
      try {
        payload = parseJSON(v.payload, `The payload of variant ${i + 1}`);
      } catch (err) {
        throw localError(`variants[${i}].payload`, err.message);
      }
      if (payload !== undefined) out.payload = payload;
      return out;
    });
    body.metrics = {primary: [], guardrails: [], secondary: []};
    for (const sel of metricSelects) if (sel.value) body.metrics[sel.value].push(sel.dataset.metric);
    if (!e) return body;
    // An edit sends the fields that differ from the experiment.
    const was = {...e, targeting: e.targeting ?? null};
    const changed = {};
    for (const [k, v] of Object.entries(body)) {
      if (k === 'key' || k === 'unit_type' && v === e.unit_type) continue;
      if (JSON.stringify(v) !== JSON.stringify(was[k])) changed[k] = v;
    }
    return changed;
  }

  replace(page,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/'}, 'Experiments'), ' › ',
      e ? [h('a', {href: '#/experiments/' + encodeURIComponent(e.key)}, e.key), ' › edit'] : 'new'),
    h('h1', {}, e ? 'Edit ' + (e.name || e.key) : 'New experiment'),
    e && e.status !== 'draft' ? h('p', {class: 'alert'}, `This experiment is ${e.status}: only its name, hypothesis, metrics` +
      (e.status === 'running' ? ' and traffic' : '') + ' may change.') : null,
    form);
  (e ? f.name : f.key).focus();
}

