// tests/bench/web_paint.sh's browser half: signs in, then loads each view three times in a
// fresh page and prints "name|milliseconds" lines (the median): first contentful paint and
// the time until the view's data is on screen (body[data-ready] after every count or row).
'use strict';
const path = require('path');
const { chromium } = require(path.join(process.env.NODE_MODULES, 'playwright-core'));
const BASE = process.env.FERRY_WEB;
const median = (a) => a.slice().sort((x, y) => x - y)[Math.floor(a.length / 2)];
(async () => {
  const ctx = await chromium.launchPersistentContext(process.env.WEB_PROFILE, {
    executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 860 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  ctx.setDefaultTimeout(60000);
  const page = ctx.pages()[0] || await ctx.newPage();
  await page.goto(BASE + '/');
  await page.fill('#login input[name=token]', process.env.FERRY_TOKEN);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('body[data-ready=overview]');
  for (const [view, hash, ready] of [['overview', '#/', 'overview'], ['queue', '#/queue', 'queue'],
    ['queue filtered', '#/queue?status=PENDING&priority=1', 'queue']]) {
    const fcp = [], data = [], slow = [];
    for (let i = 0; i < 3; i++) {
      const p = await ctx.newPage();
      await p.goto(BASE + '/' + hash);
      await p.waitForSelector('body[data-ready=' + ready + ']');
      if (view === 'overview')
        await p.waitForFunction(() => ![...document.querySelectorAll('[data-count]')].some((e) => e.textContent === '…'));
      const t = await p.evaluate(() => {
        const f = performance.getEntriesByName('first-contentful-paint')[0];
        const api = performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/v1/') && !e.name.includes('/events'))
          .map((e) => [e.name.replace(location.origin, ''), e.responseEnd - e.startTime]).sort((a, b) => b[1] - a[1]);
        return { fcp: f ? f.startTime : -1, now: performance.now(), slow: api[0] };
      });
      fcp.push(t.fcp);
      data.push(t.now);
      slow.push(t.slow);
      await p.close();
    }
    console.log(view + ': first contentful paint (ms)|' + Math.round(median(fcp)));
    console.log(view + ': data on screen (ms)|' + Math.round(median(data)));
    const s = slow.filter(Boolean).sort((a, b) => a[1] - b[1])[Math.floor(slow.length / 2)];
    if (s) console.log(view + ': slowest call (ms), ' + s[0].replace('/api/v1', '').slice(0, 26) + '|' + Math.round(s[1]));
  }
  await ctx.close();
})().catch((e) => { console.error(e.message); process.exit(1); });
