/*
 * PaySys hosted checkout page (served by the gateway at /checkout/{id}, this file at
 * /widget/checkout.js).
 *
 * Never sees card data: the card is typed into the intake's frame, which hands back a
 * token. This script asks the gateway for a payment attempt (a one-time grant inside the
 * frame URL's fragment), frames the card form, asks it to submit when the buyer presses
 * pay, pays with the token and the browser data 3-D Secure needs, and then follows the
 * gateway: to the 3-D Secure challenge, to the merchant, or back to a fresh card form
 * after a decline.
 *
 * DOM contract (rendered by paysys_widget::pages::checkout_page; browser tests rely on it):
 *   main#checkout       data-checkout-id, data-intake-origin, data-lang, data-texts (JSON)
 *                       data-state  loading | ready | paying | declined | processing |
 *                                   redirecting | failed
 *   #merchant-name, #amount, #description, nav.langs a[data-lang] (links ?lang=uz|ru|en)
 *   #card-frame         holds iframe#card-iframe (src = the attempt's frame_url)
 *   button#pay          carries the amount; disabled until the frame is ready; aria-busy
 *                       while paying
 *   p#notice.error      a message above the card form (role=alert)
 *   button#again        "try again" after an error that a new attempt may cure (hidden otherwise)
 *   section#declined.outcome[data-outcome=declined]   #decline-message.error,
 *                       #attempts-left, button#retry ("try another card": new attempt,
 *                       new frame)
 *   section#processing.outcome[data-outcome=processing]
 *
 * Messages: accepted only from the intake's origin and from the frame's window
 * (paysys:ready, paysys:submitting, paysys:token, paysys:error, paysys:resize); sent only
 * to the intake's origin (paysys:submit).
 *
 * Gateway calls (same origin, JSON): POST /checkout/{id}/attempts {} →
 * {attempt_id, frame_url}; POST /checkout/{id}/pay {attempt_id, token, browser} →
 * {status, redirect_url?, decline?, attempts_left}; GET /checkout/{id}/status → {status}
 * while processing. When the checkout has ended (expired, cancelled, completed, or no
 * longer processing) the page reloads once, with `ended=1` added to its query, and the
 * gateway shows the outcome screen.
 */
