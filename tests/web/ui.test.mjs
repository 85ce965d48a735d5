// Browser test of the ecomd web UI in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core). Run by scripts/browser-test.sh, which starts ecomd and sets:
//   ECOMD_URL   base URL of a running `ecomd --role=all` with the seed of browser-test.sh
//   OUT_DIR     where screenshots (and failure screenshots) are written
// Prints one line per test and a closing `browser: N passed, M failed`; exits 1 on any failure.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BASE = (process.env.ECOMD_URL ?? '').replace(/\/$/, '');
const OUT = process.env.OUT_DIR ?? '';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ADMIN_TOKEN = process.env.ECOMD_ADMIN_TOKEN ?? 'browser-admin-token';  // browser-test.sh's
if (!BASE || !OUT) {
  console.error('ui.test.mjs: set ECOMD_URL and OUT_DIR (scripts/browser-test.sh does this)');
  process.exit(2);
}
fs.mkdirSync(OUT, { recursive: true });

// Generous: a loaded 2-core machine runs this next to other suites.
const STEP = 20_000;      // an element to appear
const FLOW = 90_000;      // an order to reach its final status (saga round trips)

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function shot(page, name) {
  await page.evaluate(() => {
    window.scrollTo(0, 0);  // the sticky header belongs at the top
    document.activeElement?.blur?.();
  });
  await page.screenshot({ path: path.join(OUT, name), fullPage: true });
}

// --- helpers -------------------------------------------------------------------------------------

async function openShop(page) {
  await page.getByRole('link', { name: 'Shop', exact: true }).click();
  await page.locator('#products .product').first().waitFor({ timeout: STEP });
}

async function addToCart(page, name, times = 1) {
  for (let i = 0; i < times; i++) await page.getByRole('button', { name: `Add ${name} to cart` }).click();
}

