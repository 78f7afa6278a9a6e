// The card frame's checks (brand by BIN, grouping, Luhn, expiry, CVC, holder, the grant's
// origin), run by Node against widget/assets/frame.js itself. Run by `cargo test -p
// paysys-widget --test frame_rules` when `node` is on the PATH, or directly:
// `node widget/tests/frame_rules.mjs`.
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import assert from 'node:assert/strict';

const source = readFileSync(new URL('../assets/frame.js', import.meta.url), 'utf8');
const context = vm.createContext({ atob, TextDecoder, Uint8Array, JSON, Math, Number, String });
vm.runInContext(source, context);
const r = context.PaySysCardRules;
assert.ok(r, 'frame.js exports its checks when there is no form');

// A complete number: prefix, padding, then the Luhn check digit.
function withCheckDigit(prefix, length) {
  let body = prefix.padEnd(length - 1, '0');
  for (let d = 0; d <= 9; d++) if (r.luhnValid(body + d)) return body + d;
  throw new Error('no check digit');
}

const cases = [
  ['4242424242424242', 'visa', '4242 4242 4242 4242', 3],
  ['4222222222222', 'visa', '4222 2222 2222 2', 3],
  ['5555555555554444', 'mastercard', '5555 5555 5555 4444', 3],
  ['2223003122003222', 'mastercard', '2223 0031 2200 3222', 3],
  [withCheckDigit('2720', 16), 'mastercard', null, 3],
  ['378282246310005', 'amex', '3782 822463 10005', 4],
  ['371449635398431', 'amex', '3714 496353 98431', 4],
  [withCheckDigit('62', 16), 'unionpay', null, 3],
  [withCheckDigit('62', 19), 'unionpay', null, 3],
  ['3530111333300000', 'jcb', '3530 1113 3330 0000', 3],
  [withCheckDigit('3589', 16), 'jcb', null, 3],
  [withCheckDigit('2200', 16), 'mir', null, 3],
  [withCheckDigit('2204', 16), 'mir', null, 3],
  [withCheckDigit('8600', 16), 'uzcard', null, 3],
  [withCheckDigit('9860', 16), 'humo', null, 3],
];
for (const [number, brand, grouped, cvc] of cases) {
  const b = r.brandOf(number);
  assert.equal(b && b.id, brand, number);
  assert.equal(b.cvc, cvc, number);
  assert.equal(r.checkNumber(number), null, number);
  if (grouped) assert.equal(r.groupDigits(number, b), grouped);
  // One digit off fails Luhn.
  const last = Number(number.at(-1));
  assert.equal(r.checkNumber(number.slice(0, -1) + ((last + 1) % 10)), 'number_invalid', number);
}
// Not (yet) decided while the prefix could still be several brands.
for (const prefix of ['', '2', '22', '222', '3', '35', '5', '6', '8', '86', '860', '9']) {
  assert.equal(r.brandOf(prefix), r.UNKNOWN, `prefix ${prefix}`);
}
// Ranges that no supported brand has.
for (const prefix of ['2205', '2210', '2721', '3000', '3527', '3590', '50', '56', '60', '6011', '8601', '9861', '1', '7']) {
  assert.equal(r.brandOf(prefix), null, `prefix ${prefix}`);
}
assert.equal(r.brandOf('2221').id, 'mastercard');
assert.equal(r.brandOf('34').id, 'amex');
assert.equal(r.brandOf('4').id, 'visa');
assert.equal(r.checkNumber(''), 'number_required');
assert.equal(r.checkNumber('6011111111111117'), 'brand_unsupported');
assert.equal(r.checkNumber('424242424242'), 'number_invalid', 'too short for Visa');
assert.equal(r.checkNumber(withCheckDigit('37', 16)), 'number_invalid', 'Amex has 15 digits');

// Expiry: MM/YY, not in the past (the whole expiry month counts), not absurdly far.
const now = new Date(2026, 11, 3); // 3 December 2026
assert.equal(r.checkExpiry('12/26', now), null);
assert.equal(r.checkExpiry('01/27', now), null);
assert.equal(r.checkExpiry('11/26', now), 'expiry_past');
assert.equal(r.checkExpiry('12/25', now), 'expiry_past');
assert.equal(r.checkExpiry('13/27', now), 'expiry_invalid');
assert.equal(r.checkExpiry('00/27', now), 'expiry_invalid');
assert.equal(r.checkExpiry('12/99', now), 'expiry_invalid');
assert.equal(r.checkExpiry('', now), 'expiry_required');
assert.equal(r.checkExpiry('1/2', now), 'expiry_invalid');
assert.deepEqual({ ...r.parseExpiry('12/2030') }, { month: 12, year: 2030 });
assert.deepEqual({ ...r.parseExpiry('0731') }, { month: 7, year: 2031 });
assert.equal(r.formatExpiry('1', false), '1');
assert.equal(r.formatExpiry('4', false), '04/');
assert.equal(r.formatExpiry('12', false), '12/');
assert.equal(r.formatExpiry('12', true), '12');
assert.equal(r.formatExpiry('1229', false), '12/29');
assert.equal(r.formatExpiry('12/2030', false), '12/30', 'autofill MM/YYYY');

// CVC by brand.
assert.equal(r.checkCvc('123', r.brandOf('4242')), null);
assert.equal(r.checkCvc('1234', r.brandOf('4242')), 'cvc_invalid');
assert.equal(r.checkCvc('1234', r.brandOf('37')), null);
assert.equal(r.checkCvc('123', r.brandOf('37')), 'cvc_invalid');
assert.equal(r.checkCvc('', r.brandOf('4242')), 'cvc_required');
assert.equal(r.checkCvc('12a', r.brandOf('4242')), 'cvc_invalid');

// Holder: optional, never digits.
assert.equal(r.checkHolder(''), null);
assert.equal(r.checkHolder('ALISHER NAVOIY'), null);
assert.equal(r.checkHolder('4242424242424242'), 'holder_invalid');
assert.equal(r.checkHolder('x'.repeat(65)), 'holder_invalid');

// The grant's origin, from its payload; anything malformed is null.
const b64url = (s) => Buffer.from(s).toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const payload = b64url(JSON.stringify({ origin: 'https://shop.example', merchant_id: 'm' }));
assert.equal(r.grantOrigin(`v1.k1.${payload}.sig`), 'https://shop.example');
assert.equal(r.grantOrigin(`v2.k1.${payload}.sig`), null);
assert.equal(r.grantOrigin(`v1.k1.${payload}`), null);
assert.equal(r.grantOrigin('v1.k1.!!!.sig'), null);
assert.equal(r.grantOrigin(`v1.k1.${b64url('[1]')}.sig`), null);

console.log(`frame rules: ${cases.length} brand cases and the field checks pass`);
