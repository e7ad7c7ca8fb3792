// Shared pieces of the pages: the session, titles, badges, alerts, form
// fields and where the API's validation errors go.

import {h, uid} from './dom.js';

// session is who is signed in: the key as GET /v1/key answers it.
export const session = {key: null};

// canWrite reports whether the key may change things (admin). Viewers get
// no write controls at all.
export function canWrite() {
  return !!session.key && session.key.scope === 'admin';
}

export function setTitle(text) {
  document.title = text ? text + ' · Flywheel' : 'Flywheel';
}

export function statusBadge(status) {
  return h('span', {class: 'badge status-' + status}, status);
}

export function errorAlert(err, prefix) {
  return h('div', {class: 'alert error', role: 'alert'}, (prefix ? prefix + ': ' : '') + (err && err.message ? err.message : String(err)));
}

export function loading(what) {
  return h('p', {class: 'muted', 'aria-busy': 'true'}, 'Loading ' + what + '…');
}

// field wraps a control with its label, an optional hint, and a place for
// its error. The control gets an id when it has none; the wrapper remembers
// the API field names it answers for (data-field).
export function field(label, control, opts) {
  const o = opts || {};
  if (!control.id) control.id = uid('f');
  const described = [];
  const hint = o.hint ? h('p', {class: 'hint', id: uid('hint')}, o.hint) : null;
  if (hint) described.push(hint.id);
  if (described.length) control.setAttribute('aria-describedby', described.join(' '));
  control.dataset.field = o.name || control.name || '';
  return h('div', {class: 'field' + (o.wide ? ' wide' : '')},
    h('label', {for: control.id}, label), control, hint);
}

// clearErrors removes the errors shown in form.
export function clearErrors(form) {
  for (const el of form.querySelectorAll('[aria-invalid]')) {
    el.removeAttribute('aria-invalid');
    const ids = (el.getAttribute('aria-describedby') || '').split(' ').filter((id) => id && !id.startsWith('err-'));
    if (ids.length) el.setAttribute('aria-describedby', ids.join(' '));
    else el.removeAttribute('aria-describedby');
  }
  for (const el of form.querySelectorAll('.field-error, .form-error')) el.remove();
}

// controlFor finds the control of form answering for an API field path
// such as "variants[1].weight": the exact name first, then its parents
// ("variants[1]", "variants").
export function controlFor(form, name) {
  let f = name;
  while (f) {
    const el = form.querySelector(`[data-field="${CSS.escape(f)}"]`);
    if (el) return el;
    const cut = Math.max(f.lastIndexOf('.'), f.lastIndexOf('['));
    if (cut <= 0) break;
    f = f.slice(0, cut);
  }
  return null;
}

// showErrors puts each problem of an API error next to its control, marks
// the control aria-invalid="true", and the rest (or a problem without a
// field) at the top of the form. It focuses the first invalid control.
export function showErrors(form, err) {
  clearErrors(form);
  const general = [];
  let first = null;
  for (const d of err.details || [err]) {
    const el = d.field ? controlFor(form, d.field) : null;
    if (!el) {
      general.push((d.field ? d.field + ': ' : '') + d.message);
      continue;
    }
    const id = 'err-' + uid('e');
    const msg = h('p', {class: 'field-error', id}, d.message);
    el.setAttribute('aria-invalid', 'true');
    el.setAttribute('aria-describedby', ((el.getAttribute('aria-describedby') || '') + ' ' + id).trim());
    const wrap = el.closest('.field') || el;
    wrap.appendChild(msg);
    first = first || el;
  }
  if (general.length) {
    const box = h('div', {class: 'alert error form-error', role: 'alert'},
      general.length === 1 ? general[0] : h('ul', {}, general.map((g) => h('li', {}, g))));
    form.prepend(box);
  } else if (first) {
    form.prepend(h('div', {class: 'alert error form-error', role: 'alert'},
      'Nothing was saved: ' + (err.details.length > 1 ? err.details.length + ' fields need' : 'a field needs') + ' attention.'));
  }
  if (first) first.focus();
}

// parseJSON reads an optional JSON text area: undefined when empty.
export function parseJSON(text, what) {
  const t = text.trim();
  if (!t) return undefined;
  try {
    return JSON.parse(t);
  } catch (e) {
    throw new Error(what + ' is not valid JSON: ' + e.message);
  }
}

// localError makes an ApiError-shaped problem for a check done in the page.
export function localError(fieldName, message) {
  return {message, details: [{field: fieldName, message}]};
}
