// The shopper's cart (sku → quantity), shared by the shop view and the header's cart badge. It
// outlives the views, so leaving the shop keeps it.

const lines = new Map();
const listeners = new Set();

function changed() {
  for (const fn of listeners) fn();
}

export const cart = {
  get size() {
    return lines.size;
  },
  /** Number of items (the sum of the quantities). */
  get count() {
    let n = 0;
    for (const q of lines.values()) n += q;
    return n;
  },
  get(sku) {
    return lines.get(sku);
  },
  has(sku) {
    return lines.has(sku);
  },
  keys() {
    return lines.keys();
  },
  [Symbol.iterator]() {
    return lines[Symbol.iterator]();
  },
  set(sku, quantity) {
    lines.set(sku, quantity);
    changed();
  },
  delete(sku) {
    lines.delete(sku);
    changed();
  },
  clear() {
    lines.clear();
    changed();
  },
  /** Calls `fn()` after every change; returns the unsubscribe function. */
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};
