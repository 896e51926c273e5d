// Drives the dashboard in headless Chromium (Debian's, through playwright-core) against a
// live `ferry web`: tests/e2e/web_browser.sh prepares the store and starts the servers, then
// runs this. Prints one line per check, "PASS name" or "FAIL name<TAB>details", which the
// shell script turns into TAP; every step saves a screenshot under $WEB_ARTIFACTS.
//
// Environment: FERRY_WEB (base URL), FERRY_TOKEN (an operator token of team Ops),
// WEB_ARTIFACTS (screenshot folder), WEB_PROFILE (a fresh --user-data-dir), WEB_DATA (a JSON
// file of the task ids the shell script made), NODE_MODULES (where playwright-core is).
'use strict';
const path = require('path');
const fs = require('fs');
const { chromium } = require(path.join(process.env.NODE_MODULES, 'playwright-core'));

const BASE = process.env.FERRY_WEB;
const TOKEN = process.env.FERRY_TOKEN;
const ART = process.env.WEB_ARTIFACTS;
const DATA = JSON.parse(fs.readFileSync(process.env.WEB_DATA, 'utf8'));
let failed = 0;
const pass = (name) => console.log('PASS ' + name);
const fail = (name, details) => {
  failed++;
  console.log('FAIL ' + name + '\t' + String(details).replace(/\s+/g, ' ').slice(0, 600));
};
const check = (name, ok, details) => (ok ? pass(name) : fail(name, details));
// Full-page shots on the desktop; the first screen only on the phone (what a person sees).
async function shot(page, name, full = true) {
  await page.screenshot({ path: path.join(ART, name + '.png'), fullPage: full });
}
let mainPage = null; // where a failed step's screenshot is taken
async function step(name, fn) {
  try { await fn(); } catch (e) {
    fail(name, e.stack || e);
    if (mainPage) await shot(mainPage, 'FAILED-' + name.replace(/\W+/g, '-')).catch(() => {});
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// open(page, '#/queue?…'): goes there and waits until that view has its data.
async function open(p, hash) {
  await p.goto(BASE + '/' + hash);
  await p.waitForFunction((h) => document.body.dataset.view === h, hash);
}

(async () => {
  const ctx = await chromium.launchPersistentContext(process.env.WEB_PROFILE, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
  });
  ctx.setDefaultTimeout(10000);
  // Anything a payload could make run: a dialog, a console message from a payload, a CSP
  // violation (our own files must need none of what the policy forbids).
  const dialogs = [], problems = [];
  const watch = (page) => {
    page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
    page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
    // Refusals the test provokes (401, 403, 400) log "Failed to load resource"; anything else counts.
    page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push('console: ' + m.text()); });
  };
  const page = ctx.pages()[0] || await ctx.newPage();
  mainPage = page;
  watch(page);
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI);
    });
  });

  // --- load: the login form, then the overview with its counts ---------------------------------
  await step('load and sign in', async () => {
    const t0 = Date.now();
    await page.goto(BASE + '/');
    await page.waitForSelector('#login input[name=token]');
    const fcp = await page.evaluate(() => {
      const e = performance.getEntriesByName('first-contentful-paint')[0];
      return e ? Math.round(e.startTime) : -1;
    });
    console.log('# first contentful paint of the login page: ' + fcp + ' ms (load ' + (Date.now() - t0) + ' ms)');
    await shot(page, '01-login');
    // A wrong token is refused with a message, and no cookie session starts.
    await page.fill('#login input[name=token]', 'not-a-token');
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#login .error');
    pass('a wrong token is refused on the login form');
    await page.fill('#login input[name=token]', TOKEN);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('body[data-ready=overview]');
    await page.waitForFunction(() => !document.querySelector('[data-count="PENDING"]').textContent.includes('…'));
    const cookies = await ctx.cookies(BASE);
    const session = cookies.find((c) => c.httpOnly);
    check('login sets an HttpOnly SameSite=Strict cookie', session && session.sameSite === 'Strict', JSON.stringify(cookies));
    check('the token is not kept in the page', !(await page.evaluate((t) =>
      JSON.stringify(Object.assign({}, sessionStorage, localStorage)).includes(t) || document.cookie.includes(t), TOKEN)), 'token found in storage');
    // The counts are the server's (/api/v1/summary), shown as they are.
    const sum = await page.evaluate(async () => (await (await fetch('/api/v1/summary')).json()).data);
    const shown = await page.$$eval('[data-count]', (els) => els.map((e) => [e.dataset.count, e.textContent.replace(/,/g, '')]));
    check('overview shows the count of every status', shown.length === 7 && shown.every(([s, n]) => String(sum.byStatus[s] || 0) === n),
      JSON.stringify(shown) + ' vs ' + JSON.stringify(sum.byStatus));
    const prio = await page.$$eval('.prio-row .num', (els) => els.map((e) => e.textContent.replace(/,/g, '')));
    check('overview shows pending items by priority', prio.join() === [1, 2, 3, 4, 5].map((p) => String(sum.pendingByPriority[p] || 0)).join() &&
      Number(sum.byStatus.PENDING) >= 63, JSON.stringify(prio) + ' vs ' + JSON.stringify(sum));
    await shot(page, '02-overview');
  });

  // --- filter: status and priority ---------------------------------------------------------------
  await step('filter', async () => {
    await open(page, '#/queue');
    await page.selectOption('select[name=status]', 'PENDING');
    await page.waitForFunction(() => location.hash.includes('status=PENDING') && document.body.dataset.ready === 'queue');
    await page.selectOption('select[name=priority]', '1');
    await page.waitForFunction(() => location.hash.includes('priority=1'));
    await page.waitForFunction(() => document.querySelectorAll('tbody tr[data-task]').length > 0 &&
      [...document.querySelectorAll('tbody [data-role=status]')].every((b) => b.textContent === 'PENDING'));
    const rows = await page.$$eval('tbody tr[data-task]', (trs) => trs.map((tr) => [tr.querySelector('[data-role=status]').textContent, tr.querySelector('.badge.p-1') ? 1 : 0]));
    check('status and priority filters show only PENDING priority-1 items', rows.length === DATA.pendingP1 && rows.every((r) => r[0] === 'PENDING' && r[1] === 1),
      JSON.stringify(rows) + ' expected ' + DATA.pendingP1);
    await shot(page, '03-queue-filtered');
    // A page is bounded: the unfiltered queue shows 50 and pages on with the cursor.
    await open(page, '#/queue');
    const first = await page.$$eval('tbody tr[data-task]', (trs) => trs.map((tr) => tr.dataset.task));
    await page.click('[data-role=older]');
    await page.waitForFunction(() => location.hash.includes('to='));
    await page.waitForFunction((f) => document.querySelector('tbody tr[data-task]') && document.querySelector('tbody tr[data-task]').dataset.task !== f, first[0]);
    const second = await page.$$eval('tbody tr[data-task]', (trs) => trs.map((tr) => tr.dataset.task));
    check('the queue pages 50 at a time, no item twice', first.length === 50 && second.length > 0 && second.every((id) => !first.includes(id)),
      first.length + ' then ' + second.length);
  });

  // --- trace: open an item, see its timeline -----------------------------------------------------
  await step('trace', async () => {
    await open(page, '#/queue?status=COMPLETED');
    await page.click('tbody tr[data-task] a');
    await page.waitForSelector('.timeline li');
    const acts = await page.$$eval('.timeline li .act', (els) => els.map((e) => e.textContent));
    check('an item\'s trace shows its timeline', acts.length >= 2 && acts.includes('CREATED'), JSON.stringify(acts));
    const by = await page.$$eval('.timeline li.ev-CREATED .by', (els) => els.map((e) => e.textContent));
    check('the timeline says who created the item', by.length === 1 && /^by \S+ \(cli\)$/.test(by[0]), JSON.stringify(by));
    await shot(page, '04-trace');
  });

  // --- create with confirmation, then watch live progress ----------------------------------------
  await step('create and live progress', async () => {
    await open(page, '#/new');
    await page.waitForSelector('form.form');
    await page.selectOption('select[name=machine]', 'box1');
    await page.fill('input[name=function]', 'fx_sleep');
    await page.fill('textarea[name=params]', '{"seconds": 6}');
    await page.click('form.form button[type=submit]');
    await page.waitForSelector('dialog#confirm[open]');
    await shot(page, '05-create-confirm');
    await page.click('#confirm-ok');
    await page.waitForSelector('body[data-ready=queue] .grid2[data-task]');
    const seen = [];
    const end = Date.now() + 9000;
    while (Date.now() < end) {
      const v = await page.$eval('[data-task] [data-role=progress]', (e) => e.dataset.percent || '');
      if (v !== '' && seen[seen.length - 1] !== Number(v)) seen.push(Number(v));
      if (seen.length >= 3) break;
      await sleep(150);
    }
    await shot(page, '06-live-progress');
    check('live progress moves without a reload (server-sent events)', seen.length >= 2 && seen.every((v, i) => i === 0 || v > seen[i - 1]), 'values seen: ' + JSON.stringify(seen));
    const status = await page.waitForFunction(() => ['COMPLETED'].includes(document.querySelector('[data-task] [data-role=status]').textContent), null, { timeout: 10000 })
      .then(() => 'COMPLETED', () => 'not yet');
    check('the item\'s status turns COMPLETED live', status === 'COMPLETED', status);
    // Its many PROGRESS events fold into their first, their last and one line that opens the rest.
    // The page is compared with the item's own timeline from the API, read once it has ended,
    // so the check does not depend on how many events the run happened to record. The view
    // refreshes itself a while after the status changes; its timeline is final once it shows the
    // COMPLETED event, and no later refresh can fold the run again under the click.
    await page.waitForSelector('.timeline li.ev-COMPLETED', { timeout: 10000 });
    await page.waitForSelector('[data-role=more-events]');
    const taskId = await page.$eval('[data-task]', (e) => e.dataset.task);
    const recorded = await page.evaluate(async (id) => (await (await fetch('/api/v1/queue/' + id)).json())
      .data.timeline.filter((e) => e.action === 'PROGRESS').length, taskId);
    const shown = await page.$$eval('.timeline li.ev-PROGRESS', (l) => l.length);
    const hiddenText = await page.$eval('[data-role=more-events]', (e) => e.textContent);
    await shot(page, '06b-trace-after-run');
    await page.click('[data-role=more-events]');
    const opened = await page.waitForFunction((n) => !document.querySelector('[data-role=more-events]')
      && document.querySelectorAll('.timeline li.ev-PROGRESS').length === n, recorded, { timeout: 5000 })
      .then(() => 'opened', () => 'not opened');
    const after = await page.$$eval('.timeline li.ev-PROGRESS', (l) => l.length);
    check('a long run of progress events is folded and opens on a click',
      recorded > 4 && shown === 2 && hiddenText === (recorded - 2) + ' more progress events' && opened === 'opened' && after === recorded,
      recorded + ' recorded, ' + shown + ' shown folded ("' + hiddenText + '"), then ' + after + ' shown (' + opened + ')');
  });

  // --- cancel with confirmation -------------------------------------------------------------------
  await step('cancel', async () => {
    await open(page, '#/queue/' + DATA.cancelId);
    await page.waitForSelector('button[data-action=cancel]');
    await page.click('button[data-action=cancel]');
    await page.waitForSelector('dialog#confirm[open]');
    await shot(page, '07-cancel-confirm');
    await page.click('#confirm-ok');
    await page.waitForFunction(() => /CANCELL/.test(document.querySelector('[data-task] [data-role=status]').textContent));
    const st = await page.evaluate(async (id) => (await (await fetch('/api/v1/queue/' + id)).json()).data.queue_item.status, DATA.cancelId);
    check('cancel from the dashboard cancels the item', st === 'CANCELLED' || st === 'CANCELLING', st);
    await shot(page, '08-cancelled');
    // Keep it: the dialog's other button changes nothing.
    await open(page, '#/queue/' + DATA.keepId);
    await page.click('button[data-action=cancel]');
    await page.waitForSelector('dialog#confirm[open]');
    await page.click('dialog#confirm button[value=cancel]');
    await sleep(300);
    const st2 = await page.evaluate(async (id) => (await (await fetch('/api/v1/queue/' + id)).json()).data.queue_item.status, DATA.keepId);
    check('declining the confirmation leaves the item alone', st2 === 'PENDING', st2);
    // A state-changing request without the CSRF token is refused (cookie alone is not enough).
    const code = await page.evaluate(async (id) => (await fetch('/api/v1/queue/' + id + '/cancel', { method: 'POST' })).status, DATA.keepId);
    check('a POST with the cookie but no CSRF token is refused', code === 403, 'status ' + code);
  });

  // --- other views -------------------------------------------------------------------------------
  for (const [view, sel, name] of [['failures', 'tbody tr', '09-failures'], ['schedules', 'tbody tr', '10-schedules'],
    ['machines', 'tbody tr', '11-machines'], ['hosts', 'tbody tr', '12-hosts']]) {
    await step(view, async () => {
      await open(page, '#/' + view);
      await page.waitForSelector(sel);
      const text = await page.textContent('main');
      const want = { failures: DATA.failReason, schedules: 'nightly', machines: 'box1', hosts: 'alive' }[view];
      check('the ' + view + ' view shows ' + want, text.includes(want), text.slice(0, 300));
      if (view === 'schedules') check('schedules show their next run', /in \d+[smhd]/.test(text), text.slice(0, 300));
      if (view === 'machines') check('machines show groups and storages, never a storage secret',
        text.includes('box1, far1') && text.includes('backups') && !(await page.content()).includes('planted-s3cr3t'), text.slice(0, 400));
      await shot(page, name);
    });
  }

  // --- XSS: payloads from vaults, errors and messages stay text ------------------------------------
  await step('xss', async () => {
    // Every view that shows the payloads (the queue's rows show neither vault nor error: there
    // only no element may appear), each checked once its data is on screen.
    const pages = ['#/', '#/failures', '#/queue', ...DATA.xssIds.map((id) => '#/queue/' + id)];
    const seen = {};
    for (const h of pages) {
      await open(page, h);
      await sleep(200);
      seen[h] = await page.evaluate(() => ({
        injected: document.querySelectorAll('main img, main script, main iframe, main svg, main object, [onerror], [onload]').length,
        text: document.querySelector('main').textContent.includes('<img src=x onerror='),
      }));
    }
    const flag = await page.evaluate(() => window.__xss || null);
    check('no payload ran (no window flag, no dialog)', flag === null && dialogs.length === 0, JSON.stringify({ flag, dialogs }));
    check('payloads are shown as text on every view, no element made from them',
      Object.entries(seen).every(([h, r]) => r.injected === 0 && (r.text || h === '#/queue')), JSON.stringify(seen));
    await shot(page, '13-xss-trace');
    // The address is input too: a task id that is markup ends as an error message, as text.
    await page.goto(BASE + '/#/queue/' + encodeURIComponent('<img src=x onerror=window.__xss=3>'));
    await page.waitForSelector('main .error');
    const r2 = await page.evaluate(() => ({ flag: window.__xss || null, injected: document.querySelectorAll('main img, [onerror]').length }));
    check('a task id of markup in the address stays text', r2.flag === null && r2.injected === 0, JSON.stringify(r2));
    await open(page, '#/failures');
    await shot(page, '14-xss-failures');
    check('still nothing ran after every view', (await page.evaluate(() => window.__xss || null)) === null && dialogs.length === 0, JSON.stringify(dialogs));
  });

  // --- retry a failed item, disable and enable a schedule (each behind a confirmation) ------------
  await step('retry and schedules', async () => {
    await open(page, '#/failures');
    await page.click('tr[data-task="' + DATA.xssIds[0] + '"] button[data-action=retry]');
    await page.waitForSelector('dialog#confirm[open]');
    await page.click('#confirm-ok');
    // (an earlier step's toast may still be up: wait for this action's own)
    const said = await (await page.waitForSelector('.toast:has-text("Retr")')).textContent();
    const kids = await page.evaluate(async (id) => (await (await fetch('/api/v1/queue?max-records=20')).json()).data
      .filter((r) => r.parentTaskId === id && r.linkKind === 'retry').length, DATA.xssIds[0]);
    check('retry from the dashboard queues a linked item', kids === 1 && said.startsWith('Retried as'),
      kids + ' retries of ' + DATA.xssIds[0] + '; the page said: ' + said);
    await open(page, '#/schedules');
    for (const [button, state] of [['Disable', 'disabled'], ['Enable', 'enabled']]) {
      await page.click('tbody tr button:has-text("' + button + '")');
      await page.waitForSelector('dialog#confirm[open]');
      await page.click('#confirm-ok');
      await page.waitForFunction((st) => [...document.querySelectorAll('tbody .badge')].some((b) => b.textContent === st), state);
      const en = await page.evaluate(async () => (await (await fetch('/api/v1/schedules')).json()).data[0].enabled);
      check('schedule ' + button.toLowerCase() + 'd from the dashboard', en === (state === 'enabled'), 'enabled=' + en);
      if (state === 'disabled') await shot(page, '15-schedule-disabled');
    }
  });

  // --- narrow (phone) screen -----------------------------------------------------------------------
  await step('narrow', async () => {
    const phone = await ctx.newPage();
    watch(phone);
    await phone.setViewportSize({ width: 390, height: 844 });
    for (const [h, name] of [['#/', '16-phone-overview'], ['#/queue', '17-phone-queue'], ['#/queue/' + DATA.xssIds[0], '18-phone-trace']]) {
      await open(phone, h);
      const m = await phone.evaluate(() => ({ sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth,
        thead: document.querySelector('thead') ? getComputedStyle(document.querySelector('thead')).display : 'none' }));
      check('narrow screen: ' + h + ' fits 390 px without sideways scrolling', m.sw <= m.cw + 1 && m.thead === 'none', JSON.stringify(m));
      await shot(phone, name, false);
    }
    await phone.close();
  });

  // --- sign out ------------------------------------------------------------------------------------
  await step('sign out', async () => {
    await open(page, '#/');
    await page.click('#logout');
    await page.waitForSelector('#login');
    const code = await page.evaluate(async () => (await fetch('/api/v1/queue?max-records=1')).status);
    check('sign out ends the session', code === 401, 'status ' + code);
  });

  // --- a viewer: reads everything, is offered no change ------------------------------------------
  await step('viewer', async () => {
    await page.fill('#login input[name=token]', process.env.FERRY_VIEWER_TOKEN);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('body[data-ready=overview]');
    await page.waitForFunction(() => document.getElementById('who').textContent.includes('viewer'));
    await open(page, '#/queue');
    const r = await page.evaluate(() => ({ buttons: document.querySelectorAll('main button[data-action]').length,
      newItem: !document.getElementById('new-item').hidden, who: document.getElementById('who').textContent }));
    check('a viewer reads the queue and is offered no cancel, retry or create', r.buttons === 0 && !r.newItem && r.who.includes('viewer'), JSON.stringify(r));
    await shot(page, '19-viewer-queue');
  });

  const csp = await page.evaluate(() => window.__csp || []);
  check('the dashboard needs nothing the Content-Security-Policy forbids', csp.length === 0, JSON.stringify(csp));
  check('no script error or console error in any view', problems.length === 0, JSON.stringify(problems));
  await ctx.close();
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.log('FAIL browser run\t' + (e.stack || e).toString().replace(/\s+/g, ' ')); process.exit(1); });
