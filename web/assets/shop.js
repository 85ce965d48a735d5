// Shop: products with live stock, a cart, and the order form (POST /api/orders).

import { ApiError, postJson } from './api.js';
import { cart } from './cart.js';
import { inventory } from './live.js';
import { h, keepFocus, money, replace, uuid, flash } from './util.js';

const LOW_STOCK = 5;

const TOKENS = [
  { value: 'tok_visa', label: 'Visa — approved', hint: 'The payment is authorized and the order confirmed.' },
  { value: 'tok_decline', label: 'Card declined', hint: 'The payment is declined: the stock is released and the order cancelled.' },
  { value: 'tok_insufficient_funds', label: 'Insufficient funds', hint: 'Declined for lack of funds: the order is cancelled.' },
  { value: 'tok_timeout', label: 'Gateway timeout', hint: 'The gateway never answers: the order is cancelled at the payment deadline.' },
];

// The last submission outlives the view (like the cart), so leaving the page keeps it.
let lastAttempt = null;  // {body, key}: a retry of the same order reuses its Idempotency-Key

function stored(key, fallback) {
  try {
    return localStorage.getItem(key) ?? fallback;
  } catch {
    return fallback;
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // private mode: not remembered, no harm
  }
}

function stockLevel(available) {
  if (available <= 0) return 'out';
  if (available <= LOW_STOCK) return 'low';
  return 'ok';
}

function stockText(available) {
  if (available <= 0) return 'Sold out';
  if (available <= LOW_STOCK) return `Only ${available} left`;
  return `${available} in stock`;
}

