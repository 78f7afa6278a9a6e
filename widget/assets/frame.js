/*
 * PaySys card frame (served by the intake at /v1/frame, this file at /v1/frame.js).
 *
 * The only script that touches card data. It reads the one-time grant from the URL
 * fragment, checks that the grant names the origin this frame was served for, lets the
 * buyer type the card, checks it (brand, Luhn, expiry, CVC), posts it with the grant to
 * the intake (POST /v1/cards, same origin) and hands the token to the parent page.
 * Card data is never logged, stored, or sent anywhere but /v1/cards; the fields are
 * cleared as soon as a token arrives.
 *
 * DOM contract (rendered by paysys_widget::pages::frame_page; browser tests rely on it):
 *   form#card           data-parent-origin  the one origin allowed to frame this page
 *                       data-lang           uz | ru | en
 *                       data-texts          JSON: the messages shown here
 *                       data-state          loading | ready | sending | done | failed
 *                       data-brand          the recognised brand (also on #brand)
 *   input#number        card number, formatted as typed (autocomplete cc-number)
 *   input#exp           MM/YY (cc-exp)     input#cvc  (cc-csc)     input#holder  (cc-name, optional)
 *   p#number-error, #exp-error, #cvc-error, #holder-error   .error, role=alert, next to the field
 *   p#form-error        .error for the whole form      p#accepted  shown once a token is made
 *   span#brand          data-brand = visa | mastercard | amex | unionpay | jcb | mir | uzcard | humo | ""
 *
 * Messages (postMessage, target origin = the grant's origin, never "*"):
 *   to the parent:   {type:"paysys:ready"}
 *                    {type:"paysys:submitting"}          the card is on its way to the intake
 *                    {type:"paysys:token", token, brand, last4}
 *                    {type:"paysys:error", code, message}  code "validation_failed" when a field
 *                                                          is wrong (shown next to it), else the
 *                                                          intake's or vault's error code
 *                    {type:"paysys:resize", height}
 *   from the parent (only with event.origin === the grant's origin, from window.parent):
 *                    {type:"paysys:submit"}
 *                    {type:"paysys:style", style: {accent, text, background, border, error, radius, font_size}}
 * Enter in any field submits too.
 */