async function placeOrder(page, { customer, token }) {
  await page.getByLabel('Customer id').fill(customer);
  await page.locator(`#token-${token}`).check();
  await page.locator('#place-order').click();
  await page.waitForURL(/#\/orders\/[^/]+$/, { timeout: STEP });
  return decodeURIComponent(page.url().split('#/orders/')[1]);
}

async function waitForStatus(page, status) {
  const badge = page.locator('#order-status');
  try {
    await page.locator(`#order-status[data-status="${status}"]`).waitFor({ timeout: FLOW });
  } catch {
    throw new Error(`order page never showed ${status}; it shows "${await badge.textContent()}"`);
  }
}

// The order's notifications arrive over the same stream; the final one names the outcome, and the
// list shows each as delivered once the log sink has sent it.
async function waitForNotifications(page, word) {
  try {
    await page.locator('#notifications .notification-subject', { hasText: word }).first().waitFor({ timeout: FLOW });
    await page.waitForFunction(() => {
      const items = [...document.querySelectorAll('#notifications .notification')];
      return items.length > 0 && items.every((n) => n.dataset.status === 'SENT');
    }, null, { timeout: FLOW });
  } catch {
    const shown = await page.locator('#notifications').textContent();
    throw new Error(`the order page did not show the sent "${word}" notification; it shows: ${shown.slice(0, 300)}`);
  }
}

// A date as the UI shows it: a weekday first and the time zone last (the browser runs in UTC).
const DATED = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\b.*\b\d{2}:\d{2}(:\d{2})? UTC$/;

async function assertDated(page, selector, what) {
  const texts = await page.locator(selector).allTextContents();
  assert(texts.length > 0, `no ${what} (${selector}) on the page`);
  for (const t of texts) assert(DATED.test(t), `${what} reads "${t}", not a date with its weekday and zone`);
}

// Sentences the UI must show for a reason code (and never the code itself).
const SENTENCES = {
  PAYMENT_DECLINED: 'The payment was declined, so the order was cancelled and the items released.',
  CUSTOMER_CANCELLED: 'The order was cancelled at the customer’s request.',
  PRICE_CHANGED: 'A price changed since the item was added to the cart; nothing was charged. Please review the cart and order again.',
};

async function assertReason(page, code) {
  const reason = page.locator('#order-reason');
  const text = await reason.textContent();
  assert(text === SENTENCES[code], `reason shown: "${text}", expected the sentence for ${code}`);
  assert(await reason.getAttribute('data-reason') === code, `reason element carries ${await reason.getAttribute('data-reason')}`);
  const status = await page.locator('.status-card').textContent();
  assert(!status.includes(code), `the status card shows the code ${code}: "${status}"`);
  const step = await page.locator('#timeline .step[data-status="CANCELLED"] .step-reason').textContent();
  assert(!step.includes(code) && step.length > 3, `the timeline shows "${step}" for ${code}`);
}

// --- tests ---------------------------------------------------------------------------------------

test('shop lists products and updates stock live; assets are embedded', async ({ page }) => {
  await page.goto(`${BASE}/`);
  await page.locator('#products .product').first().waitFor({ timeout: STEP });
  const cards = await page.locator('#products .product').count();
  assert(cards === 4, `expected the 4 seeded products, saw ${cards}`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: STEP });

  // Another client buys 2 keyboards: the shop shows the new stock without a reload.
  const card = page.locator('.product[data-sku="KB-1"] .stock');
  assert((await card.textContent()) === '40 in stock', `keyboard stock was "${await card.textContent()}"`);
  const res = await page.request.post(`${BASE}/api/orders`, {
    data: { customerId: 'c-other', currency: 'USD', items: [{ sku: 'KB-1', quantity: 2, unitAmount: 8999 }], paymentToken: 'tok_visa' },
    headers: { 'Idempotency-Key': `browser-${Date.now()}` },
  });
  assert(res.status() === 202, `POST /api/orders answered ${res.status()}`);
  await page.locator('.product[data-sku="KB-1"] .stock', { hasText: '38 in stock' }).waitFor({ timeout: FLOW });

  // Everything the page needs comes from the binary, with the right types.
  for (const [url, type] of [['/assets/app.js', 'text/javascript'], ['/assets/app.css', 'text/css'],
    ['/api/openapi.yaml', 'yaml'], ['/', 'text/html'], ['/assets/favicon.svg', 'image/svg+xml']]) {
    const r = await page.request.get(`${BASE}${url}`);
    assert(r.status() === 200, `${url} answered ${r.status()}`);
    assert((r.headers()['content-type'] ?? '').includes(type), `${url} has content type ${r.headers()['content-type']}`);
  }
  const spec = await (await page.request.get(`${BASE}/api/openapi.yaml`)).text();
  assert(/^openapi: 3\./m.test(spec), '/api/openapi.yaml is not an OpenAPI 3 document');
});

test('an API validation error is shown next to the field at fault', async ({ page }) => {
  await openShop(page);
  await addToCart(page, 'Wireless Mouse');
  await page.getByLabel('Customer id').fill('not valid');  // spaces are rejected by the order API
  await page.locator('#place-order').click();
  const error = page.locator('#customerId-error');
  await error.waitFor({ state: 'visible', timeout: STEP });
  const text = await error.textContent();
  assert(/customerId/.test(text) && /VALIDATION_FAILED/.test(text), `error text was "${text}"`);
  assert(await page.getByLabel('Customer id').getAttribute('aria-invalid') === 'true', 'field not marked aria-invalid');
  assert(await page.evaluate(() => document.activeElement?.id) === 'customerId', 'focus did not move to the field');
  assert(!page.url().includes('#/orders/'), 'navigated away despite the error');
});

