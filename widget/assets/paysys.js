/*
 * PaySys embeddable card form (served by the gateway at /widget/paysys.js), for a
 * partner's own page. Load it with the integrity value from docs/widget-scripts.md:
 *
 *   <script src="https://GATEWAY/widget/paysys.js" integrity="sha384-…" crossorigin="anonymous"></script>
 *   const form = PaySys.mount('#pay-form', {
 *     checkoutId: 'chk_…', clientSecret: 'chk_…_secret_…',   // from checkout.create
 *     gatewayUrl: 'https://GATEWAY', lang: 'uz' | 'ru' | 'en',
 *     style: { accent: '#0a7d4f', radius: '8px' }             // optional, see frame.js
 *   });
 *   form.on('ready', fn); form.on('token', fn); form.on('success', fn);
 *   form.on('declined', fn); form.on('challenge', fn); form.on('error', fn);
 *   payButton.onclick = () => form.submit();
 *
 * Never sees card data: the card is typed into the intake's frame, which hands back a
 * token. This script creates a payment attempt on the checkout (cross-origin, with the
 * client secret; the partner's origin must be one of its allowed origins), frames the
 * card form, relays submit, pays with the token (client secret in the body) and emits:
 *   ready      {}                                      the card form can be used
 *   token      {token, brand, last4}                   a card was accepted; paying follows
 *   success    {redirect_url}                          paid; without a listener the page
 *                                                      goes to redirect_url (the signed return)
 *   challenge  {redirect_url}                          3-D Secure; without a listener the page
 *                                                      goes there (it must, to finish)
 *   declined   {code, message, attempts_left}          a new card form follows by itself
 *                                                      while attempts are left
 *   processing {}                                      the payment is still running
 *   error      {code, message}                         e.g. validation_failed (shown in the
 *                                                      form), attempts_exhausted, network_error
 *
 * A partner page with its own CSP needs: script-src with this file's hash (or the
 * gateway's URL), frame-src with the intake's origin, connect-src with the gateway's
 * origin. The partner's origin must be in its allowed origins (merchant settings).
 *
 * The element gets div.paysys-card-form[data-state=loading|ready|paying|declined|done|failed]
 * holding iframe.paysys-card-frame. Messages are accepted only from the intake's origin
 * (the frame_url's) and the frame's window; submit is sent only to that origin.
 */
