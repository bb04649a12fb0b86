// keysd operator console: the usage charts (docs/API.md, Usage). A
// workspace's or a key's verifications per bucket and outcome, drawn as an
// inline SVG with DOM calls only (the CSP forbids inline style: colours and
// hatchings are CSS classes of the stylesheet and patterns of the page).
// Loaded before the console's main script, whose helpers (`el`, `api`,
// dialogs) these functions call once the page runs.
'use strict';
// ---- usage charts --------------------------------------------------------
//
// Verifications over time by outcome, as stacked bars in an inline SVG
// built with DOM calls: geometry in attributes, every colour and pattern in
// the style sheet (the policy allows no inline style). Each outcome has a
// colour and a hatching (index.html's patterns), the legend names it with
// its total, and every bar and bucket has a <title> for hover; the table
// under the chart says the same in text.

const USAGE_RANGES = [
  { id: '24h', label: '24 h', granularity: 'hour', buckets: 24, words: 'the last 24 hours' },
  { id: '7d', label: '7 d', granularity: 'hour', buckets: 7 * 24, words: 'the last 7 days' },
  { id: '30d', label: '30 d', granularity: 'day', buckets: 30, words: 'the last 30 days' },
];
const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;
// The chart's own coordinates; the SVG scales to its box.
const PLOT = { width: 960, height: 260, left: 52, right: 10, top: 12, bottom: 30 };
// Hatched series after the first (index.html has a pattern for each).
const REFUSAL_SERIES = 5;
// The refusals an API key meets most, each with a look of its own.
const USUAL_SERIES = { key_disabled: 1, key_expired: 2, insufficient_scope: 3, unknown_key: 4, key_deleted: 4, rate_limited: 5, usage_exceeded: 5 };

