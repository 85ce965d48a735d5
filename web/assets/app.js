// The single-page app: hash routes (#/, #/orders/<id>, #/ops), each a view module with
// mount(main, params) → unmount(). No framework and no build step; everything is served by ecomd.

import { cart } from './cart.js';
import { feed, inventory } from './live.js';
import { copyFullIds, h, replace } from './util.js';
import * as shop from './shop.js';
import * as order from './order.js';
import * as ops from './ops.js';

const main = document.getElementById('main');
let unmount = null;
let firstRoute = true;

function parseRoute(hash) {
  const path = hash.replace(/^#/, '') || '/';
  const orderMatch = path.match(/^\/orders\/([^/?#]+)\/?$/);
  if (orderMatch) return { view: order, nav: 'shop', params: { id: decodeURIComponent(orderMatch[1]) } };
  if (path === '/ops' || path === '/ops/') return { view: ops, nav: 'ops', params: {} };
  if (path === '/' || path === '') return { view: shop, nav: 'shop', params: {} };
  return { view: null, nav: '', params: { path } };
}

function notFound(root, { path }) {
  document.title = 'Not found · ecomd';
  replace(root,
    h('h1', { tabindex: '-1' }, 'Page not found'),
    h('p', {}, `There is no page at “${path}”. `, h('a', { href: '#/' }, 'Go to the shop'), '.'));
  return () => {};
}

function route() {
  const { view, nav, params } = parseRoute(location.hash);
  if (unmount) unmount();
  replace(main);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  unmount = view ? view.mount(main, params) : notFound(main, params);
  // Move focus to the new page's heading for keyboard and screen-reader users, except on first load.
  if (!firstRoute) {
    const heading = main.querySelector('h1');
    if (heading) {
      if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
  firstRoute = false;
  if (showCartAfterRoute) {
    showCartAfterRoute = false;
    showCart();
  }
}

function showConnection(state) {
  const conn = document.getElementById('conn');
  const text = { connecting: 'Connecting…', open: 'Live', reconnecting: 'Reconnecting…', closed: 'Offline' }[state];
  conn.dataset.state = state;
  conn.querySelector('.conn-text').textContent = text ?? state;
  conn.title = state === 'open' ? 'Receiving live updates from ecomd' : 'Live updates are not connected';
}

// The header's cart link: the number of items, and a way to the cart from any page.
const cartLink = document.getElementById('cart-link');
const cartCount = document.getElementById('cart-count');
let showCartAfterRoute = false;

function showCartCount() {
  const n = cart.count;
  cartCount.textContent = String(n);
  cartCount.hidden = n === 0;
  cartLink.setAttribute('aria-label', n === 0 ? 'Cart, empty' : `Cart, ${n} ${n === 1 ? 'item' : 'items'}`);
}

function showCart() {
  const heading = document.getElementById('cart-heading');
  if (!heading) return false;
  heading.scrollIntoView({ block: 'start' });
  heading.focus({ preventScroll: true });
  return true;
}

cartLink.addEventListener('click', (e) => {
  // On the shop already (no hashchange follows): go to its cart; elsewhere, after the route.
  if (parseRoute(location.hash).view === shop) {
    e.preventDefault();
    showCart();
  } else {
    showCartAfterRoute = true;
  }
});

cart.subscribe(showCartCount);
showCartCount();
copyFullIds();
feed.onState(showConnection);
feed.start();
inventory.load();
window.addEventListener('hashchange', route);
route();
