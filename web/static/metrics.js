// Metrics: the list, and the form that defines a new one.

import {allPages, api} from './api.js';
import {h, replace} from './dom.js';
import {canWrite, clearErrors, errorAlert, field, loading, setTitle, showErrors} from './ui.js';

export async function metricsPage(page, ctx) {
  setTitle('Metrics');
  replace(page, loading('the metrics'));
  let items;
  try {
    items = await allPages('/v1/metrics', {}, 5000);
  } catch (err) {
    replace(page, h('h1', {}, 'Metrics'), errorAlert(err));
    return;
  }
  if (!ctx.alive()) return;
  const events = (m) => (m.type === 'ratio' ? m.numerator + ' / ' + m.denominator : m.event);
  const window = (m) => (m.type === 'retention' ? `${m.from_hours} h to ${m.to_hours} h` : m.window_hours ? m.window_hours + ' h' : 'no end');
  replace(page,
    h('div', {class: 'title-row'}, h('h1', {}, 'Metrics'), canWrite() ? h('a', {class: 'button primary', href: '#/metrics/new'}, 'New metric') : null),
    items.length ? h('table', {class: 'responsive'},
      h('caption', {class: 'visually-hidden'}, 'Metrics'),
      h('thead', {}, h('tr', {}, ['Metric', 'Type', 'Events', 'Window after exposure', 'Better when'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, items.map((m) => h('tr', {},
        h('th', {scope: 'row', 'data-label': 'Metric'}, m.key, m.name ? h('div', {class: 'muted small'}, m.name) : null),
        h('td', {'data-label': 'Type'}, m.type),
        h('td', {'data-label': 'Events'}, events(m)),
        h('td', {'data-label': 'Window after exposure'}, window(m)),
        h('td', {'data-label': 'Better when'}, m.direction === 'decrease' ? 'lower' : 'higher')))))
      : h('p', {}, 'No metrics yet.'));
}

const TYPES = [
  ['conversion', 'conversion: did the unit do the event'],
  ['mean', 'mean: sum of the event’s values per unit'],
  ['count', 'count: events per unit'],
  ['ratio', 'ratio: sum of one event over another'],
  ['retention', 'retention: the event again within a time span'],
];

export async function metricForm(page, ctx) {
  setTitle('New metric');
  if (!canWrite()) {
    replace(page, h('h1', {}, 'New metric'), h('p', {}, 'Your key is a viewer key: it cannot define metrics.'));
    return;
  }
  const text = (name, attrs) => h('input', {type: 'text', name, autocomplete: 'off', spellcheck: 'false', ...attrs});
  const hours = (name, value) => text(name, {type: 'number', min: 0, step: 1, inputmode: 'numeric', value});
  const f = {
    key: text('key'),
    name: text('name'),
    description: h('textarea', {name: 'description', rows: 2}),
    type: h('select', {name: 'type'}, TYPES.map(([v, l]) => h('option', {value: v}, l))),
    event: text('event'),
    numerator: text('numerator'),
    denominator: text('denominator'),
    window_hours: hours('window_hours', '168'),
    from_hours: hours('from_hours', ''),
    to_hours: hours('to_hours', ''),
    cuped_hours: hours('cuped_hours', ''),
    direction: h('select', {name: 'direction'}, h('option', {value: 'increase'}, 'higher is better'), h('option', {value: 'decrease'}, 'lower is better')),
    capKind: h('select', {name: 'cap-kind'}, h('option', {value: ''}, 'no cap'), h('option', {value: 'value'}, 'at a value'), h('option', {value: 'percentile'}, 'at a percentile')),
    cap: text('cap', {type: 'number', step: 'any', inputmode: 'decimal'}),
  };
  const wrap = {};
  const fieldOf = (k, label, hint) => {
    wrap[k] = field(label, f[k], {hint, name: k});
    return wrap[k];
  };
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Create metric');
  const form = h('form', {class: 'edit', novalidate: true},
    fieldOf('key', 'Key', 'Lower case letters, digits, ".", "_" and "-".'),
    fieldOf('name', 'Name'),
    fieldOf('description', 'Description'),
    fieldOf('type', 'Type'),
    fieldOf('event', 'Event', 'The track event’s name, as apps send it.'),
    fieldOf('numerator', 'Numerator event'),
    fieldOf('denominator', 'Denominator event'),
    fieldOf('window_hours', 'Window (hours after first exposure; 0 = no end)'),
    fieldOf('from_hours', 'Retention from (hours after exposure)'),
    fieldOf('to_hours', 'Retention to (hours after exposure)'),
    fieldOf('cuped_hours', 'CUPED pre-period (hours before exposure; empty = 336, 0 = off)'),
    fieldOf('direction', 'Better when'),
    h('div', {class: 'pair'}, field('Cap per unit', f.capKind, {name: 'cap'}), field('Cap at', f.cap, {name: 'cap.value', hint: 'A value, or a percentile between 0 and 1 such as 0.99.'})),
    h('div', {class: 'form-actions'}, submit, ' ', h('a', {class: 'button', href: '#/metrics'}, 'Cancel')));
  const showFor = () => {
    const t = f.type.value;
    wrap.event.hidden = t === 'ratio';
    wrap.numerator.hidden = t !== 'ratio';
    wrap.denominator.hidden = t !== 'ratio';
    wrap.window_hours.hidden = t === 'retention';
    wrap.from_hours.hidden = t !== 'retention';
    wrap.to_hours.hidden = t !== 'retention';
  };
  f.type.addEventListener('change', showFor);
  showFor();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const body = {key: f.key.value.trim(), type: f.type.value, direction: f.direction.value};
    for (const k of ['name', 'description']) if (f[k].value.trim()) body[k] = f[k].value.trim();
    const visible = (k) => !wrap[k].hidden;
    for (const k of ['event', 'numerator', 'denominator']) if (visible(k)) body[k] = f[k].value.trim();
    for (const k of ['window_hours', 'from_hours', 'to_hours', 'cuped_hours']) {
      if (visible(k) && f[k].value.trim() !== '') body[k] = Number(f[k].value);
    }
    if (f.capKind.value) body.cap = {[f.capKind.value]: f.cap.value.trim() === '' ? null : Number(f.cap.value)};
    submit.disabled = true;
    try {
      await api('POST', '/v1/metrics', body);
      ctx.go('#/metrics');
    } catch (err) {
      showErrors(form, err);
    } finally {
      submit.disabled = false;
    }
  });
  replace(page, h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/metrics'}, 'Metrics'), ' › new'),
    h('h1', {}, 'New metric'), form);
  f.key.focus();
}
