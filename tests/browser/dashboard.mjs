// Drives the dashboard in headless Chromium (Debian's /usr/bin/chromium)
// for tests/dashboard_browser.rs:
//   node tests/browser/dashboard.mjs URL SCREENSHOT_PATH
// Prints one JSON object of what it saw on stdout; exits non-zero on any
// failed expectation. Bounded: every wait has a timeout, and the whole run
// is killed after 150 s.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error('usage: node dashboard.mjs URL SCREENSHOT_PATH');
  process.exit(2);
}
const killer = setTimeout(() => { console.error('dashboard.mjs: timed out'); process.exit(3); }, 150_000);

const profile = mkdtempSync(join(tmpdir(), 'mem0-queue-chromium-'));
const out = { errors: [], progress: [] };
let ctx;

function expect(cond, what) {
  if (!cond) throw new Error('expectation failed: ' + what);
}

async function counts(page) {
  return page.evaluate(() => Object.fromEntries(
    ['pending', 'in_flight', 'failed', 'dead', 'delivered'].map((k) => [k, Number(document.getElementById('count-' + k).textContent)])));
}

try {
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1200, height: 900 },
    deviceScaleFactor: 1,
    timeout: 60_000,
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (e) => out.errors.push('pageerror: ' + String(e)));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') out.errors.push(m.type() + ': ' + m.text()); });

  // 1. The page loads and shows the counts.
  const resp = await page.goto(url);
  expect(resp && resp.status() === 200, 'the page answers 200');
  await page.waitForSelector('body[data-loaded="true"]');
  out.initial = await counts(page);
  out.alerts = await page.$$eval('#alerts .banner', (bs) => bs.map((b) => ({
    level: b.dataset.level, code: b.dataset.code, text: b.textContent,
    background: getComputedStyle(b).backgroundColor,
  })));
  out.failedRows = await page.$$eval('#failed-list tr[data-id]', (rs) => rs.map((r) => r.dataset.id));
  out.deadRows = await page.$$eval('#dead-list tr[data-id]', (rs) => rs.map((r) => r.dataset.id));
  out.chartBars = await page.$$eval('#chart-days svg g', (gs) => gs.map((g) => [Number(g.dataset.saves), Number(g.dataset.deliveries)]));
  await page.waitForFunction(() => document.getElementById('mem0-reach').textContent !== 'checking…', null, { timeout: 10_000 });
  out.reachability = await page.textContent('#mem0-reach');
  out.footer = await page.textContent('#footer');
  // Memory texts are not on the page until revealed.
  out.textBeforeReveal = (await page.textContent('body')).includes('<b>not</b> HTML');
  await page.click('#dead-list [data-testid=reveal]');
  await page.waitForSelector('#dead-list pre.memory');
  out.revealed = await page.textContent('#dead-list pre.memory');
  // Rendered as text: no <b> element came from the memory.
  out.revealedHtmlElements = await page.$$eval('#dead-list pre.memory *', (xs) => xs.length);
  await page.screenshot({ path: shot, fullPage: true });

  // 2. Retry failed: the entries move back to pending.
  await page.click('[data-testid=retry-failed]');
  await page.waitForFunction(() => document.getElementById('count-failed').textContent === '0');
  out.afterRetry = await counts(page);
  out.retryMessage = await page.textContent('[data-testid=action-msg]');
  out.alertsAfterRetry = await page.$$eval('#alerts .banner', (bs) => bs.map((b) => b.dataset.level));

  // 3. Sync now, with its progress bar.
  await page.click('[data-testid=sync-now]');
  const started = Date.now();
  for (let i = 0; i < 600; i++) {
    const s = await page.evaluate(() => {
      const t = document.getElementById('sync-text');
      const ok = document.getElementById('sync-ok');
      return { state: t.dataset.state || '', text: t.textContent, width: ok.style.width,
        visible: !document.getElementById('sync-box').hidden,
        disabled: document.getElementById('sync-now').disabled };
    });
    const last = out.progress[out.progress.length - 1];
    if (!last || last.text !== s.text) out.progress.push(s);
    if (s.state === 'done' || s.state === 'error') break;
    await page.waitForTimeout(100);
  }
  out.syncMs = Date.now() - started;
  await page.waitForFunction(() => document.getElementById('count-pending').textContent === '0', null, { timeout: 30_000 });
  out.final = await counts(page);
  out.alertsFinal = await page.$$eval('#alerts .banner', (bs) => bs.map((b) => b.dataset.level));
  await page.screenshot({ path: shot.replace(/\.png$/, '') + '-after.png', fullPage: true });
  out.errorsBeforeRefusal = out.errors.slice();

  // 4. Without the token the browser gets a 403 (with an empty body,
  // Chromium shows its own error page, and goto reports that as an error).
  const statusOf = async (u) => {
    let status = null;
    const seen = (r) => { if (r.url() === u) status = r.status(); };
    page.on('response', seen);
    try { await page.goto(u); } catch (_) { /* the error page */ }
    page.off('response', seen);
    return status;
  };
  const bare = new URL(url);
  bare.search = '';
  out.noTokenStatus = await statusOf(bare.href);
  const wrong = new URL(url);
  wrong.searchParams.set('token', 'f'.repeat(64));
  out.wrongTokenStatus = await statusOf(wrong.href);
  // 5. localhost:PORT is a name of the page too.
  const viaLocalhost = new URL(url);
  viaLocalhost.hostname = 'localhost';
  out.localhostStatus = await statusOf(viaLocalhost.href);
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify(out));
  console.error(e && e.stack ? e.stack : String(e));
  process.exitCode = 1;
} finally {
  if (ctx) await ctx.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(killer);
}