export function mount(root) {
  document.title = 'Shop · ecomd';
  const cards = new Map();  // sku → {li, stock, inCart, add}

  // --- products ---------------------------------------------------------------------------------
  const productList = h('ul', { class: 'products', id: 'products' });
  const productStatus = h('p', { class: 'muted', role: 'status' }, 'Loading products…');

  function renderProducts() {
    keepFocus(productList, 'sku', renderProductList);
  }

  function renderProductList() {
    cards.clear();
    if (inventory.error && !inventory.loaded) {
      replace(productStatus, h('span', { class: 'error-text' },
        `Could not load the products: ${inventory.error.message} `),
      h('button', { type: 'button', class: 'btn small', onclick: () => inventory.load() }, 'Try again'));
      replace(productList);
      return;
    }
    if (!inventory.loaded) return;
    const products = [...inventory.products.values()];
    replace(productStatus, products.length ? '' : 'No products yet: seed the inventory (see docs/api.md).');
    replace(productList, products.map((p) => {
      const stock = h('p', { class: 'stock', dataset: { level: stockLevel(p.available) } }, stockText(p.available));
      const inCart = h('span', { class: 'in-cart' });
      const add = h('button', {
        type: 'button', class: 'btn', 'aria-label': `Add ${p.name} to cart`,
        onclick: () => addToCart(p.sku),
      }, 'Add to cart');
      const li = h('li', { class: 'product', dataset: { sku: p.sku } },
        h('h3', { class: 'product-name' }, p.name),
        h('p', { class: 'sku' }, p.sku),
        h('p', { class: 'price' }, money(p.unitAmount, p.currency)),
        stock,
        h('div', { class: 'product-actions' }, add, inCart));
      cards.set(p.sku, { li, stock, inCart, add });
      updateCard(p.sku, false);
      return li;
    }));
  }

  function updateCard(sku, animate = true) {
    const c = cards.get(sku);
    const p = inventory.products.get(sku);
    if (!c || !p) return;
    const level = stockLevel(p.available);
    const text = stockText(p.available);
    if (c.stock.textContent !== text) {
      c.stock.textContent = text;
      if (animate) flash(c.stock);
    }
    c.stock.dataset.level = level;
    c.add.disabled = level === 'out';
    const q = cart.get(sku) ?? 0;
    c.inCart.textContent = q ? `${q} in cart` : '';
  }

  // --- cart -------------------------------------------------------------------------------------
  const cartLines = h('ul', { class: 'cart-lines', id: 'cart-lines' });
  const cartEmpty = h('p', { class: 'muted' }, 'Your cart is empty. Add products from the list.');
  const cartTotal = h('strong', { id: 'cart-total' });
  const cartError = h('p', { class: 'field-error', id: 'cart-error', hidden: true });

  function cartCurrency() {
    const currencies = new Set([...cart.keys()].map((sku) => inventory.products.get(sku)?.currency ?? 'USD'));
    return currencies.size === 1 ? [...currencies][0] : currencies.size === 0 ? 'USD' : null;
  }

  function cartTotalAmount() {
    let total = 0;
    for (const [sku, q] of cart) total += (inventory.products.get(sku)?.unitAmount ?? 0) * q;
    return total;
  }

  function addToCart(sku) {
    cart.set(sku, (cart.get(sku) ?? 0) + 1);
    clearError(cartError);
    renderCart();
    updateCard(sku, false);
  }

  function renderCart() {
    cartEmpty.hidden = cart.size > 0;
    replace(cartLines, [...cart].map(([sku, q], i) => {
      const p = inventory.products.get(sku) ?? { name: sku, unitAmount: 0, currency: 'USD', available: 0 };
      const qtyId = `qty-${i}`;
      const lineTotal = h('span', { class: 'line-total' }, money(p.unitAmount * q, p.currency));
      const warn = h('p', { class: 'line-warning', hidden: q <= p.available },
        `Only ${p.available} in stock: this order would be cancelled (out of stock).`);
      const qty = h('input', {
        id: qtyId, type: 'number', min: '1', max: '999', step: '1', inputmode: 'numeric', value: String(q),
        class: 'qty', onchange: (e) => setQuantity(sku, e.target.value, e.target),
        oninput: (e) => {
          const n = Math.min(Number(e.target.value), 999);
          if (Number.isInteger(n) && n > 0) {
            cart.set(sku, n);
            lineTotal.textContent = money(p.unitAmount * n, p.currency);
            warn.hidden = n <= p.available;
            updateTotals();
            updateCard(sku, false);
          }
        },
      });
      return h('li', { class: 'cart-line', dataset: { sku, line: String(i) } },
        h('div', { class: 'cart-line-main' },
          h('span', { class: 'cart-name' }, p.name),
          h('span', { class: 'muted small' }, `${money(p.unitAmount, p.currency)} each`)),
        h('div', { class: 'cart-line-controls' },
          h('label', { for: qtyId, class: 'visually-hidden' }, `Quantity of ${p.name}`),
          qty,
          lineTotal,
          h('button', {
            type: 'button', class: 'btn ghost small', 'aria-label': `Remove ${p.name} from cart`,
            onclick: () => {
              cart.delete(sku);
              renderCart();
              updateCard(sku, false);
              root.querySelector('#cart-heading')?.focus();
            },
          }, 'Remove')),
        warn);
    }));
    updateTotals();
  }

  // On change (commit of the input): a valid quantity only updates the totals, so the keyboard
  // focus stays where the user moved it; zero or an invalid value removes the line.
  function setQuantity(sku, value, input) {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) {
      cart.delete(sku);
      renderCart();
      root.querySelector('#cart-heading')?.focus();
    } else {
      const q = Math.min(n, 999);
      cart.set(sku, q);
      if (String(q) !== input.value) input.value = String(q);
      updateTotals();
      renderCartWarnings();
    }
    updateCard(sku, false);
  }

  function updateTotals() {
    const currency = cartCurrency();
    cartTotal.textContent = currency ? money(cartTotalAmount(), currency) : '—';
    submit.textContent = cart.size ? `Place order · ${cartTotal.textContent}` : 'Place order';
    const n = cart.count;
    barSummary.textContent = `${n} ${n === 1 ? 'item' : 'items'} · ${cartTotal.textContent}`;
    bar.hidden = cart.size === 0 || sideInView;
    shopEl.dataset.cart = cart.size ? 'full' : 'empty';
  }

  // --- checkout bar (narrow screens) -------------------------------------------------------------
  // On a phone the cart and the form come after the whole catalogue: a bar fixed to the bottom of
  // the screen shows the cart's count and total and jumps to the checkout. It hides while the cart
  // itself is on screen (and, by CSS, on screens wide enough to show the cart beside the products).
  const barSummary = h('span', { class: 'checkout-bar-summary', id: 'checkout-bar-summary' });
  const barButton = h('button', {
    type: 'button', class: 'btn primary', id: 'go-to-checkout',
    onclick: () => {
      const heading = root.querySelector('#cart-heading');
      heading?.scrollIntoView({ block: 'start' });
      heading?.focus({ preventScroll: true });
    },
  }, 'Checkout');
  const bar = h('div', { class: 'checkout-bar', id: 'checkout-bar', role: 'region', 'aria-label': 'Cart summary', hidden: true },
    barSummary, barButton);
  let sideInView = false;

  // --- order form -------------------------------------------------------------------------------
  const customer = h('input', {
    id: 'customerId', name: 'customerId', type: 'text', autocomplete: 'off', spellcheck: 'false',
    value: stored('ecomd.customerId', 'c-42'), 'aria-describedby': 'customerId-hint customerId-error',
  });
  const customerError = h('p', { class: 'field-error', id: 'customerId-error', hidden: true });
  const chosenToken = stored('ecomd.paymentToken', 'tok_visa');
  const tokenError = h('p', { class: 'field-error', id: 'paymentToken-error', hidden: true });
  const tokenFieldset = h('fieldset', { class: 'field tokens', id: 'paymentToken', 'aria-describedby': 'paymentToken-error' },
    h('legend', {}, 'Payment (simulated card)'),
    TOKENS.map((t) => h('div', { class: 'token' },
      h('input', {
        type: 'radio', name: 'paymentToken', id: `token-${t.value}`, value: t.value,
        checked: t.value === chosenToken, 'aria-describedby': `token-${t.value}-hint`,
      }),
      h('label', { for: `token-${t.value}` }, h('span', { class: 'token-label' }, t.label), ' ',
        h('code', { class: 'token-code' }, t.value)),
      h('p', { class: 'hint', id: `token-${t.value}-hint` }, t.hint))),
    tokenError);
  const formError = h('div', { class: 'form-error', id: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn primary block', id: 'place-order' }, 'Place order');

  const form = h('form', { class: 'checkout', id: 'checkout', novalidate: true, 'aria-labelledby': 'checkout-heading' },
    h('h2', { id: 'checkout-heading' }, 'Checkout'),
    h('div', { class: 'field' },
      h('label', { for: 'customerId' }, 'Customer id'),
      customer,
      h('p', { class: 'hint', id: 'customerId-hint' }, 'Any id without spaces, e.g. c-42.'),
      customerError),
    tokenFieldset,
    formError,
    submit);

  function clearError(el) {
    el.hidden = true;
    el.textContent = '';
  }

  // An error stays until the field it is about is edited.
  customer.addEventListener('input', () => {
    clearError(customerError);
    customer.removeAttribute('aria-invalid');
  });
  tokenFieldset.addEventListener('change', () => {
    clearError(tokenError);
    tokenFieldset.removeAttribute('aria-invalid');
  });

  function clearErrors() {
    for (const el of [customerError, tokenError, cartError, formError]) clearError(el);
    customer.removeAttribute('aria-invalid');
    tokenFieldset.removeAttribute('aria-invalid');
    for (const li of cartLines.querySelectorAll('.cart-line')) li.classList.remove('invalid');
  }

  function showError(err) {
    const field = err instanceof ApiError ? err.field : '';
    const text = [h('span', { class: 'error-message' }, err.message)];
    if (err instanceof ApiError && err.status) text.push(' ', h('code', { class: 'error-code' }, err.code));
    if (field === 'customerId') {
      replace(customerError, text).hidden = false;
      customer.setAttribute('aria-invalid', 'true');
      customer.focus();
    } else if (field === 'paymentToken') {
      replace(tokenError, text).hidden = false;
      tokenFieldset.setAttribute('aria-invalid', 'true');
      tokenFieldset.querySelector('input:checked, input')?.focus();
    } else if (field === 'currency' || field.startsWith('items')) {
      replace(cartError, text).hidden = false;
      const line = field.match(/^items\[(\d+)\]/);
      const li = line && cartLines.querySelector(`[data-line="${line[1]}"]`);
      if (li) {
        li.classList.add('invalid');
        li.querySelector('input')?.focus();
      } else {
        cartError.setAttribute('tabindex', '-1');
        cartError.focus();
      }
    } else {
      replace(formError, field ? [h('strong', {}, `${field}: `), ...text] : text).hidden = false;
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const paymentToken = form.querySelector('input[name="paymentToken"]:checked')?.value;
    store('ecomd.customerId', customer.value);
    if (paymentToken) store('ecomd.paymentToken', paymentToken);
    if (cart.size === 0) {
      showError(new ApiError(0, 'EMPTY_CART', 'Your cart is empty: add at least one product.', 'items'));
      return;
    }
    const currency = cartCurrency();
    if (!currency) {
      showError(new ApiError(0, 'MIXED_CURRENCY', 'All items of one order must have the same currency.', 'currency'));
      return;
    }
    const body = {
      customerId: customer.value.trim(),
      currency,
      // The prices the shopper saw: the server charges the catalogue's and refuses the order
      // (PRICE_CHANGED) if they moved in the meantime, instead of charging a surprise.
      items: [...cart].map(([sku, quantity]) => ({ sku, quantity, unitAmount: inventory.products.get(sku)?.unitAmount ?? 0 })),
    };
    body.expectedTotal = body.items.reduce((sum, l) => sum + l.unitAmount * l.quantity, 0);
    if (paymentToken) body.paymentToken = paymentToken;
    const bodyText = JSON.stringify(body);
    const key = lastAttempt?.body === bodyText ? lastAttempt.key : uuid();
    lastAttempt = { body: bodyText, key };

    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    const label = submit.textContent;
    submit.textContent = 'Placing order…';
    try {
      const res = await postJson('/api/orders', body, { headers: { 'Idempotency-Key': key } });
      const id = res.body?.orderId;
      if (!id) throw new ApiError(res.status, 'UNEXPECTED', 'The server accepted the order but sent no order id.');
      lastAttempt = null;
      cart.clear();
      location.hash = `#/orders/${encodeURIComponent(id)}`;
    } catch (err) {
      // Keep the key only when the outcome is unknown (no answer, or a server failure).
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) lastAttempt = null;
      showError(err);
      submit.disabled = false;
      form.removeAttribute('aria-busy');
      submit.textContent = label;
    }
  });

  // --- layout -----------------------------------------------------------------------------------
  const side = h('aside', { class: 'side', 'aria-label': 'Cart and checkout' },
    h('section', { class: 'card cart', 'aria-labelledby': 'cart-heading' },
      h('h2', { id: 'cart-heading', tabindex: '-1' }, 'Your cart'),
      cartEmpty,
      cartLines,
      h('p', { class: 'cart-total' }, h('span', {}, 'Total'), cartTotal),
      cartError),
    h('div', { class: 'card' }, form));
  const shopEl = h('div', { class: 'shop', dataset: { cart: 'empty' } },
    h('section', { class: 'catalogue', 'aria-labelledby': 'products-heading' },
      h('h2', { id: 'products-heading', class: 'visually-hidden' }, 'Products'),
      productStatus,
      productList),
    side);
  replace(root,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Shop'),
      h('p', { class: 'lead' }, 'Stock updates live as orders reserve, release and sell it. Pick a payment token to see the happy path or a compensation.')),
    shopEl,
    bar);

  const observer = typeof IntersectionObserver === 'function'
    ? new IntersectionObserver((entries) => {
      sideInView = entries.some((e) => e.isIntersecting);
      updateTotals();
    }, { rootMargin: '0px 0px -64px 0px' })
    : null;
  observer?.observe(side);

  renderProducts();
  renderCart();
  const unsubscribe = inventory.subscribe((sku) => {
    if (sku && cards.has(sku)) {
      updateCard(sku);
      if (cart.has(sku)) renderCartWarnings();
    } else {
      renderProducts();
      renderCart();
    }
  });

  // Stock changed under the cart: refresh the "only N in stock" warnings without touching inputs.
  function renderCartWarnings() {
    for (const li of cartLines.querySelectorAll('.cart-line')) {
      const p = inventory.products.get(li.dataset.sku);
      const warn = li.querySelector('.line-warning');
      if (!p || !warn) continue;
      const q = cart.get(li.dataset.sku) ?? 0;
      warn.hidden = q <= p.available;
      warn.textContent = `Only ${p.available} in stock: this order would be cancelled (out of stock).`;
    }
  }

  return () => {
    unsubscribe();
    observer?.disconnect();
  };
}
