// Small DOM and formatting helpers shared by the views. Text always goes in as text nodes, never as
// HTML, so nothing the API returns can inject markup.

/**
 * Creates an element: h('button', {class: 'x', onclick: fn, 'aria-label': '…'}, 'text', child…).
 * Attributes: `class`, `dataset` (object), `on<event>` (listener), booleans (true → present),
 * null/undefined/false are skipped. Children: strings, numbers, nodes, arrays, null (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'value') el.value = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const moneyFormats = new Map();

/** Formats an integer amount of minor units (cents) in `currency`, e.g. 2499 USD → "$24.99". */
export function money(minor, currency = 'USD') {
  if (typeof minor !== 'number' || !Number.isFinite(minor)) return '—';
  let fmt = moneyFormats.get(currency);
  if (fmt === undefined) {
    try {
      fmt = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    } catch {
      fmt = null;  // not an ISO 4217 code: show the raw amount
    }
    moneyFormats.set(currency, fmt);
  }
  if (!fmt) return `${minor} ${currency}`;
  const digits = fmt.resolvedOptions().maximumFractionDigits;
  return fmt.format(minor / 10 ** digits);
}

const dateFormats = new Map();

function dateFormat(style) {
  let fmt = dateFormats.get(style);
  if (fmt === undefined) {
    const time = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZoneName: 'short' };
    const options = {
      // "Mon, Dec 7, 2026, 02:52 UTC": the day, so "yesterday" is never a guess, and the zone.
      date: { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', ...time },
      // The same with seconds, for steps that follow each other within a minute.
      precise: { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', second: '2-digit', ...time },
      // "Mon 02:52:54 UTC": a live feed of the last minutes.
      feed: { weekday: 'short', second: '2-digit', ...time },
      // The tooltip: the zone spelled out ("Coordinated Universal Time", "Central European Summer Time").
      long: { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric', hour: '2-digit', minute: '2-digit',
        second: '2-digit', hourCycle: 'h23', timeZoneName: 'long' },
    }[style];
    fmt = new Intl.DateTimeFormat(undefined, options);
    dateFormats.set(style, fmt);
  }
  return fmt;
}

/**
 * A date and time in the browser's time zone, with the weekday and the zone's name:
 * "Mon, Dec 7, 2026, 02:52 UTC" (en-US) or "Mon 7 Dec 2026, 02:52 UTC" (en-GB).
 * `style`: 'date' (default), 'precise' (with seconds), 'feed' (weekday and clock), 'long' (zone in words).
 */
export function dateTime(at, style = 'date') {
  const d = at instanceof Date ? at : new Date(at);
  if (Number.isNaN(d.getTime())) return '';
  return dateFormat(style).format(d);
}

/** A <time> element showing dateTime(at, style), with the full timestamp for machines and tooltips. */
export function timeEl(at, style = 'date') {
  const d = at instanceof Date ? at : new Date(at);
  if (Number.isNaN(d.getTime())) return h('span', {}, '');
  return h('time', { datetime: d.toISOString(), title: dateTime(d, 'long') }, dateTime(d, style));
}

/**
 * Short form of a long id for tables: its last 8 characters. Order ids are UUIDv7, whose first
 * characters are a timestamp (the first 8 are the same for a minute); the tail is random.
 */
export function shortId(id) {
  const s = String(id ?? '');
  return s.length > 12 ? `…${s.slice(-8)}` : s;
}

/**
 * An id as <code>…tail</code>, the whole id in its tooltip and in what a copy of it puts on the
 * clipboard (see copyFullIds).
 */
export function idEl(id, attrs = {}) {
  const s = String(id ?? '');
  return h('code', { class: 'id', title: s, dataset: { fullId: s }, ...attrs }, shortId(s));
}

/** Copying text inside an idEl copies the whole id, not the "…tail" shown. Installed once. */
export function copyFullIds(doc = document) {
  doc.addEventListener('copy', (e) => {
    const sel = doc.getSelection();
    if (!sel || sel.rangeCount === 0) return;
    const node = sel.getRangeAt(0).commonAncestorContainer;
    const el = (node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement)?.closest('[data-full-id]');
    if (!el || !e.clipboardData) return;
    e.clipboardData.setData('text/plain', el.dataset.fullId);
    e.preventDefault();
  });
}

/** An order status, in the order it moves. CONFIRMED and CANCELLED are terminal. */
export const STATUS_STEPS = ['PENDING', 'STOCK_RESERVED', 'PAYMENT_AUTHORIZED', 'CONFIRMED'];

const STATUS_RANK = { PENDING: 0, STOCK_RESERVED: 1, PAYMENT_AUTHORIZED: 2, CONFIRMED: 3, CANCELLED: 3 };

/** Position of a status in the flow (-1 when unknown); terminal statuses share the top rank. */
export function statusRank(status) {
  return STATUS_RANK[status] ?? -1;
}

export function isTerminal(status) {
  return status === 'CONFIRMED' || status === 'CANCELLED';
}

const STATUS_LABELS = {
  PENDING: 'Pending',
  STOCK_RESERVED: 'Stock reserved',
  PAYMENT_AUTHORIZED: 'Payment authorized',
  CONFIRMED: 'Confirmed',
  CANCELLED: 'Cancelled',
};

export function statusLabel(status) {
  return STATUS_LABELS[status] ?? String(status ?? 'Unknown');
}

// Every reason an order is cancelled with (include/ecom/contract/order_status.hpp, docs/api.md),
// and those of a failed stock reservation or a declined payment that operators see: a short label
// for tables and a sentence for the shopper.
const REASONS = {
  OUT_OF_STOCK: ['Out of stock', 'Some items are out of stock, so nothing was charged.'],
  UNKNOWN_SKU: ['Not in the catalogue', 'An item is no longer in the catalogue, so nothing was charged.'],
  PRICE_CHANGED: ['Price changed', 'A price changed since the item was added to the cart; nothing was charged. Please review the cart and order again.'],
  CURRENCY_MISMATCH: ['Wrong currency', 'The order’s currency is not the currency the items are sold in; nothing was charged.'],
  AMOUNT_LIMIT_EXCEEDED: ['Amount too large', 'The order’s total is larger than can be charged.'],
  PAYMENT_DECLINED: ['Payment declined', 'The payment was declined, so the order was cancelled and the items released.'],
  CARD_DECLINED: ['Card declined', 'The card was declined.'],
  INSUFFICIENT_FUNDS: ['Insufficient funds', 'The card has insufficient funds.'],
  MISSING_TOKEN: ['No payment method', 'No payment method was given.'],
  CUSTOMER_CANCELLED: ['Cancelled by the customer', 'The order was cancelled at the customer’s request.'],
  TIMEOUT: ['Timed out', 'A step did not finish in time (the payment gateway never answered), so the order was cancelled.'],
};

// An unknown code in words: "SOME_NEW_CODE" → "Some new code".
function codeWords(code) {
  const words = String(code).replaceAll(/[_-]+/g, ' ').trim().toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A sentence explaining a cancellation reason code (unknown codes in words, as a sentence). */
export function reasonText(reason) {
  if (!reason) return '';
  return REASONS[reason]?.[1] ?? `Cancelled: ${codeWords(reason).toLowerCase()}.`;
}

/** A short label for a reason code, for tables and feeds: "Payment declined". */
export function reasonLabel(reason) {
  if (!reason) return '';
  return REASONS[reason]?.[0] ?? codeWords(reason);
}

/** A reason as words, with the code for operators in a data attribute (never shown as text). */
export function reasonEl(reason, { sentence = false, ...attrs } = {}) {
  if (!reason) return '';
  return h('span', { class: 'reason', title: sentence ? null : reasonText(reason), dataset: { reason }, ...attrs },
    sentence ? reasonText(reason) : reasonLabel(reason));
}

/** A status badge: <span class="badge" data-status="CONFIRMED">Confirmed</span>. */
export function badge(status) {
  return h('span', { class: 'badge', dataset: { status: status ?? 'UNKNOWN' } }, statusLabel(status));
}

/** Runs `fn` at most once per `ms`, after the last call (trailing debounce). */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** A random UUID; crypto.randomUUID needs a secure context, so fall back to getRandomValues. */
export function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Runs `render` (which rebuilds the children of `container`) and, if the keyboard focus was inside,
 * puts it back on the same control of the rebuilt row (rows are found by `data-<keyAttr>`).
 */
export function keepFocus(container, keyAttr, render) {
  const active = document.activeElement;
  const row = active && container.contains(active) ? active.closest(`[data-${keyAttr}]`) : null;
  const key = row?.dataset[keyAttr];
  const label = active?.getAttribute('aria-label') ?? active?.textContent;
  render();
  if (key === undefined) return;
  const again = [...container.querySelectorAll(`[data-${keyAttr}]`)].find((el) => el.dataset[keyAttr] === key);
  const controls = again ? [...again.querySelectorAll('a, button, input')] : [];
  const target = controls.find((c) => (c.getAttribute('aria-label') ?? c.textContent) === label) ?? controls[0];
  target?.focus();
}

/** Briefly highlights an element (a changed stock figure); respects prefers-reduced-motion in CSS. */
export function flash(el) {
  if (!el) return;
  el.classList.remove('flash');
  void el.offsetWidth;  // restart the animation
  el.classList.add('flash');
}
