// Flywheel's web UI: a hash router over pages that call the public /v1
// API. Routes: #/ (experiments), #/experiments/new, #/experiments/KEY,
// #/experiments/KEY/edit, #/experiments/KEY/history, #/metrics,
// #/metrics/new, #/audiences, #/audiences/new, #/audiences/KEY,
// #/audiences/KEY/edit, #/power, #/holdouts, #/holdouts/KEY.

import {api, forgetKey, saveKey, savedKey, whenSignedOut} from './api.js';
import {h, replace} from './dom.js';
import {field, session, setTitle} from './ui.js';
import {listPage} from './list.js';
import {experimentPage, historyPage} from './experiment.js';
import {experimentForm} from './forms.js';
import {metricForm, metricsPage} from './metrics.js';
import {powerPage} from './power.js';
import {audienceForm, audiencePage, audiencesPage} from './audiences.js';
import {holdoutPage, holdoutsPage} from './holdouts.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');

// route parses location.hash: the path segments and the query.
function route() {
  const hash = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const [p, q] = hash.split('?');
  const parts = p.split('/').filter(Boolean).map(decodeURIComponent);
  return {parts, params: new URLSearchParams(q || '')};
}

// go navigates to a route of the UI.
export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

let generation = 0;

// render draws the page of the current route. A page that finishes after
// the user moved on is dropped (generation).
async function render() {
  if (!session.key) {
    signIn();
    return;
  }
  const g = ++generation;
  const page = h('div', {class: 'page'});
  replace(main, page);
  try {
    const {parts, params} = route(); // a malformed %-escape throws
    const ctx = {params, go, alive: () => g === generation};
    if (parts.length === 0) await listPage(page, ctx);
    else if (parts[0] === 'experiments' && parts[1] === 'new' && parts.length === 2) await experimentForm(page, ctx, null);
    else if (parts[0] === 'experiments' && parts.length === 2) await experimentPage(page, ctx, parts[1]);
    else if (parts[0] === 'experiments' && parts[2] === 'edit' && parts.length === 3) await experimentForm(page, ctx, parts[1]);
    else if (parts[0] === 'experiments' && parts[2] === 'history' && parts.length === 3) await historyPage(page, ctx, parts[1]);
    else if (parts[0] === 'metrics' && parts.length === 1) await metricsPage(page, ctx);
    else if (parts[0] === 'metrics' && parts[1] === 'new' && parts.length === 2) await metricForm(page, ctx);
    else if (parts[0] === 'audiences' && parts.length === 1) await audiencesPage(page, ctx);
    else if (parts[0] === 'audiences' && parts[1] === 'new' && parts.length === 2) await audienceForm(page, ctx, null);
    else if (parts[0] === 'audiences' && parts.length === 2) await audiencePage(page, ctx, parts[1]);
    else if (parts[0] === 'audiences' && parts[2] === 'edit' && parts.length === 3) await audienceForm(page, ctx, parts[1]);
    else if (parts[0] === 'power' && parts.length === 1) await powerPage(page, ctx);
    else if (parts[0] === 'holdouts' && parts.length === 1) await holdoutsPage(page, ctx);
    else if (parts[0] === 'holdouts' && parts.length === 2) await holdoutPage(page, ctx, parts[1]);
    else {
      setTitle('Not found');
      replace(page, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', {href: '#/'}, 'Back to the experiments')));
    }
  } catch (err) {
    if (g !== generation) return;
    page.append(h('div', {class: 'alert error', role: 'alert'}, 'This page could not be shown: ' + err.message));
  }
}

function showSession() {
  nav.hidden = !session.key;
  who.textContent = session.key ? `${session.key.name || session.key.prefix} (${session.key.scope})` : '';
}

// signIn shows the sign-in form. The key is checked with GET /v1/key and
// kept in sessionStorage only.
function signIn(message) {
  session.key = null;
  showSession();
  setTitle('Sign in');
  const input = h('input', {type: 'password', name: 'key', autocomplete: 'off', spellcheck: 'false', required: true});
  const err = h('p', {class: 'field-error', id: 'signin-error', hidden: true});
  const form = h('form', {class: 'signin', novalidate: true},
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Flywheel keeps your API key in this browser tab only (sessionStorage): it is forgotten when the tab closes.'),
    field('API key', input, {hint: 'An admin key (fw_admin_…) to change experiments, or a viewer key (fw_viewer_…) to read them.'}),
    err,
    h('button', {type: 'submit', class: 'primary'}, 'Sign in'));
  if (message) form.insertBefore(h('div', {class: 'alert', role: 'status'}, message), form.children[1]);
  const fail = (text) => {
    err.textContent = text;
    err.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.setAttribute('aria-describedby', 'signin-error');
    input.focus();
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) {
      fail('Enter an API key.');
      return;
    }
    try {
      const k = await api('GET', '/v1/key', undefined, key);
      if (k.scope === 'sdk') {
        fail('This is an sdk key, meant for apps: the web UI needs an admin or a viewer key.');
        return;
      }
      saveKey(key);
      session.key = k;
      showSession();
      render();
    } catch (e) {
      fail(e.status === 401 ? 'This key is unknown or revoked.' : e.message);
    }
  });
  replace(main, form);
  input.focus();
}

async function start() {
  whenSignedOut(() => {
    forgetKey();
    signIn('Your key is no longer accepted: sign in again.');
  });
  document.getElementById('signout').addEventListener('click', () => {
    forgetKey();
    location.hash = '#/';
    signIn('Signed out.');
  });
  window.addEventListener('hashchange', () => {
    if (location.hash === '#main') return; // the skip link
    render();
  });
  const key = savedKey();
  if (key) {
    try {
      session.key = await api('GET', '/v1/key', undefined, key);
    } catch (e) {
      forgetKey();
    }
  }
  showSession();
  render();
}

start();