test('an order placed through the form reaches CONFIRMED live', async ({ page }) => {
  await openShop(page);
  // Keyboard only: focus the button and press Enter.
  await page.getByRole('button', { name: 'Add Mechanical Keyboard to cart' }).focus();
  await page.keyboard.press('Enter');
  await addToCart(page, 'Wireless Mouse');  // already 1 in the cart from the previous test → 2
  await page.getByLabel('Customer id').fill('c-42');
  await page.locator('#token-tok_visa').check();
  await page.locator('#cart-lines .cart-line').nth(1).waitFor({ timeout: STEP });
  // Change a quantity with the keyboard: the total follows and Tab moves on to the line's button.
  const qty = page.getByLabel('Quantity of Wireless Mouse');
  await qty.fill('3');
  await page.keyboard.press('Tab');
  assert(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')) === 'Remove Wireless Mouse from cart',
    'focus was lost after changing a quantity');
  assert((await page.locator('#cart-total').textContent()) === '$164.96', `total is ${await page.locator('#cart-total').textContent()}`);
  await qty.fill('2');
  await page.keyboard.press('Tab');
  assert((await page.locator('#cart-total').textContent()) === '$139.97', `total is ${await page.locator('#cart-total').textContent()}`);
  // The header's badge counts items (1 keyboard + 2 mice), not lines.
  const badge = page.locator('#cart-link .cart-count');
  assert(await badge.isVisible() && (await badge.textContent()) === '3', `cart badge shows "${await badge.textContent()}"`);
  assert(await page.locator('#cart-link').getAttribute('aria-label') === 'Cart, 3 items',
    `cart link is labelled "${await page.locator('#cart-link').getAttribute('aria-label')}"`);
  await shot(page, 'shop.png');

  await page.evaluate(() => { window.__sameDocument = true; });
  const id = await placeOrder(page, { customer: 'c-42', token: 'tok_visa' });
  await waitForStatus(page, 'CONFIRMED');
  assert(await page.evaluate(() => window.__sameDocument === true), 'the page reloaded');
  const steps = await page.locator('#timeline .step[data-done="yes"]').count();
  assert(steps === 4, `timeline shows ${steps} of 4 steps done`);
  assert(await page.locator('#cancel-order').isHidden(), 'cancel button still offered on a confirmed order');
  assert(await page.locator('#cart-link .cart-count').isHidden(), 'the cart badge still counts after the order was placed');
  // Each line: the product's name, the quantity, the unit price and the line total; then the total.
  await page.locator('#order-total', { hasText: '$139.97' }).waitFor({ timeout: STEP });
  const lines = await page.locator('#order-items tbody tr').evaluateAll((rows) => rows.map((r) =>
    [...r.children].map((c) => c.querySelector('.item-name')?.textContent ?? c.textContent.trim())));
  const expected = [['Mechanical Keyboard', '1', '$89.99', '$89.99'], ['Wireless Mouse', '2', '$24.99', '$49.98']];
  for (const line of expected) {
    assert(lines.some((l) => JSON.stringify(l) === JSON.stringify(line)), `order lines ${JSON.stringify(lines)} lack ${JSON.stringify(line)}`);
  }
  const foot = await page.locator('#order-items tfoot').textContent();
  assert(foot.includes('3 items') && foot.includes('$139.97'), `order table footer reads "${foot}"`);
  await assertDated(page, '#order-placed time', 'the date placed');
  await assertDated(page, '#timeline time', 'a timeline time');
  await waitForNotifications(page, 'confirmed');
  await assertDated(page, '#notifications time', 'a notification time');
  await shot(page, 'order-confirmed.png');
  console.log(`    order ${id} CONFIRMED`);
});

test('an order paid with tok_decline ends CANCELLED with its reason', async ({ page }) => {
  await openShop(page);
  await addToCart(page, 'Desk Lamp');
  await page.evaluate(() => { window.__sameDocument = true; });
  const id = await placeOrder(page, { customer: 'c-42', token: 'tok_decline' });
  await waitForStatus(page, 'CANCELLED');
  assert(await page.evaluate(() => window.__sameDocument === true), 'the page reloaded');
  await assertReason(page, 'PAYMENT_DECLINED');
  // Declined after pricing: the lamp's line and the total were priced.
  await page.locator('#order-total', { hasText: '$29.99' }).waitFor({ timeout: STEP });
  await waitForNotifications(page, 'cancelled');
  await shot(page, 'order-cancelled.png');
  console.log(`    order ${id} CANCELLED (PAYMENT_DECLINED)`);
});