(function (global) {
  'use strict';

  var EVENTS = ['ready', 'token', 'success', 'challenge', 'declined', 'processing', 'error'];
  var MIN_FRAME_HEIGHT = 120;
  var MAX_FRAME_HEIGHT = 1200;
  var FRAME_TITLES = { uz: 'Xavfsiz karta shakli', ru: 'Защищённая форма карты', en: 'Secure card form' };

  function originOf(url) {
    try {
      var u = new URL(url);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.origin : null;
    } catch (e) {
      return null;
    }
  }

  function mount(target, options) {
    var opts = options || {};
    var host = typeof target === 'string' ? document.querySelector(target) : target;
    var gateway = originOf(String(opts.gatewayUrl || ''));
    if (!host || !gateway || typeof opts.checkoutId !== 'string' || typeof opts.clientSecret !== 'string') {
      throw new Error('PaySys.mount: an element, gatewayUrl, checkoutId and clientSecret are required');
    }
    var lang = ['uz', 'ru', 'en'].indexOf(opts.lang) >= 0 ? opts.lang : null;
    var checkoutPath = gateway + '/checkout/' + encodeURIComponent(opts.checkoutId);
    var listeners = {};
    EVENTS.forEach(function (e) { listeners[e] = []; });

    var box = document.createElement('div');
    box.className = 'paysys-card-form';
    host.replaceChildren(box);

    var attempt = null;
    var frame = null;
    var intakeOrigin = null;
    var destroyed = false;

    function setState(state) { box.setAttribute('data-state', state); }

    function emit(name, detail) {
      listeners[name].slice().forEach(function (fn) {
        try { fn(detail); } catch (e) { setTimeout(function () { throw e; }); }
      });
      return listeners[name].length > 0;
    }

    function request(method, path, body) {
      var init = {
        method: method,
        mode: 'cors',
        credentials: 'omit',
        cache: 'no-store',
        redirect: 'error',
        referrerPolicy: 'origin',
        headers: { 'Accept': 'application/json' }
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
        return { ok: false, status: 0, answer: { error: { code: 'network_error', message: 'no connection to PaySys' } } };
      });
    }

    function emitError(result) {
      var e = (result.answer && result.answer.error) || {};
      setState('failed');
      emit('error', {
        code: typeof e.code === 'string' ? e.code : 'http_' + result.status,
        message: typeof e.message === 'string' ? e.message : ''
      });
    }

    function removeFrame() {
      attempt = null;
      frame = null;
      box.replaceChildren();
    }

    function startAttempt() {
      removeFrame();
      setState('loading');
      request('POST', checkoutPath + '/attempts', { client_secret: opts.clientSecret, origin: window.location.origin })
        .then(function (result) {
          if (destroyed) return;
          var a = result.answer;
          if (!result.ok || typeof a.attempt_id !== 'string' || typeof a.frame_url !== 'string') {
            emitError(result);
            return;
          }
          var url;
          try { url = new URL(a.frame_url); } catch (e) { url = null; }
          if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
            emitError({ status: 0, answer: { error: { code: 'frame_url_invalid' } } });
            return;
          }
          if (lang) url.searchParams.set('lang', lang);
          intakeOrigin = url.origin;
          attempt = { id: a.attempt_id };
          frame = document.createElement('iframe');
          frame.className = 'paysys-card-frame';
          frame.title = FRAME_TITLES[lang || 'en'];
          frame.height = '260';
          frame.setAttribute('sandbox', 'allow-scripts allow-same-origin');
          frame.referrerPolicy = 'no-referrer';
          frame.src = url.href;
          // CSSOM, not a style attribute: allowed under the partner's own CSP.
          frame.style.border = '0';
          frame.style.width = '100%';
          frame.style.display = 'block';
          box.appendChild(frame);
        });
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

    function go(url) {
      var target = originOf(url) ? url : null;
      if (target) window.location.assign(target);
    }

    function pay(token) {
      if (!attempt) return;
      setState('paying');
      request('POST', checkoutPath + '/pay', {
        client_secret: opts.clientSecret, attempt_id: attempt.id, token: token, browser: browserData()
      }).then(function (result) {
        if (destroyed) return;
        if (!result.ok) {
          emitError(result);
          return;
        }
        var answer = result.answer;
        switch (answer.status) {
          case 'completed':
            setState('done');
            removeFrame();
            if (!emit('success', { redirect_url: answer.redirect_url })) go(answer.redirect_url);
            return;
          case 'challenge':
            if (!emit('challenge', { redirect_url: answer.redirect_url })) go(answer.redirect_url);
            return;
          case 'declined':
            var d = answer.decline || {};
            setState('declined');
            emit('declined', { code: d.code || '', message: d.message || '', attempts_left: answer.attempts_left });
            if (typeof answer.attempts_left !== 'number' || answer.attempts_left > 0) startAttempt();
            else removeFrame();
            return;
          case 'processing':
            emit('processing', {});
            return;
          default:
            emitError({ status: result.status, answer: { error: { code: 'unexpected_answer' } } });
        }
      });
    }

    function onMessage(event) {
      if (!frame || event.origin !== intakeOrigin || event.source !== frame.contentWindow) return;
      var data = event.data;
      if (!data || typeof data !== 'object' || typeof data.type !== 'string') return;
      switch (data.type) {
        case 'paysys:ready':
          setState('ready');
          if (opts.style && typeof opts.style === 'object') {
            frame.contentWindow.postMessage({ type: 'paysys:style', style: opts.style }, intakeOrigin);
          }
          emit('ready', {});
          break;
        case 'paysys:resize':
          if (typeof data.height === 'number' && isFinite(data.height)) {
            frame.height = String(Math.round(Math.min(MAX_FRAME_HEIGHT, Math.max(MIN_FRAME_HEIGHT, data.height))));
          }
          break;
        case 'paysys:submitting':
          setState('paying');
          break;
        case 'paysys:token':
          if (typeof data.token !== 'string' || !data.token) break;
          emit('token', { token: data.token, brand: data.brand, last4: data.last4 });
          pay(data.token);
          break;
        case 'paysys:error':
          var code = String(data.code || '');
          setState(/^grant_|^origin_|^frame_/.test(code) ? 'failed' : 'ready');
          emit('error', { code: code, message: String(data.message || '') });
          // A grant that timed out or was spent: a new attempt brings a new one.
          if (code === 'grant_expired' || code === 'grant_used') startAttempt();
          break;
      }
    }

    window.addEventListener('message', onMessage);
    startAttempt();

    return {
      on: function (name, fn) {
        if (!listeners[name] || typeof fn !== 'function') throw new Error('PaySys: unknown event ' + name);
        listeners[name].push(fn);
        return this;
      },
      submit: function () {
        if (!frame || box.getAttribute('data-state') !== 'ready') {
          emit('error', { code: 'not_ready', message: '' });
          return;
        }
        frame.contentWindow.postMessage({ type: 'paysys:submit' }, intakeOrigin);
      },
      destroy: function () {
        destroyed = true;
        window.removeEventListener('message', onMessage);
        removeFrame();
        host.replaceChildren();
      }
    };
  }

  global.PaySys = Object.freeze({ mount: mount, version: '1' });
}(window));
