// mem0-queue dashboard. Plain DOM code: every text from the server goes
// through textContent, never innerHTML. The token comes from this page's
// URL and goes back in the X-Dashboard-Token header.
'use strict';
(() => {
  const token = new URLSearchParams(location.search).get('token') || '';
  const POLL_MS = 2000;
  const PROGRESS_MS = 400;
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);
  const revealed = new Map(); // id -> content
  let syncPolling = false;
  let lastState = null;

  async function api(path, opts = {}) {
    const init = Object.assign({ cache: 'no-store', credentials: 'omit' }, opts);
    init.headers = Object.assign({ 'X-Dashboard-Token': token }, opts.headers || {});
    const r = await fetch(path, init);
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) {
      const e = new Error((body && body.error) || (r.status === 403 ? 'access refused' : 'HTTP ' + r.status));
      e.status = r.status;
      throw e;
    }
    return body;
  }

  function el(tag, props, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'text') n.textContent = v;
      else if (k === 'class') n.className = v;
      else if (k === 'on') for (const [ev, f] of Object.entries(v)) n.addEventListener(ev, f);
      else n.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) n.append(c);
    return n;
  }

  function svg(tag, attrs, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function ago(s) {
    if (s === null || s === undefined) return '';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function localTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  function setMsg(text, isError) {
    const m = $('action-msg');
    m.textContent = text || '';
    m.className = 'msg' + (isError ? ' error' : '');
  }

  // Alerts, in the seed's words and colours: WARNING amber, CRITICAL red.
  function renderAlerts(alerts) {
    const box = $('alerts');
    box.replaceChildren();
    for (const a of alerts || []) {
      const crit = a.level === 'critical';
      // The policy may already say "MEM0 VPS - CRITICAL:"; the badge says it once.
      const message = String(a.message || '').replace(/^[^:]{0,40}\b(WARNING|CRITICAL)\s*:\s*/i, '');
      const title = el('div', { class: 'title' },
        el('span', { class: 'lvl', text: (crit ? '\u{1F6A8} CRITICAL' : '\u26A0\uFE0F WARNING') }),
        el('span', { class: 'text', text: message }));
      const actions = el('ol');
      for (const act of a.actions || []) actions.append(el('li', { text: act }));
      box.append(el('div', {
        class: 'banner ' + (crit ? 'critical' : 'warning'), role: 'alert',
        'data-level': a.level, 'data-code': a.code,
      }, title, (a.actions && a.actions.length) ? actions : null));
    }
  }

  function renderCounts(c) {
    for (const k of ['pending', 'in_flight', 'failed', 'dead', 'delivered']) {
      const n = $('count-' + k);
      n.textContent = String(c[k] ?? 0);
      n.parentElement.classList.toggle('nonzero', (c[k] ?? 0) > 0);
    }
  }

  // The changes among the entries (updates, deletes, forgets), by kind.
  function renderChanges(ch) {
    const p = $('changes');
    const parts = [];
    for (const [op, states] of Object.entries(ch || {})) {
      const waiting = Object.entries(states)
        .filter(([st]) => st !== 'delivered')
        .reduce((a, [, n]) => a + n, 0);
      if (waiting > 0) parts.push(waiting + ' ' + op.replace('_', '-'));
    }
    p.hidden = parts.length === 0;
    p.textContent = parts.length ? 'changes among them, not delivered yet: ' + parts.join(', ') : '';
  }

  function renderServer(s) {
    const m = s.mem0;
    $('mem0-url').textContent = m.url || 'none configured (memories queue up locally)';
    const reach = $('mem0-reach');
    const r = m.reachability;
    if (!r) {
      reach.textContent = 'checking…';
      reach.className = 'muted';
    } else {
      reach.textContent = m.text || r.status;
      reach.className = r.status === 'reachable' ? 'ok-text' : (r.status === 'not_configured' ? 'muted' : 'bad-text');
    }
    const b = s.breaker || {};
    const br = $('breaker');
    if (b.state === 'open') {
      br.textContent = 'open: the server is down; next probe ' + localTime(b.next_probe_at);
      br.className = 'bad-text';
    } else {
      br.textContent = 'closed';
      br.className = 'ok-text';
    }
    const ls = s.last_sync || {};
    $('last-sync').textContent = ls.at ? ago(ls.age_s) + ' ago (' + localTime(ls.at) + ')' : 'never';
    const res = $('last-result');
    res.textContent = ls.result || '';
    res.className = /undelivered/.test(ls.result || '') ? 'bad-text' : '';
    $('last-success').textContent = ls.last_success ? localTime(ls.last_success) : 'never';
    $('oldest-pending').textContent = s.oldest_pending_age_s === null || s.oldest_pending_age_s === undefined
      ? 'none' : ago(s.oldest_pending_age_s) + ' ago';
  }

  // A bar chart of saves and deliveries per bucket, as inline SVG.
  function renderChart(box, buckets, label, every) {
    // One SVG unit per CSS pixel, so labels keep their size in any column.
    const W = Math.max(260, Math.round(box.clientWidth || 560)), H = 170, L = 30, R = 6, T = 10, B = 22;
    const pw = W - L - R, ph = H - T - B;
    const n = buckets.length || 1;
    let max = 1;
    for (const b of buckets) max = Math.max(max, b.saves, b.deliveries);
    const step = max <= 4 ? 1 : Math.ceil(max / 4);
    const top = Math.ceil(max / step) * step;
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': box.dataset.testid || 'chart' });
    for (let v = 0; v <= top; v += step) {
      const y = T + ph - (v / top) * ph;
      s.append(svg('line', { x1: L, x2: W - R, y1: y, y2: y, class: v === 0 ? 'axis' : 'grid' }));
      s.append(svg('text', { x: L - 5, y: y + 3, 'text-anchor': 'end' }, String(v)));
    }
    const gw = pw / n;
    const bw = Math.max(1, Math.min(14, (gw * 0.8) / 2));
    buckets.forEach((b, i) => {
      const x0 = L + i * gw + (gw - 2 * bw) / 2;
      const g = svg('g', { 'data-saves': b.saves, 'data-deliveries': b.deliveries });
      g.append(svg('title', {}, `${label(b.start, true)}: ${b.saves} saved, ${b.deliveries} delivered`));
      const hs = (b.saves / top) * ph, hd = (b.deliveries / top) * ph;
      g.append(svg('rect', { x: x0, y: T + ph - hs, width: bw, height: hs, class: 'saves', rx: 1 }));
      g.append(svg('rect', { x: x0 + bw, y: T + ph - hd, width: bw, height: hd, class: 'deliveries', rx: 1 }));
      s.append(g);
      if (i % every === 0 || i === n - 1) {
        s.append(svg('text', { x: L + i * gw + gw / 2, y: H - 6, 'text-anchor': 'middle' }, label(b.start, false)));
      }
    });
    box.replaceChildren(s);
  }

  const hourLabel = (t, long) => {
    const d = new Date(t);
    const h = String(d.getHours()).padStart(2, '0') + ':00';
    return long ? d.toLocaleDateString(undefined, { weekday: 'short' }) + ' ' + h : h;
  };
  const dayLabel = (t) => new Date(t).toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', timeZone: 'UTC' });

  function entryTable(rows, dead) {
    if (!rows.length) return el('div', { class: 'empty', text: dead ? 'No dead entries.' : 'No failed entries.' });
    const head = el('tr', {}, el('th', { text: 'id' }), el('th', { text: 'project' }), el('th', { text: 'age' }),
      el('th', { text: 'attempts' }), el('th', { text: dead ? 'reason' : 'last error' }), el('th', { text: '' }));
    const body = el('tbody');
    for (const r of rows) {
      const shown = revealed.has(r.id);
      const btn = el('button', {
        type: 'button', class: 'small', text: shown ? 'hide' : 'reveal', 'data-testid': 'reveal',
        on: { click: () => toggleReveal(r.id) },
      });
      body.append(el('tr', { 'data-id': r.id },
        el('td', { class: 'mono id', text: r.id }),
        el('td', { text: r.project }),
        el('td', { class: 'num', title: localTime(r.created), text: ago(r.age_s) }),
        el('td', { class: 'num', text: String(r.attempts) }),
        el('td', { class: 'err', text: r.last_error || '' }),
        el('td', {}, btn)));
      if (shown) {
        body.append(el('tr', { class: 'content' },
          el('td', { colspan: '6' }, el('pre', { class: 'memory', 'data-testid': 'memory', text: revealed.get(r.id) }))));
      }
    }
    return el('table', {}, el('thead', {}, head), body);
  }

  async function toggleReveal(id) {
    if (revealed.has(id)) {
      revealed.delete(id);
    } else {
      try {
        const e = await api('/api/entry/' + encodeURIComponent(id));
        revealed.set(id, e.content || '');
      } catch (err) {
        setMsg('cannot read that memory: ' + err.message, true);
      }
    }
    if (lastState) renderLists(lastState);
  }

  function renderLists(s) {
    const more = (rows, total) => (total > rows.length ? ` (${rows.length} of ${total} shown)` : '');
    $('failed-n').textContent = String(s.counts.failed) + more(s.failed, s.counts.failed);
    $('dead-n').textContent = String(s.counts.dead) + more(s.dead, s.counts.dead);
    $('failed-list').replaceChildren(entryTable(s.failed, false));
    $('dead-list').replaceChildren(entryTable(s.dead, true));
  }

  function renderPolicy(p) {
    const dl = $('policy');
    dl.replaceChildren();
    const add = (k, v, cls) => { dl.append(el('dt', { text: k }), el('dd', { text: v, class: cls })); };
    add('active', `${p.name} ${p.version} (WIT ${p.wit_version})`);
    add('source', p.source);
    add('sha256', (p.sha256 || '').slice(0, 16) + '…', 'mono');
    if (p.broken) add('BROKEN', p.broken + ' (the embedded default decides instead)', 'bad-text');
  }

  function renderSync(p) {
    const box = $('sync-box');
    if (!p || !p.started_at) { box.hidden = true; return; }
    box.hidden = false;
    const due = Math.max(p.due || 0, 1);
    const ok = Number(p.delivered || 0), bad = Number(p.failed || 0) + Number(p.dead || 0);
    const pct = (x) => Math.min(100, (100 * x) / due) + '%';
    $('sync-ok').style.width = pct(ok);
    $('sync-bad').style.width = pct(Math.min(bad, Math.max(0, due - ok)));
    const bar = $('sync-bar');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', String(p.due || 0));
    bar.setAttribute('aria-valuenow', String(ok));
    const t = $('sync-text');
    if (p.running) {
      t.textContent = `syncing… ${ok} of ${p.due} delivered, ${p.failed || 0} failed, ${p.dead || 0} dead`;
      t.dataset.state = 'running';
    } else if (p.error) {
      t.textContent = 'the sync failed: ' + p.error;
      t.dataset.state = 'error';
    } else {
      const r = p.report || {};
      const why = { breaker: '; stopped: the server is down', shutdown: '; interrupted', max_duration: '; time limit reached', config: '; stopped: a configuration problem (see the alert)' }[r.stopped] || '';
      t.textContent = `sync done: ${r.delivered ?? ok} delivered, ${r.failed ?? 0} failed, ${r.dead ?? 0} dead, ${r.remaining ?? 0} remaining${why}`;
      t.dataset.state = 'done';
    }
    $('sync-now').disabled = !!p.running;
  }

  function render(s) {
    lastState = s;
    renderAlerts(s.alerts);
    renderCounts(s.counts);
    renderChanges(s.changes);
    renderServer(s);
    renderChart($('chart-hours'), s.history.hours, hourLabel, 3);
    renderChart($('chart-days'), s.history.days, dayLabel, 1);
    renderLists(s);
    renderPolicy(s.policy);
    if (!syncPolling) renderSync(s.sync);
    if (s.sync && s.sync.running && !syncPolling) pollProgress();
    $('retry-failed').disabled = s.counts.failed === 0;
    $('retry-dead').disabled = s.counts.dead === 0;
    $('updated').textContent = 'updated ' + new Date(s.now).toLocaleTimeString();
    $('footer').textContent = 'queue: ' + s.data_dir + ' \u00B7 this page refreshes every 2 s \u00B7 Ctrl-C in the terminal stops the dashboard';
    document.body.dataset.loaded = 'true';
  }

  async function refresh() {
    try {
      const s = await api('/api/state');
      $('offline').hidden = true;
      render(s);
    } catch (e) {
      if (e.status === 403) {
        setMsg('Access refused: open the URL that `mem0-queue dashboard` printed (it holds the token).', true);
      } else {
        $('offline').hidden = false;
      }
    }
  }

  async function loop() {
    await refresh();
    setTimeout(loop, POLL_MS);
  }

  async function retry(dead) {
    const btn = $(dead ? 'retry-dead' : 'retry-failed');
    btn.disabled = true;
    try {
      const r = await api('/api/retry', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ dead }),
      });
      setMsg(`${r.moved} ${dead ? 'dead' : 'failed'} ${r.moved === 1 ? 'entry' : 'entries'} moved back to pending.`);
    } catch (e) {
      setMsg('retry failed: ' + e.message, true);
    }
    await refresh();
  }

  async function pollProgress() {
    if (syncPolling) return;
    syncPolling = true;
    try {
      for (let i = 0; i < 100000; i++) {
        let p;
        try { p = await api('/api/sync/progress'); } catch (_) { break; }
        renderSync(p);
        if (!p.running) break;
        await new Promise((res) => setTimeout(res, PROGRESS_MS));
      }
    } finally {
      syncPolling = false;
      $('sync-now').disabled = false;
      if (/^sync started/.test($('action-msg').textContent)) setMsg('');
    }
    await refresh();
  }

  async function syncNow() {
    const btn = $('sync-now');
    btn.disabled = true;
    setMsg('');
    try {
      const r = await api('/api/sync', { method: 'POST' });
      setMsg(`sync started: ${r.due} due.`);
      await pollProgress();
    } catch (e) {
      setMsg(e.message, true);
      btn.disabled = false;
    }
  }

  $('retry-failed').addEventListener('click', () => retry(false));
  $('retry-dead').addEventListener('click', () => retry(true));
  $('sync-now').addEventListener('click', syncNow);
  loop();
})();
