/*
 * ferry dashboard: plain JavaScript, no framework, no build step, no outside resource.
 * Talks to `ferry web`'s JSON API (/api/v1/…, docs/api.md) with the browser login's cookie
 * and CSRF token, and listens to /api/v1/events (server-sent events) for live progress.
 *
 * Safety rule: every string that comes from the store (vaults, logs, errors, names) reaches
 * the page as a text node (h() below, textContent); nothing here parses HTML.
 */
'use strict';
(function () {
  const PAGE = 50;
  const STATUSES = ['PENDING', 'ASSIGNED', 'PROCESSING', 'CANCELLING', 'COMPLETED', 'FAILED', 'CANCELLED'];
  const PRIORITIES = { 1: 'Highest', 2: 'High', 3: 'Normal', 4: 'Low', 5: 'Lowest' };
  const main = document.getElementById('main');
  const state = { csrf: sessionStorage.getItem('ferry.csrf') || '', who: sessionStorage.getItem('ferry.who') || '',
    view: null, events: null, refreshTimer: 0, renderSeq: 0, lastRenderMs: 0 };

  // ---- DOM: elements from data, strings always as text ------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        const v = attrs[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    add(el, kids);
    return el;
  }
  function add(el, ...kids) {
    for (const k of [kids].flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return el;
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  const taskHref = (id) => '#/queue/' + encodeURIComponent(id);
  const short = (id) => String(id || '').slice(0, 8);
  const fmtN = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '—');

  function ago(iso) {
    if (!iso) return '—';
    const t = Date.parse(iso);
    if (isNaN(t)) return String(iso);
    let s = Math.round((Date.now() - t) / 1000);
    const future = s < 0;
    s = Math.abs(s);
    const txt = s < 60 ? s + 's' : s < 3600 ? Math.floor(s / 60) + 'm' : s < 86400 ? Math.floor(s / 3600) + 'h'
      : Math.floor(s / 86400) + 'd';
    return future ? 'in ' + txt : txt + ' ago';
  }
  function when(iso) { return h('time', { datetime: iso || null, title: iso || null }, ago(iso)); }
  function badge(text, cls) { return h('span', { class: 'badge ' + (cls || 'b-' + text) }, text); }
  function statusBadge(row) {
    const b = badge(row.status || '?', 'b-' + row.status);
    b.dataset.role = 'status';
    return b;
  }
  function prioBadge(p) {
    return h('span', { class: 'badge p-' + p, title: 'priority ' + p }, PRIORITIES[p] || String(p));
  }
  function progressEl(progress) {
    const fill = h('span');
    const pct = h('span', { class: 'pct' });
    const msg = h('span', { class: 'msg' });
    const el = h('div', { class: 'progress', 'data-role': 'progress' }, h('div', { class: 'hbar' }, fill), pct, msg);
    setProgress(el, progress);
    return el;
  }
  function setProgress(el, progress) {
    const [fill] = el.getElementsByTagName('span');
    const pct = el.querySelector('.pct'), msg = el.querySelector('.msg');
    if (!progress || typeof progress.percent !== 'number') {
      fill.style.width = '0';
      pct.textContent = '—';
      msg.textContent = '';
      el.classList.add('none');
      return;
    }
    const p = Math.max(0, Math.min(100, progress.percent));
    fill.style.width = p + '%'; /* CSSOM, not a style attribute: fine under style-src 'self' */
    pct.textContent = p + '%';
    msg.textContent = progress.message || '';
    msg.title = progress.message || '';
    el.classList.remove('none');
    el.dataset.percent = String(p);
  }
  function emptyState(title, text) {
    return h('div', { class: 'empty' }, h('div', { class: 'big' }, title), text ? h('div', null, text) : null);
  }
  function errorBox(err) { return h('div', { class: 'error', role: 'alert' }, String(err && err.message || err)); }
  function toast(text, bad) {
    const t = h('div', { class: 'toast' + (bad ? ' bad' : '') }, text);
    document.getElementById('toasts').append(t);
    setTimeout(() => t.remove(), 4000);
  }
  function pageHead(title, sub, ...right) {
    return h('div', { class: 'page-head' },
      h('div', null, h('h1', null, title), sub ? h('div', { class: 'sub' }, sub) : null), h('div', null, right));
  }
  // td with the column's label (shown on narrow screens, where rows become cards).
  function td(label, content, cls) {
    return h('td', { 'data-label': label, class: ((label ? 'c-' + label.toLowerCase().replace(/\W+/g, '-') : 'c-actions') + ' ' + (cls || '')).trim() }, content);
  }
  function table(headers, rows, opts) {
    return h('div', { class: 'tablewrap' },
      h('table', { class: 'cards' + (opts && opts.cls ? ' ' + opts.cls : '') },
        h('thead', null, h('tr', null, headers.map((x) => h('th', null, x)))), h('tbody', null, rows)));
  }

  // ---- API ------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(method, path, body) {
    const opt = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (method !== 'GET') {
      if (state.csrf) opt.headers['X-CSRF-Token'] = state.csrf;
      if (body !== undefined) {
        opt.headers['Content-Type'] = 'application/json';
        opt.body = JSON.stringify(body);
      }
    }
    let r;
    try {
      r = await fetch('/api/v1' + path, opt);
    } catch (e) {
      throw new ApiError(0, 'ferry web does not answer (' + e.message + ')');
    }
    let j = null;
    try { j = await r.json(); } catch (e) { /* not JSON */ }
    if (r.status === 401 && path !== '/login') {
      signedOut();
      throw new ApiError(401, (j && j.error) || 'sign in first');
    }
    if (r.status === 403 && method !== 'GET' && !state.csrf) {
      signedOut('Sign in again to make changes from this tab.');
      throw new ApiError(403, 'sign in again');
    }
    if (!r.ok || (j && j.success === false))
      throw new ApiError(r.status, (j && j.error) || r.status + ' ' + r.statusText);
    return j || {};
  }
  function qs(params) {
    const u = new URLSearchParams();
    for (const k of Object.keys(params)) if (params[k] !== '' && params[k] !== undefined && params[k] !== null) u.set(k, params[k]);
    const s = u.toString();
    return s ? '?' + s : '';
  }
  // One page of the queue, newest first: never an unbounded list. Pages are keyset ones:
  // cursor {to, skip} asks for items created at or before `to` (date-to, inclusive, to the
  // millisecond) and drops the first `skip`, the ones of that millisecond already shown
  // (the order, created_at then seq, is stable), so a page costs the same on page 1 and 20,000.
  async function queuePage(filters, limit, cursor) {
    const skip = cursor && cursor.skip ? cursor.skip : 0;
    const j = await api('GET', '/queue' + qs(Object.assign({}, filters,
      { 'max-records': (limit || PAGE) + skip, 'date-to': cursor && cursor.to ? cursor.to : '' })));
    const rows = (Array.isArray(j.data) ? j.data : []).slice(skip);
    const total = typeof j.total === 'number' ? j.total - skip : rows.length;
    return { rows, total, truncated: !!j.truncated };
  }
  // The cursor of the page after rows: the last row's time, and how many rows of that time
  // this page and the ones before it at the same time showed.
  function nextCursor(rows, cursor) {
    const last = rows[rows.length - 1];
    const to = last.createdTime || last.createdDate;
    let skip = 0;
    for (let i = rows.length - 1; i >= 0 && (rows[i].createdTime || rows[i].createdDate) === to; i--) skip++;
    if (cursor && cursor.to === to) skip += cursor.skip || 0;
    return { to, skip };
  }
  async function countOf(filters) {
    const p = await queuePage(filters, 1);
    return p.total;
  }

  // ---- live updates (server-sent events) ------------------------------------------------------
  const live = document.getElementById('live');
  function startEvents() {
    if (state.events || typeof EventSource === 'undefined') return;
    const es = new EventSource('/api/v1/events');
    state.events = es;
    es.onopen = () => { live.classList.add('on'); live.classList.remove('off'); live.title = 'Live updates: connected'; };
    es.onerror = () => { live.classList.remove('on'); live.classList.add('off'); live.title = 'Live updates: reconnecting'; };
    const handler = (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      onEvent(ev.type, d);
    };
    es.onmessage = handler;
    for (const t of ['progress', 'status', 'item', 'queue', 'created', 'update']) es.addEventListener(t, handler);
  }
  function stopEvents() {
    if (state.events) state.events.close();
    state.events = null;
    live.classList.remove('on');
    live.classList.add('off');
  }
  // An `item` event (docs/api.md) is one item's row in short: taskId, status, progress, …
  // Rows on screen change in place; a status the page has not seen refreshes the view (the
  // counts, a new item on the first page), throttled to what the view costs to load.
  const statusOf = new Map();
  function noteStatus(id, status) {
    if (statusOf.size > 20000) statusOf.clear();
    const prev = statusOf.get(id);
    statusOf.set(id, status);
    return prev !== status;
  }
  function onEvent(type, it) {
    if (!it || typeof it !== 'object' || typeof it.taskId !== 'string') return;
    const rows = document.querySelectorAll('[data-task="' + CSS.escape(it.taskId) + '"]');
    const changed = it.status ? noteStatus(it.taskId, it.status) : false;
    for (const row of rows) {
      const b = row.querySelector('[data-role=status]');
      if (b && it.status && b.textContent !== it.status) {
        b.textContent = it.status;
        b.className = 'badge b-' + it.status;
      }
      const p = row.querySelector('[data-role=progress]');
      if (p && it.progress !== undefined) setProgress(p, it.progress);
    }
    const v = state.view;
    if (changed && v && (v.refresh === 'any' || (v.refresh === 'shown' && rows.length))) scheduleRefresh();
  }
  function scheduleRefresh() {
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = 0;
      if (state.view && state.view.refresh) render(true);
    }, Math.max(2000, 3 * state.lastRenderMs));
  }

  // ---- confirmation dialog --------------------------------------------------------------------
  // danger: a red button for what stops or removes something (cancel, disable).
  function confirmAction(title, body, okText, danger) {
    const dlg = document.getElementById('confirm');
    document.getElementById('confirm-title').textContent = title;
    add(clear(document.getElementById('confirm-body')), [body]);
    const ok = document.getElementById('confirm-ok');
    ok.textContent = okText || 'Confirm';
    ok.className = 'btn ' + (danger ? 'btn-danger' : 'btn-primary');
    return new Promise((resolve) => {
      dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
      dlg.returnValue = '';
      dlg.showModal();
    });
  }
  async function itemAction(row, action) {
    const id = row.taskId;
    const what = action === 'cancel' ? 'Cancel' : 'Retry';
    const ok = await confirmAction(what + ' this item?',
      [h('p', null, (row.function || 'item') + ' on ' + (row.machineName || '?') + ' (' + (row.teamName || '?') + ')'),
        h('p', { class: 'mono' }, id),
        action === 'cancel' ? h('p', null, 'A running attempt is asked to stop.') : h('p', null, 'A new item is queued, linked to this one.')],
      what + ' item', action === 'cancel');
    if (!ok) return;
    try {
      const j = await api('POST', '/queue/' + encodeURIComponent(id) + '/' + action);
      const nid = Array.isArray(j.data) && j.data[0] && j.data[0].taskId;
      toast(action === 'cancel' ? 'Cancelled ' + short(id) : 'Retried as ' + short(nid || id));
      render(true);
    } catch (e) {
      toast(what + ' failed: ' + e.message, true);
    }
  }
  function actionButtons(row) {
    const out = [];
    if (state.role === 'viewer') return out; /* the API would refuse them */
    if (row.canBeCancelled || ['PENDING', 'ASSIGNED', 'PROCESSING'].includes(row.status))
      out.push(h('button', { class: 'btn btn-sm', type: 'button', 'data-action': 'cancel', onclick: () => itemAction(row, 'cancel') }, 'Cancel'));
    if (row.status === 'FAILED' || row.status === 'CANCELLED')
      out.push(h('button', { class: 'btn btn-sm', type: 'button', 'data-action': 'retry', onclick: () => itemAction(row, 'retry') }, 'Retry'));
    return out;
  }

  // ---- views ------------------------------------------------------------------------------------
  function itemRows(rows, opts) {
    for (const r of rows) noteStatus(r.taskId, r.status);
    return rows.map((r) => h('tr', { 'data-task': r.taskId },
      td('Task', h('a', { href: taskHref(r.taskId), class: 'mono', title: r.taskId }, short(r.taskId))),
      td('Status', statusBadge(r)),
      td('Priority', prioBadge(r.priority)),
      td('Function', r.function || '—'),
      td('Machine', [r.machineName || '—', h('span', { class: 'muted' }, ' · ' + (r.teamName || ''))]),
      opts && opts.reason ? td('Reason', r.lastFailureReason || '—', 'reason') : td('Progress', progressEl(r.progress)),
      opts && opts.reason ? td('Failed', when(r.finishedTime || r.updatedTime || r.createdTime))
        : td('Created', when(r.createdTime || r.createdDate)),
      td('', actionButtons(r), 'actions')));
  }
  const ITEM_HEADERS = ['Task', 'Status', 'Priority', 'Function', 'Machine', 'Progress', 'Created', ''];
  const FAIL_HEADERS = ['Task', 'Status', 'Priority', 'Function', 'Machine', 'Reason', 'Failed', ''];

  async function viewOverview(seq) {
    const counts = h('div', { class: 'stats' }, STATUSES.map((s) =>
      h('a', { class: 'stat s-' + s, href: '#/queue?status=' + s, 'data-status': s },
        h('div', { class: 'n', 'data-count': s }, '…'), h('div', { class: 'l' }, s.toLowerCase()))));
    const prio = h('div', { class: 'prio' });
    const prioNote = h('p', { class: 'muted note' });
    const active = h('div');
    const failures = h('div');
    const hostsBox = h('div');
    add(clear(main), [
      pageHead('Overview', 'Counts for the whole store; what runs now and what failed for your team'),
      counts,
      h('div', { class: 'grid2' },
        h('section', { class: 'card' }, h('h2', null, 'Pending by priority'), prio, prioNote),
        h('section', { class: 'card' }, h('h2', null, 'Hosts'), hostsBox)),
      h('section', { class: 'card flush' }, h('h2', null, 'Running now'), active),
      h('section', { class: 'card flush' }, h('h2', null, 'Recent failures'), failures)]);
    const jobs = [];
    // /summary answers every count from the metrics' aggregates; without it, one count a figure.
    const summary = api('GET', '/summary').then((j) => j.data || {}, (e) => {
      if (e.status !== 404) throw e;
      return Promise.all(STATUSES.map((s) => countOf({ status: s }))).then((ns) =>
        Promise.all([1, 2, 3, 4, 5].map((p) => countOf({ status: 'PENDING', priority: p }))).then((ps) => ({
          byStatus: Object.fromEntries(STATUSES.map((s, i) => [s, ns[i]])),
          pendingByPriority: Object.fromEntries(ps.map((n, i) => [String(i + 1), n])) })));
    });
    jobs.push(summary.then((d) => {
      if (seq !== state.renderSeq) return;
      for (const s of STATUSES)
        counts.querySelector('[data-count="' + s + '"]').textContent = fmtN((d.byStatus || {})[s] || 0);
      if (typeof d.oldestPendingAgeSeconds === 'number' && d.oldestPendingAgeSeconds > 0)
        add(prioNote, 'Oldest pending item waits ' + ago(new Date(Date.now() - d.oldestPendingAgeSeconds * 1000).toISOString()).replace(' ago', ''));
      const ns = [1, 2, 3, 4, 5].map((p) => (d.pendingByPriority || {})[String(p)] || 0);
      const max = Math.max(1, ...ns);
      add(prio, ns.map((n, i) => {
        const fill = h('span');
        fill.style.width = (n * 100 / max) + '%';
        return h('a', { class: 'prio-row', href: '#/queue?status=PENDING&priority=' + (i + 1) },
          prioBadge(i + 1), h('div', { class: 'hbar' }, fill), h('span', { class: 'num' }, fmtN(n)));
      }));
    }));
    jobs.push(queuePage({ status: 'PROCESSING' }, 10).then((p) => {
      if (seq !== state.renderSeq) return;
      add(active, p.rows.length ? table(ITEM_HEADERS, itemRows(p.rows), { cls: 'items' })
        : emptyState('Nothing is running', 'Items appear here while a host works on them.'));
    }));
    jobs.push(queuePage({ status: 'FAILED' }, 10).then((p) => {
      if (seq !== state.renderSeq) return;
      add(failures, p.rows.length ? table(FAIL_HEADERS, itemRows(p.rows, { reason: true }), { cls: 'items' })
        : emptyState('No failures', 'Failed items and their reasons show here.'));
    }));
    jobs.push(api('GET', '/hosts').then((j) => {
      if (seq !== state.renderSeq) return;
      const hosts = (Array.isArray(j.data) ? j.data : []).filter((x) => !x.stoppedTime);
      const alive = hosts.filter(hostAlive).length;
      add(hostsBox, h('div', { class: 'stat s-' + (alive ? 'COMPLETED' : 'FAILED') }, h('div', { class: 'n' }, fmtN(alive) + ' / ' + fmtN(hosts.length)),
        h('div', { class: 'l' }, 'hosts alive')),
        h('ul', { class: 'hostlist' }, hosts.slice(0, 4).map((x) => h('li', null, badge(hostAlive(x) ? 'alive' : 'dead'), ' ',
          h('span', { class: 'mono' }, x.hostId || '?'), h('span', { class: 'muted' }, ' · ' + (x.bridgeName || '') + ' · seen ' + ago(x.lastSeenTime))))),
        h('p', null, h('a', { href: '#/hosts' }, 'All hosts →')));
    }).catch((e) => add(hostsBox, errorBox(e))));
    const results = await Promise.allSettled(jobs);
    const bad = results.find((r) => r.status === 'rejected');
    if (bad && seq === state.renderSeq) main.prepend(errorBox(bad.reason));
  }

  function filterBar(f, onChange) {
    const status = h('select', { name: 'status', 'aria-label': 'Status' }, h('option', { value: '' }, 'Any status'),
      STATUSES.map((s) => h('option', { value: s, selected: f.status === s }, s)));
    const prio = h('select', { name: 'priority', 'aria-label': 'Priority' }, h('option', { value: '' }, 'Any priority'),
      [1, 2, 3, 4, 5].map((p) => h('option', { value: String(p), selected: f.priority === String(p) }, p + ' · ' + PRIORITIES[p])));
    const team = h('input', { name: 'team', placeholder: 'Team', value: f.team || '', size: 10 });
    const machine = h('input', { name: 'machine', placeholder: 'Machine', value: f.machine || '', size: 10 });
    const task = h('input', { name: 'task-id', placeholder: 'Task id', value: f['task-id'] || '', size: 12 });
    const form = h('form', { class: 'filters', role: 'search' },
      h('label', null, 'Status', status), h('label', null, 'Priority', prio), h('label', null, 'Team', team),
      h('label', null, 'Machine', machine), h('label', null, 'Task', task),
      h('button', { class: 'btn', type: 'submit' }, 'Filter'));
    const submit = (e) => {
      if (e) e.preventDefault();
      onChange({ status: status.value, priority: prio.value, team: team.value.trim(), machine: machine.value.trim(), 'task-id': task.value.trim() });
    };
    form.addEventListener('submit', submit);
    status.addEventListener('change', submit);
    prio.addEventListener('change', submit);
    return form;
  }

  async function viewQueue(seq, params, failuresOnly) {
    const f = { status: params.get('status') || '', priority: params.get('priority') || '', team: params.get('team') || '',
      machine: params.get('machine') || '', 'task-id': params.get('task-id') || '' };
    if (failuresOnly) f.status = 'FAILED';
    const cursor = params.get('to') ? { to: params.get('to'), skip: Math.max(0, parseInt(params.get('skip') || '0', 10) || 0) } : null;
    const base = failuresOnly ? '#/failures' : '#/queue';
    const go = (nf, cur) => {
      location.hash = base + qs(Object.assign({}, nf, failuresOnly ? { status: '' } : {}, cur ? { to: cur.to, skip: cur.skip || '' } : {}));
    };
    // The page is fetched before anything on screen changes: a live refresh (a quiet render)
    // swaps the new rows in at once instead of flashing "Loading…" over the old ones.
    const p = await queuePage(f, PAGE, cursor);
    if (seq !== state.renderSeq) return;
    const body = h('div', null);
    add(clear(main), [
      failuresOnly ? pageHead('Failures', 'Failed items, newest first, with the reason of their last attempt')
        : pageHead('Queue', 'Every item, newest first'),
      h('section', { class: 'card flush' }, failuresOnly ? null : filterBar(f, (nf) => go(nf, 0)), body)]);
    state.view.refresh = cursor ? 'shown' : 'any'; /* an older page gains no new items */
    if (p.rows.length === 0) {
      add(body, failuresOnly ? emptyState('No failures', 'Nothing has failed. Failed items and their reasons show here.')
        : emptyState('No items match', 'Change the filters, or create an item.'));
      return;
    }
    add(body, table(failuresOnly ? FAIL_HEADERS : ITEM_HEADERS, itemRows(p.rows, { reason: failuresOnly }), { cls: 'items' }));
    const newest = h('button', { class: 'btn btn-sm', type: 'button', disabled: !cursor, onclick: () => go(f, null) }, '« Newest');
    const back = h('button', { class: 'btn btn-sm', type: 'button', disabled: !cursor, onclick: () => history.back() }, '← Newer');
    const next = h('button', { class: 'btn btn-sm', type: 'button', disabled: p.rows.length >= p.total, 'data-role': 'older',
      onclick: () => go(f, nextCursor(p.rows, cursor)) }, 'Older →');
    if (!cursor && p.rows.length >= p.total) {
      add(body, h('div', { class: 'pager' }, h('span', { 'data-role': 'range' }, fmtN(p.total) + (p.total === 1 ? ' item' : ' items'))));
      return;
    }
    add(body, h('div', { class: 'pager' },
      h('span', { 'data-role': 'range' }, fmtN(p.rows.length) + ' shown of ' + fmtN(p.total) + (cursor ? ' at or before ' + cursor.to : ' matching')),
      h('span', null, newest, ' ', back, ' ', next)));
  }

  function jsonBlock(v) {
    return h('pre', { class: 'json' }, v === null || v === undefined ? 'null' : JSON.stringify(v, null, 2));
  }
  async function viewTrace(seq, id) {
    const j = await api('GET', '/queue/' + encodeURIComponent(id));
    if (seq !== state.renderSeq) return;
    const d = j.data || {};
    const it = d.queue_item || {};
    noteStatus(it.taskId, it.status);
    const fields = [['Status', statusBadge(it)], ['Health', it.healthStatus ? badge(it.healthStatus) : '—'],
      ['Priority', prioBadge(it.priority)], ['Function', it.function], ['Team', it.teamName], ['Machine', it.machineName],
      ['Bridge', it.bridgeName], ['Created', it.createdTime], ['Started', it.startedTime], ['Finished', it.finishedTime],
      ['Retries', String(it.retryCount ?? 0)], ['Duration', typeof it.totalDurationSeconds === 'number' ? it.totalDurationSeconds.toFixed(1) + ' s' : null],
      ['Last failure', it.lastFailureReason ? h('span', { class: 'reason' }, it.lastFailureReason) : null], ['Schedule', it.scheduleName],
      ['Linked to', it.parentTaskId ? h('a', { href: taskHref(it.parentTaskId), class: 'mono' }, short(it.parentTaskId)) : null]];
    const kv = h('dl', { class: 'kv' });
    for (const [k, v] of fields) if (v !== null && v !== undefined && v !== '') add(kv, [h('dt', null, k), h('dd', null, v)]);
    const events = Array.isArray(d.timeline) ? d.timeline : [];
    const evLi = (e) => h('li', { class: 'ev-' + e.action },
      h('span', { class: 'act' }, e.action || '?'),
      h('span', { class: 'when', title: e.timestamp || '' }, (e.timestamp || '') +
        (typeof e.secondsSincePrevious === 'number' && e.secondsSincePrevious > 0 ? '  +' + e.secondsSincePrevious.toFixed(3) + ' s' : '')),
      e.actor ? h('span', { class: 'by' }, 'by ' + e.actor) : null,
      e.details === null || e.details === undefined || e.details === '' ? null
        : h('div', { class: 'det' }, typeof e.details === 'string' ? e.details : JSON.stringify(e.details)));
    // A long run of PROGRESS events shows its first and last, and a line that opens the rest.
    const lis = [];
    for (let i = 0; i < events.length;) {
      let j = i;
      while (j < events.length && events[j].action === 'PROGRESS') j++;
      if (j - i > 4) {
        const hidden = events.slice(i + 1, j - 1);
        const more = h('li', { class: 'ev-more' }, h('button', { class: 'btn btn-sm', type: 'button', 'data-role': 'more-events',
          onclick: () => more.replaceWith(...hidden.map(evLi)) }, hidden.length + ' more progress events'));
        lis.push(evLi(events[i]), more, evLi(events[j - 1]));
        i = j;
      } else {
        const end = Math.max(j, i + 1); /* a short run whole, or one other event */
        for (; i < end; i++) lis.push(evLi(events[i]));
      }
    }
    const tl = events.length ? h('ol', { class: 'timeline' }, lis)
      : emptyState('No events yet');
    add(clear(main), [
      h('div', { class: 'crumb' }, h('a', { href: '#/queue' }, 'Queue'), ' / ', short(it.taskId || id)),
      pageHead(it.function || 'Item', h('span', { class: 'mono' }, it.taskId || id), actionButtons(it)),
      h('div', { class: 'grid2', 'data-task': it.taskId || id },
        h('section', { class: 'card' }, h('h2', null, 'Details'), kv,
          // Progress while the item may still run (events move it), or the last one reported.
          ['PENDING', 'ASSIGNED', 'PROCESSING', 'CANCELLING'].includes(it.status) || it.progress
            ? [h('h2', { class: 'spaced' }, 'Progress'), progressEl(it.progress)] : null),
        h('section', { class: 'card' }, h('h2', null, 'Timeline'), tl)),
      h('div', { class: 'grid2' },
        h('section', { class: 'card' }, h('h2', null, 'Request vault'), jsonBlock(d.request_vault ?? it.vaultContent)),
        h('section', { class: 'card' }, h('h2', null, 'Response vault'), jsonBlock(d.response_vault ?? it.responseVault)))]);
  }

  async function viewSchedules(seq) {
    const j = await api('GET', '/schedules');
    if (seq !== state.renderSeq) return;
    const rows = Array.isArray(j.data) ? j.data : [];
    const toggle = async (s) => {
      const verb = s.enabled ? 'disable' : 'enable';
      const ok = await confirmAction((s.enabled ? 'Disable' : 'Enable') + ' schedule ' + s.scheduleName + '?',
        h('p', null, s.enabled ? 'It stops firing until enabled again.' : 'It fires again from its next run.'),
        s.enabled ? 'Disable' : 'Enable', s.enabled);
      if (!ok) return;
      try {
        await api('POST', '/schedules/' + encodeURIComponent(s.teamName) + '/' + encodeURIComponent(s.scheduleName) + '/' + verb);
        toast('Schedule ' + s.scheduleName + ' ' + verb + 'd');
        render(true);
      } catch (e) { toast('Could not ' + verb + ': ' + e.message, true); }
    };
    add(clear(main), [pageHead('Schedules', 'Cron schedules and when they fire next'),
      h('section', { class: 'card flush' }, rows.length ? table(['Schedule', 'Team', 'Cron', 'Machine', 'State', 'Next run', 'Last run', 'Last item', ''],
        rows.map((s) => h('tr', null,
          td('Schedule', h('strong', null, s.scheduleName)), td('Team', s.teamName),
          td('Cron', h('code', null, s.cron + (s.timezone ? '  (' + s.timezone + ')' : ''))), td('Machine', s.machine || '—'),
          td('State', badge(s.enabled ? 'enabled' : 'disabled')),
          td('Next run', s.enabled && s.nextRun ? [when(s.nextRun), h('div', { class: 'muted mono' }, s.nextRun)] : '—'),
          td('Last run', when(s.lastRun)),
          td('Last item', s.lastTaskId ? h('a', { href: taskHref(s.lastTaskId), class: 'mono' }, short(s.lastTaskId)) : '—'),
          td('', state.role === 'viewer' ? null
            : h('button', { class: 'btn btn-sm', type: 'button', onclick: () => toggle(s) }, s.enabled ? 'Disable' : 'Enable'), 'actions'))))
        : emptyState('No schedules', 'Create one with `ferry create schedule TEAM NAME --vault …`.'))]);
  }

  async function viewMachines(seq) {
    const [m, g, st] = await Promise.all([api('GET', '/machines'), api('GET', '/groups'),
      api('GET', '/storages').catch((e) => ({ error: e }))]);
    if (seq !== state.renderSeq) return;
    const machines = Array.isArray(m.data) ? m.data : [];
    const groups = Array.isArray(g.data) ? g.data : [];
    const storages = Array.isArray(st.data) ? st.data : [];
    // A storage's place, never its credentials (the server masks them; only these keys show).
    const where = (v) => (v ? ['path', 'bucket', 'endpoint', 'host', 'url', 'region'].filter((k) => typeof v[k] === 'string')
      .map((k) => k + ' ' + v[k]).join(' · ') : '') || '—';
    add(clear(main), [pageHead('Machines', 'Machines, machine groups and storages'),
      h('section', { class: 'card flush' }, h('h2', null, 'Machines'), machines.length
        ? table(['Machine', 'Team', 'Bridge', 'Region', 'Updated', ''], machines.map((x) => h('tr', null,
          td('Machine', h('strong', null, x.machineName)), td('Team', x.teamName), td('Bridge', x.bridgeName),
          td('Region', x.regionName || '—'), td('Updated', when(x.updatedTime)),
          td('', h('a', { class: 'btn btn-sm', href: '#/queue' + qs({ machine: x.machineName }) }, 'Items'), 'actions'))))
        : emptyState('No machines', 'Add one with `ferry create machine TEAM BRIDGE NAME`.')),
      h('section', { class: 'card flush' }, h('h2', null, 'Groups'), groups.length
        ? table(['Group', 'Team', 'Members'], groups.map((x) => h('tr', null,
          td('Group', h('strong', null, x.groupName)), td('Team', x.teamName),
          td('Members', (x.members || []).join(', ') || '—'))))
        : emptyState('No machine groups', 'Group machines with `ferry create machine-group TEAM NAME --members a,b`.')),
      h('section', { class: 'card flush' }, h('h2', null, 'Storages'), st.error ? h('div', { class: 'empty' }, errorBox(st.error))
        : storages.length ? table(['Storage', 'Team', 'Provider', 'Where', 'Updated'], storages.map((x) => h('tr', null,
          td('Storage', h('strong', null, x.storageName)), td('Team', x.teamName), td('Provider', x.provider || (x.vault && x.vault.provider) || '—'),
          td('Where', h('span', { class: 'mono' }, where(x.vault))), td('Updated', when(x.updatedTime)))))
          : emptyState('No storages', 'Add one with `ferry create storage TEAM NAME --vault …`.'))]);
  }

  function hostAlive(x) {
    if (typeof x.alive === 'boolean') return x.alive;
    if (x.status) return String(x.status).toLowerCase() === 'alive';
    return false;
  }
  async function viewHosts(seq) {
    const j = await api('GET', '/hosts');
    if (seq !== state.renderSeq) return;
    const rows = Array.isArray(j.data) ? j.data : [];
    add(clear(main), [pageHead('Hosts', 'Hosts that serve bridges, from their heartbeats'),
      h('section', { class: 'card flush' }, rows.length
        ? table(['Host', 'Bridge', 'State', 'Last heartbeat', 'Running', 'Started', 'Version'], rows.map((x) => h('tr', null,
          td('Host', h('strong', { class: 'mono' }, x.hostId || '?')), td('Bridge', x.bridgeName || '—'),
          td('State', x.stoppedTime ? badge('stopped', 'b-disabled') : badge(hostAlive(x) ? 'alive' : 'dead')),
          td('Last heartbeat', when(x.lastSeenTime)), td('Running', String(x.runningAttempts ?? '—'), 'num'),
          td('Started', when(x.startedTime)), td('Version', x.version || '—'))))
        : emptyState('No hosts yet', 'A host shows here once `ferry serve` has sent a heartbeat.'))]);
  }

  async function viewNew(seq) {
    const m = await api('GET', '/machines').catch(() => ({ data: [] }));
    if (seq !== state.renderSeq) return;
    const machines = Array.isArray(m.data) ? m.data : [];
    const err = h('div');
    const machine = h('select', { name: 'machine', required: true }, machines.map((x) =>
      h('option', { value: x.machineName }, x.machineName + ' (' + x.teamName + ', ' + x.bridgeName + ')')));
    const fn = h('input', { name: 'function', required: true, placeholder: 'e.g. ping', autocomplete: 'off' });
    const prio = h('select', { name: 'priority' }, [1, 2, 3, 4, 5].map((p) =>
      h('option', { value: String(p), selected: p === 3 }, p + ' · ' + PRIORITIES[p])));
    const params = h('textarea', { name: 'params', spellcheck: 'false' }, '{}');
    const form = h('form', { class: 'form card' },
      h('label', null, 'Machine', machine), h('label', null, 'Priority', prio),
      h('label', { class: 'wide' }, 'Function', fn),
      h('label', { class: 'wide' }, h('span', null, 'Parameters ', h('span', { class: 'hint' }, '(JSON object; host keys such as timeout and max_retries too)')), params),
      h('div', { class: 'actions' }, h('a', { class: 'btn', href: '#/queue' }, 'Back'), h('button', { class: 'btn btn-primary', type: 'submit' }, 'Create item')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clear(err);
      const mach = machines.find((x) => x.machineName === machine.value);
      let vault;
      try {
        vault = JSON.parse(params.value || '{}');
        if (!vault || typeof vault !== 'object' || Array.isArray(vault)) throw new Error('the parameters must be a JSON object');
      } catch (x) { add(err, errorBox('Parameters: ' + x.message)); return; }
      if (!mach) { add(err, errorBox('Choose a machine')); return; }
      vault.function = fn.value.trim();
      const body = { team: mach.teamName, machine: mach.machineName, bridge: mach.bridgeName, priority: Number(prio.value), vault };
      const ok = await confirmAction('Create this item?', [h('p', null, vault.function + ' on ' + mach.machineName + ' (' + mach.teamName + '), priority ' + prio.value),
        jsonBlock(vault)], 'Create item');
      if (!ok) return;
      try {
        const j = await api('POST', '/queue', body);
        const id = Array.isArray(j.data) && j.data[0] && j.data[0].taskId;
        toast('Created ' + short(id));
        location.hash = id ? taskHref(id) : '#/queue';
      } catch (x) { add(err, errorBox(x)); }
    });
    add(clear(main), [pageHead('New item', 'Queue a function on a machine'), err,
      machines.length ? form : h('section', { class: 'card' }, emptyState('No machines', 'An item runs on a machine: add one first.'))]);
  }

  function viewLogin(message) {
    stopEvents();
    const token = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, placeholder: 'ferry token' });
    const err = h('div');
    if (message) add(err, errorBox(message));
    const form = h('form', { class: 'card' },
      h('h1', null, 'Sign in to ferry'),
      h('p', null, 'Paste an API token (`ferry create token USER --team T --role R`). It is sent once; the browser keeps an HttpOnly session cookie.'),
      err, h('label', null, token), h('button', { class: 'btn btn-primary', type: 'submit' }, 'Sign in'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clear(err);
      try {
        const j = await api('POST', '/login', { token: token.value.trim() });
        const d = j.data || {};
        state.csrf = d.csrfToken || '';
        state.who = [d.user, d.team, d.role].filter(Boolean).join(' · ');
        state.role = d.role || '';
        sessionStorage.setItem('ferry.csrf', state.csrf);
        sessionStorage.setItem('ferry.who', state.who);
        token.value = '';
        state.signedIn = true;
        if (location.hash === '#/' || location.hash === '') render();
        else location.hash = '#/';
      } catch (x) { add(err, errorBox(x.status === 401 || x.status === 403 ? 'That token is not valid.' : x)); }
    });
    add(clear(main), h('div', { class: 'login', id: 'login' }, form));
    document.body.classList.add('signed-out');
    token.focus();
  }
  function signedOut(message) {
    state.csrf = '';
    state.who = '';
    state.signedIn = false;
    sessionStorage.removeItem('ferry.csrf');
    sessionStorage.removeItem('ferry.who');
    state.view = null;
    state.renderSeq++;
    clear(document.getElementById('toasts'));
    delete document.body.dataset.ready;
    viewLogin(message);
    updateChrome(false);
  }
  function updateChrome(signedIn) {
    document.getElementById('logout').hidden = !signedIn;
    document.getElementById('new-item').hidden = !signedIn || state.role === 'viewer';
    document.getElementById('who').textContent = signedIn ? state.who : '';
    document.body.classList.toggle('signed-out', !signedIn);
  }
  document.getElementById('logout').addEventListener('click', async () => {
    try { await api('POST', '/logout'); } catch (e) { /* the session ends here either way */ }
    signedOut();
  });

  // ---- routing ------------------------------------------------------------------------------------
  const ROUTES = {
    '': { nav: 'overview', fn: viewOverview, refresh: 'any', title: 'Overview' },
    queue: { nav: 'queue', fn: (s, p) => viewQueue(s, p, false), refresh: 'any', title: 'Queue' },
    failures: { nav: 'failures', fn: (s, p) => viewQueue(s, p, true), refresh: 'any', title: 'Failures' },
    schedules: { nav: 'schedules', fn: viewSchedules, title: 'Schedules' },
    machines: { nav: 'machines', fn: viewMachines, title: 'Machines' },
    hosts: { nav: 'hosts', fn: viewHosts, title: 'Hosts' },
    new: { nav: '', fn: viewNew, title: 'New item' },
  };
  async function render(quiet) {
    const hash = location.hash.replace(/^#\/?/, '');
    const [path, query] = hash.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    let route = ROUTES[parts[0] || ''];
    let run;
    if (parts[0] === 'queue' && parts[1]) {
      route = { nav: 'queue', title: 'Item ' + short(parts[1]), refresh: 'shown' };
      run = (s) => viewTrace(s, parts[1]);
    } else if (!route) {
      route = { nav: '', title: 'Not found' };
      run = () => add(clear(main), h('section', { class: 'card' }, emptyState('Page not found', 'Use the navigation above.')));
    } else {
      run = (s) => route.fn(s, params);
    }
    const seq = ++state.renderSeq;
    state.view = Object.assign({}, route);
    const t0 = performance.now();
    document.title = route.title + ' · ferry';
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === route.nav);
    updateChrome(true);
    startEvents();
    const hashNow = location.hash || '#/';
    if (!quiet) {
      // Until this view has its data, nothing says a view is ready (tests wait on these).
      delete document.body.dataset.ready;
      delete document.body.dataset.view;
      clear(main);
      add(main, h('div', { class: 'empty' }, 'Loading…'));
    }
    try {
      await run(seq);
      state.lastRenderMs = performance.now() - t0;
      if (seq !== state.renderSeq) return;
      document.body.dataset.ready = route.nav || 'page';
      document.body.dataset.view = hashNow;
    } catch (e) {
      if (seq !== state.renderSeq || e.status === 401) return;
      add(clear(main), h('section', { class: 'card' }, errorBox(e)));
    }
  }
  window.addEventListener('hashchange', () => { if (state.signedIn) render(); });
  // Start: one request says whether the session cookie is good (and who it is) before any
  // view asks for data; without one, the login form.
  api('GET', '/me').then((j) => {
    const d = j.data || {};
    state.who = [d.user, d.team, d.role].filter(Boolean).join(' · ');
    state.role = d.role || '';
    state.signedIn = true;
    render();
  }, (e) => { if (e.status !== 401) add(clear(main), h('section', { class: 'card' }, errorBox(e))); });
})();
