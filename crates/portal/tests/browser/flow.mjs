// The portal in a real browser (Debian's headless Chromium via playwright-core):
// a customer logs in and requests an opt-out, an operator approves it in the
// console, the customer sees port 25 open. Screenshots go to $SCREENSHOTS.
// Fails on any Content-Security-Policy violation or page error.
//
// Env: PORTAL_URL, SCREENSHOTS, PASSWORD, CUSTOMER, OPERATOR, CHROMIUM (path).

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const base = process.env.PORTAL_URL;
const shots = process.env.SCREENSHOTS;
const password = process.env.PASSWORD;
const customer = process.env.CUSTOMER || 'alice';
const operator = process.env.OPERATOR || 'abe';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(shots, { recursive: true });

const problems = [];
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function browserFor(who) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `portal-chromium-${who}-`));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath, headless: true, args, viewport: { width: 1200, height: 900 },
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('console', (m) => {
    const t = m.text();
    if (m.type() === 'error' || /Content Security Policy|Refused to/i.test(t)) problems.push(`${who} console: ${t}`);
  });
  page.on('pageerror', (e) => problems.push(`${who} page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`${who} request failed: ${r.url()}`));
  page.on('request', (r) => {
    if (!r.url().startsWith(base)) problems.push(`${who} requested a foreign URL: ${r.url()}`);
  });
  return { ctx, page, dir };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, name), fullPage: true });
  console.log(`screenshot ${path.join(shots, name)}`);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

const c = await browserFor('customer');
const o = await browserFor('operator');
try {
  // Customer: log in, see the block explained.
  await c.page.goto(`${base}/login`);
  await shot(c.page, '01-customer-login.png');
  await c.page.fill('input[name=login]', customer);
  await c.page.fill('input[name=password]', password);
  await Promise.all([c.page.waitForURL(`${base}/`), c.page.click('button[type=submit]')]);
  await c.page.waitForSelector('#port25 [data-state=blocked]');
  const css = await c.page.evaluate(() => getComputedStyle(document.querySelector('header')).backgroundColor);
  check(css === 'rgb(29, 35, 48)', `stylesheet applied (header background ${css})`);
  await shot(c.page, '02-customer-home-blocked.png');

  // Customer: request the opt-out; the box must be ticked (browser validation).
  await c.page.goto(`${base}/optout`);
  await c.page.fill('#reason', 'I run a small mail server for my family.');
  await c.page.click('#request-optout');
  check(c.page.url() === `${base}/optout` && (await c.page.$('[data-status=pending]')) === null,
    'the form is not sent without accepting the AUP');
  await c.page.check('#accept_aup');
  await Promise.all([c.page.waitForURL(`${base}/optout`), c.page.click('#request-optout')]);
  await c.page.waitForSelector('[data-status=pending]');
  await shot(c.page, '03-customer-optout-pending.png');

  // Operator: log in to the console, see the dashboard, approve.
  await o.page.goto(`${base}/console/`);
  await o.page.waitForURL(`${base}/console/login`);
  await o.page.fill('input[name=name]', operator);
  await o.page.fill('input[name=password]', password);
  await Promise.all([o.page.waitForURL(`${base}/console/`), o.page.click('button[type=submit]')]);
  const charts = await o.page.$$('svg.chart');
  check(charts.length >= 4, `dashboard has its charts (${charts.length})`);
  await shot(o.page, '04-console-dashboard.png');
  await o.page.goto(`${base}/console/optouts`);
  const row = o.page.locator('tr', { has: o.page.locator(`button.approve[data-login="${customer}"]`) });
  await row.locator('input[name=reason]').fill('Checked: home mail server, reverse DNS set.');
  await shot(o.page, '05-console-optout-queue.png');
  await Promise.all([o.page.waitForURL(/\/console\/optouts\?msg=/), row.locator('button.approve').click()]);
  const notice = await o.page.textContent('#notice');
  check(notice.includes('approved'), `approval confirmed (${notice})`);
  await shot(o.page, '06-console-optout-approved.png');
  await o.page.goto(`${base}/console/subscribers/${customer}`);
  await o.page.waitForSelector('#port25 [data-state=opted-out]');
  await shot(o.page, '07-console-subscriber.png');

  // Customer: port 25 is open now.
  await c.page.goto(`${base}/`);
  await c.page.waitForSelector('#port25 [data-state=opted-out]');
  const text = await c.page.textContent('#port25');
  check(text.includes('open'), `customer sees port 25 open (${text})`);
  await shot(c.page, '08-customer-home-open.png');
  await c.page.goto(`${base}/sending`);
  await shot(c.page, '09-customer-sending-mail.png');

  // The customer's session does not open the console.
  await c.page.goto(`${base}/console/`);
  check(c.page.url() === `${base}/console/login`, `customer redirected away from the console (${c.page.url()})`);

  if (problems.length) throw new Error(`browser reported problems:\n${problems.join('\n')}`);
  console.log('browser flow passed');
} catch (e) {
  console.error(`browser flow failed: ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  try { await shot(c.page, 'failure-customer.png'); await shot(o.page, 'failure-operator.png'); } catch {}
  process.exitCode = 1;
} finally {
  await c.ctx.close();
  await o.ctx.close();
  for (const d of [c.dir, o.dir]) fs.rmSync(d, { recursive: true, force: true });
}
