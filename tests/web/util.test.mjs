// Unit tests of the UI's formatting helpers (web/assets/util.js) under Node's test runner:
//   node --test tests/web/util.test.mjs        (scripts/browser-test.sh runs it first)
// The reasons are checked against the C++ contract, so a new reason code without words fails here.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

process.env.TZ = 'UTC';  // before any date is formatted
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { dateTime, reasonLabel, reasonText, shortId } = await import(path.join(root, 'web/assets/util.js'));

test('every cancellation reason of the contract has a sentence and a label of its own', () => {
  const header = fs.readFileSync(path.join(root, 'include/ecom/contract/order_status.hpp'), 'utf8');
  const codes = [...header.matchAll(/std::string_view k\w+\{"([A-Z_]+)"\}/g)].map((m) => m[1]);
  assert.ok(codes.length >= 6, `found only ${codes} in order_status.hpp`);
  for (const code of codes) {
    const sentence = reasonText(code);
    assert.ok(!sentence.startsWith('Cancelled: '), `${code} has no sentence of its own: "${sentence}"`);
    assert.match(sentence, /^[A-Z].*\.$/, `${code}: "${sentence}" is not a sentence`);
    assert.ok(!sentence.includes(code) && !reasonLabel(code).includes('_'), `${code} is shown as a code`);
  }
});

test('an unknown reason code is put in words', () => {
  assert.equal(reasonText('GATEWAY_ON_FIRE'), 'Cancelled: gateway on fire.');
  assert.equal(reasonLabel('GATEWAY_ON_FIRE'), 'Gateway on fire');
  assert.equal(reasonText(''), '');
  assert.equal(reasonText(null), '');
});

test('dates show the weekday and the time zone', () => {
  const at = '2026-12-07T02:52:54.032Z';
  for (const style of ['date', 'precise', 'feed']) {
    const s = dateTime(at, style);
    assert.match(s, /^Mon\b/, `${style}: "${s}" does not start with the weekday`);
    assert.match(s, /02:52(:54)? UTC$/, `${style}: "${s}" does not end with the time and zone`);
  }
  assert.match(dateTime(at), /2026/);
  assert.match(dateTime(at, 'precise'), /02:52:54 UTC$/);
  assert.match(dateTime(at, 'long'), /Monday.*Coordinated Universal Time/);
  assert.equal(dateTime('not a date'), '');
});

test('short ids are the tail, which differs between UUIDv7 ids of the same minute', () => {
  const a = '019af3c2-7d10-7a3b-9f21-4c5d6e7f8a9b';
  const b = '019af3c2-7d4e-7c01-8e77-0a1b2c3d4e5f';
  assert.equal(shortId(a), '…6e7f8a9b');
  assert.notEqual(shortId(a), shortId(b));
  assert.equal(shortId('KB-1'), 'KB-1');  // short keys (skus) as they are
  assert.equal(shortId(undefined), '');
});