// SVG elements need their namespace; it is read from the page's own SVG so
// that the script names no address.
function svg(tag, attributes, ...children) {
  const node = document.createElementNS($('usage-patterns').namespaceURI, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The start of every bucket of a range ending with the one holding `now`
// (UTC hours or days), oldest first: the timeline an empty bucket fills.
function bucketStarts(range, now) {
  const width = range.granularity === 'day' ? DAY_MS : HOUR_MS;
  const last = Math.floor(now / width) * width;
  return Array.from({ length: range.buckets }, (_, index) => last - (range.buckets - 1 - index) * width);
}

function bucketLabel(start, granularity) {
  const text = new Date(start).toISOString();
  return granularity === 'day' ? text.slice(0, 10) : `${text.slice(0, 10)} ${text.slice(11, 16)}Z`;
}

// All rows of a window, following the cursor page by page.
async function fetchUsage(slug, range, keyId, starts, now) {
  const query = new URLSearchParams({ granularity: range.granularity, since: new Date(starts[0]).toISOString(), until: new Date(now).toISOString() });
  if (keyId) query.set('key_id', keyId);
  const rows = [];
  for (;;) {
    const page = await api('GET', `/v1/${enc(slug)}/usage/?${query.toString()}`);
    rows.push(...page.results);
    if (!page.next_cursor) return rows;
    query.set('cursor', page.next_cursor);
  }
}

// The rows as one series per outcome over the whole timeline (zero where
// nothing was counted): `valid` first, then the reasons by name, so that an
// outcome keeps its colour when the range changes.
function usageSeries(rows, starts) {
  const position = new Map(starts.map((start, index) => [start, index]));
  const byOutcome = new Map();
  for (const row of rows) {
    const index = position.get(Date.parse(row.at));
    if (index === undefined) continue;
    if (!byOutcome.has(row.outcome)) byOutcome.set(row.outcome, new Array(starts.length).fill(0));
    byOutcome.get(row.outcome)[index] += row.count;
  }
  const names = [...byOutcome.keys()].sort((a, b) => (a === 'valid' ? -1 : b === 'valid' ? 1 : a.localeCompare(b)));
  const series = seriesOf(names);
  return names.map((name, index) => {
    const counts = byOutcome.get(name);
    return { name, counts, series: series[index], total: counts.reduce((sum, count) => sum + count, 0) };
  });
}

// The look of each outcome: `valid` solid, a refusal the hatching its name
// picks (the table above, else a hash), so that it looks the same in every
// chart and range; the next free one when two in a chart would share it.
function seriesOf(names) {
  const taken = new Set();
  return names.map((name) => {
    if (name === 'valid') return 0;
    const hash = [...name].reduce((sum, char) => (sum * 31 + char.charCodeAt(0)) >>> 0, 7);
    let slot = USUAL_SERIES[name] ? USUAL_SERIES[name] - 1 : hash % REFUSAL_SERIES;
    for (let tries = 0; taken.has(slot) && tries < REFUSAL_SERIES; tries += 1) slot = (slot + 1) % REFUSAL_SERIES;
    taken.add(slot);
    return 1 + slot;
  });
}

// 1, 2, 5, 10, 20, 50, …: the top of the scale at or above `value`.
function niceCeiling(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value);
}

function numberText(count) {
  return count.toLocaleString('en');
}

function bucketSummary(outcomes, index, label) {
  const parts = outcomes.filter((outcome) => outcome.counts[index] > 0).map((outcome) => `${outcome.name} ${numberText(outcome.counts[index])}`);
  return parts.length ? `${label}: ${parts.join(', ')}` : `${label}: no verifications`;
}

// Which buckets get a label on the time axis: a handful, on round times.
function axisLabel(start, index, range) {
  const date = new Date(start);
  const day = date.toISOString().slice(5, 10);
  if (range.granularity === 'day') return (range.buckets - 1 - index) % 5 === 0 ? day : null;
  if (range.buckets > 48) return date.getUTCHours() === 0 ? day : null;
  if (date.getUTCHours() % 6 !== 0) return null;
  return date.getUTCHours() === 0 ? day : date.toISOString().slice(11, 16);
}

function usagePlot(outcomes, starts, range, name) {
  const plotWidth = PLOT.width - PLOT.left - PLOT.right;
  const plotHeight = PLOT.height - PLOT.top - PLOT.bottom;
  const bottom = PLOT.top + plotHeight;
  const stacks = starts.map((_, index) => outcomes.reduce((sum, outcome) => sum + outcome.counts[index], 0));
  const top = niceCeiling(Math.max(0, ...stacks));
  const step = plotWidth / starts.length;
  const barWidth = Math.max(1, step * 0.8);
  const y = (count) => bottom - (count / top) * plotHeight;
  const ticks = top >= 2 && top % 2 === 0 ? [0, top / 2, top] : [0, top];
  const grid = ticks.map((tick) => svg('g', { class: 'usage-tick' },
    svg('line', { class: tick === 0 ? 'usage-axis' : 'usage-grid', x1: PLOT.left, x2: PLOT.width - PLOT.right, y1: y(tick), y2: y(tick) }),
    svg('text', { x: PLOT.left - 8, y: y(tick), class: 'usage-value' }, numberText(tick)),
  ));
  const buckets = starts.map((start, index) => {
    const label = bucketLabel(start, range.granularity);
    const x = PLOT.left + index * step;
    let base = 0;
    const bars = outcomes.filter((outcome) => outcome.counts[index] > 0).map((outcome) => {
      const count = outcome.counts[index];
      const bar = svg('rect', { class: `usage-bar usage-series-${outcome.series}`, 'data-outcome': outcome.name, 'data-count': count, x: x + (step - barWidth) / 2, width: barWidth, y: y(base + count), height: y(base) - y(base + count) },
        svg('title', {}, `${label} · ${outcome.name} · ${numberText(count)}`));
      base += count;
      return bar;
    });
    const axis = axisLabel(start, index, range);
    return svg('g', { class: 'usage-bucket', 'data-at': new Date(start).toISOString() },
      svg('rect', { class: 'usage-slot', x, width: step, y: PLOT.top, height: plotHeight }, svg('title', {}, bucketSummary(outcomes, index, label))),
      bars,
      axis ? svg('line', { class: 'usage-axis', x1: x + step / 2, x2: x + step / 2, y1: bottom, y2: bottom + 4 }) : null,
      axis ? svg('text', { class: 'usage-time', x: x + step / 2, y: bottom + 18 }, axis) : null,
    );
  });
  const empty = outcomes.length ? null : svg('text', { class: 'usage-empty', x: PLOT.left + plotWidth / 2, y: PLOT.top + plotHeight / 2 }, 'No verifications in this range');
  const totals = outcomes.map((outcome) => `${outcome.name} ${numberText(outcome.total)}`).join(', ') || 'none';
  return svg('svg', { class: 'usage-plot', viewBox: `0 0 ${PLOT.width} ${PLOT.height}`, role: 'img', 'aria-label': `Verifications of ${name} per ${range.granularity} (UTC) over ${range.words}: ${totals}` }, grid, buckets, empty);
}

function usageLegend(outcomes) {
  if (!outcomes.length) return el('p', { class: 'usage-legend muted' }, 'No verifications in this range.');
  return el('ul', { class: 'usage-legend', 'aria-label': 'Outcomes' }, outcomes.map((outcome) => el(
    'li',
    { 'data-outcome': outcome.name, 'data-total': outcome.total },
    svg('svg', { class: 'usage-swatch', viewBox: '0 0 16 16', 'aria-hidden': 'true' }, svg('rect', { class: `usage-series-${outcome.series}`, width: 16, height: 16 })),
    el('span', {}, el('code', {}, outcome.name), ': ', numberText(outcome.total)),
  )));
}

// The same counts in text: one row per bucket that has any.
function usageTable(outcomes, starts, range) {
  const rows = starts.map((start, index) => [start, index]).reverse()
    .filter(([, index]) => outcomes.some((outcome) => outcome.counts[index] > 0))
    .map(([start, index]) => el('tr', {}, el('td', {}, bucketLabel(start, range.granularity)), outcomes.map((outcome) => el('td', {}, numberText(outcome.counts[index])))));
  if (!rows.length) return null;
  const buckets = `${rows.length} ${range.granularity}${rows.length === 1 ? '' : 's'}`;
  return el('details', { class: 'usage-details' }, el('summary', {}, `The counts as a table (${buckets} with verifications)`),
    table(['Bucket (UTC)', ...outcomes.map((outcome) => outcome.name)], rows));
}

// A usage panel: the range picker and the chart of one key (`keyId`) or of
// the whole workspace (null). It loads itself; `data-state` says when the
// chart on show is the range picked (`ready`).
function usagePanel(slug, keyId, name, id) {
  const chart = el('div', { class: 'usage-chart' });
  const panel = el('section', { class: 'usage', id, 'aria-label': `Usage of ${name}` });
  let shown = 0;
  const pickers = USAGE_RANGES.map((range) => el('button', { type: 'button', class: 'secondary', 'data-range': range.id, 'aria-pressed': 'false', onclick: () => show(range) }, range.label));
  async function show(range) {
    const request = ++shown;
    panel.dataset.range = range.id;
    panel.dataset.state = 'loading';
    panel.setAttribute('aria-busy', 'true');
    for (const picker of pickers) picker.setAttribute('aria-pressed', String(picker.dataset.range === range.id));
    const now = Date.now();
    const starts = bucketStarts(range, now);
    let rows;
    try {
      rows = await fetchUsage(slug, range, keyId, starts, now);
    } catch (error) {
      if (request !== shown) return;
      chart.replaceChildren(el('p', { class: 'muted' }, 'The usage could not be loaded.'));
      panel.dataset.state = 'failed';
      panel.removeAttribute('aria-busy');
      failed(error);
      return;
    }
    if (request !== shown) return;
    const outcomes = usageSeries(rows, starts);
    chart.replaceChildren(
      el('p', { class: 'muted usage-caption' }, `Verifications per ${range.granularity} (UTC) over ${range.words}, by outcome.`),
      usagePlot(outcomes, starts, range, name),
      usageLegend(outcomes),
      usageTable(outcomes, starts, range),
    );
    panel.dataset.state = 'ready';
    panel.removeAttribute('aria-busy');
  }
  panel.append(el('div', { class: 'usage-ranges', role: 'group', 'aria-label': 'Range' }, pickers), chart);
  show(USAGE_RANGES[0]);
  return panel;
}

function showKeyUsage(slug, key) {
  $('usage-heading').textContent = `Usage of API key “${key.name}”`;
  $('usage-note').textContent = `${key.masked_api_key} · ${key.id}`;
  $('usage-body').replaceChildren(usagePanel(slug, key.id, `API key “${key.name}”`, 'key-usage'));
  $('usage-dialog').showModal();
  $('usage-close').focus();
}
