// Injected into Neuroglancer's index.html by webapp/viewer/neuroglancer_client.py, before the
// client's own scripts. The wheel's client is the Python-integration build: it keeps an
// EventSource open on <prefix>/events/<token> and POSTs its state, actions and credential
// requests to the same prefix. No Python server is behind Annotome's viewer (the page restores
// the state itself), so those calls are answered here: an open viewer then holds no server
// connection, worker or thread, and sends no request per camera move.
(function () {
  "use strict";
  var channel = /\/neuroglancer\/(events|state|action|credentials|volume_response)\//;

  function isChannel(url) {
    try {
      return channel.test(new URL(String(url), window.location.href).pathname);
    } catch (e) {
      return false;
    }
  }

  var RealEventSource = window.EventSource;
  function LocalEventSource(url) {
    this.url = String(url);
    this.readyState = 0;
    this.withCredentials = false;
    this.onopen = null;
    this.onmessage = null;
    this.onerror = null;
    var source = this;
    // The client sets onopen after construction: open on the next turn, as a server would.
    window.setTimeout(function () {
      if (source.readyState === 2) return;
      source.readyState = 1;
      if (typeof source.onopen === "function") source.onopen(new Event("open"));
    }, 0);
  }
  LocalEventSource.prototype.close = function () {
    this.readyState = 2;
  };
  LocalEventSource.prototype.addEventListener = function () {};
  LocalEventSource.prototype.removeEventListener = function () {};
  LocalEventSource.prototype.dispatchEvent = function () {
    return true;
  };
  function AnnotomeEventSource(url, init) {
    if (isChannel(url)) return new LocalEventSource(url);
    return new RealEventSource(url, init);
  }
  AnnotomeEventSource.CONNECTING = 0;
  AnnotomeEventSource.OPEN = 1;
  AnnotomeEventSource.CLOSED = 2;
  window.EventSource = AnnotomeEventSource;

  var realFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    var url = typeof input === "string" || input instanceof URL ? input : input && input.url;
    if (url !== undefined && isChannel(url)) {
      // What the Python server answers: the new state generation.
      return Promise.resolve(
        new Response('{"g":"0"}', {
          status: 200,
          headers: { "Content-Type": "application/json" },
        }),
      );
    }
    return realFetch(input, init);
  };
  window.annotomeNeuroglancerShim = true;
})();
