// keysd operator console: vanilla JavaScript, no framework, no build step.
//
// The service token lives in sessionStorage (this tab only) and is sent as
// `Authorization: ServiceToken …`. Secrets and private keys the API hands
// out are shown once in the secret dialog and removed from the page when it
// closes; they are never written to storage, the URL or the console log.
// Every value from the API reaches the page through textContent, never as
// HTML.
'use strict';

const TOKEN_KEY = 'keysd.console.token';
const $ = (id) => document.getElementById(id);

const session = {
  role: null, // 'admin' | 'manage' | 'verify'
  workspaces: [],
};

// ---- the API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: 'ServiceToken ' + sessionStorage.getItem(TOKEN_KEY) };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  let json = null;
  try {
    json = await response.json();
  } catch (_) {
    json = null;
  }
  if (!response.ok) {
    const message = (json && (json.message || json.detail)) || response.statusText || 'request failed';
    throw new ApiError(response.status, message);
  }
  return json;
}

const enc = encodeURIComponent;

// ---- small DOM helpers ---------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'onclick') node.addEventListener('click', value);
    else if (name === 'onsubmit') node.addEventListener('submit', value);
    else if (name === 'onchange') node.addEventListener('change', value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function field(label, input) {
  return el('label', {}, label, input);
}

function badge(text) {
  return el('span', { class: 'badge ' + text }, text);
}

function when(instant) {
  if (!instant) return '—';
  const date = new Date(instant);
  return isNaN(date) ? String(instant) : date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function table(headings, rows) {
  return el(
    'div',
    { class: 'table-wrap' },
    el('table', {}, el('thead', {}, el('tr', {}, headings.map((heading) => el('th', { scope: 'col' }, heading)))), el('tbody', {}, rows)),
  );
}

function say(message, isError) {
  const status = $('status');
  status.textContent = message || '';
  status.classList.toggle('error', Boolean(isError));
}

function failed(error) {
  say(error instanceof ApiError ? `${error.message} (HTTP ${error.status})` : String(error.message || error), true);
}

// ---- dialogs -------------------------------------------------------------

let downloadUrl = null;

// Shows a secret once. `pem` offers a download of it as a file.
function showSecret(note, secret, pem) {
  $('secret-note').textContent = note;
  $('secret-value').textContent = secret;
  $('secret-copied').textContent = '';
  const download = $('secret-download');
  if (pem) {
    downloadUrl = URL.createObjectURL(new Blob([secret], { type: 'application/x-pem-file' }));
    download.href = downloadUrl;
    download.download = pem;
    download.hidden = false;
  } else {
    download.hidden = true;
  }
  $('secret-dialog').showModal();
  $('secret-copy').focus();
}

function forgetSecret() {
  $('secret-value').textContent = '';
  $('secret-note').textContent = '';
  $('secret-copied').textContent = '';
  const download = $('secret-download');
  download.removeAttribute('href');
  download.removeAttribute('download');
  download.hidden = true;
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = null;
}

function confirmAction(message, label) {
  return new Promise((resolve) => {
    const dialog = $('confirm-dialog');
    $('confirm-message').textContent = message;
    $('confirm-ok').textContent = label || 'Confirm';
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}

// Asks for a grace period; resolves to the seconds, or null when cancelled.
function askGrace(message) {
  return new Promise((resolve) => {
    const dialog = $('grace-dialog');
    $('grace-message').textContent = message;
    dialog.returnValue = '';
    dialog.addEventListener(
      'close',
      () => resolve(dialog.returnValue === 'roll' ? Number($('grace-seconds').value) : null),
      { once: true },
    );
    dialog.showModal();
    $('grace-seconds').focus();
  });
}

// ---- signing in ----------------------------------------------------------

async function whoAmI() {
  try {
    session.workspaces = (await api('GET', '/v1/workspace/?limit=100')).results;
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) {
      session.role = 'verify';
      session.workspaces = [];
      return;
    }
    throw error;
  }
  try {
    await api('GET', '/v1/service_token/?limit=1');
    session.role = 'admin';
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 403)) throw error;
    session.role = 'manage';
  }
}

function showSignedOut() {
  session.role = null;
  $('who').textContent = '';
  $('sign-out').hidden = true;
  $('nav').hidden = true;
  $('verify-only').hidden = true;
  $('view').hidden = true;
  $('view').replaceChildren();
  $('sign-in').hidden = false;
  $('token').value = '';
  $('token').focus();
}

async function signedIn() {
  await whoAmI();
  $('sign-in').hidden = true;
  $('sign-out').hidden = false;
  const organisation = session.workspaces.length ? ` · ${session.workspaces.length} workspaces` : '';
  $('who').textContent = `Signed in · role ${session.role}${organisation}`;
  $('who').dataset.role = session.role;
  if (session.role === 'verify') {
    $('nav').hidden = true;
    $('view').hidden = true;
    $('verify-only').hidden = false;
    return;
  }
  $('verify-only').hidden = true;
  $('nav').hidden = false;
  for (const item of document.querySelectorAll('[data-needs="admin"]')) item.hidden = session.role !== 'admin';
  await route();
}

async function signIn(event) {
  event.preventDefault();
  const token = $('token').value.trim();
  $('token').value = '';
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  say('');
  try {
    await signedIn();
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedOut();
    failed(error instanceof ApiError && error.status === 401 ? new Error('That service token is not valid.') : error);
  }
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  say('Signed out.');
  showSignedOut();
}

// ---- pages ---------------------------------------------------------------

function page(title, ...content) {
  const view = $('view');
  view.hidden = false;
  // A part a page leaves out is null: nothing, not the text "null".
  view.replaceChildren(el('h2', { id: 'page-heading', tabindex: '-1' }, title), ...content.filter((part) => part !== null && part !== undefined && part !== false));
  document.title = `${title} · keysd console`;
}

function workspaceNav(slug, current) {
  const link = (hash, label) => el('li', {}, el('a', { href: hash, 'aria-current': current === label ? 'page' : null }, label));
  return el(
    'nav',
    { 'aria-label': `Workspace ${slug}` },
    el('ul', {}, link(`#/workspace/${enc(slug)}/api-keys`, 'API keys'), link(`#/workspace/${enc(slug)}/identities`, 'Identities'), link(`#/workspace/${enc(slug)}/signing-keys`, 'Signing keys'), link(`#/workspace/${enc(slug)}/public-keys`, 'Public keys')),
  );
}

async function workspacesPage() {
  const rows = session.workspaces.map((workspace) =>
    el(
      'tr',
      { 'data-slug': workspace.slug },
      el('td', {}, el('code', {}, workspace.slug)),
      el('td', {}, workspace.name),
      el('td', {}, workspace.mode),
      el('td', {}, el('code', {}, workspace.uid)),
      el(
        'td',
        { class: 'actions' },
        el('a', { href: `#/workspace/${enc(workspace.slug)}/api-keys` }, 'API keys'),
        el('a', { href: `#/workspace/${enc(workspace.slug)}/identities` }, 'Identities'),
        el('a', { href: `#/workspace/${enc(workspace.slug)}/signing-keys` }, 'Signing keys'),
        el('a', { href: `#/workspace/${enc(workspace.slug)}/public-keys` }, 'Public keys'),
        el('a', { href: `/v1/workspace/${enc(workspace.uid)}/jwks.json` }, 'JWKS'),
      ),
    ),
  );
  page('Workspaces', table(['Slug', 'Name', 'Mode', 'Uid', 'Manage'], rows));
}

function scopesOf(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

// The hash of an API key's own page.
function apiKeyHash(slug, id) {
  return `#/workspace/${enc(slug)}/api-keys/${enc(id)}`;
}

// Shows another page's address without a `hashchange` (which would clear
// the status line the caller is about to write).
function go(hash) {
  history.pushState(null, '', hash);
}

// A button that runs `run`, reporting its failure on the status line.
function action(label, run, options) {
  return el('button', { type: 'button', class: (options && options.class) || 'secondary', onclick: async () => {
    try {
      await run();
    } catch (error) {
      failed(error);
    }
  } }, label);
}

// The buttons that act on one API key, in its row of the list and on its
// own page. `after(what, answer)` shows the outcome: `what` is `changed`,
// `rolled` (with the new key) or `deleted`.
function apiKeyActions(slug, key, after) {
  const path = `/v1/${enc(slug)}/ws_api_key/${enc(key.id)}/`;
  const actions = [];
  if (key.status === 'active') {
    actions.push(action('Roll', async () => {
      const grace = await askGrace(`Roll API key “${key.name}” (${key.masked_api_key}): a new secret replaces it; the old one keeps working for the grace period.`);
      if (grace === null) return;
      const rolled = await api('POST', `${path}roll/`, { grace_period_seconds: grace });
      showSecret(`The new secret of API key “${rolled.name}” (${rolled.id}). The old secret works for ${grace} more seconds.`, rolled.api_key);
      await after('rolled', { id: rolled.id });
      say(`Rolled API key “${key.name}”.`);
    }));
    actions.push(action('Disable', async () => {
      await api('PATCH', `${path}disable/`, {});
      await after('changed');
      say(`Disabled API key “${key.name}”.`);
    }));
  }
  if (key.status === 'disabled') {
    actions.push(action('Enable', async () => {
      await api('PATCH', `${path}enable/`, {});
      await after('changed');
      say(`Enabled API key “${key.name}”.`);
    }));
  }
  actions.push(action('Usage', async () => showKeyUsage(slug, key)));
  actions.push(action('Delete', async () => {
    if (!(await confirmAction(`Delete API key “${key.name}” (${key.masked_api_key}, ${key.id})? It stops authenticating at once; this cannot be undone.`, `Delete “${key.name}”`))) return;
    await api('DELETE', path);
    await after('deleted');
    say(`Deleted API key “${key.name}”.`);
  }, { class: 'danger' }));
  return actions;
}

async function apiKeysPage(slug) {
  const base = `/v1/${enc(slug)}/ws_api_key/`;
  const list = await api('GET', base + '?limit=100');
  const create = el(
    'form',
    { class: 'inline', id: 'create-api-key', onsubmit: async (event) => {
      event.preventDefault();
      const form = event.target;
      const body = { name: form.elements.name.value };
      const scopes = scopesOf(form.elements.scopes.value);
      if (scopes.length) body.scopes = scopes;
      if (form.elements.expires_at.value) body.expires_at = new Date(form.elements.expires_at.value).toISOString();
      if (form.elements.external_id.value.trim()) body.external_id = form.elements.external_id.value.trim();
      if (form.elements.credits.value !== '') body.credits = { remaining: Number(form.elements.credits.value) };
      try {
        if (form.elements.meta.value.trim()) body.meta = JSON.parse(form.elements.meta.value);
      } catch (_) {
        say('Meta must be a JSON object, such as {"plan": "pro"}.', true);
        return;
      }
      try {
        const created = await api('POST', base, body);
        showSecret(`The secret of API key “${created.name}” (${created.id}). It is shown this once; store it now.`, created.api_key);
        await apiKeysPage(slug);
        say(`Created API key “${created.name}”.`);
      } catch (error) {
        failed(error);
      }
    } },
    field('Name', el('input', { name: 'name', required: true, maxlength: 255 })),
    field('Scopes (comma-separated)', el('input', { name: 'scopes', placeholder: 'keys:read, keys:write' })),
    field('Expires at (optional)', el('input', { name: 'expires_at', type: 'datetime-local' })),
    field('Owner id (optional)', el('input', { name: 'external_id', placeholder: 'customer_42' })),
    field('Meta (optional JSON object)', el('input', { name: 'meta', placeholder: '{"plan": "pro"}' })),
    field('Credits (optional)', el('input', { name: 'credits', type: 'number', min: 0, max: MAX_CREDITS, step: 1, placeholder: 'unmetered' })),
    el('button', { type: 'submit' }, 'Create API key'),
  );
  const rows = list.results.map((key) =>
    el(
      'tr',
      { 'data-id': key.id, 'data-status': key.status },
      el('td', {}, el('a', { href: apiKeyHash(slug, key.id), title: 'Details, rate limits and credits' }, key.name)),
      el('td', {}, el('code', {}, key.masked_api_key)),
      el('td', {}, badge(key.status)),
      el('td', {}, (key.scopes || []).join(', ') || '—'),
      el('td', {}, key.external_id || '—'),
      el('td', {}, when(key.expires_at)),
      el('td', {}, when(key.created_at)),
      el('td', { class: 'last-used' }, key.last_used_at ? when(key.last_used_at) : 'never'),
      el('td', { class: 'actions' }, apiKeyActions(slug, key, () => apiKeysPage(slug))),
    ),
  );
  page(
    `API keys · ${slug}`,
    workspaceNav(slug, 'API keys'),
    el('h3', {}, 'Create an API key'),
    create,
    el('h3', {}, `${list.meta.count} API keys`),
    el('p', { class: 'muted' }, 'A key’s name opens its page: its details, rate limits and credits.'),
    table(['Name', 'Key', 'Status', 'Scopes', 'Owner', 'Expires', 'Created', 'Last used', 'Actions'], rows),
    el('h3', {}, `Usage of workspace ${slug}`),
    usagePanel(slug, null, `workspace ${slug}`, 'workspace-usage'),
  );
}

// ---- metering: rate limits and credits (docs/METERING.md) ----------------
//
// An API key and an identity (the keys of a workspace with one owner id,
// `external_id`) may carry rate limits and credits. Only the answers about
// one key carry them, so the list links each key to its own page.

const MAX_CREDITS = 1000000000000; // 10^12, the most a balance or a refill holds
const MAX_RATE_LIMITS = 16;

function durationText(seconds) {
  const [size, unit] = [[86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']].find(([whole]) => seconds % whole === 0);
  const count = seconds / size;
  return count === 1 ? `1 ${unit}` : `${numberText(count)} ${unit}s`;
}

function refillText(refill) {
  if (!refill) return 'no refill';
  const amount = numberText(refill.amount);
  if (refill.interval === 'daily') return `refilled to ${amount} every day at 00:00 UTC`;
  return `refilled to ${amount} on day ${refill.refill_day || 1} of each month at 00:00 UTC (the last day of a shorter month)`;
}

// A balance as the page shows it.
function creditsSummary(credits, id) {
  if (!credits) return el('p', { id, 'data-metered': 'false' }, 'Unmetered: verifications spend no credits.');
  return el('p', { id, 'data-metered': 'true' }, el('strong', { class: 'remaining' }, numberText(credits.remaining)), ` credits remaining; ${refillText(credits.refill)}.`);
}

function limitsTable(limits, id) {
  if (!limits.length) return el('p', { id, class: 'muted' }, 'No rate limits.');
  const rows = limits.map((limit) => el(
    'tr',
    { 'data-limit': limit.name },
    el('td', {}, el('code', {}, limit.name)),
    el('td', {}, numberText(limit.limit)),
    el('td', {}, durationText(limit.duration_seconds)),
    el('td', {}, limit.auto_apply ? 'every verification' : 'verifications that name it'),
  ));
  const shown = table(['Name', 'Limit', 'Per', 'Applies to'], rows);
  shown.id = id;
  return shown;
}

function limitsSaved(key) {
  const count = key.ratelimits.length;
  if (!count) return `API key “${key.name}” has no rate limits now.`;
  return `Saved ${count} rate limit${count === 1 ? '' : 's'} of API key “${key.name}”.`;
}

// Label and value pairs as a definition list.
function facts(id, pairs) {
  return el('dl', { class: 'facts', id }, pairs.flatMap(([term, value]) => [el('dt', {}, term), el('dd', {}, value)]));
}

// The rate limits as editable rows: `{node, read}`, `read` answering the
// list as the API takes it (empty: none).
function limitsEditor(limits, legend) {
  const wrap = table(['Name', 'Limit (tokens)', 'Per (seconds)', 'Auto-apply', ''], []);
  const rows = wrap.querySelector('tbody');
  const empty = el('p', { class: 'muted' }, 'No rate limits: saving removes them all.');
  const add = el('button', { type: 'button', class: 'secondary', onclick: () => {
    addRow({ name: '', limit: '', duration_seconds: 60, auto_apply: true });
    rows.lastElementChild.querySelector('input').focus();
  } }, 'Add a rate limit');
  function renumber() {
    [...rows.children].forEach((row, index) => {
      const number = index + 1;
      row.querySelector('[name=name]').setAttribute('aria-label', `Name of rate limit ${number}`);
      row.querySelector('[name=limit]').setAttribute('aria-label', `Limit of rate limit ${number}`);
      row.querySelector('[name=duration_seconds]').setAttribute('aria-label', `Seconds of rate limit ${number}`);
      row.querySelector('[name=auto_apply]').setAttribute('aria-label', `Auto-apply rate limit ${number}`);
      row.querySelector('button').setAttribute('aria-label', `Remove rate limit ${number}`);
    });
    empty.hidden = rows.children.length > 0;
    wrap.hidden = rows.children.length === 0;
    add.disabled = rows.children.length >= MAX_RATE_LIMITS;
  }
  function addRow(limit) {
    const row = el(
      'tr',
      { class: 'limit-row' },
      el('td', {}, el('input', { name: 'name', value: limit.name, required: true, maxlength: 64, pattern: '[a-z0-9][a-z0-9_.:\\-]{0,63}', title: 'a-z, 0-9 and _ . : - (starting with a letter or digit)', placeholder: 'requests', autocomplete: 'off', spellcheck: 'false' })),
      el('td', {}, el('input', { name: 'limit', type: 'number', min: 1, max: 1000000000, step: 1, required: true, value: limit.limit })),
      el('td', {}, el('input', { name: 'duration_seconds', type: 'number', min: 1, max: 86400, step: 1, required: true, value: limit.duration_seconds })),
      el('td', {}, el('input', { name: 'auto_apply', type: 'checkbox', checked: limit.auto_apply })),
      el('td', {}, el('button', { type: 'button', class: 'secondary', onclick: () => {
        row.remove();
        renumber();
        add.focus();
      } }, 'Remove')),
    );
    rows.append(row);
    renumber();
  }
  for (const limit of limits) addRow(limit);
  renumber();
  const node = el(
    'fieldset',
    { class: 'limits-editor' },
    el('legend', {}, legend),
    el('p', { class: 'muted' }, `A limit admits so many verifications per so many seconds. An auto-applied limit counts every verification; another counts only those that name it. At most ${MAX_RATE_LIMITS}, each name once.`),
    empty,
    wrap,
    el('p', {}, add),
  );
  const read = () => [...rows.children].map((row) => ({
    name: row.querySelector('[name=name]').value.trim(),
    limit: Number(row.querySelector('[name=limit]').value),
    duration_seconds: Number(row.querySelector('[name=duration_seconds]').value),
    auto_apply: row.querySelector('[name=auto_apply]').checked,
  }));
  return { node, read };
}

// The credits as an editable whole: `{node, read}`, `read` answering null
// (unmetered) or `{remaining, refill}`.
function creditsEditor(credits, legend) {
  const refill = credits && credits.refill;
  const metered = el('input', { name: 'metered', type: 'checkbox', checked: Boolean(credits), onchange: sync });
  const remaining = el('input', { name: 'remaining', type: 'number', min: 0, max: MAX_CREDITS, step: 1, required: true, value: credits ? credits.remaining : 0 });
  const interval = el(
    'select',
    { name: 'interval', onchange: sync },
    el('option', { value: '', selected: !refill }, 'none'),
    el('option', { value: 'daily', selected: Boolean(refill && refill.interval === 'daily') }, 'daily'),
    el('option', { value: 'monthly', selected: Boolean(refill && refill.interval === 'monthly') }, 'monthly'),
  );
  const amount = el('input', { name: 'amount', type: 'number', min: 0, max: MAX_CREDITS, step: 1, required: true, value: refill ? refill.amount : '' });
  const day = el('input', { name: 'refill_day', type: 'number', min: 1, max: 31, step: 1, required: true, value: (refill && refill.refill_day) || 1 });
  const details = el(
    'fieldset',
    { class: 'plain' },
    field('Remaining', remaining),
    field('Refill', interval),
    field('Refill to (amount)', amount),
    field('Refill day (monthly, 1–31)', day),
  );
  function sync() {
    details.disabled = !metered.checked;
    amount.disabled = !interval.value;
    day.disabled = interval.value !== 'monthly';
  }
  sync();
  const node = el(
    'fieldset',
    { class: 'credits-editor' },
    el('legend', {}, legend),
    el('label', { class: 'check' }, metered, 'Spends credits (metered)'),
    details,
  );
  const read = () => {
    if (!metered.checked) return null;
    const answer = { remaining: Number(remaining.value), refill: null };
    if (interval.value) {
      answer.refill = { interval: interval.value, amount: Number(amount.value) };
      if (interval.value === 'monthly') answer.refill.refill_day = Number(day.value);
    }
    return answer;
  };
  return { node, read };
}

// ---- one API key ---------------------------------------------------------

async function apiKeyPage(slug, id) {
  showApiKey(slug, await api('GET', `/v1/${enc(slug)}/ws_api_key/${enc(id)}/`));
}

// A key's page from an answer about it (which carries its metering).
function showApiKey(slug, key) {
  const path = `/v1/${enc(slug)}/ws_api_key/${enc(key.id)}/`;
  const after = async (what, answer) => {
    if (what === 'deleted') {
      go(`#/workspace/${enc(slug)}/api-keys`);
      await apiKeysPage(slug);
    } else if (what === 'rolled') {
      go(apiKeyHash(slug, answer.id));
      await apiKeyPage(slug, answer.id);
    } else {
      await apiKeyPage(slug, key.id);
    }
  };
  const saved = (message) => (answer) => {
    showApiKey(slug, answer);
    say(message(answer));
  };
  const submit = (send, done) => async (event) => {
    event.preventDefault();
    try {
      done(await send(event.target));
    } catch (error) {
      failed(error);
    }
  };
  const limits = limitsEditor(key.ratelimits || [], 'Edit the rate limits');
  const limitsForm = el(
    'form',
    { id: 'key-limits-form', onsubmit: submit(() => api('PATCH', path, { ratelimits: limits.read() }), saved((answer) => limitsSaved(answer))) },
    limits.node,
    el('p', { class: 'actions' }, el('button', { type: 'submit' }, 'Save rate limits')),
  );
  const balance = el(
    'form',
    { id: 'key-balance', onsubmit: submit(
      (form) => api('POST', `${path}credits/`, { operation: form.elements.operation.value, value: Number(form.elements.credits.value) }),
      saved((answer) => `Credits of API key “${answer.name}”: ${numberText(answer.credits.remaining)} remaining.`),
    ) },
    el(
      'fieldset',
      { class: 'inline' },
      el('legend', {}, 'Change the balance'),
      field('Operation', el('select', { name: 'operation' }, el('option', { value: 'set' }, 'Set to'), el('option', { value: 'increment' }, 'Add'), el('option', { value: 'decrement' }, 'Take away'))),
      field('Credits', el('input', { name: 'credits', type: 'number', min: 0, max: MAX_CREDITS, step: 1, required: true })),
      el('button', { type: 'submit' }, 'Change balance'),
    ),
    el('p', { class: 'muted' }, key.credits ? 'Taking away stops at 0; adding stops at 10¹².' : 'The key spends no credits yet: changing the balance makes it spend them, from 0.'),
  );
  const credits = creditsEditor(key.credits || null, 'Replace the credits');
  const creditsForm = el(
    'form',
    { id: 'key-credits-form', onsubmit: submit(() => api('PATCH', path, { credits: credits.read() }), saved((answer) => (answer.credits ? `Saved the credits of API key “${answer.name}”.` : `API key “${answer.name}” spends no credits now.`))) },
    credits.node,
    el('p', { class: 'muted' }, 'Saving replaces the balance with Remaining, whatever verifications spent since this page was shown; to add or take away, change the balance above.'),
    el('p', { class: 'actions' }, el('button', { type: 'submit' }, 'Save credits')),
  );
  page(
    `API key “${key.name}”`,
    workspaceNav(slug, 'API keys'),
    el('p', {}, el('a', { href: `#/workspace/${enc(slug)}/api-keys` }, `All API keys of ${slug}`)),
    facts('key-facts', [
      ['Id', el('code', {}, key.id)],
      ['Key', el('code', {}, key.masked_api_key)],
      ['Status', badge(key.status)],
      ['Scopes', (key.scopes || []).join(', ') || '—'],
      ['Owner', key.external_id ? el('a', { href: identityHash(slug, key.external_id), title: 'Its identity' }, key.external_id) : '—'],
      ['Description', key.description || '—'],
      ['Meta', key.meta ? el('code', {}, JSON.stringify(key.meta)) : '—'],
      ['Expires', when(key.expires_at)],
      ['Created', when(key.created_at)],
      ['Last used', key.last_used_at ? when(key.last_used_at) : 'never'],
    ]),
    el('p', { class: 'actions', id: 'key-actions' }, apiKeyActions(slug, key, after)),
    el('h3', {}, 'Rate limits'),
    limitsTable(key.ratelimits || [], 'key-limits'),
    limitsForm,
    el('h3', {}, 'Credits'),
    creditsSummary(key.credits || null, 'key-credits'),
    balance,
    creditsForm,
  );
}

// ---- identities ----------------------------------------------------------

function identityHash(slug, externalId) {
  return `#/workspace/${enc(slug)}/identities` + (externalId ? `/${enc(externalId)}` : '');
}

function identityPath(slug, externalId) {
  return `/v1/${enc(slug)}/identity/${enc(externalId)}/`;
}

// The identities of a workspace: one looked up by its owner id (null
// when it has none yet), and the owner ids its API keys name.
async function identitiesPage(slug, externalId) {
  let identity = null;
  if (externalId) {
    try {
      identity = await api('GET', identityPath(slug, externalId));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
    }
  }
  const keys = await api('GET', `/v1/${enc(slug)}/ws_api_key/?limit=100`);
  const owners = [...new Set(keys.results.map((key) => key.external_id).filter(Boolean))].sort();
  showIdentities(slug, externalId, identity, owners);
}

function showIdentities(slug, externalId, identity, owners) {
  const lookup = el(
    'form',
    { class: 'inline', id: 'identity-lookup', onsubmit: (event) => {
      event.preventDefault();
      const wanted = event.target.elements.external_id.value.trim();
      if (!wanted) return;
      const hash = identityHash(slug, wanted);
      if (location.hash === hash) route();
      else location.hash = hash;
    } },
    field('Owner id (external_id)', el('input', { name: 'external_id', required: true, maxlength: 255, value: externalId || '', placeholder: 'customer_42', autocomplete: 'off', spellcheck: 'false' })),
    el('button', { type: 'submit' }, 'Look up'),
  );
  const known = owners.length
    ? el('p', { id: 'identity-owners' }, 'Owner ids on this workspace’s API keys: ', owners.flatMap((owner, index) => [index ? ', ' : null, el('a', { href: identityHash(slug, owner) }, owner)]))
    : el('p', { id: 'identity-owners', class: 'muted' }, 'No API key of this workspace names an owner id yet.');
  const content = [];
  if (externalId) {
    const path = identityPath(slug, externalId);
    if (identity) {
      content.push(
        el('h3', {}, `Identity “${identity.external_id}”`),
        facts('identity-facts', [
          ['Owner id', el('code', {}, identity.external_id)],
          ['Credits', creditsSummary(identity.credits, 'identity-credits')],
          ['Meta', identity.meta ? el('code', {}, JSON.stringify(identity.meta)) : '—'],
          ['Keys', identity.key_ids.length
            ? el('ul', { id: 'identity-keys', class: 'plain' }, identity.key_ids.map((id) => el('li', {}, el('a', { href: apiKeyHash(slug, id) }, el('code', {}, id)))))
            : el('span', { id: 'identity-keys' }, 'none: no live API key has this owner id')],
          ['Created', when(identity.created_at)],
          ['Updated', when(identity.updated_at)],
        ]),
        el('h4', {}, 'Rate limits'),
        limitsTable(identity.ratelimits, 'identity-limits'),
        el('p', { class: 'actions' }, action('Delete identity', async () => {
          if (!(await confirmAction(`Delete identity “${identity.external_id}”? Its limits and credits go; its keys keep working with their own.`, `Delete “${identity.external_id}”`))) return;
          await api('DELETE', path);
          await identitiesPage(slug, externalId);
          say(`Deleted identity “${identity.external_id}”.`);
        }, { class: 'danger' })),
      );
    } else {
      content.push(el('p', { id: 'identity-missing' }, `No identity “${externalId}”: its keys have only their own limits and credits. Saving below creates it.`));
    }
    const limits = limitsEditor(identity ? identity.ratelimits : [], 'Rate limits');
    const credits = creditsEditor(identity ? identity.credits : null, 'Credits');
    const form = el(
      'form',
      { id: 'identity-form', onsubmit: async (event) => {
        event.preventDefault();
        const body = { ratelimits: limits.read(), credits: credits.read() };
        const meta = event.target.elements.meta.value.trim();
        try {
          if (meta) body.meta = JSON.parse(meta);
        } catch (_) {
          say('Meta must be a JSON object, such as {"plan": "pro"}.', true);
          return;
        }
        try {
          const saved = await api('PUT', path, body);
          showIdentities(slug, externalId, saved, owners);
          say(`Saved identity “${saved.external_id}”.`);
        } catch (error) {
          failed(error);
        }
      } },
      limits.node,
      credits.node,
      el('fieldset', { class: 'inline' }, el('legend', {}, 'Meta'), field('Meta (optional JSON object)', el('input', { name: 'meta', value: identity && identity.meta ? JSON.stringify(identity.meta) : '', placeholder: '{"plan": "pro"}' }))),
      el('p', { class: 'muted' }, 'Saving replaces the whole identity: its rate limits, its credits (the balance included) and its meta.'),
      el('p', { class: 'actions' }, el('button', { type: 'submit' }, identity ? 'Replace identity' : 'Create identity')),
    );
    content.push(el('h3', {}, identity ? `Replace identity “${externalId}”` : `Create identity “${externalId}”`), form);
  }
  page(
    `Identities · ${slug}`,
    workspaceNav(slug, 'Identities'),
    el('p', {}, 'An identity is the API keys of this workspace with one owner id (external_id): its rate limits and credits apply to every verification of each of them, besides the key’s own.'),
    lookup,
    known,
    ...content,
  );
}

async function signingKeysPage(slug) {
  const base = `/v1/${enc(slug)}/ws_signing_key/`;
  const list = await api('GET', base + '?limit=100');
  const workspace = session.workspaces.find((known) => known.slug === slug);
  const pemName = (key) => `${key.uid}.pem`;
  const run = (fn) => async () => {
    try {
      await fn();
    } catch (error) {
      failed(error);
    }
  };
  const create = el('button', { type: 'button', id: 'create-signing-key', onclick: run(async () => {
    const created = await api('POST', base, {});
    showSecret(`The private key of signing key ${created.uid}. It is shown this once; store it now.`, created.private_key_pem, pemName(created));
    await signingKeysPage(slug);
    say(`Created signing key ${created.uid}.`);
  }) }, 'Create signing key');
  const rows = list.results.map((key) => {
    const path = `${base}${enc(key.uid)}/`;
    const actions = [];
    if (key.status === 'active') {
      actions.push(el('button', { type: 'button', class: 'secondary', onclick: run(async () => {
        const grace = await askGrace(`Roll signing key ${key.uid}: a new key signs from now on; the old one keeps verifying for the grace period.`);
        if (grace === null) return;
        const rolled = await api('POST', `${path}roll/`, { grace_period_seconds: grace });
        showSecret(`The private key of the new signing key ${rolled.uid}. It is shown this once; store it now.`, rolled.private_key_pem, pemName(rolled));
        await signingKeysPage(slug);
        say(`Rolled signing key ${key.uid}.`);
      }) }, 'Roll'));
    }
    actions.push(el('button', { type: 'button', class: 'danger', onclick: run(async () => {
      if (!(await confirmAction(`Delete signing key ${key.uid}? Tokens it signed stop verifying; this cannot be undone.`, `Delete ${key.uid}`))) return;
      await api('DELETE', path);
      await signingKeysPage(slug);
      say(`Deleted signing key ${key.uid}.`);
    }) }, 'Delete'));
    return el(
      'tr',
      { 'data-id': key.uid, 'data-status': key.status },
      el('td', {}, el('code', {}, key.uid)),
      el('td', {}, badge(key.status)),
      el('td', {}, when(key.created_at)),
      el('td', {}, when(key.rolled_at)),
      el('td', { class: 'actions' }, actions),
    );
  });
  const jwks = workspace ? el('p', {}, 'Public keys for verifiers: ', el('a', { href: `/v1/workspace/${enc(workspace.uid)}/jwks.json`, id: 'jwks-link' }, `/v1/workspace/${workspace.uid}/jwks.json`)) : null;
  page(`Signing keys · ${slug}`, workspaceNav(slug, 'Signing keys'), jwks, el('p', {}, create), el('h3', {}, `${list.meta.count} signing keys`), table(['Uid (kid)', 'Status', 'Created', 'Rolled', 'Actions'], rows));
}

async function publicKeysPage(slug) {
  const base = `/v1/${enc(slug)}/ws_public_key/`;
  const list = await api('GET', base + '?limit=100');
  const create = el(
    'form',
    { class: 'inline', id: 'create-public-key', onsubmit: async (event) => {
      event.preventDefault();
      try {
        const created = await api('POST', base, { name: event.target.elements.name.value });
        await publicKeysPage(slug);
        say(`Created public key “${created.name}”.`);
      } catch (error) {
        failed(error);
      }
    } },
    field('Name', el('input', { name: 'name', required: true, maxlength: 255 })),
    el('button', { type: 'submit' }, 'Create public key'),
  );
  const run = (fn) => async () => {
    try {
      await fn();
    } catch (error) {
      failed(error);
    }
  };
  const rows = list.results.map((key) => {
    const path = `${base}${enc(key.id)}/`;
    const domains = el(
      'form',
      { class: 'inline', onsubmit: (event) => {
        event.preventDefault();
        const allowed = scopesOf(event.target.elements.domains.value);
        run(async () => {
          await api('PATCH', path, { allowed_domains: allowed.length ? allowed : null });
          await publicKeysPage(slug);
          say(`Saved the allowed domains of public key “${key.name}”.`);
        })();
      } },
      field(`Allowed domains of “${key.name}”`, el('input', { name: 'domains', value: (key.allowed_domains || []).join(', '), placeholder: 'app.example.com, *.example.com' })),
      el('button', { type: 'submit', class: 'secondary' }, 'Save'),
    );
    return el(
      'tr',
      { 'data-id': key.id },
      el('td', {}, key.name, key.is_default ? el('span', { class: 'muted' }, ' (default)') : null),
      el('td', {}, el('code', {}, key.api_key)),
      el('td', {}, el('button', { type: 'button', class: 'secondary', 'aria-pressed': key.is_secure_mode_enabled ? 'true' : 'false', onclick: run(async () => {
        await api('PATCH', path, { is_secure_mode_enabled: !key.is_secure_mode_enabled });
        await publicKeysPage(slug);
        say(`Secure mode of public key “${key.name}” is ${key.is_secure_mode_enabled ? 'off' : 'on'}.`);
      }) }, key.is_secure_mode_enabled ? 'Secure mode: on' : 'Secure mode: off')),
      el('td', {}, domains),
      el('td', {}, when(key.created_at)),
      el(
        'td',
        { class: 'actions' },
        el('button', { type: 'button', class: 'secondary', onclick: run(async () => {
          if (!(await confirmAction(`Rotate public key “${key.name}” (${key.id})? Its current value ${key.api_key} stops working at once.`, `Rotate “${key.name}”`))) return;
          await api('PATCH', `${path}rotate/`, {});
          await publicKeysPage(slug);
          say(`Rotated public key “${key.name}”.`);
        }) }, 'Rotate'),
        el('button', { type: 'button', class: 'danger', onclick: run(async () => {
          if (!(await confirmAction(`Delete public key “${key.name}” (${key.id})? Clients using it stop working; this cannot be undone.`, `Delete “${key.name}”`))) return;
          await api('DELETE', path);
          await publicKeysPage(slug);
          say(`Deleted public key “${key.name}”.`);
        }) }, 'Delete'),
      ),
    );
  });
  page(`Public keys · ${slug}`, workspaceNav(slug, 'Public keys'), el('h3', {}, 'Create a public key'), create, el('h3', {}, `${list.meta.count} public keys`), table(['Name', 'Key (publishable)', 'Secure mode', 'Allowed domains', 'Created', 'Actions'], rows));
}

async function serviceTokensPage() {
  const list = await api('GET', '/v1/service_token/?limit=100');
  const create = el(
    'form',
    { class: 'inline', id: 'create-service-token', onsubmit: async (event) => {
      event.preventDefault();
      const form = event.target;
      const body = { name: form.elements.name.value, role: form.elements.role.value };
      const workspaces = scopesOf(form.elements.workspaces.value);
      if (workspaces.length) body.workspaces = workspaces;
      try {
        const created = await api('POST', '/v1/service_token/', body);
        showSecret(`Service token “${created.name}” (role ${created.role}, ${created.id}). It is shown this once; store it now.`, created.token);
        await serviceTokensPage();
        say(`Created service token “${created.name}”.`);
      } catch (error) {
        failed(error);
      }
    } },
    field('Name', el('input', { name: 'name', required: true, maxlength: 255 })),
    field('Role', el('select', { name: 'role' }, el('option', { value: 'verify' }, 'verify'), el('option', { value: 'manage' }, 'manage'), el('option', { value: 'admin' }, 'admin'))),
    field('Workspaces (optional, comma-separated slugs)', el('input', { name: 'workspaces' })),
    el('button', { type: 'submit' }, 'Create service token'),
  );
  const rows = list.results.map((token) =>
    el(
      'tr',
      { 'data-id': token.id },
      el('td', {}, token.name),
      el('td', {}, el('code', {}, token.masked_token)),
      el('td', {}, token.role),
      el('td', {}, token.workspaces ? token.workspaces.join(', ') : 'all'),
      el('td', {}, token.revoked_at ? badge('revoked') : badge('active')),
      el('td', {}, when(token.last_used_at)),
      el('td', { class: 'actions' }, token.revoked_at ? null : el('button', { type: 'button', class: 'danger', onclick: async () => {
        try {
          if (!(await confirmAction(`Revoke service token “${token.name}” (${token.masked_token}, ${token.id})? Anything using it is refused at once.`, `Revoke “${token.name}”`))) return;
          await api('DELETE', `/v1/service_token/${enc(token.id)}/`);
          await serviceTokensPage();
          say(`Revoked service token “${token.name}”.`);
        } catch (error) {
          failed(error);
        }
      } }, 'Revoke')),
    ),
  );
  page('Service tokens', el('h3', {}, 'Create a service token'), create, el('h3', {}, `${list.meta.count} service tokens`), table(['Name', 'Token', 'Role', 'Workspaces', 'Status', 'Last used', 'Actions'], rows));
}

async function auditPage(query) {
  const params = new URLSearchParams(query);
  const filter = new URLSearchParams();
  for (const name of ['action', 'workspace', 'cursor']) if (params.get(name)) filter.set(name, params.get(name));
  filter.set('limit', '50');
  const list = await api('GET', '/v1/audit_event/?' + filter.toString());
  const form = el(
    'form',
    { class: 'inline', id: 'audit-filter', onsubmit: (event) => {
      event.preventDefault();
      const chosen = new URLSearchParams();
      if (event.target.elements.action.value) chosen.set('action', event.target.elements.action.value);
      if (event.target.elements.workspace.value) chosen.set('workspace', event.target.elements.workspace.value);
      location.hash = '#/audit?' + chosen.toString();
    } },
    field('Action', el('input', { name: 'action', value: params.get('action') || '', placeholder: 'api_key.rolled' })),
    field('Workspace', el('select', { name: 'workspace' }, el('option', { value: '' }, 'any'), session.workspaces.map((workspace) => el('option', { value: workspace.slug, selected: params.get('workspace') === workspace.slug }, workspace.slug)))),
    el('button', { type: 'submit' }, 'Filter'),
  );
  const rows = list.results.map((event) =>
    el(
      'tr',
      { 'data-action': event.action },
      el('td', {}, when(event.at)),
      el('td', {}, el('code', {}, event.action)),
      el('td', {}, event.workspace || '—'),
      el('td', {}, event.target ? `${event.target.type} ${event.target.id || ''}` : '—'),
      el('td', {}, event.actor ? event.actor.token_id || event.actor.name || '' : '—'),
    ),
  );
  let next = null;
  if (list.meta.next_cursor) {
    const more = new URLSearchParams(filter);
    more.delete('limit');
    more.set('cursor', list.meta.next_cursor);
    next = el('p', {}, el('a', { href: '#/audit?' + more.toString(), id: 'audit-next' }, 'Older events'));
  }
  page('Audit trail', form, table(['At', 'Action', 'Workspace', 'Target', 'Token'], rows), next);
}

// ---- webhooks (admin) ----------------------------------------------------
//
// Endpoints keysd sends events to, signed in the Standard Webhooks format
// with a secret shown once (at creation and at each rotation). Each
// endpoint's page lists its delivery attempts, newest first, each with a
// Retry.

// Every type an endpoint may subscribe to: each audit action, then the
// warnings (keys-service `event_types`).
const WEBHOOK_EVENT_TYPES = [
  'organisation.created', 'workspace.created', 'workspace.updated',
  'service_token.generated', 'service_token.revoked',
  'api_key.generated', 'api_key.updated', 'api_key.disabled', 'api_key.enabled', 'api_key.rolled', 'api_key.deleted', 'api_key.imported', 'api_key.leaked', 'api_key.credits_updated',
  'identity.updated', 'identity.deleted',
  'public_api_key.generated', 'public_api_key.updated', 'public_api_key.rotated', 'public_api_key.deleted',
  'signing_api_key.generated', 'signing_api_key.rolled', 'signing_api_key.deleted',
  'organisation_key.generated', 'organisation_key.deleted',
  'audit.pruned',
  'webhook_endpoint.created', 'webhook_endpoint.updated', 'webhook_endpoint.secret_rotated', 'webhook_endpoint.deleted', 'webhook_endpoint.disabled',
  'api_key.expiring', 'api_key.rolled_key_used', 'credits.low', 'ratelimit.exceeded',
];
const WEBHOOK_ATTEMPTS_PER_PAGE = 25;

function webhookHash(id) {
  return `#/webhooks/${enc(id)}`;
}

function webhookPath(id) {
  return `/v1/webhook_endpoint/${enc(id)}/`;
}

function eventsText(events) {
  return events.length === 1 && events[0] === '*' ? 'all (*)' : events.join(', ');
}

function webhookWorkspacesText(workspaces) {
  return workspaces ? workspaces.join(', ') : 'all, and the organisation’s own events';
}

// An endpoint's status: its badge, and since when every attempt failed.
function webhookStatus(endpoint) {
  return el(
    'span',
    { class: 'webhook-status' },
    badge(endpoint.status),
    endpoint.failing_since ? el('span', { class: 'failing' }, ` failing since ${when(endpoint.failing_since)}`) : null,
  );
}

// The event types an endpoint receives, as checkboxes: `{node, read}`,
// `read` answering `["*"]`, the types checked, or null when none is.
function eventsPicker(events, legend) {
  const everything = !events || (events.length === 1 && events[0] === '*');
  const all = el('input', { name: 'all_events', type: 'checkbox', checked: everything, onchange: sync });
  const boxes = WEBHOOK_EVENT_TYPES.map((type) => el('input', { name: 'event', type: 'checkbox', value: type, checked: !everything && events.includes(type) }));
  const list = el(
    'fieldset',
    { class: 'event-types' },
    el('legend', {}, 'Or only these types'),
    boxes.map((box) => el('label', { class: 'check' }, box, el('code', {}, box.value))),
  );
  function sync() {
    list.disabled = all.checked;
  }
  sync();
  const node = el(
    'fieldset',
    { class: 'events-picker' },
    el('legend', {}, legend),
    el('label', { class: 'check' }, all, 'All events (*), including types a later keysd adds'),
    list,
  );
  const read = () => {
    if (all.checked) return ['*'];
    const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
    return chosen.length ? chosen : null;
  };
  return { node, read };
}

// The fields of an endpoint, for creating one and for editing it:
// `{node, read}`, `read` answering the body (null after saying why not).
function webhookFields(endpoint, eventsLegend) {
  const url = el('input', { name: 'url', type: 'url', class: 'wide', required: true, maxlength: 2048, value: endpoint ? endpoint.url : '', autocomplete: 'off', spellcheck: 'false' });
  const workspaces = el('input', { name: 'workspaces', value: endpoint && endpoint.workspaces ? endpoint.workspaces.join(', ') : '', placeholder: 'all', autocomplete: 'off', spellcheck: 'false' });
  const description = el('input', { name: 'description', maxlength: 1024, value: endpoint && endpoint.description ? endpoint.description : '' });
  const picker = eventsPicker(endpoint ? endpoint.events : null, eventsLegend);
  const node = el(
    'div',
    {},
    el(
      'fieldset',
      { class: 'inline' },
      el('legend', {}, 'Destination'),
      field('URL', url),
      field('Workspaces (optional, comma-separated slugs)', workspaces),
      field('Description (optional)', description),
    ),
    el('p', { class: 'muted' }, 'The URL is https, or http when keysd runs with --webhook-allow-private-destinations. With no workspaces the endpoint receives every workspace’s events and the organisation’s own.'),
    picker.node,
  );
  const read = () => {
    const events = picker.read();
    if (!events) {
      say('Choose at least one event type, or All events.', true);
      return null;
    }
    const slugs = scopesOf(workspaces.value);
    return { url: url.value.trim(), events, workspaces: slugs.length ? slugs : null, description: description.value.trim() || null };
  };
  return { node, read };
}

// The buttons that act on one endpoint, in its row of the list and on its
// own page; `after(what)` shows the outcome (`changed` or `deleted`).
function webhookActions(endpoint, after) {
  const path = webhookPath(endpoint.id);
  const actions = [];
  actions.push(action('Rotate secret', async () => {
    if (!(await confirmAction(`Rotate the signing secret of webhook endpoint ${endpoint.url} (${endpoint.id})? The new secret is shown once; the current one keeps signing beside it for 24 hours.`, 'Rotate secret'))) return;
    const rotated = await api('POST', `${path}rotate_secret/`, {});
    showSecret(`The new signing secret of webhook endpoint ${rotated.url} (${rotated.id}). It is shown this once; store it now. The previous secret keeps signing deliveries for 24 hours.`, rotated.secret);
    await after('changed');
    say(`Rotated the signing secret of webhook endpoint ${endpoint.url}.`);
  }));
  if (endpoint.status === 'enabled') {
    actions.push(action('Disable', async () => {
      await api('PATCH', path, { status: 'disabled' });
      await after('changed');
      say(`Disabled webhook endpoint ${endpoint.url}.`);
    }));
  } else {
    actions.push(action('Enable', async () => {
      await api('PATCH', path, { status: 'enabled' });
      await after('changed');
      say(`Enabled webhook endpoint ${endpoint.url}.`);
    }));
  }
  actions.push(action('Delete', async () => {
    if (!(await confirmAction(`Delete webhook endpoint ${endpoint.url} (${endpoint.id})? Its pending deliveries go with it; this cannot be undone.`, 'Delete endpoint'))) return;
    await api('DELETE', path);
    await after('deleted');
    say(`Deleted webhook endpoint ${endpoint.url}.`);
  }, { class: 'danger' }));
  return actions;
}

async function webhooksPage() {
  const list = await api('GET', '/v1/webhook_endpoint/?limit=100');
  const fields = webhookFields(null, 'Events');
  const create = el(
    'form',
    { id: 'create-webhook', onsubmit: async (event) => {
      event.preventDefault();
      const body = fields.read();
      if (!body) return;
      if (!body.workspaces) delete body.workspaces;
      if (!body.description) delete body.description;
      try {
        const created = await api('POST', '/v1/webhook_endpoint/', body);
        showSecret(`The signing secret of webhook endpoint ${created.url} (${created.id}). It is shown this once; store it now.`, created.secret);
        await webhooksPage();
        say(`Created webhook endpoint ${created.url}.`);
      } catch (error) {
        failed(error);
      }
    } },
    fields.node,
    el('p', { class: 'actions' }, el('button', { type: 'submit' }, 'Create webhook endpoint')),
  );
  const rows = list.results.map((endpoint) =>
    el(
      'tr',
      { 'data-id': endpoint.id, 'data-status': endpoint.status },
      el('td', { class: 'webhook-url' }, el('a', { href: webhookHash(endpoint.id), title: 'Details and delivery attempts' }, endpoint.url)),
      el('td', {}, eventsText(endpoint.events)),
      el('td', {}, endpoint.workspaces ? endpoint.workspaces.join(', ') : 'all'),
      el('td', {}, endpoint.description || '—'),
      el('td', {}, webhookStatus(endpoint)),
      el('td', {}, when(endpoint.created_at)),
      el('td', { class: 'actions' }, el('a', { href: webhookHash(endpoint.id) }, 'Deliveries'), webhookActions(endpoint, () => webhooksPage())),
    ),
  );
  page(
    'Webhooks',
    el('p', {}, 'keysd sends each event to every enabled endpoint subscribed to it, signed in the Standard Webhooks format with the endpoint’s secret, and tries a failed delivery again; an endpoint whose every attempt failed for 5 days is disabled.'),
    el('h3', {}, `${list.meta.count} webhook endpoints`),
    el('p', { class: 'muted' }, 'An endpoint’s URL opens its page: its details and delivery attempts.'),
    table(['URL', 'Events', 'Workspaces', 'Description', 'Status', 'Created', 'Actions'], rows),
    el('h3', {}, 'Create a webhook endpoint'),
    create,
  );
}

// One endpoint: its details, its actions, its delivery attempts (a page
// of them from `offset`) and a form that edits it.
async function webhookPage(id, query) {
  const offset = Math.max(0, Number(new URLSearchParams(query).get('offset')) || 0);
  const [endpoint, attempts] = await Promise.all([
    api('GET', webhookPath(id)),
    api('GET', `${webhookPath(id)}deliveries/?limit=${WEBHOOK_ATTEMPTS_PER_PAGE}&offset=${offset}`),
  ]);
  showWebhook(endpoint, attempts, offset);
}

function showWebhook(endpoint, attempts, offset) {
  const path = webhookPath(endpoint.id);
  const again = () => webhookPage(endpoint.id, offset ? `offset=${offset}` : '');
  const after = async (what) => {
    if (what === 'deleted') {
      go('#/webhooks');
      await webhooksPage();
    } else {
      await again();
    }
  };
  const rows = attempts.results.map((attempt) =>
    el(
      'tr',
      { 'data-event-id': attempt.event_id, 'data-state': attempt.state },
      el('td', {}, when(attempt.attempted_at)),
      el('td', {}, el('code', {}, attempt.event_id)),
      el('td', {}, el('code', {}, attempt.type)),
      el('td', { class: 'outcome' }, attempt.status_code === null ? null : el('span', { class: 'status-code' }, `HTTP ${attempt.status_code}`), attempt.status_code !== null && attempt.error ? ' · ' : null, attempt.error ? el('span', { class: 'attempt-error' }, attempt.error) : null),
      el('td', {}, `${numberText(attempt.duration_ms)} ms`),
      el('td', {}, badge(attempt.state)),
      el('td', {}, when(attempt.next_attempt_at)),
      el('td', { class: 'actions' }, action('Retry', async () => {
        const answer = await api('POST', `${path}deliveries/${enc(attempt.event_id)}/retry/`, {});
        await again();
        say(`Sending event ${answer.event_id} to ${endpoint.url} again (${answer.state}).`);
      })),
    ),
  );
  const pager = [];
  if (offset > 0) pager.push(el('a', { href: `${webhookHash(endpoint.id)}?offset=${Math.max(0, offset - WEBHOOK_ATTEMPTS_PER_PAGE)}`, id: 'attempts-newer' }, 'Newer attempts'));
  if (offset + attempts.results.length < attempts.meta.count) pager.push(el('a', { href: `${webhookHash(endpoint.id)}?offset=${offset + WEBHOOK_ATTEMPTS_PER_PAGE}`, id: 'attempts-older' }, 'Older attempts'));
  const fields = webhookFields(endpoint, 'Events');
  const edit = el(
    'form',
    { id: 'webhook-form', onsubmit: async (event) => {
      event.preventDefault();
      const body = fields.read();
      if (!body) return;
      try {
        const saved = await api('PATCH', path, body);
        await again();
        say(`Saved webhook endpoint ${saved.url}.`);
      } catch (error) {
        failed(error);
      }
    } },
    fields.node,
    el('p', { class: 'actions' }, el('button', { type: 'submit' }, 'Save endpoint')),
  );
  const shown = attempts.results.length ? `${offset + 1}–${offset + attempts.results.length} of ${attempts.meta.count}` : `none of ${attempts.meta.count}`;
  page(
    `Webhook endpoint ${endpoint.url}`,
    el('p', {}, el('a', { href: '#/webhooks' }, 'All webhook endpoints')),
    facts('webhook-facts', [
      ['Id', el('code', {}, endpoint.id)],
      ['URL', el('code', {}, endpoint.url)],
      ['Status', webhookStatus(endpoint)],
      ['Events', eventsText(endpoint.events)],
      ['Workspaces', webhookWorkspacesText(endpoint.workspaces)],
      ['Description', endpoint.description || '—'],
      ['Created', when(endpoint.created_at)],
      ['Created by', endpoint.created_by ? endpoint.created_by.name || endpoint.created_by.email || '—' : '—'],
      ['Updated', when(endpoint.updated_at)],
    ]),
    endpoint.status === 'disabled' ? el('p', { class: 'muted', id: 'webhook-disabled-note' }, 'Disabled: keysd sends it nothing until it is enabled again (enabling starts its run of failures over).') : null,
    el('p', { class: 'actions', id: 'webhook-actions' }, webhookActions(endpoint, after)),
    el('h3', {}, 'Delivery attempts'),
    el('p', { class: 'actions', id: 'attempts-bar' }, el('span', { class: 'muted', id: 'attempts-shown' }, `Newest first: ${shown}.`), action('Refresh', async () => {
      await again();
    }, { class: 'secondary' })),
    attempts.results.length
      ? table(['Attempted', 'Event', 'Type', 'Status code or error', 'Took', 'State', 'Next attempt', 'Actions'], rows)
      : el('p', { class: 'muted', id: 'no-attempts' }, 'No delivery attempt yet.'),
    pager.length ? el('p', { class: 'actions' }, pager) : null,
    el('h3', {}, 'Edit the endpoint'),
    edit,
  );
}

// ---- routing -------------------------------------------------------------

async function route() {
  if (!session.role || session.role === 'verify') return;
  const hash = location.hash.replace(/^#/, '') || '/workspaces';
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === 'workspace' && parts[1]) {
      const slug = parts[1];
      if (parts[2] === 'signing-keys') await signingKeysPage(slug);
      else if (parts[2] === 'public-keys') await publicKeysPage(slug);
      else if (parts[2] === 'identities') await identitiesPage(slug, parts[3] || null);
      else if (parts[2] === 'api-keys' && parts[3]) await apiKeyPage(slug, parts[3]);
      else await apiKeysPage(slug);
    } else if (parts[0] === 'service-tokens' && session.role === 'admin') {
      await serviceTokensPage();
    } else if (parts[0] === 'audit' && session.role === 'admin') {
      await auditPage(query || '');
    } else if (parts[0] === 'webhooks' && session.role === 'admin') {
      if (parts[1]) await webhookPage(parts[1], query || '');
      else await webhooksPage();
    } else {
      await workspacesPage();
    }
    const heading = $('page-heading');
    if (heading && document.activeElement === document.body) heading.focus();
  } catch (error) {
    failed(error);
  }
}

function start() {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  // The secret leaves the page as the dialog closes, not a task later:
  // `close` is dispatched after the dialog is already hidden.
  $('secret-close').addEventListener('click', () => {
    forgetSecret();
    $('secret-dialog').close();
  });
  $('secret-dialog').addEventListener('cancel', forgetSecret);
  $('usage-close').addEventListener('click', () => $('usage-dialog').close());
  $('usage-dialog').addEventListener('close', () => $('usage-body').replaceChildren());
  $('secret-dialog').addEventListener('close', forgetSecret);
  $('secret-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('secret-value').textContent);
      $('secret-copied').textContent = 'Copied.';
    } catch (_) {
      $('secret-copied').textContent = 'Copying was refused; select the text and copy it.';
    }
  });
  window.addEventListener('hashchange', () => {
    say('');
    route();
  });
  if (sessionStorage.getItem(TOKEN_KEY)) {
    signedIn().catch((error) => {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignedOut();
      failed(error);
    });
  } else {
    showSignedOut();
  }
}

document.addEventListener('DOMContentLoaded', start);
