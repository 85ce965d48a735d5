// Operations (#/ops): order counts, live stock, a live feed of events across topics, recent orders.

import { getJson } from './api.js';
import { feed, inventory } from './live.js';
import {
  badge, debounce, flash, h, idEl, keepFocus, money, reasonEl, replace, statusRank, timeEl,
} from './util.js';

const FEED_ROWS = 60;
const IN_PROGRESS = ['PENDING', 'STOCK_RESERVED', 'PAYMENT_AUTHORIZED'];

function summary(e) {
  const d = e.data && typeof e.data === 'object' ? e.data : {};
  switch (e.type) {
    case 'status':
      return [badge(d.status), d.reason ? [' ', reasonEl(d.reason)] : ''];
    case 'inventory': {
      const delta = typeof d.delta !== 'number' ? '' : d.delta > 0 ? `+${d.delta}` : d.delta < 0 ? `−${-d.delta}` : '±0';
      return [delta ? h('strong', { class: 'delta' }, delta) : null,
        `${delta ? ' · ' : ''}${d.available ?? '?'} available · ${d.reserved ?? '?'} reserved`,
        d.orderId ? h('span', { class: 'muted' }, ' · order ', idEl(d.orderId)) : ''];
    }
    case 'notification':
      return [d.subject ?? 'notification', d.channel ? ` (${d.channel}${d.status ? `, ${String(d.status).toLowerCase()}` : ''})` : ''];
    case 'alert':
      return `${String(d.alert ?? 'stock alert').replaceAll('_', ' ').toLowerCase()}: ${d.available ?? '?'} available (threshold ${d.threshold ?? '?'})`;
    default: {
      const text = typeof e.data === 'string' ? e.data : JSON.stringify(e.data);
      return text.length > 90 ? `${text.slice(0, 90)}…` : text;
    }
  }
}

