// The call log page: a hash-routed single page over the runtime's /api. Plain JavaScript with no
// dependencies and no build step, so the binary can embed it as it is.
//
// Routes: `#/` (the list; filters live in the hash, `#/?status=completed`, so back and forward
// restore them) and `#/calls/<id>` (one call). The API key stays in sessionStorage and goes out as
// a bearer token; any 401 drops it and brings back the sign-in form.
'use strict';

(() => {
  const KEY = 'switchboard.apiKey';
  const PAGE_SIZE = 50;
  const STATS_DAYS = 30;
  const REJECTED = 'That key was not accepted.';
  const FILTERS = ['direction', 'status', 'outcome', 'number', 'flow', 'since', 'until'];

  const $ = (selector) => document.querySelector(selector);

  // ---- DOM helpers. Everything from the API goes in as text, never as markup.

  function build(element, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (name === 'class') element.setAttribute('class', value);
      else if (name === 'dataset') Object.assign(element.dataset, value);
      else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child == null || child === false) continue;
      element.append(child instanceof Node ? child : String(child));
    }
    return element;
  }

  const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
  const svg = (tag, attrs, ...children) =>
    build(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);

  // ---- Formatting.

  const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  const number = new Intl.NumberFormat();

  const words = (value) => (value == null ? '–' : String(value).replace(/_/g, ' '));
  const when = (ms) => (ms == null ? '–' : dateTime.format(new Date(ms)));

  function duration(ms) {
    if (ms == null) return '–';
    const seconds = Math.round(ms / 1000);
    const m = Math.floor(seconds / 60);
    const s = seconds % 60;
    return m >= 60 ? `${Math.floor(m / 60)}:${pad(m % 60)}:${pad(s)}` : `${m}:${pad(s)}`;
  }

  // An offset into the call: 1:04.2
  function offset(ms) {
    const tenths = Math.max(0, Math.round(ms / 100));
    return `${Math.floor(tenths / 600)}:${pad(Math.floor(tenths / 10) % 60)}.${tenths % 10}`;
  }

  const pad = (n) => String(n).padStart(2, '0');
  const millis = (ms) => `${number.format(Math.round(ms))} ms`;

  function badge(value, kind) {
    if (value == null) return h('span', { class: 'muted' }, '–');
    return h('span', { class: `badge ${kind}-${value}` }, words(value));
  }

  // ---- The API.

  class Unauthorized extends Error {}

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const key = sessionStorage.getItem(KEY);
    if (!key) throw new Unauthorized();
    let response;
    try {
      response = await fetch(path, {
        ...options,
        headers: { Accept: 'application/json', ...options.headers, Authorization: `Bearer ${key}` },
      });
    } catch {
      throw new ApiError(0, 'The server could not be reached.');
    }
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      throw new Unauthorized(REJECTED);
    }
    if (!response.ok) {
      let message = `The server answered ${response.status}.`;
      try {
        message = (await response.json()).message || message;
      } catch {
        // Not our JSON error body: keep the status line.
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  const getJson = async (path) => (await api(path)).json();

  // ---- Views.

  const views = ['login', 'list-view', 'call-view'];

  let shown = null;

  // Shows one view; on a change of view, focus goes to `heading` (for keyboard and screen readers).
  function show(view, heading) {
    for (const id of views) $(`#${id}`).hidden = id !== view;
    $('#logout').hidden = view === 'login';
    if (view !== shown && heading) $(heading).focus({ preventScroll: true });
    shown = view;
  }

  function showError(message) {
    const banner = $('#error');
    banner.textContent = message;
    banner.hidden = !message;
  }

  function showLogin(message) {
    releaseRecording();
    $('#calls tbody').replaceChildren();
    $('#transcript').replaceChildren();
    const error = $('#login-error');
    error.textContent = message || '';
    error.hidden = !message;
    const input = $('#api-key');
    input.setAttribute('aria-invalid', message ? 'true' : 'false');
    show('login');
    document.title = 'Sign in · switchboard';
    input.focus();
  }

  // Each navigation gets a number; answers for an older one are dropped when they arrive.
  let generation = 0;
  const current = (gen) => gen === generation;

  async function route() {
    const gen = ++generation;
    releaseRecording();
    showError('');
    if (!sessionStorage.getItem(KEY)) return showLogin('');
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, query] = hash.split('?');
    const call = path.match(/^\/calls\/([^/]+)$/);
    try {
      if (call) await showCall(decodeURIComponent(call[1]), gen);
      else await showList(new URLSearchParams(query || ''), gen);
    } catch (error) {
      if (!current(gen)) return;
      if (error instanceof Unauthorized) showLogin(error.message);
      else showError(error.message);
    }
  }

  // ---- The list.

  let nextCursor = null;
  let listQuery = null;

  // A date input's day as the instant its local midnight starts.
  function dayStart(day, plusDays = 0) {
    const [y, m, d] = day.split('-').map(Number);
    return new Date(y, m - 1, d + plusDays);
  }

  function apiFilters(params) {
    const query = new URLSearchParams();
    for (const name of FILTERS) {
      const value = (params.get(name) || '').trim();
      if (!value) continue;
      if (name === 'since') query.set('since', dayStart(value).toISOString());
      else if (name === 'until') query.set('until', dayStart(value, 1).toISOString());
      else query.set(name, value);
    }
    return query;
  }

  async function showList(params, gen) {
    const form = $('#filters');
    for (const name of FILTERS) form.elements[name].value = params.get(name) || '';
    show('list-view', '#list-title');
    document.title = 'Calls · switchboard';
    $('#calls tbody').replaceChildren();
    $('#calls-empty').hidden = true;
    $('#load-more').hidden = true;
    listQuery = apiFilters(params);
    const filtered = [...params.values()].some((v) => v.trim());
    await Promise.all([loadCalls(null, gen, filtered), loadStats(params, gen), loadNoMatches(params, gen)]);
  }

  async function loadCalls(cursor, gen, filtered) {
    const query = new URLSearchParams(listQuery);
    query.set('limit', PAGE_SIZE);
    if (cursor) query.set('cursor', cursor);
    const table = $('#calls');
    table.setAttribute('aria-busy', 'true');
    try {
      const page = await getJson(`api/calls?${query}`);
      if (!current(gen)) return;
      const body = table.tBodies[0];
      body.append(...page.calls.map(callRow));
      nextCursor = page.next_cursor;
      $('#load-more').hidden = !nextCursor;
      const empty = $('#calls-empty');
      empty.textContent = filtered ? 'No calls match these filters.' : 'No calls yet.';
      empty.hidden = body.rows.length > 0;
    } finally {
      table.removeAttribute('aria-busy');
    }
  }

  function callRow(call) {
    const href = `#/calls/${encodeURIComponent(call.id)}`;
    return h(
      'tr',
      { dataset: { callId: call.id }, onclick: (e) => e.target.closest('a') || (location.hash = href) },
      h('td', {}, h('a', { href }, when(call.started_at))),
      h('td', {}, words(call.direction)),
      h('td', { class: 'number' }, call.from),
      h('td', { class: 'number' }, call.to),
      h('td', {}, call.flow),
      h('td', { class: 'num' }, duration(call.duration_ms)),
      h('td', {}, badge(call.status, 'status')),
      h('td', { dataset: { field: 'outcome' } }, badge(call.outcome, 'outcome')),
    );
  }

  // ---- Statistics.

  const utcDay = (date) => date.toISOString().slice(0, 10);

  // The days the statistics cover: the filter's, else the last STATS_DAYS; `query` holds them for the API.
  function statsRange(params) {
    const since = params.get('since');
    const until = params.get('until');
    const today = new Date();
    const from = since
      ? dayStart(since)
      : new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - (STATS_DAYS - 1)));
    const query = new URLSearchParams({ since: from.toISOString() });
    if (until) query.set('until', dayStart(until, 1).toISOString());
    return { since, until, from, query };
  }

  async function loadStats(params, gen) {
    const { since, until, from, query } = statsRange(params);
    const stats = await getJson(`api/stats?${query}`);
    if (!current(gen)) return;

    $('#stats-range').textContent =
      since || until
        ? `${since || 'The beginning'} to ${until || 'today'}`
        : `The last ${STATS_DAYS} days`;
    $('#stat-total').textContent = number.format(stats.total_calls);
    $('#stat-containment').textContent =
      stats.containment_rate == null ? '–' : `${(stats.containment_rate * 100).toFixed(1)} %`;
    $('#stat-aht').textContent = duration(stats.average_handle_time_ms);

    const first = utcDay(from);
    const last = until ? utcDay(new Date(dayStart(until, 1) - 1)) : utcDay(new Date());
    const days = fillDays(stats.calls_per_day, first, last);
    $('#chart-days').replaceChildren(
      barChart(days, {
        width: chartWidth('#chart-days'),
        label: `Calls per day: ${number.format(stats.total_calls)} calls over ${days.length} days`,
        format: (v) => `${number.format(v)} ${v === 1 ? 'call' : 'calls'}`,
        integer: true,
      }),
    );

    const latency = stats.latency;
    $('#latency-turns').textContent = `(${number.format(latency.turns)} ${latency.turns === 1 ? 'turn' : 'turns'})`;
    const bars = [
      { label: 'p50', value: latency.p50_ms },
      { label: 'p95', value: latency.p95_ms },
      { label: 'p99', value: latency.p99_ms },
    ].filter((b) => b.value != null);
    $('#chart-latency').replaceChildren(
      bars.length
        ? barChart(bars, {
            width: chartWidth('#chart-latency'),
            label: `Voice-to-voice latency: ${bars.map((b) => `${b.label} ${millis(b.value)}`).join(', ')}`,
            format: millis,
            valueLabels: true,
          })
        : h('p', { class: 'empty' }, 'No measured turns yet.'),
    );
  }

  // The answers nothing placed, over the same days as the statistics (and the flow filter).
  async function loadNoMatches(params, gen) {
    const { query } = statsRange(params);
    query.set('limit', 10);
    const flow = (params.get('flow') || '').trim();
    if (flow) query.set('flow', flow);
    const report = await getJson(`api/no-matches?${query}`);
    if (!current(gen)) return;
    const rows = report.no_matches.map((m) =>
      h(
        'tr',
        { dataset: { step: m.step } },
        h('td', { class: 'num' }, number.format(m.count)),
        h('td', {}, m.flow),
        h('td', {}, m.step),
        h('td', {}, h('a', { href: `#/calls/${encodeURIComponent(m.call_id)}`, title: `Last said ${when(m.last_at)}` }, m.heard)),
      ),
    );
    $('#no-matches tbody').replaceChildren(...rows);
    $('#no-matches').hidden = rows.length === 0;
    $('#no-matches-empty').hidden = rows.length > 0;
  }

  // One bar per day from `first` to `last` (UTC days, as the API counts them), zero where no call was.
  function fillDays(counts, first, last) {
    const byDay = new Map(counts.map((c) => [c.day, c.calls]));
    const days = [];
    const limit = 400;
    for (let d = new Date(`${first}T00:00:00Z`); utcDay(d) <= last && days.length < limit; ) {
      const day = utcDay(d);
      days.push({ label: day, value: byDay.get(day) || 0 });
      d.setUTCDate(d.getUTCDate() + 1);
    }
    // Days the API reports outside the range (a clock skew, a wider filter) still get their bar.
    for (const c of counts) if (!days.some((d) => d.label === c.day)) days.push({ label: c.day, value: c.calls });
    return days.sort((a, b) => (a.label < b.label ? -1 : 1));
  }

  // Charts are drawn at their box's width so their text has the page's size.
  const chartWidth = (selector) => Math.max(240, Math.round($(selector).clientWidth) || 560);

  // 1, 2, 5 × 10^n at or above `value`.
  function niceMax(value, integer) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 5, 10]) if (m * power >= value) return integer ? Math.max(1, Math.ceil(m * power)) : m * power;
    return value;
  }

  // A small bar chart as inline SVG: `bars` is [{label, value}]; each bar has a tooltip, the chart an
  // accessible summary.
  function barChart(bars, { width: W, label, format = String, integer = false, valueLabels = false }) {
    const H = 200;
    const left = 44;
    const right = 8;
    const top = 16;
    const bottom = 26;
    const plotW = W - left - right;
    const plotH = H - top - bottom;
    const max = niceMax(Math.max(0, ...bars.map((b) => b.value)), integer);
    const y = (v) => top + plotH - (v / max) * plotH;

    const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
    const ticks = integer && max % 2 ? [0, max] : [0, max / 2, max];
    for (const t of ticks) {
      chart.append(
        svg('line', { class: 'grid', x1: left, x2: W - right, y1: y(t), y2: y(t) }),
        svg('text', { class: 'tick', x: left - 6, y: y(t) + 4, 'text-anchor': 'end' }, integer ? t : Math.round(t)),
      );
    }
    const slot = plotW / Math.max(1, bars.length);
    const width = Math.max(1, Math.min(64, slot * 0.7));
    const every = Math.ceil(bars.length / 8);
    bars.forEach((bar, i) => {
      const x = left + i * slot + (slot - width) / 2;
      if (bar.value > 0) {
        chart.append(
          svg(
            'rect',
            { class: 'bar', x, y: y(bar.value), width, height: top + plotH - y(bar.value), rx: 2 },
            svg('title', {}, `${bar.label}: ${format(bar.value)}`),
          ),
        );
        if (valueLabels) {
          chart.append(
            svg('text', { class: 'value', x: x + width / 2, y: y(bar.value) - 4, 'text-anchor': 'middle' }, format(bar.value)),
          );
        }
      }
      if (i % every === 0 || bars.length <= 8) {
        const text = bars.length > 8 ? bar.label.slice(5) : bar.label;
        chart.append(svg('text', { class: 'tick', x: x + width / 2, y: H - 8, 'text-anchor': 'middle' }, text));
      }
    });
    return chart;
  }

  // ---- One call.

  let recordingUrl = null;

  function releaseRecording() {
    if (recordingUrl) URL.revokeObjectURL(recordingUrl);
    recordingUrl = null;
    $('#recording-box').replaceChildren();
  }

  async function showCall(id, gen) {
    let call;
    try {
      call = await getJson(`api/calls/${encodeURIComponent(id)}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        $('#call-title').textContent = 'No such call';
        show('call-view', '#call-title');
        $('#delete-call').hidden = true;
        for (const id of ['#call-facts', '#transcript', '#slots tbody']) $(id).replaceChildren();
        $('#slots-empty').hidden = true;
        $('#recording-box').replaceChildren(h('p', { class: 'empty' }, 'It may have been deleted.'));
        return;
      }
      throw error;
    }
    if (!current(gen)) return;
    const title = `${call.direction === 'outbound' ? 'Outbound' : 'Inbound'} call from ${call.from}`;
    $('#call-title').textContent = title;
    show('call-view', '#call-title');
    document.title = `${title} · switchboard`;
    $('#delete-call').hidden = false;
    $('#delete-call').dataset.callId = call.id;
    renderFacts(call);
    renderSlots(call.slots || {});
    renderTranscript(call.turns || [], call.events || []);
    await loadRecording(call, gen);
  }

  function renderFacts(call) {
    const facts = [
      ['From', call.from, 'from'],
      ['To', call.to, 'to'],
      ['Flow', call.flow, 'flow'],
      ['Direction', words(call.direction), 'direction'],
      ['Started', when(call.started_at), 'started'],
      ['Duration', duration(call.duration_ms), 'duration'],
      ['Status', badge(call.status, 'status'), 'status'],
      ['Outcome', badge(call.outcome, 'outcome'), 'outcome'],
      ['Hang-up reason', words(call.hangup_reason), 'hangup-reason'],
      ['Transferred to', call.transferred_to || '–', 'transferred-to'],
    ];
    $('#call-facts').replaceChildren(
      ...facts.map(([term, value, key]) =>
        h('div', { class: 'fact' }, h('dt', {}, term), h('dd', { dataset: { fact: key } }, value)),
      ),
    );
  }

  function renderSlots(slots) {
    const rows = Object.entries(slots).map(([name, value]) =>
      h(
        'tr',
        { dataset: { slot: name } },
        h('th', { scope: 'row' }, name),
        h('td', {}, typeof value === 'string' ? value : JSON.stringify(value)),
      ),
    );
    $('#slots tbody').replaceChildren(...rows);
    $('#slots').hidden = rows.length === 0;
    $('#slots-empty').hidden = rows.length > 0;
  }

  const EVENTS = {
    dtmf: 'Keypad',
    barge_in: 'Barge-in',
    transfer: 'Transfer',
    opt_out: 'Opt-out',
    silence: 'Silence',
    error: 'Error',
    no_match: 'Not understood',
  };

  function renderTranscript(turns, events) {
    // Turns and events by time; at the same moment, what was said comes first.
    const items = [
      ...turns.map((t) => ({ at: t.at_ms, order: 0, seq: t.seq, node: turnItem(t) })),
      ...events.map((e) => ({ at: e.at_ms, order: 1, seq: e.seq, node: eventItem(e) })),
    ].sort((a, b) => a.at - b.at || a.order - b.order || a.seq - b.seq);
    const list = $('#transcript');
    list.replaceChildren(...items.map((i) => i.node));
    if (!items.length) list.append(h('li', { class: 'empty' }, 'Nothing was said.'));
  }

  function turnItem(turn) {
    const who = turn.speaker === 'bot' ? 'Bot' : 'Caller';
    const meta = [h('span', { class: 'who' }, who), h('time', { title: 'Time into the call' }, offset(turn.at_ms))];
    const t = turn.timings;
    if (turn.speaker === 'caller' && t) {
      if (t.transcript_ready_ms != null)
        meta.push(h('span', { title: 'Transcript ready after the end of the turn' }, `transcript +${millis(t.transcript_ready_ms - t.turn_end_ms)}`));
      if (t.first_audio_ms != null)
        meta.push(h('span', { title: 'First bot audio after the end of the turn' }, `first audio +${millis(t.first_audio_ms - t.turn_end_ms)}`));
      if (t.voice_to_voice_ms != null)
        meta.push(h('strong', { title: 'Caller stopped speaking → first bot audio', class: 'v2v' }, `voice-to-voice ${millis(t.voice_to_voice_ms)}`));
    }
    return h(
      'li',
      { class: `turn ${turn.speaker}${turn.interrupted ? ' interrupted' : ''}`, dataset: { speaker: turn.speaker, seq: turn.seq } },
      h(
        'div',
        { class: 'bubble' },
        h('p', { class: 'text' }, turn.text),
        turn.interrupted ? h('span', { class: 'flag', title: 'The caller spoke over this line' }, 'interrupted') : null,
      ),
      h('p', { class: 'meta' }, meta),
    );
  }

  function eventItem(event) {
    return h(
      'li',
      { class: `event event-${event.kind}`, dataset: { kind: event.kind, seq: event.seq } },
      h('span', { class: 'event-kind' }, EVENTS[event.kind] || words(event.kind)),
      event.detail ? h('span', { class: 'event-detail' }, event.detail) : null,
      h('time', {}, offset(event.at_ms)),
    );
  }

  async function loadRecording(call, gen) {
    const box = $('#recording-box');
    if (!call.has_recording) {
      box.replaceChildren(h('p', { id: 'no-recording', class: 'empty' }, 'No recording'));
      return;
    }
    box.replaceChildren(h('p', { class: 'muted' }, 'Loading the recording…'));
    let blob;
    try {
      blob = await (await api(`api/calls/${encodeURIComponent(call.id)}/recording`, { headers: { Accept: 'audio/*' } })).blob();
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
      if (current(gen)) box.replaceChildren(h('p', { class: 'empty' }, `The recording could not be loaded: ${error.message}`));
      return;
    }
    if (!current(gen)) return;
    recordingUrl = URL.createObjectURL(blob);
    box.replaceChildren(
      h('audio', { id: 'recording', controls: true, preload: 'metadata', src: recordingUrl }),
      h('p', { class: 'muted small' }, 'Caller on the left channel, bot on the right. ',
        h('a', { href: recordingUrl, download: `call-${call.id}.wav` }, 'Download WAV')),
    );
  }

  // ---- Wiring.

  function init() {
    $('#login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const input = $('#api-key');
      const key = input.value.trim();
      if (!key) {
        showLogin('Enter an API key.');
        return;
      }
      sessionStorage.setItem(KEY, key);
      input.value = '';
      route();
    });

    $('#logout').addEventListener('click', () => {
      sessionStorage.removeItem(KEY);
      generation++;
      showError('');
      showLogin('');
    });

    $('#filters').addEventListener('submit', (event) => {
      event.preventDefault();
      const params = new URLSearchParams();
      for (const name of FILTERS) {
        const value = event.target.elements[name].value.trim();
        if (value) params.set(name, value);
      }
      const hash = `#/${params.size ? `?${params}` : ''}`;
      if (location.hash === hash) route();
      else location.hash = hash;
    });

    $('#filters-reset').addEventListener('click', () => {
      if (location.hash === '#/' || location.hash === '') route();
      else location.hash = '#/';
    });

    $('#load-more').addEventListener('click', async () => {
      const button = $('#load-more');
      button.disabled = true;
      try {
        await loadCalls(nextCursor, generation, true);
      } catch (error) {
        if (error instanceof Unauthorized) showLogin(error.message);
        else showError(error.message);
      } finally {
        button.disabled = false;
      }
    });

    const dialog = $('#delete-dialog');
    $('#delete-call').addEventListener('click', () => dialog.showModal());
    dialog.addEventListener('close', async () => {
      if (dialog.returnValue !== 'delete') return;
      dialog.returnValue = '';
      const id = $('#delete-call').dataset.callId;
      try {
        await api(`api/calls/${encodeURIComponent(id)}`, { method: 'DELETE' });
        location.replace('#/');
      } catch (error) {
        if (error instanceof Unauthorized) showLogin(error.message);
        else showError(error.message);
      }
    });

    window.addEventListener('hashchange', route);
    route();
  }

  init();
})();
