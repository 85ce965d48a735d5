// Live updates over Server-Sent Events, plus the shared stock store fed by them.
//
// EventSource reconnects by itself after a dropped connection and sends the id of the last event it
// saw (Last-Event-ID), so the server replays what was missed. When the server refuses the stream
// (an error status, e.g. while restarting), EventSource gives up; we then reconnect with backoff.

import { getJson } from './api.js';

/** Event names the server may send; EventSource has no wildcard, so each gets a listener. */
export const EVENT_NAMES = ['snapshot', 'status', 'inventory', 'notification', 'alert', 'order', 'stats', 'message'];

/**
 * Opens an SSE stream.
 * @param {string} url
 * @param {{onEvent: (e: {type: string, id: string, data: any}) => void,
 *          onState?: (state: 'connecting'|'open'|'reconnecting'|'closed') => void}} handlers
 * @returns {{close: () => void}}
 */
export function openStream(url, { onEvent, onState = () => {} }) {
  let source = null;
  let closed = false;
  let timer = null;
  let backoff = 1000;

  const connect = () => {
    source = new EventSource(url);
    onState('connecting');
    source.onopen = () => {
      backoff = 1000;
      onState('open');
    };
    source.onerror = () => {
      if (closed) return;
      onState('reconnecting');
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(timer);
        timer = setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 15000);
      }
    };
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (e) => {
        let data = e.data;
        try {
          data = JSON.parse(e.data);
        } catch {
          // not JSON: keep the text
        }
        onEvent({ type: name, id: e.lastEventId, data });
      });
    }
  };
  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      source?.close();
      onState('closed');
    },
  };
}

/** The key an event is about, as on its topic: the sku for stock events, else the order id. */
export function eventKey(type, data) {
  if (!data || typeof data !== 'object') return '';
  if (type === 'inventory' || type === 'alert') return data.sku ?? '';
  return data.orderId ?? data.sku ?? data.subject ?? data.key ?? '';
}

/**
 * The dashboard stream (GET /api/events: every order status change and inventory update), shared by
 * all views for the life of the page, with the latest events kept for the operations feed.
 */
class Feed {
  constructor() {
    this.listeners = new Set();
    this.stateListeners = new Set();
    this.recent = [];  // newest first
    this.limit = 200;
    this.state = 'connecting';
    this.stream = null;
    this.wasDown = false;
  }

  start() {
    if (this.stream) return;
    this.stream = openStream('/api/events', {
      onEvent: (e) => this.dispatch(e),
      onState: (s) => {
        if (s === 'reconnecting') this.wasDown = true;
        const recovered = s === 'open' && this.wasDown;
        if (s === 'open') this.wasDown = false;
        this.state = s;
        for (const fn of this.stateListeners) fn(s, recovered);
      },
    });
  }

  dispatch(e) {
    if (e.type !== 'snapshot') {
      const data = e.data && typeof e.data === 'object' ? e.data : {};
      this.recent.unshift({ ...e, key: eventKey(e.type, data), receivedAt: new Date() });
      if (this.recent.length > this.limit) this.recent.length = this.limit;
    }
    for (const fn of this.listeners) fn(e);
  }

  /** Calls fn(event) for every event; returns the unsubscribe function. */
  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Calls fn(state, recoveredAfterOutage) on connection changes; returns the unsubscribe function. */
  onState(fn) {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }
}

export const feed = new Feed();

/**
 * Products and their stock: loaded from GET /api/inventory, kept current by `inventory` events.
 * Listeners get the sku that changed (null after a full load).
 */
class Inventory {
  constructor() {
    this.products = new Map();
    this.listeners = new Set();
    this.loaded = false;
    this.error = null;
    this.loading = null;
    let snapshots = 0;
    feed.on((e) => {
      if (e.type === 'inventory') this.apply(e.data);
      // The server sends a snapshot instead of a replay when it cannot resume where the page left
      // off (the first one is just the start of the stream): stock may have moved meanwhile.
      if (e.type === 'snapshot' && snapshots++ > 0) this.load();
    });
  }

  load() {
    this.loading ??= getJson('/api/inventory')
      .then((body) => {
        this.error = null;
        this.replaceAll(Array.isArray(body?.items) ? body.items : []);
      })
      .catch((err) => {
        this.error = err;
        this.notify(null);
      })
      .finally(() => {
        this.loading = null;
      });
    return this.loading;
  }

  replaceAll(items) {
    this.products = new Map(items.filter((p) => p && p.sku).map((p) => [p.sku, { ...p }]));
    this.loaded = true;
    this.notify(null);
  }

  apply(d) {
    if (!d || typeof d !== 'object' || !d.sku) return;
    const p = this.products.get(d.sku);
    if (d.deleted) {
      // Taken off the catalogue by an admin: it can no longer be ordered, so it leaves the view.
      if (p) {
        this.products.delete(d.sku);
        this.notify(null);
      }
      return;
    }
    if (!p) {
      // A product created since the list was loaded: fetch the whole list for its name and price.
      this.load();
      return;
    }
    const before = { available: p.available, reserved: p.reserved };
    if (typeof d.available === 'number') p.available = d.available;
    if (typeof d.reserved === 'number') p.reserved = d.reserved;
    if (typeof d.sold === 'number') {
      p.sold = d.sold;
    } else if (d.orderId && typeof p.sold === 'number') {
      // Order changes keep available + reserved + sold constant (a commit moves reserved to sold).
      p.sold += before.available + before.reserved - p.available - p.reserved;
    }
    let renamed = false;
    for (const k of ['name', 'unitAmount', 'currency']) {
      if (d[k] !== undefined && d[k] !== p[k]) {
        p[k] = d[k];
        renamed = true;
      }
    }
    // A stock change updates one card in place; a new name or price redraws the list and the cart.
    this.notify(renamed ? null : d.sku);
  }

  notify(sku) {
    for (const fn of this.listeners) fn(sku);
  }

  /** Calls fn(changedSku | null); returns the unsubscribe function. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

export const inventory = new Inventory();
