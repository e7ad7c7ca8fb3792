// Saved audiences: the list, the form that defines a new one, and an
// audience's page (its condition, who uses it, edit, archive, history).

import {allPages, api, path} from './api.js';
import {h, replace} from './dom.js';
import {when} from './format.js';
import {canWrite, clearErrors, errorAlert, field, loading, localError, parseJSON, setTitle, showErrors} from './ui.js';

const crumbs = (...rest) => h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/audiences'}, 'Audiences'), ' › ', ...rest);
const link = (key) => h('a', {href: '#/audiences/' + encodeURIComponent(key)}, key);
const compact = (c) => JSON.stringify(c);

// audiencesPage lists the saved audiences; ?archived=true lists the
// archived ones too.
export async function audiencesPage(page, ctx) {
  setTitle('Audiences');
  replace(page, loading('the audiences'));
  const archived = ctx.params.get('archived') === 'true';
  let items;
  try {
    items = await allPages('/v1/audiences', {archived: archived ? 'true' : ''}, 5000);
  } catch (err) {
    replace(page, h('h1', {}, 'Audiences'), errorAlert(err));
    return;
  }
  if (!ctx.alive()) return;
  replace(page,
    h('div', {class: 'title-row'}, h('h1', {}, 'Audiences'), canWrite() ? h('a', {class: 'button primary', href: '#/audiences/new'}, 'New audience') : null),
    h('p', {class: 'muted'}, 'A saved audience is a named targeting condition; experiments use it with {"$audience": "key"}, and a change reaches every one of them at once. ',
      archived ? h('a', {href: '#/audiences'}, 'Hide archived audiences') : h('a', {href: '#/audiences?archived=true'}, 'Show archived audiences too')),
    items.length ? h('table', {class: 'responsive'},
      h('caption', {class: 'visually-hidden'}, 'Saved audiences'),
      h('thead', {}, h('tr', {}, ['Audience', 'Condition', 'Changed'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, items.map((a) => h('tr', {},
        h('th', {scope: 'row', 'data-label': 'Audience'}, link(a.key), a.name ? h('div', {class: 'muted small'}, a.name) : null,
          a.archived_at ? h('div', {}, h('span', {class: 'badge status-archived'}, 'archived')) : null),
        h('td', {'data-label': 'Condition'}, h('code', {}, compact(a.condition))),
        h('td', {'data-label': 'Changed'}, when(a.updated_at))))))
      : h('p', {}, archived ? 'No audiences.' : 'No audiences yet.'));
}

// audienceForm defines a new audience (a is null) or edits one.
export async function audienceForm(page, ctx, key) {
  setTitle(key ? 'Edit ' + key : 'New audience');
  if (!canWrite()) {
    replace(page, crumbs(key ? link(key) : 'new'), h('h1', {}, key ? 'Edit ' + key : 'New audience'),
      h('p', {}, 'Your key is a viewer key: it cannot change audiences.'));
    return;
  }
  let a = null;
  if (key) {
    replace(page, loading('the audience'));
    try {
      a = await api('GET', path('audiences', key));
    } catch (err) {
      replace(page, crumbs(key), h('h1', {}, 'Edit ' + key), errorAlert(err));
      return;
    }
    if (!ctx.alive()) return;
  }
  const f = {
    key: h('input', {type: 'text', name: 'key', autocomplete: 'off', spellcheck: 'false', value: a ? a.key : '', readOnly: !!a}),
    name: h('input', {type: 'text', name: 'name', autocomplete: 'off', value: a ? a.name : ''}),
    condition: h('textarea', {name: 'condition', rows: 6, class: 'mono', spellcheck: 'false'}, a ? JSON.stringify(a.condition, null, 1) : '{}'),
  };
  const submit = h('button', {type: 'submit', class: 'primary'}, a ? 'Save audience' : 'Create audience');
  const cancel = a ? '#/audiences/' + encodeURIComponent(a.key) : '#/audiences';
  const used = a && a.used_by && a.used_by.experiments.length
    ? h('p', {class: 'alert', role: 'note'}, 'Saving changes the targeting of ' + a.used_by.experiments.length +
      (a.used_by.experiments.length === 1 ? ' experiment' : ' experiments') + ' at once: ' + a.used_by.experiments.join(', ') + '.')
    : null;
  const form = h('form', {class: 'edit', novalidate: true},
    field('Key', f.key, {hint: a ? 'The key never changes.' : 'Lower case letters, digits, ".", "_" and "-"; experiments reference it.'}),
    field('Name', f.name),
    field('Condition (JSON, in the targeting syntax)', f.condition, {wide: true,
      hint: 'E.g. {"country": {"$in": ["FR", "BE"]}, "ltv": {"$gte": 500}}; {"$audience": "other"} uses another audience; {} matches everyone.'}),
    h('div', {class: 'form-actions'}, submit, ' ', h('a', {class: 'button', href: cancel}, 'Cancel')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    let condition;
    try {
      condition = parseJSON(f.condition.value, 'The condition');
      if (condition === undefined) throw new Error('Enter a condition; {} matches everyone.');
    } catch (err) {
      showErrors(form, localError('condition', err.message));
      return;
    }
    const body = {name: f.name.value.trim(), condition};
    if (a) {
      if (body.name === a.name) delete body.name;
      if (JSON.stringify(condition) === JSON.stringify(a.condition)) delete body.condition;
      if (Object.keys(body).length === 0) {
        form.prepend(h('div', {class: 'alert form-error', role: 'status'}, 'Nothing changed.'));
        return;
      }
    } else {
      body.key = f.key.value.trim();
    }
    submit.disabled = true;
    try {
      const saved = a ? await api('PATCH', path('audiences', a.key), body) : await api('POST', '/v1/audiences', body);
      const affected = saved.affected_experiments && saved.affected_experiments.length ? '?affected=' + encodeURIComponent(saved.affected_experiments.join(',')) : '';
      ctx.go('#/audiences/' + encodeURIComponent(saved.key) + affected);
    } catch (err) {
      showErrors(form, err);
    } finally {
      submit.disabled = false;
    }
  });
  replace(page, crumbs(a ? [link(a.key), ' › edit'] : 'new'), h('h1', {}, a ? 'Edit ' + (a.name || a.key) : 'New audience'), used, form);
  (a ? f.name : f.key).focus();
}

// audiencePage shows one audience: its condition, what uses it, its
// history, and (admin) edit and archive.
export async function audiencePage(page, ctx, key) {
  setTitle(key);
  replace(page, loading('the audience'));
  let a, history;
  try {
    [a, history] = await Promise.all([api('GET', path('audiences', key)), allPages(path('audiences', key, 'history'), {}, 5000)]);
  } catch (err) {
    replace(page, crumbs(key), h('h1', {}, key), errorAlert(err));
    return;
  }
  if (!ctx.alive()) return;
  setTitle(a.name || a.key);
  const affected = (ctx.params.get('affected') || '').split(',').filter(Boolean);
  const status = h('div', {class: 'action-status', 'aria-live': 'polite'});
  if (affected.length) {
    status.append(h('div', {class: 'alert'}, 'Saved. The change applies at once to the running ' +
      (affected.length === 1 ? 'experiment ' : 'experiments ') + affected.join(', ') + '; their histories record it.'));
  }
  const users = a.used_by || {experiments: [], audiences: []};
  const actions = [];
  if (canWrite() && !a.archived_at) {
    const archive = async () => {
      status.replaceChildren();
      try {
        await api('POST', path('audiences', a.key, 'archive'));
        ctx.go('#/audiences/' + encodeURIComponent(a.key));
      } catch (err) {
        status.replaceChildren(errorAlert(err, 'Not archived'));
      }
    };
    const confirmArchive = () => {
      const yes = h('button', {type: 'button', class: 'danger', on: {click: archive}}, 'Yes, archive it');
      const no = h('button', {type: 'button', on: {click: () => status.replaceChildren()}}, 'Cancel');
      status.replaceChildren(h('div', {class: 'confirm', role: 'group', 'aria-label': 'Confirm archive'},
        h('p', {}, 'Archive this audience? No experiment may use it afterwards, and it cannot change.'), yes, ' ', no));
      yes.focus();
    };
    actions.push(h('a', {class: 'button', href: '#/audiences/' + encodeURIComponent(a.key) + '/edit'}, 'Edit'), ' ',
      h('button', {type: 'button', on: {click: confirmArchive}}, 'Archive'));
  }
  const show = (v) => (v === null || v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v));
  replace(page,
    crumbs(a.key),
    h('div', {class: 'title-row'}, h('h1', {}, a.name || a.key), h('div', {class: 'actions'}, actions)),
    status,
    a.archived_at ? h('p', {class: 'alert'}, 'Archived ' + when(a.archived_at) + ': no experiment may use it any more.') : null,
    h('dl', {class: 'definition'},
      h('dt', {}, 'Key'), h('dd', {}, h('code', {}, a.key)),
      h('dt', {}, 'Reference'), h('dd', {}, h('code', {}, compact({$audience: a.key}))),
      h('dt', {}, 'Created'), h('dd', {}, when(a.created_at)),
      h('dt', {}, 'Changed'), h('dd', {}, when(a.updated_at))),
    h('h2', {}, 'Condition'),
    h('pre', {}, JSON.stringify(a.condition, null, 2)),
    h('h2', {}, 'Used by'),
    users.experiments.length || users.audiences.length ? h('ul', {class: 'used-by'},
      users.experiments.map((k) => h('li', {}, 'experiment ', h('a', {href: '#/experiments/' + encodeURIComponent(k)}, k))),
      users.audiences.map((k) => h('li', {}, 'audience ', link(k))))
      : h('p', {}, 'Nothing uses it' + (a.archived_at ? '.' : ': it can be archived.')),
    h('h2', {}, 'History'),
    h('table', {class: 'responsive history'},
      h('caption', {class: 'visually-hidden'}, 'Every change, with who made it'),
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Changes'].map((t) => h('th', {scope: 'col'}, t)))),
      h('tbody', {}, history.map((it) => h('tr', {},
        h('td', {'data-label': 'When'}, when(it.at)),
        h('td', {'data-label': 'Who'}, it.actor),
        h('td', {'data-label': 'Action'}, it.action,
          it.affected_experiments && it.affected_experiments.length ? h('div', {class: 'muted small'}, 'affected: ' + it.affected_experiments.join(', ')) : null),
        h('td', {'data-label': 'Changes'}, h('ul', {class: 'plain changes'}, Object.entries(it.changes || {}).map(([f, c]) =>
          h('li', {}, h('code', {}, f), ': ', show(c.from), ' → ', show(c.to))))))))));
}