(function () {
  'use strict';

  var SUBMIT_TIMEOUT_MS = 60000;
  var FRAME_LOAD_TIMEOUT_MS = 20000;
  var POLL_INTERVAL_MS = 3000;
  var POLL_LIMIT_MS = 10 * 60 * 1000;
  var MIN_FRAME_HEIGHT = 120;
  var MAX_FRAME_HEIGHT = 1200;

  var root = document.getElementById('checkout');
  if (!root || !root.getAttribute('data-checkout-id')) return;

  var texts = {};
  try { texts = JSON.parse(root.getAttribute('data-texts') || '{}'); } catch (e) { texts = {}; }
  var checkoutPath = '/checkout/' + encodeURIComponent(root.getAttribute('data-checkout-id'));
  var intakeOrigin = root.getAttribute('data-intake-origin') || '';
  var frameBox = document.getElementById('card-frame');
  var payButton = document.getElementById('pay');
  var payLabel = payButton.querySelector('.pay-label');
  var notice = document.getElementById('notice');
  var cardPanel = document.getElementById('card-panel');
  var declined = document.getElementById('declined');
  var declineMessage = document.getElementById('decline-message');
  var attemptsLeft = document.getElementById('attempts-left');
  var retry = document.getElementById('retry');
  var again = document.getElementById('again');
  var processing = document.getElementById('processing');

  var attempt = null;
  var frame = null;
  var submitTimer = null;

  function text(key, values) {
    var t = texts[key] || texts.generic_error || '';
    Object.keys(values || {}).forEach(function (k) { t = t.split('{' + k + '}').join(String(values[k])); });
    return t;
  }

  function setState(state) {
    root.setAttribute('data-state', state);
    var paying = state === 'paying' || state === 'redirecting';
    payButton.disabled = state !== 'ready';
    payButton.setAttribute('aria-busy', paying ? 'true' : 'false');
    payLabel.textContent = paying ? text('paying') : payButton.getAttribute('data-label');
    frameBox.setAttribute('aria-busy', state === 'loading' || paying ? 'true' : 'false');
    cardPanel.hidden = state === 'declined' || state === 'processing';
    declined.hidden = state !== 'declined';
    processing.hidden = state !== 'processing';
  }

  function showNotice(message) {
    notice.textContent = message || '';
    notice.hidden = !message;
  }

  function request(method, path, body) {
    var init = {
      method: method,
      headers: { 'Accept': 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error'
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      return response.json().then(
        function (answer) { return { ok: response.ok, status: response.status, answer: answer || {} }; },
        function () { return { ok: response.ok, status: response.status, answer: {} }; }
      );
    }, function () {
      return { ok: false, status: 0, answer: { error: { code: 'network_error' } } };
    });
  }

  function errorCode(result) {
    var e = result.answer && result.answer.error;
    return e && typeof e.code === 'string' ? e.code : (result.status === 0 ? 'network_error' : 'http_' + result.status);
  }

  function webUrl(url) {
    try {
      var u = new URL(url, window.location.href);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function navigate(url) {
    var target = webUrl(url);
    if (!target) {
      fail(text('generic_error'));
      return;
    }
    setState('redirecting');
    showNotice('');
    window.location.assign(target);
  }

  // The checkout can no longer be paid here: what the gateway says about it.
  function handleGatewayError(result) {
    var code = errorCode(result);
    switch (code) {
      case 'checkout_expired':
      case 'checkout_cancelled':
      case 'checkout_completed':
        showEnded();
        return;
      case 'attempts_exhausted':
        fail(text('attempts_exhausted'));
        return;
      case 'card_testing_suspected':
        fail(text('paused'));
        return;
      case 'rate_limited':
        retryable(text('rate_limited'));
        return;
      case 'attempt_unknown':
      case 'attempt_used':
      case 'token_not_for_checkout':
        startAttempt(text('form_reloaded'));
        return;
      case 'network_error':
        retryable(text('network_error'));
        return;
      default:
        retryable(text('generic_error'));
    }
  }

  // The checkout has ended: the gateway renders its outcome screen at the same address.
  // `ended` marks the reload, so a page that still offers the form does not reload again.
  function showEnded() {
    var url = new URL(window.location.href);
    if (url.searchParams.has('ended')) {
      fail(text('generic_error'));
      return;
    }
    url.searchParams.set('ended', '1');
    setState('redirecting');
    window.location.replace(url.href);
  }

  // Nothing more can be done on this page.
  function fail(message) {
    removeFrame();
    setState('failed');
    again.hidden = true;
    showNotice(message);
  }

  // Shown with the "try again" button, which starts a new attempt.
  function retryable(message) {
    removeFrame();
    setState('failed');
    showNotice(message);
    again.hidden = false;
    again.focus();
  }

  function removeFrame() {
    frame = null;
    attempt = null;
    clearTimeout(submitTimer);
    frameBox.replaceChildren();
  }

  function startAttempt(message) {
    removeFrame();
    var loading = document.createElement('p');
    loading.className = 'frame-loading';
    loading.textContent = text('loading_form');
    frameBox.replaceChildren(loading);
    again.hidden = true;
    showNotice(message || '');
    setState('loading');
    request('POST', checkoutPath + '/attempts', {}).then(function (result) {
      var a = result.answer;
      if (!result.ok || typeof a.attempt_id !== 'string' || typeof a.frame_url !== 'string') {
        handleGatewayError(result);
        return;
      }
      var frameUrl = webUrl(a.frame_url);
      if (!frameUrl || new URL(frameUrl).origin !== intakeOrigin) {
        fail(text('generic_error'));
        return;
      }
      attempt = { id: a.attempt_id };
      frame = document.createElement('iframe');
      frame.id = 'card-iframe';
      frame.title = text('frame_title');
      frame.height = '260';
      frame.setAttribute('sandbox', 'allow-scripts allow-same-origin');
      frame.referrerPolicy = 'no-referrer';
      // The card form speaks the page's language, which the buyer may have switched
      // since the checkout was created (the gateway names the checkout's).
      var frameTarget = new URL(frameUrl);
      var pageLang = root.getAttribute('data-lang');
      if (pageLang) frameTarget.searchParams.set('lang', pageLang);
      frame.src = frameTarget.href;
      frameBox.appendChild(frame);
      var thisFrame = frame;
      setTimeout(function () {
        if (frame === thisFrame && root.getAttribute('data-state') === 'loading') retryable(text('network_error'));
      }, FRAME_LOAD_TIMEOUT_MS);
    });
  }

  function submitCard() {
    if (root.getAttribute('data-state') !== 'ready' || !frame || !frame.contentWindow) return;
    showNotice('');
    setState('paying');
    frame.contentWindow.postMessage({ type: 'paysys:submit' }, intakeOrigin);
    clearTimeout(submitTimer);
    submitTimer = setTimeout(function () {
      if (root.getAttribute('data-state') === 'paying') {
        setState('ready');
        showNotice(text('generic_error'));
      }
    }, SUBMIT_TIMEOUT_MS);
  }

  function browserData() {
    return {
      java_enabled: false,
      javascript_enabled: true,
      language: navigator.language || '',
      color_depth: window.screen.colorDepth,
      screen_height: window.screen.height,
      screen_width: window.screen.width,
      tz: new Date().getTimezoneOffset(),
      user_agent: navigator.userAgent
    };
  }

  function pay(token) {
    if (!attempt) return;
    setState('paying');
    request('POST', checkoutPath + '/pay', { attempt_id: attempt.id, token: token, browser: browserData() })
      .then(function (result) {
        clearTimeout(submitTimer);
        if (!result.ok) {
          handleGatewayError(result);
          return;
        }
        var answer = result.answer;
        switch (answer.status) {
          case 'completed':
          case 'challenge':
            navigate(answer.redirect_url);
            return;
          case 'declined':
            removeFrame();
            showDeclined(declineText(answer.decline), answer.attempts_left);
            return;
          case 'processing':
            removeFrame();
            pollStatus(Date.now());
            return;
          default:
            retryable(text('generic_error'));
        }
      });
  }

  function declineText(decline) {
    var code = decline && typeof decline.code === 'string' ? decline.code : '';
    var table = texts.decline || {};
    return Object.prototype.hasOwnProperty.call(table, code) ? table[code] : texts.decline_default || '';
  }

  function showDeclined(message, left) {
    setState('declined');
    declineMessage.textContent = message;
    var exhausted = typeof left === 'number' && left <= 0;
    attemptsLeft.textContent = exhausted ? text('attempts_exhausted')
      : typeof left === 'number' ? text('attempts_left', { count: left }) : '';
    attemptsLeft.hidden = attemptsLeft.textContent === '';
    retry.hidden = exhausted;
    if (!exhausted) retry.focus();
  }

  function pollStatus(startedAt) {
    setState('processing');
    setTimeout(function () {
      request('GET', checkoutPath + '/status').then(function (result) {
        var status = result.ok ? result.answer.status : null;
        if (status && status !== 'processing') {
          // Ended one way or the other: the gateway renders what happened.
          showEnded();
        } else if (Date.now() - startedAt < POLL_LIMIT_MS) {
          pollStatus(startedAt);
        }
      });
    }, POLL_INTERVAL_MS);
  }

  window.addEventListener('message', function (event) {
    if (event.origin !== intakeOrigin || !frame || event.source !== frame.contentWindow) return;
    var data = event.data;
    if (!data || typeof data !== 'object' || typeof data.type !== 'string') return;
    switch (data.type) {
      case 'paysys:ready':
        var loading = frameBox.querySelector('.frame-loading');
        if (loading) loading.hidden = true;
        setState('ready');
        break;
      case 'paysys:resize':
        if (typeof data.height === 'number' && isFinite(data.height)) {
          frame.height = String(Math.round(Math.min(MAX_FRAME_HEIGHT, Math.max(MIN_FRAME_HEIGHT, data.height))));
        }
        break;
      case 'paysys:submitting':
        if (root.getAttribute('data-state') === 'ready') setState('paying');
        break;
      case 'paysys:token':
        if (typeof data.token === 'string' && data.token) pay(data.token);
        break;
      case 'paysys:error':
        clearTimeout(submitTimer);
        if (data.code === 'grant_expired' || data.code === 'grant_used') {
          // Only after a submit (the intake said so): a new attempt brings a new grant.
          startAttempt(text('form_reloaded'));
        } else if (/^grant_|^origin_|^frame_/.test(String(data.code))) {
          // The frame refused its grant as it loaded: another attempt would too.
          fail(text('generic_error'));
        } else if (root.getAttribute('data-state') === 'paying') {
          // Field errors are shown in the frame, next to the field.
          setState('ready');
        }
        break;
    }
  });

  payButton.addEventListener('click', submitCard);
  retry.addEventListener('click', function () { startAttempt(''); });
  again.addEventListener('click', function () { startAttempt(''); });
  // Back from the 3-D Secure page via the history: start clean.
  window.addEventListener('pageshow', function (event) {
    if (event.persisted) window.location.reload();
  });

  startAttempt(notice.textContent);
}());