(function () {
  'use strict';

  var CARDS_PATH = '/v1/cards';

  // Brands by BIN, most specific first (as the vault's card.rs orders them).
  // gaps: where the number gets a space; lengths: valid digit counts; cvc: digits.
  var BRANDS = [
    { id: 'uzcard', name: 'Uzcard', match: prefix4(8600, 8600), lengths: [16], cvc: 3 },
    { id: 'humo', name: 'Humo', match: prefix4(9860, 9860), lengths: [16], cvc: 3 },
    { id: 'mir', name: 'Mir', match: prefix4(2200, 2204), lengths: [16, 17, 18, 19], cvc: 3 },
    {
      id: 'mastercard', name: 'Mastercard', lengths: [16], cvc: 3,
      match: function (d) {
        var series5 = prefix2(51, 55)(d);
        var series2 = prefix4(2221, 2720)(d);
        if (series5 === true || series2 === true) return true;
        return series5 === null || series2 === null ? null : false;
      }
    },
    { id: 'amex', name: 'American Express', match: anyOf2([34, 37]), lengths: [15], cvc: 4, gaps: [4, 10] },
    { id: 'jcb', name: 'JCB', match: prefix4(3528, 3589), lengths: [16, 17, 18, 19], cvc: 3 },
    { id: 'unionpay', name: 'UnionPay', match: anyOf2([62]), lengths: [16, 17, 18, 19], cvc: 3 },
    { id: 'visa', name: 'Visa', match: function (d) { return d.length < 1 ? null : d.charAt(0) === '4'; }, lengths: [13, 16, 19], cvc: 3 }
  ];
  var UNKNOWN = { id: '', name: '', lengths: [], cvc: 3 };
  var DEFAULT_GAPS = [4, 8, 12, 16];
  var MAX_DIGITS = 19;

  // A matcher for a range of 4-digit prefixes: true (matches), false (cannot match),
  // null (too few digits to tell yet, but could still match).
  function prefix4(low, high) { return rangeMatcher(4, low, high); }
  function prefix2(low, high) { return rangeMatcher(2, low, high); }
  function anyOf2(list) {
    return function (d) {
      var results = list.map(function (n) { return rangeMatcher(2, n, n)(d); });
      if (results.indexOf(true) >= 0) return true;
      return results.indexOf(null) >= 0 ? null : false;
    };
  }
  function rangeMatcher(width, low, high) {
    return function (d) {
      if (d.length >= width) {
        var n = Number(d.slice(0, width));
        return n >= low && n <= high;
      }
      if (d.length === 0) return null;
      // Could a completion of these digits fall in the range?
      var pad = width - d.length;
      var min = Number(d) * Math.pow(10, pad);
      var max = min + Math.pow(10, pad) - 1;
      return max >= low && min <= high ? null : false;
    };
  }

  // The brand of these digits: a brand, UNKNOWN while the digits could still be several,
  // or null when no supported brand can match.
  function brandOf(digits) {
    var undecided = false;
    for (var i = 0; i < BRANDS.length; i++) {
      var m = BRANDS[i].match(digits);
      if (m === true && !undecided) return BRANDS[i];
      if (m === null || m === true) undecided = true;
    }
    return undecided ? UNKNOWN : null;
  }

  function luhnValid(digits) {
    var sum = 0;
    var double = false;
    for (var i = digits.length - 1; i >= 0; i--) {
      var n = digits.charCodeAt(i) - 48;
      if (double) { n *= 2; if (n > 9) n -= 9; }
      sum += n;
      double = !double;
    }
    return digits.length > 0 && sum % 10 === 0;
  }

  function groupDigits(digits, brand) {
    var gaps = (brand && brand.gaps) || DEFAULT_GAPS;
    var out = '';
    for (var i = 0; i < digits.length; i++) {
      if (gaps.indexOf(i) >= 0) out += ' ';
      out += digits.charAt(i);
    }
    return out;
  }

  function onlyDigits(text) { return String(text).replace(/\D/g, ''); }

  // Errors are keys into the texts; null when the value is fine.
  function checkNumber(digits) {
    if (digits.length === 0) return 'number_required';
    var brand = brandOf(digits);
    if (brand === null) return 'brand_unsupported';
    if (brand === UNKNOWN || brand.lengths.indexOf(digits.length) < 0 || !luhnValid(digits)) return 'number_invalid';
    return null;
  }

  // {month, year (four digits)} from MM/YY (also MMYY, MM/YYYY, M/YY), or null.
  function parseExpiry(text) {
    var m = /^\s*(\d{1,2})\s*\/?\s*(\d{2}|\d{4})\s*$/.exec(String(text));
    if (!m) return null;
    var month = Number(m[1]);
    var year = m[2].length === 2 ? 2000 + Number(m[2]) : Number(m[2]);
    if (month < 1 || month > 12) return null;
    return { month: month, year: year };
  }

  function checkExpiry(text, now) {
    if (String(text).trim() === '') return 'expiry_required';
    var e = parseExpiry(text);
    if (!e) return 'expiry_invalid';
    var year = now.getFullYear();
    var month = now.getMonth() + 1;
    if (e.year < year || (e.year === year && e.month < month)) return 'expiry_past';
    if (e.year > year + 20) return 'expiry_invalid';
    return null;
  }

  function checkCvc(cvc, brand) {
    if (cvc.length === 0) return 'cvc_required';
    var want = (brand || UNKNOWN).cvc;
    return /^\d+$/.test(cvc) && cvc.length === want ? null : 'cvc_invalid';
  }

  // Optional; a name has no digits (so a card number pasted here is refused, not sent).
  function checkHolder(name) {
    if (name === '') return null;
    if (name.length > 64 || /[\d\u0000-\u001f\u007f]/.test(name)) return 'holder_invalid';
    return null;
  }

  // MM/YY as typed: a leading 2-9 becomes 0N, the slash comes by itself; MMYYYY from
  // autofill becomes MM/YY.
  function formatExpiry(value, deleting) {
    var d = onlyDigits(value);
    if (d.length === 6 && d.slice(2, 4) === '20') d = d.slice(0, 2) + d.slice(4);
    d = d.slice(0, 4);
    if (d.length === 1 && d > '1') d = '0' + d;
    if (d.length === 2 && !deleting) return d + '/';
    if (d.length <= 2) return d;
    return d.slice(0, 2) + '/' + d.slice(2);
  }

  function base64UrlJson(part) {
    var b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var bytes = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  // The grant's claimed origin (v1.kid.payload.signature, payload base64url JSON), or null.
  // Only a consistency check: the intake verifies the signature.
  function grantOrigin(grant) {
    var parts = String(grant).split('.');
    if (parts.length !== 4 || parts[0] !== 'v1') return null;
    try {
      var claims = base64UrlJson(parts[2]);
      return claims && typeof claims.origin === 'string' ? claims.origin : null;
    } catch (e) {
      return null;
    }
  }

  var rules = {
    brandOf: brandOf, luhnValid: luhnValid, groupDigits: groupDigits, checkNumber: checkNumber,
    parseExpiry: parseExpiry, checkExpiry: checkExpiry, checkCvc: checkCvc, checkHolder: checkHolder,
    formatExpiry: formatExpiry, grantOrigin: grantOrigin, UNKNOWN: UNKNOWN
  };

  var form = typeof document !== 'undefined' ? document.getElementById('card') : null;
  if (!form) {
    // Not on the frame page: the checks alone, for widget/tests/frame_rules.mjs.
    if (typeof globalThis !== 'undefined') globalThis.PaySysCardRules = rules;
    return;
  }

  var texts = {};
  try { texts = JSON.parse(form.getAttribute('data-texts') || '{}'); } catch (e) { texts = {}; }
  var parentOrigin = form.getAttribute('data-parent-origin') || '';
  var fields = {
    number: document.getElementById('number'),
    exp: document.getElementById('exp'),
    cvc: document.getElementById('cvc'),
    holder: document.getElementById('holder')
  };
  var brandBadge = document.getElementById('brand');
  var formError = document.getElementById('form-error');
  var accepted = document.getElementById('accepted');
  var touched = {};
  var grant = '';
  var state = 'loading';
  var lastNumber = '';
  var lastHeight = 0;
  var failure = null;

  function text(key, values) {
    var t = texts[key] || texts.generic_error || '';
    Object.keys(values || {}).forEach(function (k) { t = t.split('{' + k + '}').join(String(values[k])); });
    return t;
  }

  function post(message) {
    if (!parentOrigin || window.parent === window) return;
    window.parent.postMessage(message, parentOrigin);
  }

  function setState(next) {
    state = next;
    form.setAttribute('data-state', next);
    form.setAttribute('aria-busy', next === 'sending' ? 'true' : 'false');
    var locked = next !== 'ready';
    Object.keys(fields).forEach(function (k) { fields[k].readOnly = locked; });
  }

  function showError(name, key, values) {
    var input = fields[name];
    var slot = document.getElementById(name + '-error');
    var message = key ? text(key, values) : '';
    slot.textContent = message;
    slot.hidden = !message;
    input.setAttribute('aria-invalid', message ? 'true' : 'false');
    input.closest('.field').classList.toggle('invalid', !!message);
    reportHeight();
  }

  function showFormError(message) {
    formError.textContent = message || '';
    formError.hidden = !message;
    reportHeight();
  }

  function currentBrand() {
    var b = brandOf(onlyDigits(fields.number.value));
    return b === null ? UNKNOWN : b;
  }

  // Returns the error key for a field, or null.
  function fieldError(name) {
    switch (name) {
      case 'number': return checkNumber(onlyDigits(fields.number.value));
      case 'exp': return checkExpiry(fields.exp.value, new Date());
      case 'cvc': return checkCvc(fields.cvc.value.trim(), currentBrand());
      case 'holder': return checkHolder(fields.holder.value.trim().replace(/\s+/g, ' '));
    }
    return null;
  }

  function validate(name) {
    var key = fieldError(name);
    showError(name, key, key === 'cvc_invalid' ? { digits: currentBrand().cvc } : null);
    return key === null;
  }

  function showBrand(brand) {
    var id = brand && brand !== UNKNOWN ? brand.id : '';
    brandBadge.setAttribute('data-brand', id);
    brandBadge.textContent = id ? brand.name : '';
    form.setAttribute('data-brand', id);
    fields.cvc.maxLength = brand && brand !== UNKNOWN ? brand.cvc : 4;
  }

  function formatNumber(event) {
    var input = fields.number;
    var raw = input.value;
    var caret = input.selectionStart === null ? raw.length : input.selectionStart;
    var digitsBefore = onlyDigits(raw.slice(0, caret)).length;
    var digits = onlyDigits(raw);
    // Backspace over a space: take the digit before it too.
    if (event && event.inputType === 'deleteContentBackward' && digits === onlyDigits(lastNumber) && digitsBefore > 0) {
      digits = digits.slice(0, digitsBefore - 1) + digits.slice(digitsBefore);
      digitsBefore -= 1;
    }
    var brand = brandOf(digits);
    var max = brand && brand !== UNKNOWN ? Math.max.apply(null, brand.lengths) : MAX_DIGITS;
    digits = digits.slice(0, max);
    var formatted = groupDigits(digits, brand);
    input.value = formatted;
    lastNumber = formatted;
    var pos = 0;
    var seen = 0;
    var want = Math.min(digitsBefore, digits.length);
    while (pos < formatted.length && seen < want) {
      if (formatted.charAt(pos) !== ' ') seen++;
      pos++;
    }
    if (document.activeElement === input) input.setSelectionRange(pos, pos);
    showBrand(brand);
    var known = brand && brand !== UNKNOWN;
    if (brand === null) {
      showError('number', 'brand_unsupported');
    } else if (input.getAttribute('aria-invalid') === 'true' || (known && digits.length === max)) {
      validate('number');
    }
    var complete = known && (digits.length === max || digits.length === 16) && checkNumber(digits) === null;
    if (complete && document.activeElement === input && event && event.inputType !== undefined &&
        event.inputType.indexOf('delete') !== 0) {
      fields.exp.focus();
    }
  }

  function formatExp(event) {
    var deleting = !!(event && event.inputType && event.inputType.indexOf('delete') === 0);
    var formatted = formatExpiry(fields.exp.value, deleting);
    fields.exp.value = formatted;
    if (fields.exp.getAttribute('aria-invalid') === 'true') validate('exp');
    if (formatted.length === 5 && checkExpiry(formatted, new Date()) === null && document.activeElement === fields.exp) {
      fields.cvc.focus();
    }
  }

  function formatCvc() {
    var brand = currentBrand();
    fields.cvc.value = onlyDigits(fields.cvc.value).slice(0, brand.cvc);
    if (fields.cvc.getAttribute('aria-invalid') === 'true') validate('cvc');
  }

  function clearFields() {
    Object.keys(fields).forEach(function (k) {
      fields[k].value = '';
      showError(k, null);
    });
    lastNumber = '';
    showBrand(UNKNOWN);
  }

  // Where an error code from the intake or vault belongs.
  function placeError(code) {
    if (/^pan_|^card_number/.test(code)) return { field: 'number', key: code === 'pan_unsupported_brand' ? 'brand_unsupported' : 'number_invalid' };
    if (code === 'card_expired') return { field: 'exp', key: 'expiry_past' };
    if (/^exp_/.test(code)) return { field: 'exp', key: 'expiry_invalid' };
    if (code === 'cvc_invalid') return { field: 'cvc', key: 'cvc_invalid' };
    if (code === 'cardholder_name_invalid') return { field: 'holder', key: 'holder_invalid' };
    return null;
  }

  function fail(code, key, fatal) {
    var message = text(key);
    if (fatal) {
      failure = { code: code, message: message };
      setState('failed');
      showFormError(message);
    } else {
      setState('ready');
    }
    post({ type: 'paysys:error', code: code, message: message });
  }

  function submit() {
    if (state === 'failed' && failure) post({ type: 'paysys:error', code: failure.code, message: failure.message });
    if (state !== 'ready') return;
    var names = ['number', 'exp', 'cvc', 'holder'];
    var firstBad = null;
    names.forEach(function (n) {
      touched[n] = true;
      if (!validate(n) && !firstBad) firstBad = n;
    });
    if (firstBad) {
      fields[firstBad].focus();
      post({ type: 'paysys:error', code: 'validation_failed', message: text('check_fields') });
      return;
    }
    var expiry = parseExpiry(fields.exp.value);
    var holder = fields.holder.value.trim().replace(/\s+/g, ' ');
    var ancestors = window.location.ancestorOrigins;
    var body = {
      grant: grant,
      ancestor_origin: ancestors && ancestors.length ? ancestors[0] : parentOrigin,
      number: onlyDigits(fields.number.value),
      exp_month: expiry.month,
      exp_year: expiry.year,
      cvc: fields.cvc.value.trim()
    };
    if (holder) body.holder = holder;
    setState('sending');
    showFormError('');
    post({ type: 'paysys:submitting' });
    var request = JSON.stringify(body);
    body = null;
    fetch(CARDS_PATH, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: request,
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
      referrerPolicy: 'no-referrer'
    }).then(function (response) {
      return response.json().then(
        function (answer) { return { status: response.status, answer: answer }; },
        function () { return { status: response.status, answer: null }; }
      );
    }).then(function (result) {
      var answer = result.answer || {};
      if (result.status === 201 && typeof answer.token === 'string') {
        clearFields();
        grant = '';
        setState('done');
        accepted.textContent = text('accepted', { last4: answer.last4 || '' });
        accepted.hidden = false;
        reportHeight();
        post({ type: 'paysys:token', token: answer.token, brand: answer.brand, last4: answer.last4 });
        return;
      }
      var code = answer.error && typeof answer.error.code === 'string' ? answer.error.code : 'http_' + result.status;
      var place = placeError(code);
      if (place) {
        setState('ready');
        showError(place.field, place.key, place.key === 'cvc_invalid' ? { digits: currentBrand().cvc } : null);
        fields[place.field].focus();
        post({ type: 'paysys:error', code: code, message: text(place.key, { digits: currentBrand().cvc }) });
      } else if (code === 'rate_limited') {
        showFormError(text('rate_limited'));
        fail(code, 'rate_limited', false);
      } else if (/^grant_|^origin_/.test(code)) {
        fail(code, 'form_expired', true);
      } else {
        showFormError(text('generic_error'));
        fail(code, 'generic_error', false);
      }
    }, function () {
      showFormError(text('network_error'));
      fail('network_error', 'network_error', false);
    });
  }

  function applyStyle(style) {
    if (!style || typeof style !== 'object') return;
    var color = /^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|rgba?\(\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*(,\s*(0|1|0?\.\d{1,3})\s*)?\))$/;
    var allowed = {
      accent: ['--accent', color],
      text: ['--text', color],
      background: ['--background', color],
      border: ['--border', color],
      error: ['--error', color],
      radius: ['--radius', /^([0-9]|1[0-9]|2[0-4])px$/],
      font_size: ['--font-size', /^(1[2-9]|20)px$/]
    };
    Object.keys(allowed).forEach(function (key) {
      var value = style[key];
      if (typeof value === 'string' && allowed[key][1].test(value)) {
        document.documentElement.style.setProperty(allowed[key][0], value);
      }
    });
    reportHeight();
  }

  function reportHeight() {
    var height = Math.ceil(document.body.getBoundingClientRect().height);
    if (height > 0 && height !== lastHeight) {
      lastHeight = height;
      post({ type: 'paysys:resize', height: height });
    }
  }

  // The grant: from the fragment, which is then dropped from the address.
  var params = new URLSearchParams(window.location.hash.slice(1));
  grant = params.get('grant') || '';
  if (window.location.hash) {
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
  }

  fields.number.addEventListener('input', formatNumber);
  fields.exp.addEventListener('input', formatExp);
  fields.cvc.addEventListener('input', formatCvc);
  fields.holder.addEventListener('input', function () {
    if (fields.holder.getAttribute('aria-invalid') === 'true') validate('holder');
  });
  Object.keys(fields).forEach(function (name) {
    fields[name].addEventListener('blur', function () {
      if (fields[name].value !== '') touched[name] = true;
      if (touched[name]) validate(name);
    });
  });
  form.addEventListener('submit', function (event) { event.preventDefault(); submit(); });
  form.addEventListener('keydown', function (event) {
    if (event.key === 'Enter') { event.preventDefault(); submit(); }
  });
  window.addEventListener('message', function (event) {
    if (event.origin !== parentOrigin || event.source !== window.parent) return;
    var data = event.data;
    if (!data || typeof data !== 'object') return;
    if (data.type === 'paysys:submit') submit();
    else if (data.type === 'paysys:style') applyStyle(data.style);
  });
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(reportHeight).observe(document.body);
  }

  var ancestors = window.location.ancestorOrigins;
  var framedByParent = window.parent !== window &&
    (!ancestors || (ancestors.length > 0 && ancestors[0] === parentOrigin));
  if (!parentOrigin || !framedByParent) {
    grant = '';
    fail('frame_not_framed', 'form_expired', true);
    return;
  }
  if (!grant) {
    fail('grant_missing', 'form_expired', true);
    return;
  }
  if (grantOrigin(grant) !== parentOrigin) {
    grant = '';
    fail('grant_origin_mismatch', 'form_expired', true);
    return;
  }
  setState('ready');
  post({ type: 'paysys:ready' });
  reportHeight();
}());
