// The Registry Svc dashboard: plain JavaScript, no build step, nothing loaded from elsewhere.
//
// Safety rule: record values reach the page only as text (textContent, text nodes, attribute
// values of names chosen here), never as HTML, so a record cannot inject markup or script.
// The Content-Security-Policy the peer sends (default-src 'self') is the second fence.
//
// Freshness: instances and nodes are watched with blocking reads (?index=N&wait=30s, N being
// the X-Registry-Index of the previous answer), one request in flight per kind; the cluster
// view is polled every few seconds. Errors back off exponentially (1 s to 30 s); a 401 asks
// for a token again.
"use strict";

(function () {
  const TOKEN_KEY = "registry-svc.token";
  const KNOWN_STATUSES = ["Healthy", "Degraded", "Unreachable", "Error", "Unknown", "Stale"];
  const WAIT = "30s";
  const CLUSTER_POLL_MS = 3000;
  const MAX_ROWS = 1000;
  const FILTER_DELAY_MS = 250;

  class AuthError extends Error {}

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // -- building the page without HTML strings ------------------------------------------------

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child)); // a string becomes a text node
    }
    return node;
  }

  const $ = (selector, root) => (root || document).querySelector(selector);

  function statusBadge(status) {
    const text = typeof status === "string" && status ? status : "Unknown";
    const known = KNOWN_STATUSES.includes(text) ? text : "Unknown";
    return el("span", { class: "status status-" + known, "data-status": text }, text);
  }

  function formatBytes(value) {
    if (typeof value !== "number" || !isFinite(value)) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let unit = 0;
    while (Math.abs(value) >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit === 0 ? value.toFixed(0) : value.toFixed(1)) + " " + units[unit];
  }

  function formatNumber(value) {
    return typeof value === "number" && isFinite(value) ? String(value) : "–";
  }

  function percentOf(usage) {
    if (!usage || typeof usage !== "object") return null;
    let percent = typeof usage.percent === "number" ? usage.percent : null;
    if (percent === null && typeof usage.used === "number" && typeof usage.total === "number" && usage.total > 0) {
      percent = (usage.used / usage.total) * 100;
    }
    return percent === null || !isFinite(percent) ? null : Math.min(100, Math.max(0, percent));
  }

  // A labelled horizontal bar; its width is set through the CSSOM, which the CSP allows.
  function bar(label, percent, text) {
    const fill = el("div", { class: "fill" });
    const known = percent !== null;
    if (known) {
      fill.style.width = percent.toFixed(1) + "%";
      fill.classList.add(percent >= 90 ? "high" : percent >= 70 ? "mid" : "low");
    }
    return el(
      "div",
      {
        class: "usage",
        role: "meter",
        "aria-label": label,
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-valuenow": known ? percent.toFixed(1) : null,
        "aria-valuetext": text,
      },
      el("span", { class: "usage-label" }, label),
      el("span", { class: "usage-value" }, text),
      el("div", { class: "bar" }, fill)
    );
  }

  function clockTime(date) {
    return date.toLocaleTimeString([], { hour12: false });
  }

  // -- talking to this peer -------------------------------------------------------------------

  function messageOf(data, response) {
    if (data && typeof data.error === "string" && data.error) return data.error;
    return "HTTP " + response.status + " " + (response.statusText || "");
  }

  async function api(session, method, path, options) {
    const { params = [], body, signal } = options || {};
    const url = new URL(path, window.location.origin);
    for (const [name, value] of params) url.searchParams.append(name, value);
    const headers = { Authorization: "Bearer " + session.token, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (response.status === 401) throw new AuthError(messageOf(data, response));
    if (!response.ok) throw new ApiError(response.status, messageOf(data, response));
    const index = response.headers.get("X-Registry-Index");
    return { data: data || {}, index: index !== null && /^\d+$/.test(index) ? index : null };
  }

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new DOMException("aborted", "AbortError"));
      const onAbort = () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  function backoff(failures) {
    const base = Math.min(30000, 1000 * 2 ** Math.min(failures - 1, 5));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }

  function describeError(error) {
    if (error instanceof ApiError) {
      if (error.status === 403) return "Not allowed (403): " + error.message;
      return "HTTP " + error.status + ": " + error.message;
    }
    return "Cannot reach this peer: " + (error && error.message ? error.message : String(error));
  }

  // One loop per kind of data. `request(index, signal)` fetches (blocking past `index` when it
  // is given); `pollMs` makes it a plain poll instead. restart() drops the index and the
  // request in flight, for a filter change.
  function watch(session, section, { request, render, pollMs }) {
    const live = $("[data-live]", section);
    const errorBox = $("[data-error]", section);
    let index = null;
    let failures = 0;
    let generation = 0;
    let seen = 0;
    let current = null;

    async function loop() {
      while (!session.controller.signal.aborted) {
        if (seen !== generation) {
          seen = generation;
          index = null;
          failures = 0;
        }
        const mine = seen;
        current = new AbortController();
        const relay = () => current.abort();
        session.controller.signal.addEventListener("abort", relay, { once: true });
        try {
          const asked = pollMs ? null : index;
          const started = performance.now();
          const answer = await request(asked, current.signal);
          if (mine !== generation) continue; // asked before a filter change
          render(answer.data);
          failures = 0;
          errorBox.hidden = true;
          errorBox.textContent = "";
          live.textContent =
            (pollMs ? "polled " : "live ") + clockTime(new Date()) + (answer.index ? " · index " + answer.index : "");
          live.classList.remove("stale");
          index = answer.index;
          if (pollMs || index === null) {
            await sleep(pollMs || 5000, current.signal);
          } else if (asked !== null && answer.index === asked && performance.now() - started < 500) {
            await sleep(1000, current.signal); // an early unchanged answer: do not spin
          }
        } catch (error) {
          if (session.controller.signal.aborted) return;
          if (mine !== generation) continue;
          if (error instanceof AuthError) {
            expire(session, error.message);
            return;
          }
          if (error && error.name === "AbortError") continue;
          failures += 1;
          const delay = backoff(failures);
          errorBox.textContent = describeError(error) + " — retrying in " + Math.ceil(delay / 1000) + " s.";
          errorBox.hidden = false;
          live.classList.add("stale");
          try {
            await sleep(delay, current.signal);
          } catch (_) {
            // aborted: the loop looks at why
          }
        } finally {
          session.controller.signal.removeEventListener("abort", relay);
        }
      }
    }

    loop();
    return {
      restart() {
        generation += 1;
        if (current) current.abort();
      },
    };
  }

  // -- peers ----------------------------------------------------------------------------------

  function peerLink(url) {
    if (typeof url !== "string" || !/^https?:\/\//i.test(url)) return el("span", { class: "muted" }, url || "unknown");
    return el("a", { href: url.replace(/\/+$/, "") + "/ui", title: "this peer's own dashboard" }, url);
  }

  function renderCluster(view) {
    const peers = Array.isArray(view.peers) ? view.peers : [];
    const self = view.self || {};
    const leader = view.leader || null;
    const leaderCommit = leader && typeof leader.commitIndex === "number" ? leader.commitIndex : null;
    const rows = peers.map((peer) => {
      const isSelf = peer.raft === self.raft;
      let behind = "–";
      if (peer.isLeader) behind = "0";
      else if (leaderCommit !== null && typeof peer.appliedIndex === "number") {
        behind = String(Math.max(0, leaderCommit - peer.appliedIndex));
      }
      const role = peer.isLeader
        ? el("span", { class: "badge leader" }, "★ leader")
        : el("span", { class: "badge role" }, peer.state || "unknown");
      return el(
        "tr",
        { class: peer.isLeader ? "peer is-leader" : "peer", "data-raft": peer.raft },
        el("td", null, peerLink(peer.url), isSelf ? el("span", { class: "badge self" }, "this peer") : null),
        el("td", { class: "mono" }, peer.raft || "–"),
        el("td", null, role),
        el("td", { class: "num" }, formatNumber(peer.appliedIndex)),
        el("td", { class: "num", title: "leader commit index minus this peer's applied index, as last reported" }, behind),
        el("td", { class: "num" }, typeof peer.lastContactMs === "number" ? peer.lastContactMs + " ms ago" : "–")
      );
    });
    $("#peer-rows").replaceChildren(...rows);
    $("#peers-summary").textContent =
      peers.length + (peers.length === 1 ? " peer" : " peers") + " · " +
      (leader ? "leader " + (leader.url || leader.raft) : "no leader known to this peer");
  }

  // -- nodes ----------------------------------------------------------------------------------

  function cpuText(cpu, node) {
    const percent = percentOf(cpu);
    const cores = typeof node.cpuCount === "number" ? node.cpuCount
      : cpu && typeof cpu.total === "number" ? Math.round(cpu.total / 1000) : null;
    return (percent === null ? "?" : percent.toFixed(0) + " %") + (cores ? " of " + cores + (cores === 1 ? " core" : " cores") : "");
  }

  function bytesText(usage) {
    if (!usage || typeof usage !== "object") return "unknown";
    const percent = percentOf(usage);
    return formatBytes(usage.used) + " / " + formatBytes(usage.total) + (percent === null ? "" : " (" + percent.toFixed(0) + " %)");
  }

  function gpuCard(gpu) {
    const memoryPercent = typeof gpu.memoryUsage === "number" && typeof gpu.memoryTotal === "number" && gpu.memoryTotal > 0
      ? Math.min(100, (gpu.memoryUsage / gpu.memoryTotal) * 100) : null;
    const utilisation = typeof gpu.gpuUtilization === "number" ? Math.min(100, Math.max(0, gpu.gpuUtilization)) : null;
    const facts = [];
    if (typeof gpu.temperature === "number") facts.push(gpu.temperature + " °C");
    if (typeof gpu.powerUsage === "number") {
      facts.push(gpu.powerUsage.toFixed(0) + (typeof gpu.powerCap === "number" ? " / " + gpu.powerCap.toFixed(0) : "") + " W");
    }
    if (gpu.performanceState) facts.push(String(gpu.performanceState));
    if (Array.isArray(gpu.processDetails)) {
      facts.push(gpu.processDetails.length + (gpu.processDetails.length === 1 ? " process" : " processes"));
    }
    return el(
      "div",
      { class: "gpu", "data-gpu": gpu.id },
      el("div", { class: "gpu-name" }, "GPU " + formatNumber(gpu.intraNodeId) + " · " + (gpu.name || "unknown")),
      bar("GPU utilisation", utilisation, utilisation === null ? "n/a" : utilisation.toFixed(0) + " %"),
      bar("GPU memory", memoryPercent,
        typeof gpu.memoryUsage === "number" ? gpu.memoryUsage + " / " + formatNumber(gpu.memoryTotal) + " MiB" : "n/a"),
      facts.length ? el("div", { class: "muted small" }, facts.join(" · ")) : null
    );
  }

  function nodeCard(node) {
    const usage = node.usage && typeof node.usage === "object" ? node.usage : {};
    const gpus = Array.isArray(node.gpus) ? node.gpus : [];
    const raft = node.raft && typeof node.raft === "object" ? node.raft : {};
    const meta = [node.hostname, node.os, node.region, node.availabilityZone].filter((v) => typeof v === "string" && v);
    return el(
      "article",
      { class: "node", "data-url": node.url },
      el(
        "header",
        null,
        el("h3", { class: "mono" }, node.url || node.id || "unknown"),
        statusBadge(node.status),
        raft.state === "leader" ? el("span", { class: "badge leader" }, "★ leader") : null
      ),
      meta.length ? el("p", { class: "muted small" }, meta.join(" · ")) : null,
      bar("CPU", percentOf(usage.cpu), cpuText(usage.cpu, node)),
      bar("Memory", percentOf(usage.memory), bytesText(usage.memory)),
      bar("Disk", percentOf(usage.disk), bytesText(usage.disk)),
      gpus.length
        ? el("div", { class: "gpus" }, gpus.map(gpuCard))
        : el("p", { class: "muted small" }, "no GPUs"),
      el("p", { class: "muted small" }, "id " + (node.id || "?") + " · heartbeat " + (node.lastHeartbeat || "never"))
    );
  }

  function renderNodes(data) {
    const nodes = Array.isArray(data.nodes) ? data.nodes.slice() : [];
    nodes.sort((a, b) => String(a.url).localeCompare(String(b.url)));
    const cards = nodes.map(nodeCard);
    $("#node-cards").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "No node records yet.")]));
  }

  // -- instances ------------------------------------------------------------------------------

  function instanceFilters() {
    const params = [];
    const slug = $("#filter-slug").value.trim();
    const status = $("#filter-status").value;
    if (slug) params.push(["slug", slug]);
    if (status) params.push(["status", status]);
    for (const tag of $("#filter-tags").value.split(",")) {
      if (tag.trim()) params.push(["tag", tag.trim()]);
    }
    return params;
  }

  function instanceRow(instance) {
    const tags = Array.isArray(instance.tags) ? instance.tags : [];
    return el(
      "tr",
      { class: "instance", "data-id": instance.id },
      el("td", null, statusBadge(instance.status)),
      el("td", { class: "mono" }, instance.id || ""),
      el("td", { class: "mono" }, instance.url || ""),
      el("td", null, instance.slug || ""),
      el("td", null, tags.map((tag) => el("span", { class: "tag" }, tag))),
      el("td", { class: "details" }, instance.details || ""),
      el("td", { class: "mono small" }, instance.nodeUrl || ""),
      el("td", { class: "small", title: instance.lastHeartbeat || "" }, (instance.lastHeartbeat || "").replace(/\.\d+Z$/, "Z"))
    );
  }

  function renderInstances(data) {
    const instances = Array.isArray(data.instances) ? data.instances.slice() : [];
    instances.sort((a, b) => String(a.slug).localeCompare(String(b.slug)) || String(a.url).localeCompare(String(b.url)));
    const shown = instances.slice(0, MAX_ROWS);
    const rows = shown.map(instanceRow);
    if (!rows.length) {
      rows.push(el("tr", { class: "empty" }, el("td", { colspan: 8, class: "muted" }, "No instances match.")));
    }
    $("#instance-rows").replaceChildren(...rows);
    $("#instance-count").textContent = instances.length > MAX_ROWS
      ? "showing the first " + MAX_ROWS + " of " + instances.length + " instances: filter to narrow"
      : instances.length + (instances.length === 1 ? " instance" : " instances");
  }

  // -- signing in and out ---------------------------------------------------------------------

  let current = null;

  function showLogin(message) {
    $("#dashboard").hidden = true;
    $("#sign-out").hidden = true;
    $("#login").hidden = false;
    const box = $("#login-error");
    box.textContent = message || "";
    box.hidden = !message;
    const input = $("#token");
    input.value = "";
    input.focus();
  }

  function stop() {
    if (current) current.controller.abort();
    current = null;
  }

  function expire(session, message) {
    if (session !== current) return;
    sessionStorage.removeItem(TOKEN_KEY);
    stop();
    showLogin("The token was refused (401): " + message + ". Enter a token again.");
  }

  function start(token) {
    stop();
    const session = { token, controller: new AbortController() };
    current = session;
    $("#login").hidden = true;
    $("#dashboard").hidden = false;
    $("#sign-out").hidden = false;
    for (const box of document.querySelectorAll("[data-error]")) box.hidden = true;

    watch(session, $("#peers"), {
      pollMs: CLUSTER_POLL_MS,
      request: (index, signal) => api(session, "GET", "/registry-svc/cluster", { signal }),
      render: renderCluster,
    });
    watch(session, $("#nodes"), {
      request: (index, signal) =>
        api(session, "POST", "/registry-svc/nodes", {
          params: index === null ? [] : [["index", index], ["wait", WAIT]],
          signal,
        }),
      render: renderNodes,
    });
    const instances = watch(session, $("#instances"), {
      request: (index, signal) =>
        api(session, "GET", "/registry-svc/instances", {
          params: instanceFilters().concat(index === null ? [] : [["index", index], ["wait", WAIT]]),
          signal,
        }),
      render: renderInstances,
    });
    session.restartInstances = instances.restart;
  }

  function setup() {
    $("#served-by").textContent = "served by " + window.location.origin;

    $("#login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("#token").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("#token").value = "";
      start(token);
    });

    $("#sign-out").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      stop();
      showLogin("Signed out.");
    });

    let timer = null;
    const refilter = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (current && current.restartInstances) current.restartInstances();
      }, FILTER_DELAY_MS);
    };
    const filters = $("#filters");
    filters.addEventListener("input", refilter);
    filters.addEventListener("change", refilter);
    filters.addEventListener("reset", () => setTimeout(refilter, 0)); // after the fields are cleared
    filters.addEventListener("submit", (event) => {
      event.preventDefault();
      refilter();
    });

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) start(saved);
    else showLogin("");
  }

  setup();
})();
