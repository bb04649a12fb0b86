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
  view.replaceChildren(el('h2', { id: 'page-heading', tabindex: '-1' }, title), ...content);
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

/*METERING*/
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
      else await apiKeysPage(slug);
    } else if (parts[0] === 'service-tokens' && session.role === 'admin') {
      await serviceTokensPage();
    } else if (parts[0] === 'audit' && session.role === 'admin') {
      await auditPage(query || '');
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