export function mount(root) {
  document.title = 'Operations · ecomd';

  // --- counts -----------------------------------------------------------------------------------
  const counts = {
    confirmed: h('span', { class: 'stat-value', id: 'stat-confirmed' }, '—'),
    cancelled: h('span', { class: 'stat-value', id: 'stat-cancelled' }, '—'),
    progress: h('span', { class: 'stat-value', id: 'stat-in-progress' }, '—'),
    total: h('span', { class: 'stat-value', id: 'stat-total' }, '—'),
  };
  const statsError = h('p', { class: 'error-text small', hidden: true });
  const stat = (label, el, kind) => h('div', { class: 'stat', dataset: { kind } }, h('span', { class: 'stat-label' }, label), el);

  function applyStats(body) {
    const by = body?.orders && typeof body.orders === 'object' ? body.orders : {};
    const n = (k) => (typeof by[k] === 'number' ? by[k] : 0);
    const values = {
      confirmed: n('CONFIRMED'),
      cancelled: n('CANCELLED'),
      progress: IN_PROGRESS.reduce((sum, k) => sum + n(k), 0),
      total: Object.values(by).reduce((sum, v) => sum + (typeof v === 'number' ? v : 0), 0),
    };
    for (const [k, v] of Object.entries(values)) {
      const text = String(v);
      if (counts[k].textContent !== text) {
        counts[k].textContent = text;
        flash(counts[k]);
      }
    }
    statsError.hidden = true;
  }

  const loadStats = () => getJson('/api/stats').then((b) => alive && applyStats(b)).catch((err) => {
    if (!alive) return;
    statsError.textContent = `Counts unavailable: ${err.message}`;
    statsError.hidden = false;
  });

  // --- stock ------------------------------------------------------------------------------------
  const stockBody = h('tbody', { id: 'stock-rows' });
  const stockRows = new Map();  // sku → {available, reserved, sold, tr}

  function renderStock() {
    stockRows.clear();
    replace(stockBody, [...inventory.products.values()].map((p) => {
      const cells = {
        available: h('td', { class: 'num' }, p.available),
        reserved: h('td', { class: 'num' }, p.reserved),
        sold: h('td', { class: 'num' }, p.sold ?? '—'),
      };
      const tr = h('tr', { dataset: { sku: p.sku, level: p.available <= 0 ? 'out' : p.available <= 5 ? 'low' : 'ok' } },
        h('th', { scope: 'row' }, h('code', {}, p.sku)), h('td', {}, p.name),
        cells.available, cells.reserved, cells.sold);
      stockRows.set(p.sku, { ...cells, tr });
      return tr;
    }));
    if (!inventory.products.size) {
      replace(stockBody, h('tr', {}, h('td', { colspan: '5', class: 'muted' },
        inventory.error ? `Could not load stock: ${inventory.error.message}` : inventory.loaded ? 'No products.' : 'Loading…')));
    }
  }

  function updateStock(sku) {
    const row = stockRows.get(sku);
    const p = inventory.products.get(sku);
    if (!row || !p) return renderStock();
    for (const k of ['available', 'reserved', 'sold']) {
      const text = String(p[k] ?? '—');
      if (row[k].textContent !== text) {
        row[k].textContent = text;
        flash(row[k]);
      }
    }
    row.tr.dataset.level = p.available <= 0 ? 'out' : p.available <= 5 ? 'low' : 'ok';
  }

  // --- feed -------------------------------------------------------------------------------------
  const feedList = h('ol', { class: 'feed', id: 'feed', 'aria-label': 'Latest events, newest first' });
  const feedEmpty = h('p', { class: 'muted', id: 'feed-empty' }, 'Waiting for events… place an order in the shop.');

  function feedItem(e) {
    const d = e.data && typeof e.data === 'object' ? e.data : {};
    const key = e.key || '';
    const keyEl = d.orderId && key === d.orderId
      ? h('a', { href: `#/orders/${encodeURIComponent(key)}`, class: 'feed-key' }, idEl(key))
      : idEl(key, { class: 'id feed-key' });
    return h('li', { class: 'feed-item', dataset: { type: e.type } },
      h('span', { class: 'feed-time' }, timeEl(d.at ?? e.receivedAt, 'feed')),
      h('span', { class: 'chip', dataset: { type: e.type }, title: d.type ?? e.type }, e.type),
      keyEl,
      h('span', { class: 'feed-summary' }, summary(e)));
  }

  function renderFeed() {
    feedEmpty.hidden = feed.recent.length > 0;
    replace(feedList, feed.recent.slice(0, FEED_ROWS).map(feedItem));
  }

  // --- recent orders ----------------------------------------------------------------------------
  const ordersBody = h('tbody', { id: 'order-rows' });
  const orderRows = new Map();  // orderId → {status cell, reason cell, status}
  const ordersError = h('p', { class: 'error-text small', hidden: true });

  function renderOrders(orders) {
    orderRows.clear();
    if (!orders.length) {
      replace(ordersBody, h('tr', {}, h('td', { colspan: '6', class: 'muted' }, 'No orders yet.')));
      return;
    }
    replace(ordersBody, orders.map((o) => {
      const statusCell = h('td', {}, badge(o.status));
      const reasonCell = h('td', {}, reasonEl(o.reason));
      orderRows.set(o.orderId, { statusCell, reasonCell, status: o.status });
      return h('tr', { dataset: { order: o.orderId } },
        h('th', { scope: 'row' }, h('a', { href: `#/orders/${encodeURIComponent(o.orderId)}` },
          idEl(o.orderId))),
        h('td', {}, o.customerId),
        statusCell,
        reasonCell,
        h('td', { class: 'num' }, money(o.totalAmount, o.currency)),
        h('td', {}, o.createdAt ? timeEl(o.createdAt) : ''));
    }));
  }

  const loadOrders = () => getJson('/api/orders?limit=20').then((b) => {
    if (!alive) return;
    ordersError.hidden = true;
    keepFocus(ordersBody, 'order', () => renderOrders(Array.isArray(b?.orders) ? b.orders : []));
  }).catch((err) => {
    if (!alive) return;
    ordersError.textContent = `Could not load orders: ${err.message}`;
    ordersError.hidden = false;
  });

  const refresh = debounce(() => {
    loadStats();
    loadOrders();
  }, 400);

  function onStatus(d) {
    const row = orderRows.get(d.orderId);
    if (!row) return refresh();
    if (row.status === 'CONFIRMED' || row.status === 'CANCELLED' || statusRank(d.status) <= statusRank(row.status)) return;
    row.status = d.status;
    replace(row.statusCell, badge(d.status));
    replace(row.reasonCell, reasonEl(d.reason));
    flash(row.statusCell);
  }

  // --- layout -----------------------------------------------------------------------------------
  replace(root,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Operations'),
      h('p', { class: 'lead' }, 'Live view of every module: stock, the event flow across topics, and orders.')),
    h('section', { class: 'stats', 'aria-label': 'Order counts' },
      stat('Confirmed', counts.confirmed, 'confirmed'),
      stat('Cancelled', counts.cancelled, 'cancelled'),
      stat('In progress', counts.progress, 'progress'),
      stat('All orders', counts.total, 'total')),
    statsError,
    h('div', { class: 'ops-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'stock-heading' },
        h('h2', { id: 'stock-heading' }, 'Stock'),
        h('div', { class: 'table-wrap' },
          h('table', { class: 'table', id: 'stock-table' },
            h('thead', {}, h('tr', {},
              h('th', { scope: 'col' }, 'SKU'), h('th', { scope: 'col' }, 'Product'),
              h('th', { scope: 'col', class: 'num' }, 'Available'), h('th', { scope: 'col', class: 'num' }, 'Reserved'),
              h('th', { scope: 'col', class: 'num' }, 'Sold'))),
            stockBody))),
      h('section', { class: 'card', 'aria-labelledby': 'feed-heading' },
        h('h2', { id: 'feed-heading' }, 'Live events'),
        feedEmpty,
        feedList),
      h('section', { class: 'card wide', 'aria-labelledby': 'orders-heading' },
        h('h2', { id: 'orders-heading' }, 'Recent orders'),
        ordersError,
        h('div', { class: 'table-wrap' },
          h('table', { class: 'table', id: 'orders-table' },
            h('thead', {}, h('tr', {},
              h('th', { scope: 'col' }, 'Order'), h('th', { scope: 'col' }, 'Customer'),
              h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Reason'),
              h('th', { scope: 'col', class: 'num' }, 'Total'), h('th', { scope: 'col' }, 'Placed'))),
            ordersBody)))));

  let alive = true;
  renderStock();
  renderFeed();
  loadStats();
  loadOrders();
  const unsubscribers = [
    inventory.subscribe((sku) => (sku ? updateStock(sku) : renderStock())),
    feed.on((e) => {
      if (e.type !== 'snapshot') {
        feedEmpty.hidden = true;
        feedList.prepend(feedItem(feed.recent[0] ?? e));
        while (feedList.children.length > FEED_ROWS) feedList.lastElementChild.remove();
      }
      if (e.type === 'status' && e.data?.orderId) {
        onStatus(e.data);
        refresh();
      }
      // The stream starts with (or, after a long outage, resumes with) a summary snapshot:
      // {"orders":{"CONFIRMED":n,…},"recent":[…]}.
      if ((e.type === 'snapshot' || e.type === 'stats') && e.data?.orders) {
        applyStats(e.data);
        if (e.type === 'snapshot') refresh();
      }
    }),
    feed.onState((_s, recovered) => recovered && refresh()),
  ];
  return () => {
    alive = false;
    refresh.cancel();
    for (const off of unsubscribers) off();
  };
}
