/* llm-otel usage page.
 *
 * Live mode: polls GET api/report?<query> every 5 s and re-renders in place.
 * Static mode (llm-otel report --format html): the report is embedded in <script id="report-data">.
 *
 * DOM contract read by the tests: every number from the report carries data-key (its dotted path in the
 * report) and data-value (the raw JSON value, "" for null); group-key cells are td[data-group-key]; charts
 * live in window.llmOtelCharts[NAME]; body[data-ready="1"] and body[data-renders] after each render.
 */
(() => {
  'use strict';

  const VIEWS = ['cost', 'table', 'speed', 'limits', 'budgets', 'calls'];
  const RANGES = ['1h', '24h', '7d', '30d', 'all', 'custom'];
  const CORE_KEYS = ['provider', 'model', 'service', 'operation'];
  const DEFAULTS = { view: 'cost', range: '24h', since: '', until: '', group_by: 'provider,model', stack_by: 'model' };
  const POLL_MS = 5000;
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7',
    '#9c755f', '#8cd17d', '#86bcb6', '#d37295', '#a0cbe8', '#ffbe7d', '#bab0ac', '#499894'];
  const FIXED_COLORS = { throttle_wait_s: '#f28e2b', retry_wait_s: '#e15759', retries: '#b07aa1', waited_calls: '#4e79a7' };
  const PRETTY = { throttle_wait_s: 'throttle wait', retry_wait_s: 'retry back-off', retries: 'retries', waited_calls: 'calls that waited' };
  const TOKEN_TYPES = [['input', 'Input'], ['output', 'Output'], ['cache_read', 'Cache read'], ['cache_write', 'Cache write'], ['reasoning', 'Reasoning']];

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // ---------------------------------------------------------------- formatting
  const NF = new Intl.NumberFormat('en-US');
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const fmtInt = (v) => NF.format(Math.round(v));
  const fmtPct = (v) => (v * 100).toFixed(1) + ' %';
  const fmtRate = (v) => NF.format(Math.round(v));

  function fmtUsd(v) {
    const a = Math.abs(v);
    if (a === 0) return '$0.00';
    if (a >= 1000) return '$' + v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    if (a >= 1) return '$' + v.toFixed(2);
    if (a >= 0.01) return '$' + v.toFixed(4);
    return '$' + v.toPrecision(3);
  }
  const fmtUsdAxis = (v) => (v === 0 ? '$0' : '$' + Number(v.toPrecision(3)));
  const fmtSecAxis = (v) => Number(v.toPrecision(3)) + ' s';

  function fmtCompact(v) {
    const a = Math.abs(v);
    for (const [d, s] of [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']]) {
      if (a >= d) return String(Number((v / d).toFixed(a / d >= 100 ? 0 : 1))) + s;
    }
    return NF.format(Math.round(v * 10) / 10);
  }

  function fmtSec(v) {
    const a = Math.abs(v);
    return v.toFixed(a === 0 ? 0 : a >= 100 ? 0 : a >= 10 ? 1 : a >= 0.1 ? 2 : 3);
  }

  function fmtUnit(unit) {
    if (unit === 'USD') return fmtUsd;
    if (unit === 'tokens') return (v) => fmtCompact(v) + ' tok';
    if (unit === 'calls') return fmtInt;
    return (v) => NF.format(v) + (unit ? ' ' + unit : '');
  }

  const toDate = (iso) => new Date(String(iso).replace(/(\.\d{3})\d+/, '$1'));
  const pad = (n) => String(n).padStart(2, '0');
  const ymd = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const hm = (d) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;

  function fmtTime(iso, seconds = false) {
    if (!iso) return '–';
    const d = toDate(iso);
    if (isNaN(d)) return String(iso);
    return `${ymd(d)} ${hm(d)}${seconds ? ':' + pad(d.getUTCSeconds()) : ''}`;
  }

  function fmtStep(s) {
    if (s % 86400 === 0) return s === 86400 ? '1 day' : `${s / 86400} days`;
    if (s % 3600 === 0) return `${s / 3600} h`;
    if (s % 60 === 0) return `${s / 60} min`;
    return `${s} s`;
  }

  /** Category labels for a time axis: HH:MM within a day, MM-DD HH:MM across days, dates for daily steps. */
  function timeLabels(times, step) {
    if (!times || !times.length) return [];
    const ds = times.map(toDate);
    const multiDay = ymd(ds[0]) !== ymd(ds[ds.length - 1]);
    return ds.map((d) => (step >= 86400 ? ymd(d) : multiDay ? `${ymd(d).slice(5)} ${hm(d)}` : hm(d)));
  }

  // ---------------------------------------------------------------- state
  let state = readState();
  let data = null; // the report on screen
  let config = { trace_url: null };
  let seq = 0;
  let pollTimer = null;
  let renders = 0;
  let controlsSig = '';
  const charts = (window.llmOtelCharts = {});
  const chartTimes = {};
  const colors = new Map();
  const embedded = readEmbedded();
  const isStatic = embedded !== null;

  function readEmbedded() {
    const el = document.getElementById('report-data');
    try {
      const v = el ? JSON.parse(el.textContent || 'null') : null;
      return v && typeof v === 'object' ? v : null;
    } catch (err) {
      return null;
    }
  }

  function readState() {
    const s = { ...DEFAULTS, filters: {} };
    const params = new URLSearchParams(location.search);
    for (const [k, v] of new URLSearchParams(location.hash.replace(/^#/, ''))) params.set(k, v);
    for (const [k, v] of params) {
      if (k.startsWith('f.') && k.length > 2) { if (v) s.filters[k.slice(2)] = v; } else if (k in DEFAULTS) s[k] = v;
    }
    if (!VIEWS.includes(s.view)) s.view = DEFAULTS.view;
    if (!RANGES.includes(s.range)) s.range = DEFAULTS.range;
    s.since = localInput(s.since);
    s.until = localInput(s.until);
    return s;
  }

  /** An ISO timestamp (maybe with Z/+00:00) as a datetime-local value, UTC. */
  function localInput(v) {
    if (!v) return '';
    if (/[zZ]$|[+-]\d\d:?\d\d$/.test(v)) {
      const d = toDate(v);
      return isNaN(d) ? '' : `${ymd(d)}T${hm(d)}`;
    }
    return v.slice(0, 19);
  }
  const utcIso = (v) => (v.length === 16 ? v + ':00' : v) + 'Z';

  function hashFor(view) {
    const p = new URLSearchParams();
    p.set('view', view);
    if (!isStatic) {
      p.set('range', state.range);
      if (state.range === 'custom') { if (state.since) p.set('since', state.since); if (state.until) p.set('until', state.until); }
      if (state.group_by !== DEFAULTS.group_by) p.set('group_by', state.group_by);
      if (state.stack_by !== DEFAULTS.stack_by) p.set('stack_by', state.stack_by);
      for (const k of Object.keys(state.filters).sort()) p.set('f.' + k, state.filters[k]);
    }
    return '#' + p.toString().replace(/%2C/gi, ',').replace(/%3A/gi, ':');
  }

  function writeHash(push = false) {
    const h = hashFor(state.view);
    if (h !== location.hash) history[push ? 'pushState' : 'replaceState'](null, '', h);
    for (const a of $$('nav a[data-view]')) a.setAttribute('href', hashFor(a.dataset.view));
  }

  function apiQuery() {
    const p = new URLSearchParams();
    if (state.range === 'custom' && (state.since || state.until)) {
      if (state.since) p.set('since', utcIso(state.since));
      if (state.until) p.set('until', utcIso(state.until));
    } else {
      p.set('range', state.range === 'custom' ? 'all' : state.range);
    }
    p.set('group_by', state.group_by);
    p.set('stack_by', state.stack_by);
    for (const k of Object.keys(state.filters).sort()) p.set('f.' + k, state.filters[k]);
    return p.toString().replace(/%2C/gi, ',').replace(/%3A/gi, ':');
  }

  // ---------------------------------------------------------------- loading
  async function load(userChange = false) {
    clearTimeout(pollTimer);
    const mine = ++seq;
    if (userChange) document.body.dataset.ready = '0';
    let body;
    try {
      const res = await fetch('api/report?' + apiQuery(), { cache: 'no-store', headers: { Accept: 'application/json' } });
      const json = await res.json().catch(() => null);
      if (!res.ok) body = { status: { state: 'error', message: (json && json.error) || `the server answered HTTP ${res.status}` } };
      else body = json && typeof json === 'object' ? json : { status: { state: 'error', message: 'the server sent no report' } };
    } catch (err) {
      body = { status: { state: 'error', message: `cannot reach the llm-otel ui server (${err.message}); is it still running?` } };
    }
    if (mine !== seq) return; // a newer request (a control change) superseded this one
    const st = (body.status && body.status.state) || 'ok';
    if (st === 'loading' && !('totals' in body)) {
      renderStatus(body.status, false);
      pollTimer = setTimeout(poll, 1000);
      return;
    }
    render(body);
    pollTimer = setTimeout(poll, POLL_MS);
  }

  /** The next poll; a hidden tab skips it (and fetches as soon as it is shown again). */
  function poll() {
    if (document.hidden) pollTimer = setTimeout(poll, POLL_MS);
    else load();
  }

  // ---------------------------------------------------------------- render
  function render(body) {
    const fresh = 'totals' in body;
    if (fresh || !data) data = body;
    if (body.config) config = body.config;
    renderStatus(body.status || { state: 'ok' }, !fresh && data !== body);
    renderHeader();
    renderControls();
    for (const [name, fn] of [['cost', renderCost], ['table', renderTable], ['speed', renderSpeed],
      ['limits', renderLimits], ['budgets', renderBudgets], ['calls', renderCalls]]) {
      try { fn(data); } catch (err) { console.error(`llm-otel: rendering the ${name} view failed`, err); }
    }
    renders += 1;
    document.body.dataset.renders = String(renders);
    document.body.dataset.ready = '1';
  }

  function renderStatus(status, stale) {
    const el = $('#status');
    const st = ['ok', 'loading', 'empty', 'error'].includes(status.state) ? status.state : 'ok';
    const msg = status.message ? String(status.message) : '';
    el.dataset.state = st;
    if (st === 'error') {
      el.innerHTML = `<strong>Error:</strong> ${esc(msg || 'unknown error')}` +
        (stale ? ' <span class="muted">(showing the last report received)</span>' : '');
    } else if (st === 'empty') {
      el.textContent = (isStatic ? 'No calls in this report: nothing matched its range and filters.'
        : 'No calls in this ledger yet. They show up here as soon as an instrumented app makes its first LLM call.') + (msg ? ' ' + msg : '');
    } else if (st === 'loading') {
      el.textContent = 'Loading the ledger…' + (msg ? ' ' + msg : '');
    } else if (isStatic) {
      el.textContent = 'Static report: a snapshot, it does not refresh.' + (msg ? ' ' + msg : '');
    } else {
      el.textContent = `Live: updated ${hm(new Date())}:${pad(new Date().getUTCSeconds())} UTC, refreshes every ${POLL_MS / 1000} s.` + (msg ? ' ' + msg : '');
    }
  }

  function renderHeader() {
    const r = data.range || {};
    const el = $('#range-shown');
    el.dataset.from = r.from == null ? '' : r.from;
    el.dataset.to = r.to == null ? '' : r.to;
    el.innerHTML = r.from || r.to
      ? `Showing <strong>${esc(fmtTime(r.from))}</strong> to <strong>${esc(fmtTime(r.to))}</strong> UTC` +
        (r.step_s != null ? `, one point per ${num('range.step_s', fmtStep, 'span')}` : '')
      : 'No range: no report yet.';
    $('#ledger').textContent = data.ledger ? 'ledger: ' + data.ledger : '';
    if (isStatic) {
      const f = Object.entries(data.filters || {}).map(([k, v]) => `${k} = ${[].concat(v).join(' or ')}`);
      $('#report-meta').textContent = `Grouped by ${(data.group_by || []).join(', ') || '–'}; stacked by ${(data.series || {}).stack_by || '–'}; ` +
        (f.length ? `filters: ${f.join('; ')}.` : 'no filters.');
    }
  }

  /** Rebuild the selects when their options change (not every poll, so an open select stays open). */
  function renderControls() {
    const d = data || {};
    const dims = d.dimensions || {};
    const extra = Object.keys(dims).filter((k) => !CORE_KEYS.includes(k));
    let groupBy = state.group_by, stackBy = state.stack_by, filters = state.filters;
    if (isStatic) {
      groupBy = (d.group_by || []).join(',');
      stackBy = (d.series || {}).stack_by || '';
      filters = Object.fromEntries(Object.entries(d.filters || {}).map(([k, v]) => [k, [].concat(v).join(',')]));
    }
    const groupOpts = uniq(['provider,model', 'model', 'provider', 'service', ...extra, groupBy]);
    const stackOpts = uniq(['model', 'provider', 'service', ...extra, stackBy]);
    const filterKeys = uniq([...Object.keys(dims), ...Object.keys(filters)]);
    const sig = JSON.stringify([groupOpts, stackOpts, filterKeys.map((k) => [k, dims[k], filters[k]])]);
    if (sig !== controlsSig) {
      controlsSig = sig;
      $('#group-by').innerHTML = groupOpts.map((v) => option(v, v.split(',').join(' + '))).join('');
      $('#stack-by').innerHTML = stackOpts.map((v) => option(v, v)).join('');
      $('#filters').innerHTML = filterKeys.map((k) => {
        const values = uniq([...(dims[k] || []).map(String), ...(filters[k] ? [filters[k]] : [])]);
        return `<label class="ctl"><span>${esc(k)}</span><select class="filter" data-filter-key="${esc(k)}">` +
          option('', 'all') + values.map((v) => option(v, v === '' ? '(none)' : v.split(',').join(' or '))).join('') + '</select></label>';
      }).join('');
    }
    $('#group-by').value = groupBy;
    $('#stack-by').value = stackBy;
    $('#range').value = state.range;
    for (const sel of $$('select.filter')) sel.value = filters[sel.dataset.filterKey] || '';
    $('#custom-range').hidden = state.range !== 'custom';
    if (isStatic) for (const el of $$('#controls select, #controls input, #controls button')) el.disabled = true;
  }

  const uniq = (xs) => [...new Set(xs.filter((x) => x != null && x !== ''))];
  const option = (v, label) => `<option value="${esc(v)}">${esc(label)}</option>`;

  // ---------------------------------------------------------------- DOM helpers
  function get(obj, path) {
    let v = obj;
    for (const part of path.split('.')) {
      if (v == null || typeof v !== 'object') return undefined;
      v = v[part];
    }
    return v;
  }

  /** A number from the report: data-key is its path, data-value its raw JSON value, the text is for humans. */
  function num(path, fmt, tag = 'td', cls = '') {
    const v = get(data, path);
    const classes = ['num', cls, v == null ? 'nil' : ''].filter(Boolean).join(' ');
    if (v === undefined) return `<${tag} class="${classes}">–</${tag}>`;
    const text = v === null ? '–' : fmt(v);
    return `<${tag} class="${classes}" data-key="${esc(path)}" data-value="${v === null ? '' : esc(String(v))}">${esc(text)}</${tag}>`;
  }
  const withUnit = (fmt, unit) => (v) => fmt(v) + unit;

  function card(label, value, sub = '') {
    return `<div class="card"><div class="label">${label}</div>${value}<div class="sub">${sub}</div></div>`;
  }

  function table(el, head, rows, foot = '', emptyText = 'no calls in this range') {
    const cols = (head.split('<tr').pop().match(/<th/g) || []).length;
    el.innerHTML = `<thead>${head}</thead><tbody>${rows.length ? rows.join('') :
      `<tr><td class="empty-row" colspan="${Math.max(cols, 1)}">${esc(emptyText)}</td></tr>`}</tbody>` + (foot ? `<tfoot>${foot}</tfoot>` : '');
  }
  const th = (labels) => labels.map((l) => (Array.isArray(l) ? `<th class="num">${l[0]}</th>` : `<th>${l}</th>`)).join('');

  // ---------------------------------------------------------------- charts
  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function applyTheme() {
    Chart.defaults.color = cssVar('--muted');
    Chart.defaults.borderColor = cssVar('--grid');
    Chart.defaults.font.family = cssVar('--font');
    for (const c of Object.values(charts)) c.update('none');
    if (data) renderBudgets(data); // its bar colours come from the theme
  }

  function colorFor(name) {
    if (FIXED_COLORS[name]) return FIXED_COLORS[name];
    if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
    return colors.get(name);
  }

  const prettyLabel = (label) => PRETTY[label] || (label === '' ? '(none)' : label);

  function baseOptions(name, { kind, unit, fmt, axisFmt, stacked }) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: 'index', intersect: false },
      scales: {
        x: { stacked, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 14 }, title: { display: true, text: 'time (UTC)' } },
        y: { stacked, beginAtZero: true, title: { display: true, text: unit }, ticks: { callback: (v) => axisFmt(v) } },
      },
      plugins: {
        legend: {
          position: 'bottom',
          labels: {
            boxWidth: 12, boxHeight: 12,
            filter: (item, cd) => cd.datasets[item.datasetIndex].pct !== 'p95',
            generateLabels: (chart) => Chart.defaults.plugins.legend.labels.generateLabels(chart)
              .map((l) => ({ ...l, text: prettyLabel(l.text) })),
          },
          onClick: (e, item, legend) => { // toggle a model's p50 and p95 lines together
            const ch = legend.chart;
            const label = ch.data.datasets[item.datasetIndex].label;
            const show = !ch.isDatasetVisible(item.datasetIndex);
            ch.data.datasets.forEach((d, i) => { if (d.label === label) ch.setDatasetVisibility(i, show); });
            ch.update('none');
          },
        },
        tooltip: {
          filter: (item) => item.raw != null && !(stacked && item.raw === 0),
          callbacks: {
            title: (items) => (items.length ? fmtTime((chartTimes[name] || [])[items[0].dataIndex]) + ' UTC' : ''),
            label: (item) => `${prettyLabel(item.dataset.label)}${item.dataset.pct ? ' ' + item.dataset.pct : ''}: ${fmt(item.raw)}`,
            footer: (items) => (stacked && items.length > 1 ? 'total: ' + fmt(items.reduce((s, i) => s + (i.raw || 0), 0)) : ''),
          },
        },
      },
      kind,
    };
  }

  /** Create the chart once, then only swap its labels and datasets (update('none')) on later renders. */
  function syncChart(name, opts, labels, specs, times) {
    const canvas = $(`canvas[data-chart="${name}"]`);
    const empty = !labels.length || !specs.some((s) => s.data.some((v) => v != null));
    canvas.closest('.chart').classList.toggle('is-empty', empty);
    chartTimes[name] = times || [];
    let ch = charts[name];
    if (!ch) {
      const { kind, plugins_: inline = [], ...options } = opts;
      ch = charts[name] = new Chart(canvas, { type: kind, data: { labels: [], datasets: [] }, options, plugins: inline });
    }
    const old = new Map(ch.data.datasets.map((d) => [d.label + '|' + (d.pct || ''), d]));
    ch.data.labels = labels;
    ch.data.datasets = specs.map((s) => {
      const prev = old.get(s.label + '|' + (s.pct || ''));
      return prev ? Object.assign(prev, s) : s;
    });
    ch.update('none');
    return ch;
  }

  function barSpecs(series) {
    return Object.entries(series || {}).map(([label, values]) => ({
      label, data: values.slice(), backgroundColor: colorFor(label), borderWidth: 0, stack: 's', maxBarThickness: 56,
    }));
  }

  function lineSpecs(series, pct, few) {
    return Object.entries(series || {}).map(([label, values]) => ({
      label, pct, data: values.slice(), borderColor: colorFor(label), backgroundColor: colorFor(label),
      borderWidth: pct === 'p95' ? 1.5 : 2, borderDash: pct === 'p95' ? [5, 4] : [], spanGaps: true,
      tension: 0.2, pointRadius: few ? 3 : 0, pointHoverRadius: 4,
    }));
  }

  // ---------------------------------------------------------------- views
  function renderCost(d) {
    const unpriced = get(d, 'totals.unpriced_calls');
    $('#cost-cards').innerHTML = !d.totals ? '' : [
      card('Total cost', num('totals.cost_usd', fmtUsd, 'span', 'big'),
        `${num('totals.unpriced_calls', fmtInt, 'span')} unpriced calls${unpriced ? ' (not in the total)' : ''}`),
      card('Calls', num('totals.calls', fmtInt, 'span', 'big'), `${num('totals.blocked', fmtInt, 'span')} blocked by budgets`),
      card('Errors', num('totals.errors', fmtInt, 'span', 'big'), `${num('totals.retries', fmtInt, 'span')} retries`),
      card('Input tokens', num('totals.tokens.input', fmtCompact, 'span', 'big'),
        `cache hit ${num('totals.cache_hit_share', fmtPct, 'span')}, cache read ${num('totals.tokens.cache_read', fmtCompact, 'span')}`),
      card('Output tokens', num('totals.tokens.output', fmtCompact, 'span', 'big'), `reasoning ${num('totals.tokens.reasoning', fmtCompact, 'span')}`),
      d.forecast ? card(`Month to date <span class="muted">(${esc(d.forecast.month || '')}, UTC)</span>`,
        num('forecast.month_to_date_usd', fmtUsd, 'span', 'big'),
        `<span title="${esc(d.forecast.method || '')}">projected month-end ${num('forecast.projected_month_usd', fmtUsd, 'span')}</span>`) : '',
    ].join('');
    const s = d.series || {};
    const step = get(d, 'range.step_s') || 3600;
    const labels = timeLabels(s.times, step);
    const by = s.stack_by || state.stack_by;
    $('#cost-title').innerHTML = `Cost per ${esc(fmtStep(step))} <span class="muted">(USD, stacked by ${esc(by)})</span>`;
    $('#tokens-title').innerHTML = `Tokens per ${esc(fmtStep(step))} <span class="muted">(all types, stacked by ${esc(by)})</span>`;
    const bar = { kind: 'bar', stacked: true };
    syncChart('cost', baseOptions('cost', { ...bar, unit: 'USD', fmt: fmtUsd, axisFmt: fmtUsdAxis }), labels, barSpecs(s.cost_usd), s.times);
    syncChart('tokens', baseOptions('tokens', { ...bar, unit: 'tokens', fmt: (v) => fmtCompact(v) + ' tokens', axisFmt: fmtCompact }),
      labels, barSpecs(s.tokens), s.times);
  }

  const METRIC_HEAD = th([['Calls'], ['Errors'], ['Blocked'], ...TOKEN_TYPES.map(([, l]) => [`${l}<br>tokens`]),
    ['Cache hit'], ['Cost<br>USD'], ['Unpriced<br>calls']]);

  function metricCells(p) {
    const errs = get(data, p + '.errors');
    return [num(p + '.calls', fmtInt), num(p + '.errors', fmtInt, 'td', errs ? 'bad' : ''), num(p + '.blocked', fmtInt),
      ...TOKEN_TYPES.map(([k]) => num(`${p}.tokens.${k}`, fmtInt)),
      num(p + '.cache_hit_share', fmtPct), num(p + '.cost_usd', fmtUsd), num(p + '.unpriced_calls', fmtInt)].join('');
  }

  function renderTable(d) {
    const keys = d.group_by || [];
    $('#group-title').textContent = keys.join(', ') || '–';
    const rows = (d.groups || []).map((g, i) => '<tr>' + keys.map((k) => {
      const v = g.key ? g.key[k] : null;
      return `<td data-group-key="${esc(k)}"${v == null || v === '' ? ' class="none"' : ''}>${v == null ? '' : esc(v)}</td>`;
    }).join('') + metricCells(`groups.${i}`) + '</tr>');
    const foot = d.totals ? `<tr><td colspan="${Math.max(keys.length, 1)}">Total</td>${metricCells('totals')}</tr>` : '';
    table($('#groups-table'), `<tr>${th(keys.length ? keys : ['Group'])}${METRIC_HEAD}</tr>`, rows, foot);
    const daily = (d.daily || []).map((r, i) => `<tr><td>${esc(r.date)}</td>${metricCells(`daily.${i}`)}</tr>`);
    table($('#daily-table'), `<tr>${th(['Date'])}${METRIC_HEAD}</tr>`, daily);
  }

  const SPEED = [['duration_s', 'Duration', 's', fmtSec], ['ttfc_s', 'Time to first chunk', 's', fmtSec],
    ['tokens_per_second', 'Tokens per second', 'tok/s', fmtRate], ['burst_tokens_per_second', 'Burst tokens per second', 'tok/s', fmtRate]];

  function renderSpeed(d) {
    const sp = d.speed || {};
    const head = `<tr class="groups"><th></th>${SPEED.map(([, l, u]) => `<th colspan="3">${l} <span class="muted">(${u})</span></th>`).join('')}</tr>` +
      `<tr>${th(['Model'])}${SPEED.map(() => th([['p50'], ['p95'], ['n']])).join('')}</tr>`;
    const rows = (sp.by_model || []).map((m, i) => `<tr><td>${esc(m.model)}</td>` + SPEED.map(([k, , , f]) =>
      num(`speed.by_model.${i}.${k}.p50`, f) + num(`speed.by_model.${i}.${k}.p95`, f) + num(`speed.by_model.${i}.${k}.count`, fmtInt)).join('') + '</tr>');
    table($('#speed-table'), head, rows);
    const times = sp.times || [];
    const labels = timeLabels(times, get(d, 'range.step_s') || 3600);
    const few = times.length <= 40;
    const series = sp.series || {};
    const line = { kind: 'line', stacked: false };
    const sec = { ...line, unit: 'seconds', fmt: withUnit(fmtSec, ' s'), axisFmt: fmtSecAxis };
    const tps = { ...line, unit: 'tok/s', fmt: withUnit(fmtRate, ' tok/s'), axisFmt: fmtCompact };
    syncChart('duration', baseOptions('duration', sec), labels,
      [...lineSpecs(series.duration_s_p50, 'p50', few), ...lineSpecs(series.duration_s_p95, 'p95', few)], times);
    syncChart('ttfc', baseOptions('ttfc', sec), labels, lineSpecs(series.ttfc_s_p50, '', few), times);
    syncChart('tps', baseOptions('tps', tps), labels, lineSpecs(series.tokens_per_second_p50, '', few), times);
    syncChart('burst', baseOptions('burst', tps), labels, lineSpecs(series.burst_tokens_per_second_p50, '', few), times);
  }

  function renderLimits(d) {
    const rl = d.rate_limits || {};
    $('#limits-cards').innerHTML = !d.totals ? '' : [
      card('Throttle wait', num('totals.throttle_wait_s', withUnit(fmtSec, ' s'), 'span', 'big'), 'client-side rate limiter'),
      card('Retry back-off', num('totals.retry_wait_s', withUnit(fmtSec, ' s'), 'span', 'big'), 'sleeping between retries'),
      card('Retries', num('totals.retries', fmtInt, 'span', 'big'), `of ${num('totals.calls', fmtInt, 'span')} calls`),
      card('Calls that waited', num('totals.waited_calls', fmtInt, 'span', 'big'), 'throttled or retried'),
    ].join('');
    const times = rl.times || [];
    const labels = timeLabels(times, get(d, 'range.step_s') || 3600);
    const pick = (keys) => Object.fromEntries(keys.filter((k) => Array.isArray(rl[k])).map((k) => [k, rl[k]]));
    syncChart('waits', baseOptions('waits', { kind: 'bar', stacked: true, unit: 'seconds', fmt: withUnit(fmtSec, ' s'), axisFmt: fmtSecAxis }),
      labels, barSpecs(pick(['throttle_wait_s', 'retry_wait_s'])), times);
    const retries = baseOptions('retries', { kind: 'line', stacked: false, unit: 'calls', fmt: fmtInt, axisFmt: fmtInt });
    retries.scales.y.ticks.precision = 0;
    syncChart('retries', retries, labels, lineSpecs(pick(['retries', 'waited_calls']), '', times.length <= 40), times);
    callsTable($('#waits-table'), 'rate_limits.longest_waits', rl.longest_waits, [
      ['Throttle<br>wait s', 'throttle_wait_s', fmtSec], ['Retry<br>wait s', 'retry_wait_s', fmtSec], ['Retries', 'retries', fmtInt],
      ['Duration<br>s', 'duration_s', fmtSec], ['Cost<br>USD', 'cost_usd', fmtUsd]], 'no call waited in this range');
  }

  const limitLine = {
    id: 'limitLine',
    afterDatasetsDraw(chart) {
      const x = chart.scales.x;
      if (!x || !chart.data.labels.length) return;
      const px = x.getPixelForValue(1), { top, bottom } = chart.chartArea, ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = cssVar('--danger');
      ctx.setLineDash([4, 4]);
      ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, bottom); ctx.stroke();
      ctx.restore();
    },
  };

  const thresholdValue = (t) => { const s = String(t).trim(); const v = parseFloat(s); return isNaN(v) ? null : s.endsWith('%') ? v / 100 : v; };
  const thresholdLabel = (t) => { const v = thresholdValue(t); return v == null ? String(t) : `${Math.round(v * 1000) / 10} %`; };

  function utilBar(entry) {
    const u = entry.utilization;
    const fired = (entry.fired || []).map((f) => thresholdValue(f.threshold)).filter((v) => v != null);
    const marks = [...new Set([0.5, 0.7, 0.8, 1.0, ...fired])];
    const max = Math.min(2, Math.max(1.2, ...marks, (u || 0) * 1.05));
    const pos = (v) => `${(Math.min(v, max) / max) * 100}%`;
    const cls = u == null ? '' : u >= 1 ? 'over' : u >= 0.8 ? 'warn' : '';
    const ticks = marks.map((m) => `<span class="tick${fired.includes(m) ? ' fired' : ''}" style="left:${pos(m)}" title="${esc(thresholdLabel(m))}${fired.includes(m) ? ' (fired)' : ''}"></span>`).join('');
    return `<div class="util" title="utilization; ticks at thresholds, dark = fired"><span class="fill ${cls}" style="width:${u == null ? 0 : pos(u)}"></span>${ticks}</div>`;
  }

  function renderBudgets(d) {
    const b = d.budgets || {};
    const entries = b.entries || [];
    const note = $('#budgets-note');
    note.hidden = !b.note;
    note.textContent = b.note || '';
    $('#budgets-cards').innerHTML = d.totals ? card('Blocked calls in range', num('totals.blocked', fmtInt, 'span', 'big'), 'refused by a budget with action block') : '';
    $('#budgets-source').textContent = b.source ? `budget state: ${b.source}` : '';
    const rows = entries.map((e, i) => {
      const p = `budgets.entries.${i}`, f = fmtUnit(e.unit);
      const chips = (e.fired || []).map((x) => `<span class="chip ${x.alerted === false ? 'quiet' : 'fired'}" title="fired ${esc(fmtTime(x.fired_at, true))} UTC">${esc(thresholdLabel(x.threshold))}</span>`).join('') || '<span class="muted">none</span>';
      return `<tr><td>${esc(e.budget)}</td><td>${e.group ? esc(e.group) : '<span class="muted">–</span>'}</td><td>${esc(e.unit || '')}<br><span class="sub">${esc(e.period || '')}</span></td>` +
        `<td class="window">${esc(fmtTime(e.window_start))} →<br>${esc(fmtTime(e.window_end))}</td>` +
        num(p + '.used', f) + num(p + '.limit', f) +
        `<td><div class="util-cell">${utilBar(e)}${num(p + '.utilization', fmtPct, 'span')}</div></td>` +
        num(p + '.forecast', f) + `<td class="chips">${chips}</td>` + num(p + '.calls', fmtInt) + num(p + '.unpriced_calls', fmtInt) + `<td>${esc(e.action || '')}</td></tr>`;
    });
    table($('#budgets-table'), `<tr>${th(['Budget', 'Group', 'Unit<br>period', 'Window (UTC)', ['Used'], ['Limit'], 'Utilization', ['Forecast'], 'Thresholds fired', ['Calls'], ['Unpriced<br>calls'], 'Action'])}</tr>`,
      rows, '', b.source === undefined && !d.budgets ? 'no budget data' : 'no budgets configured');
    $('#budgets-box').style.height = `${Math.max(140, 46 * entries.length + 70)}px`;
    const opts = baseOptions('budgets', { kind: 'bar', stacked: false, unit: 'utilization', fmt: fmtPct, axisFmt: (v) => `${Math.round(v * 100)} %` });
    opts.indexAxis = 'y';
    opts.interaction = { mode: 'nearest', axis: 'y', intersect: false };
    opts.scales = {
      x: { beginAtZero: true, suggestedMax: 1.1, title: { display: true, text: 'utilization (used / limit)' }, ticks: { callback: (v) => `${Math.round(v * 100)} %` } },
      y: { grid: { display: false } },
    };
    opts.plugins.legend.display = false;
    opts.plugins.tooltip.callbacks = {
      title: (items) => (items.length ? items[0].label : ''),
      label: (item) => {
        const e = (get(data, 'budgets.entries') || [])[item.dataIndex] || {}, f = fmtUnit(e.unit);
        return `utilization ${item.raw == null ? '–' : fmtPct(item.raw)} (${e.used == null ? '–' : f(e.used)} of ${e.limit == null ? '–' : f(e.limit)})`;
      },
    };
    opts.plugins_ = [limitLine];
    const color = (u) => cssVar(u == null ? '--muted' : u >= 1 ? '--danger' : u >= 0.8 ? '--warn' : '--ok');
    syncChart('budgets', opts, entries.map((e) => (e.group ? `${e.budget} · ${e.group}` : e.budget)),
      entries.length ? [{ label: 'utilization', data: entries.map((e) => e.utilization), backgroundColor: entries.map((e) => color(e.utilization)), borderWidth: 0, maxBarThickness: 28 }] : []);
  }

  function traceCell(id) {
    if (!id) return '<td class="nil">–</td>';
    if (config && config.trace_url) {
      const href = config.trace_url.split('{trace_id}').join(encodeURIComponent(id));
      const text = id.length > 16 ? id.slice(0, 12) + '…' : id;
      return `<td><a class="mono" href="${esc(href)}" target="_blank" rel="noopener noreferrer" title="trace ${esc(id)}">${esc(text)}</a></td>`;
    }
    return `<td class="trace"><code>${esc(id)}</code></td>`;
  }

  /** A table of single calls: the common columns plus `numbers` ([header, field, format]) in the middle. */
  function callsTable(el, path, list, numbers, emptyText) {
    const head = th(['Time (UTC)', 'Model<br>provider', 'Operation<br>service', 'Attributes', ...numbers.map(([h]) => [h]), 'Error<br>stream end', 'Trace']);
    const rows = (list || []).map((r, i) => {
      const attrs = Object.entries(r.attributes || {}).map(([k, v]) => `<span class="attr">${esc(k)}=${esc(v)}</span>`).join('');
      const outcome = [r.error_type ? `<span class="err">${esc(r.error_type)}</span>` : '', r.stream_end ? `<span class="sub">stream ${esc(r.stream_end)}</span>` : '']
        .filter(Boolean).join('<br>') || '<span class="muted">ok</span>';
      return `<tr><td>${esc(fmtTime(r.ts, true))}</td><td>${esc(r.model || '')}<br><span class="sub">${esc(r.provider || '')}</span></td>` +
        `<td>${esc(r.operation || '')}<br><span class="sub">${esc(r.service || '')}</span></td><td class="attrs">${attrs || '<span class="muted">–</span>'}</td>` +
        numbers.map(([, k, f]) => num(`${path}.${i}.${k}`, f)).join('') + `<td>${outcome}</td>${traceCell(r.trace_id)}</tr>`;
    });
    table(el, `<tr>${head}</tr>`, rows, '', emptyText);
  }

  function renderCalls(d) {
    const cols = [['Duration<br>s', 'duration_s', fmtSec], ['TTFC<br>s', 'ttfc_s', fmtSec], ['Cost<br>USD', 'cost_usd', fmtUsd],
      ['Tokens<br>in', 'input_tokens', fmtInt], ['Tokens<br>out', 'output_tokens', fmtInt]];
    callsTable($('#slowest-table'), 'slowest', d.slowest, cols, 'no calls in this range');
    callsTable($('#expensive-table'), 'most_expensive', d.most_expensive, cols, 'no calls in this range');
  }

  // ---------------------------------------------------------------- navigation and events
  function showView() {
    for (const s of $$('main section[data-view]')) s.hidden = s.dataset.view !== state.view;
    for (const a of $$('nav a[data-view]')) {
      a.classList.toggle('active', a.dataset.view === state.view);
      if (a.dataset.view === state.view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
  }

  function prefillCustom() {
    const r = (data && data.range) || {};
    const now = Date.now();
    state.since = state.since || localInput(r.from || new Date(now - 86400e3).toISOString());
    state.until = state.until || localInput(r.to || new Date(now).toISOString());
    $('#since').value = state.since;
    $('#until').value = state.until;
  }

  function bindEvents() {
    $('nav.tabs').addEventListener('click', (e) => {
      const a = e.target.closest('a[data-view]');
      if (!a) return;
      e.preventDefault();
      state.view = a.dataset.view;
      writeHash(true);
      showView();
    });
    $('#controls').addEventListener('change', (e) => {
      const t = e.target;
      if (t.id === 'range') {
        state.range = t.value;
        $('#custom-range').hidden = t.value !== 'custom';
        if (t.value === 'custom') prefillCustom();
      } else if (t.id === 'group-by') state.group_by = t.value;
      else if (t.id === 'stack-by') state.stack_by = t.value;
      else if (t.matches('select.filter')) {
        if (t.value) state.filters[t.dataset.filterKey] = t.value; else delete state.filters[t.dataset.filterKey];
      } else return; // the custom range waits for Apply
      writeHash();
      load(true);
    });
    $('#custom-range').addEventListener('submit', (e) => {
      e.preventDefault();
      state.range = 'custom';
      state.since = $('#since').value;
      state.until = $('#until').value;
      writeHash();
      load(true);
    });
    window.addEventListener('hashchange', () => {
      const before = apiQuery();
      state = readState();
      $('#since').value = state.since;
      $('#until').value = state.until;
      showView();
      writeHash();
      if (!isStatic && apiQuery() !== before) load(true);
      else renderControls();
    });
    document.addEventListener('visibilitychange', () => { if (!isStatic && !document.hidden) load(); });
    const dark = window.matchMedia('(prefers-color-scheme: dark)');
    if (dark.addEventListener) dark.addEventListener('change', applyTheme);
  }

  function start() {
    document.body.dataset.mode = isStatic ? 'static' : 'live';
    document.body.dataset.ready = '0';
    applyTheme();
    bindEvents();
    $('#since').value = state.since;
    $('#until').value = state.until;
    showView();
    writeHash();
    renderControls();
    if (isStatic) render(embedded);
    else load(true);
  }

  start();
})();
