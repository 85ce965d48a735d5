// Order page (#/orders/<id>): the order's status and timeline, live over
// GET /api/orders/{id}/events, its notifications, and a cancel button.

import { ApiError, getJson, postJson } from './api.js';
import { inventory, openStream } from './live.js';
import {
  STATUS_STEPS, badge, debounce, h, isTerminal, money, reasonLabel, reasonText, replace, shortId,
  statusLabel, statusRank, timeEl,
} from './util.js';

const HEADLINES = {
  PENDING: 'Order received — reserving stock…',
  STOCK_RESERVED: 'Stock reserved — authorizing the payment…',
  PAYMENT_AUTHORIZED: 'Payment authorized — confirming…',
  CONFIRMED: 'Order confirmed. Thank you!',
  CANCELLED: 'Order cancelled',
};

function notificationsOf(body) {
  if (Array.isArray(body)) return body;
  if (Array.isArray(body?.notifications)) return body.notifications;
  if (Array.isArray(body?.items)) return body.items;
  return [];
}

function notificationKey(n) {
  return n.id ?? n.notificationId ?? `${n.subject ?? ''}|${n.createdAt ?? n.at ?? ''}|${n.status ?? ''}`;
}

export function mount(root, { id }) {
  document.title = `Order ${shortId(id)} · ecomd`;
  const state = {
    status: null,
    reason: null,
    history: new Map(),  // status → {at, reason}
    order: null,
    notFound: false,
    notifications: new Map(),
    cancelRequested: false,
  };
  let alive = true;
  let pendingPolls = 0;

  // --- elements ---------------------------------------------------------------------------------
  const statusBadge = h('span', { class: 'status-badge', id: 'order-status', dataset: { status: 'UNKNOWN' } }, 'Loading…');
  const headline = h('p', { class: 'status-headline', id: 'order-headline' }, 'Loading the order…');
  const reason = h('p', { class: 'status-reason', id: 'order-reason', hidden: true });
  const statusCard = h('section', { class: 'status-card', dataset: { status: 'UNKNOWN' }, 'aria-labelledby': 'status-heading' },
    h('h2', { id: 'status-heading', class: 'visually-hidden' }, 'Status'),
    h('div', { class: 'status-live', 'aria-live': 'polite', 'aria-atomic': 'true' }, statusBadge, headline, reason));
  const cancelButton = h('button', { type: 'button', class: 'btn danger', id: 'cancel-order', hidden: true }, 'Cancel order');
  const cancelMessage = h('div', { class: 'cancel-message', id: 'cancel-message', role: 'status' });
  const cancelBox = h('div', { class: 'cancel-box' }, cancelButton, cancelMessage);
  statusCard.append(cancelBox);

  const live = h('p', { class: 'conn small', dataset: { state: 'connecting' } },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), h('span', { class: 'conn-text' }, 'Connecting…'));
  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  const details = h('div', { class: 'details', id: 'order-details' }, h('p', { class: 'muted' }, 'Loading…'));
  const notifList = h('ul', { class: 'notifications', id: 'notifications' });
  const notifEmpty = h('p', { class: 'muted', id: 'notifications-empty' }, 'No notifications yet.');

  replace(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Back to the shop')),
    h('div', { class: 'page-head' },
      h('h1', {}, 'Order ', h('code', { class: 'order-id' }, id)),
      live),
    statusCard,
    h('div', { class: 'order-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'timeline-heading' },
        h('h2', { id: 'timeline-heading' }, 'Timeline'), timeline),
      h('section', { class: 'card', 'aria-labelledby': 'details-heading' },
        h('h2', { id: 'details-heading' }, 'Details'), details),
      h('section', { class: 'card wide', 'aria-labelledby': 'notifications-heading' },
        h('h2', { id: 'notifications-heading' }, 'Notifications'), notifEmpty, notifList)));

  // --- state ------------------------------------------------------------------------------------
  function record(status, at, why) {
    if (!status || statusRank(status) < 0) return;
    const prev = state.history.get(status);
    if (!prev || (!prev.at && at)) state.history.set(status, { at: at ?? prev?.at ?? null, reason: why ?? prev?.reason ?? null });
  }

  // Statuses only move forward and terminal ones never move, whatever order the sources answer in.
  function applyStatus(status, why, at) {
    if (!status) return;
    record(status, at, why);
    if (isTerminal(state.status)) return;
    if (state.status === null || statusRank(status) > statusRank(state.status)) {
      state.status = status;
      state.reason = why ?? null;
    }
  }

  function applyHistory(list) {
    if (!Array.isArray(list)) return;
    for (const e of list) if (e && e.status) record(e.status, e.at, e.reason);
  }

  function addNotifications(list) {
    for (const n of list) if (n && typeof n === 'object') state.notifications.set(notificationKey(n), n);
    renderNotifications();
    // The stream announces a notification when it is created; its delivery (SENT, FAILED after
    // retries) is only in the list, so re-read the list while any is still pending.
    const pending = [...state.notifications.values()].some((n) => n.status === 'PENDING');
    if (pending && alive && pendingPolls < 60) {
      pendingPolls++;
      reloadNotifications();
    }
  }

  // --- rendering --------------------------------------------------------------------------------
  function renderStatus() {
    if (state.notFound) {
      statusCard.dataset.status = 'UNKNOWN';
      statusBadge.dataset.status = 'UNKNOWN';
      statusBadge.textContent = 'Not found';
      headline.textContent = 'There is no order with this id.';
      reason.hidden = true;
      cancelButton.hidden = true;
      return;
    }
    if (!state.status) return;
    const s = state.status;
    statusCard.dataset.status = s;
    statusBadge.dataset.status = s;
    statusBadge.textContent = statusLabel(s);
    headline.textContent = HEADLINES[s] ?? s;
    if (s === 'CANCELLED' && state.reason) {
      // Words for the shopper; the code stays in an attribute for support and tests.
      replace(reason, reasonText(state.reason));
      reason.dataset.reason = state.reason;
      reason.hidden = false;
    } else {
      reason.hidden = true;
    }
    cancelButton.hidden = isTerminal(s);
    if (isTerminal(s) && !cancelMessage.dataset.kind) {
      replace(cancelMessage, h('span', { class: 'muted' }, 'This order is final.'));
    }
    if (isTerminal(s) && cancelMessage.dataset.kind === 'pending') {
      cancelMessage.dataset.kind = '';
      replace(cancelMessage, h('span', { class: 'muted' }, 'This order is final.'));
    }
  }

  function renderTimeline() {
    const steps = state.status === 'CANCELLED'
      ? [...STATUS_STEPS.slice(0, 3).filter((s) => state.history.has(s)), 'CANCELLED']
      : STATUS_STEPS;
    replace(timeline, steps.map((s) => {
      const entry = state.history.get(s);
      const done = Boolean(entry) || statusRank(s) <= statusRank(state.status);
      const current = s === state.status;
      const why = entry?.reason ?? (s === 'CANCELLED' ? state.reason : null);
      return h('li', {
        class: 'step', dataset: { status: s, done: done ? 'yes' : 'no' },
        'aria-current': current ? 'step' : null,
      },
      h('span', { class: 'step-marker', 'aria-hidden': 'true' }),
      h('div', { class: 'step-body' },
        h('span', { class: 'step-label' }, statusLabel(s)),
        entry?.at ? timeEl(entry.at, 'precise') : h('span', { class: 'muted small' }, done ? '' : 'waiting'),
        why ? h('span', { class: 'step-reason', dataset: { reason: why } }, reasonLabel(why)) : null));
    }));
  }

  function renderDetails() {
    const o = state.order;
    if (!o) {
      if (state.notFound) replace(details, h('p', {}, 'The order does not exist. ', h('a', { href: '#/' }, 'Go to the shop'), '.'));
      return;
    }
    const items = Array.isArray(o.items) ? o.items : [];
    // The server prices the lines from the catalogue when it reserves the stock; until then (and
    // on an order cancelled before that) there are no prices and no total to show.
    const priced = typeof o.totalAmount === 'number';
    const unpriced = state.status === 'CANCELLED' || o.status === 'CANCELLED'
      ? 'Not charged: cancelled before it was priced'
      : 'Priced when stock is reserved';
    const total = priced
      ? h('strong', { id: 'order-total' }, money(o.totalAmount, o.currency))
      : h('span', { class: 'unpriced', id: 'order-total' }, unpriced);
    const count = items.reduce((n, l) => n + (Number(l.quantity) || 0), 0);
    replace(details,
      h('dl', { class: 'facts' },
        h('dt', {}, 'Customer'), h('dd', {}, o.customerId ?? '—'),
        h('dt', {}, 'Placed'), h('dd', { id: 'order-placed' }, o.createdAt ? timeEl(o.createdAt) : '—'),
        h('dt', {}, 'Total'), h('dd', {}, total)),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'table items', id: 'order-items' },
          h('caption', { class: 'visually-hidden' }, 'Items'),
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col' }, 'Item'), h('th', { scope: 'col', class: 'num' }, 'Qty'),
            h('th', { scope: 'col', class: 'num' }, 'Unit price'), h('th', { scope: 'col', class: 'num' }, 'Line total'))),
          h('tbody', {}, items.map((l) => {
            // The name the line was sold under; before pricing, the catalogue's.
            const name = l.name ?? inventory.products.get(l.sku)?.name;
            // Before pricing a line's unitAmount is only the client's quote, not what is charged.
            const hasPrice = priced && typeof l.unitAmount === 'number';
            return h('tr', { dataset: { sku: l.sku } },
              h('th', { scope: 'row' },
                name ? [h('span', { class: 'item-name' }, name), h('code', { class: 'item-sku muted small' }, l.sku)]
                  : h('code', {}, l.sku)),
              h('td', { class: 'num' }, l.quantity),
              h('td', { class: 'num' }, hasPrice ? money(l.unitAmount, o.currency) : '—'),
              h('td', { class: 'num' }, hasPrice ? money(l.unitAmount * l.quantity, o.currency) : '—'));
          })),
          h('tfoot', {}, h('tr', {},
            h('th', { scope: 'row', colspan: '3' }, `Total (${count} ${count === 1 ? 'item' : 'items'})`),
            h('td', { class: 'num' }, priced ? money(o.totalAmount, o.currency) : h('span', { class: 'unpriced' }, '—')))))));
  }

  function renderNotifications() {
    const list = [...state.notifications.values()].sort((a, b) =>
      String(b.createdAt ?? b.at ?? '').localeCompare(String(a.createdAt ?? a.at ?? '')));
    notifEmpty.hidden = list.length > 0;
    replace(notifList, list.map((n) => h('li', { class: 'notification', dataset: { status: n.status ?? '' } },
      h('div', { class: 'notification-head' },
        h('strong', { class: 'notification-subject' }, n.subject ?? '(no subject)'),
        n.createdAt || n.sentAt || n.at ? timeEl(n.sentAt ?? n.createdAt ?? n.at) : null),
      n.body ? h('p', { class: 'notification-body' }, n.body) : null,
      h('p', { class: 'muted small' },
        [n.channel && `via ${n.channel}`, n.status && n.status.toLowerCase(),
          n.attempts > 1 ? `${n.attempts} attempts` : null].filter(Boolean).join(' · ')))));
  }

  function render() {
    renderStatus();
    renderTimeline();
    renderDetails();
  }

  // --- data -------------------------------------------------------------------------------------
  const loadOrder = () => getJson(`/api/orders/${encodeURIComponent(id)}`)
    .then((o) => {
      if (!alive || !o) return;
      state.order = o;
      applyHistory(o.history);
      applyStatus(o.status, o.reason, o.updatedAt);
      render();
    })
    .catch((err) => {
      if (!alive) return;
      if (err instanceof ApiError && err.status === 404) {
        state.notFound = true;
        stream.close();
      } else if (!state.order) {  // a failed re-read keeps what is shown
        replace(details, h('p', { class: 'error-text', role: 'alert' }, `Could not load the order: ${err.message}`));
      }
      render();
    });
  // A status change may bring the prices (STOCK_RESERVED) or the outcome: re-read the order then.
  const reloadOrder = debounce(loadOrder, 300);
  loadOrder();

  const loadNotifications = () => getJson(`/api/notifications?orderId=${encodeURIComponent(id)}`)
    .then((body) => alive && addNotifications(notificationsOf(body)))
    .catch(() => {});  // the live stream still delivers them; a missing list is not worth an error
  const reloadNotifications = debounce(loadNotifications, 1000);
  loadNotifications();

  const stream = openStream(`/api/orders/${encodeURIComponent(id)}/events`, {
    onEvent: ({ type, data }) => {
      if (!data || typeof data !== 'object') return;
      if (type === 'snapshot') {
        applyHistory(data.history);
        applyStatus(data.status, data.reason, data.at ?? data.updatedAt);
        if (Array.isArray(data.notifications)) addNotifications(data.notifications);
        render();
      } else if (type === 'status') {
        if (data.orderId && data.orderId !== id) return;
        applyStatus(data.status, data.reason, data.at);
        render();
        if (!state.order || typeof state.order.totalAmount !== 'number' || isTerminal(data.status)) reloadOrder();
        reloadNotifications();
      } else if (type === 'notification') {
        if (data.orderId && data.orderId !== id) return;
        addNotifications([data]);
        // The event announces a new notification (usually PENDING); its delivery shows in the list.
        reloadNotifications();
      }
    },
    onState: (s) => {
      live.dataset.state = s;
      live.querySelector('.conn-text').textContent =
        { connecting: 'Connecting…', open: 'Live', reconnecting: 'Reconnecting…', closed: 'Not live' }[s] ?? s;
    },
  });

  // --- cancel -----------------------------------------------------------------------------------
  cancelButton.addEventListener('click', async () => {
    cancelButton.disabled = true;
    replace(cancelMessage, 'Requesting cancellation…');
    try {
      await postJson(`/api/orders/${encodeURIComponent(id)}/cancel`);
      state.cancelRequested = true;
      cancelMessage.dataset.kind = 'pending';
      replace(cancelMessage, h('span', {}, 'Cancellation requested. Stock is released and any payment refunded; the status updates here when done.'));
    } catch (err) {
      cancelMessage.dataset.kind = 'error';
      const conflict = err instanceof ApiError && err.status === 409;
      replace(cancelMessage, h('div', { class: 'notice error', role: 'alert' },
        h('strong', {}, conflict ? 'This order can no longer be cancelled. ' : 'Could not cancel the order. '),
        h('span', { class: 'error-message' }, err.message)));
      cancelButton.disabled = false;
    }
  });

  const unsubscribe = inventory.subscribe(() => alive && renderDetails());
  render();
  return () => {
    alive = false;
    unsubscribe();
    reloadOrder.cancel();
    reloadNotifications.cancel();
    stream.close();
  };
}