test('a waiting order can be cancelled from its page', async ({ page }) => {
  await openShop(page);
  await addToCart(page, 'Desk Lamp');
  await placeOrder(page, { customer: 'c-7', token: 'tok_timeout' });  // the gateway never answers
  await page.locator('#order-status[data-status="STOCK_RESERVED"]').waitFor({ timeout: FLOW });
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/cancel') && r.request().method() === 'POST', { timeout: STEP }),
    page.locator('#cancel-order').click(),
  ]);
  assert(answer.status() === 202, `POST …/cancel answered ${answer.status()}`);
  await waitForStatus(page, 'CANCELLED');
  await assertReason(page, 'CUSTOMER_CANCELLED');
});

test('the operations page shows counts, stock, the event feed and recent orders', async ({ page }) => {
  await page.getByRole('link', { name: 'Operations' }).click();
  await page.locator('#stock-rows tr[data-sku]').first().waitFor({ timeout: STEP });
  assert(await page.locator('#stock-rows tr[data-sku]').count() === 4, 'stock table does not list the 4 products');
  const n = async (id) => Number(await page.locator(id).textContent());
  await page.waitForFunction(() => Number(document.querySelector('#stat-confirmed')?.textContent) >= 2 &&
    Number(document.querySelector('#stat-cancelled')?.textContent) >= 2, null, { timeout: STEP });
  assert(await n('#stat-confirmed') === 2, `confirmed count ${await n('#stat-confirmed')}`);
  assert(await n('#stat-cancelled') === 2, `cancelled count ${await n('#stat-cancelled')}`);
  const rows = await page.locator('#order-rows tr[data-order]').count();
  assert(rows === 4, `recent orders lists ${rows} orders, expected 4`);
  const feedTypes = await page.locator('#feed .feed-item').evaluateAll((els) => els.map((e) => e.dataset.type));
  assert(feedTypes.includes('status') && feedTypes.includes('inventory'), `feed has ${JSON.stringify(feedTypes)}`);
  // The stock table follows live changes too: a new order moves the lamp's stock.
  const lamp = page.locator('#stock-rows tr[data-sku="LAMP-1"] td').nth(1);
  const before = Number(await lamp.textContent());
  const res = await page.request.post(`${BASE}/api/orders`, {
    data: { customerId: 'c-ops', currency: 'USD', items: [{ sku: 'LAMP-1', quantity: 1, unitAmount: 2999 }], paymentToken: 'tok_visa' },
  });
  assert(res.status() === 202, `POST /api/orders answered ${res.status()}`);
  await page.waitForFunction((b) => Number(document.querySelector('#stock-rows tr[data-sku="LAMP-1"] td:nth-of-type(2)')?.textContent) === b - 1,
    before, { timeout: FLOW });
  await page.waitForFunction(() => Number(document.querySelector('#stat-confirmed')?.textContent) >= 3, null, { timeout: FLOW });

  // Reasons in words, dates with a weekday and a zone.
  const declined = page.locator('#order-rows [data-reason="PAYMENT_DECLINED"]');
  assert((await declined.textContent()) === 'Payment declined', `ops reason reads "${await declined.textContent()}"`);
  assert(!(await page.locator('#orders-table').textContent()).includes('_'), 'the orders table shows a reason code');
  await assertDated(page, '#order-rows time', 'an order date in ops');
  await assertDated(page, '#feed .feed-time time', 'a feed time');

  // Two orders made in the same second: UUIDv7 ids that share their first characters, shown
  // by their (random) tails, which differ; the whole id is in the tooltip and on a copy.
  const ids = [];
  for (const customer of ['c-twin-1', 'c-twin-2']) {
    const r = await page.request.post(`${BASE}/api/orders`, {
      data: { customerId: customer, currency: 'USD', items: [{ sku: 'MOUSE-1', quantity: 1 }], paymentToken: 'tok_visa' },
    });
    assert(r.status() === 202, `POST /api/orders answered ${r.status()}`);
    ids.push((await r.json()).orderId);
  }
  console.log(`    twin ids ${ids.join(' ')} (prefixes ${ids[0].slice(0, 8) === ids[1].slice(0, 8) ? 'collide' : 'differ'})`);
  const shown = [];
  for (const id of ids) {
    const code = page.locator(`#order-rows tr[data-order="${id}"] th code`);
    await code.waitFor({ timeout: FLOW });
    shown.push(await code.textContent());
    assert(await code.getAttribute('title') === id, `the tooltip of ${id} is "${await code.getAttribute('title')}"`);
    assert(shown.at(-1).endsWith(id.slice(-8)), `order ${id} is shown as "${shown.at(-1)}"`);
  }
  assert(shown[0] !== shown[1], `two orders look the same in ops: "${shown[0]}"`);
  const copied = await page.evaluate((id) => {
    const code = document.querySelector(`#order-rows tr[data-order="${id}"] th code`);
    getSelection().selectAllChildren(code);
    const e = new ClipboardEvent('copy', { clipboardData: new DataTransfer(), bubbles: true, cancelable: true });
    code.dispatchEvent(e);
    getSelection().removeAllRanges();
    return e.clipboardData.getData('text/plain');
  }, ids[0]);
  assert(copied === ids[0], `copying the shown id put "${copied}" on the clipboard`);
  await page.waitForTimeout(1500);  // let the row highlight fade for a clean screenshot
  await shot(page, 'ops.png');
});

test('pages fit a phone screen', async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await openShop(page);
  await addToCart(page, 'Wireless Mouse');
  for (const hash of ['#/', '#/ops']) {
    await page.goto(`${BASE}/${hash}`);
    await page.locator('main h1').waitFor({ timeout: STEP });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 0, `${hash} is ${overflow}px wider than the phone screen`);
  }
  await page.goto(`${BASE}/#/`);
  await page.locator('#products .product').first().waitFor({ timeout: STEP });
  await page.evaluate(() => window.scrollTo(0, 0));
  // The cart and its form follow the whole catalogue; the checkout bar is on the first screen.
  const onScreen = (sel) => page.evaluate((s) => {
    const r = document.querySelector(s)?.getBoundingClientRect();
    return Boolean(r && r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight);
  }, sel);
  assert(!(await onScreen('#place-order')), 'the form is on the first screen: nothing to test');
  await page.locator('#checkout-bar').waitFor({ state: 'visible', timeout: STEP });
  assert(await onScreen('#go-to-checkout'), 'the checkout button is not on the first screen');
  assert((await page.locator('#checkout-bar-summary').textContent()) === '1 item · $24.99',
    `checkout bar reads "${await page.locator('#checkout-bar-summary').textContent()}"`);
  assert(await onScreen('#cart-link .cart-count') && (await page.locator('#cart-count').textContent()) === '1',
    'the cart badge is not on the phone screen');
  await shot(page, 'shop-phone.png');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(OUT, 'shop-phone-screen.png') });  // the first screen as a phone shows it
  await page.locator('#go-to-checkout').click();
  await page.waitForFunction(() => document.activeElement?.id === 'cart-heading', null, { timeout: STEP });
  assert(await onScreen('#cart-heading'), 'the checkout button did not bring the cart on screen');
  await page.locator('#checkout-bar').waitFor({ state: 'hidden', timeout: STEP });
  // From another page, the header's cart link leads to the cart.
  await page.goto(`${BASE}/#/ops`);
  await page.locator('main h1', { hasText: 'Operations' }).waitFor({ timeout: STEP });
  await page.locator('#cart-link').click();
  await page.waitForFunction(() => document.activeElement?.id === 'cart-heading', null, { timeout: STEP });
  assert(await onScreen('#cart-heading'), 'the cart link did not show the cart');
  await page.getByRole('button', { name: 'Remove Wireless Mouse from cart' }).click();
  assert(await page.locator('#cart-count').isHidden(), 'the cart badge still counts an emptied cart');
});

test('an order cancelled before pricing says so, in words', async ({ page }) => {
  await page.setViewportSize({ width: 1280, height: 900 });
  // A shop that showed an old price: the server refuses to charge it (PRICE_CHANGED).
  const r = await page.request.post(`${BASE}/api/orders`, {
    data: { customerId: 'c-stale', currency: 'USD', items: [{ sku: 'KB-1', quantity: 1, unitAmount: 7999 }], paymentToken: 'tok_visa' },
  });
  assert(r.status() === 202, `POST /api/orders answered ${r.status()}`);
  const id = (await r.json()).orderId;
  await page.goto(`${BASE}/#/orders/${id}`);
  await waitForStatus(page, 'CANCELLED');
  await assertReason(page, 'PRICE_CHANGED');
  await page.locator('#order-total', { hasText: 'Not charged' }).waitFor({ timeout: STEP });
  const name = await page.locator('#order-items tbody .item-name').textContent();
  assert(name === 'Mechanical Keyboard', `an unpriced line shows "${name}" (the catalogue's name expected)`);
  const cells = await page.locator('#order-items tbody tr td').allTextContents();
  assert(JSON.stringify(cells) === '["1","—","—"]', `an unpriced line shows ${JSON.stringify(cells)}, not the quoted $79.99`);
  assert(await page.title() === `Order …${id.slice(-8)} · ecomd`, `the tab is titled "${await page.title()}"`);
  await shot(page, 'order-price-changed.png');
});

test('an admin adds, reprices and deletes a product: the shop follows live', async ({ page }) => {
  await openShop(page);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: STEP });
  const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };
  const created = await page.request.post(`${BASE}/api/inventory`, {
    data: { sku: 'MUG-1', name: 'Enamel Mug', unitAmount: 1299, currency: 'USD', available: 12 },
    headers: admin,
  });
  assert(created.status() === 201, `POST /api/inventory answered ${created.status()}`);
  const card = page.locator('.product[data-sku="MUG-1"]');
  await card.locator('.price', { hasText: '12.99' }).waitFor({ timeout: STEP });

  const repriced = await page.request.put(`${BASE}/api/inventory/MUG-1`, { data: { unitAmount: 1499 }, headers: admin });
  assert(repriced.status() === 200, `PUT /api/inventory/MUG-1 answered ${repriced.status()}`);
  await card.locator('.price', { hasText: '14.99' }).waitFor({ timeout: STEP });

  const deleted = await page.request.delete(`${BASE}/api/inventory/MUG-1`, { headers: admin });
  assert(deleted.status() === 204, `DELETE /api/inventory/MUG-1 answered ${deleted.status()}`);
  await card.waitFor({ state: 'detached', timeout: STEP });
  const cards = await page.locator('#products .product').count();
  assert(cards === 4, `expected the 4 seeded products after the delete, saw ${cards}`);
});

// --- runner --------------------------------------------------------------------------------------

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ecomd-chromium-'));
let context;
let passed = 0;
let failed = 0;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    locale: 'en-US',
    timezoneId: 'UTC',
  });
} catch (e) {
  console.error(`browser: cannot start ${CHROMIUM}: ${e.message}`);
  console.log(`browser: 0 passed, ${tests.length} failed`);
  process.exit(1);
}

const page = context.pages()[0] ?? await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => {
  if (m.type() === 'error' && !/Failed to load resource|EventSource|net::ERR/.test(m.text())) pageErrors.push(m.text());
});
await page.goto(`${BASE}/`);

for (const [i, t] of tests.entries()) {
  const started = Date.now();
  pageErrors.length = 0;
  try {
    await t.fn({ page });
    assert(pageErrors.length === 0, `errors in the page: ${pageErrors.join(' | ')}`);
    passed++;
    console.log(`  ok   ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    const file = `failed-${i + 1}.png`;
    await shot(page, file).catch(() => {});
    console.log(`  FAIL ${t.name}\n       ${String(e.message ?? e).split('\n')[0]}\n       page: ${page.url()}  screenshot: ${path.join(OUT, file)}`);
  }
}

await context.close().catch(() => {});
fs.rmSync(userDataDir, { recursive: true, force: true });
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
