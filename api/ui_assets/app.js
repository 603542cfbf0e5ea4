// The Registry Svc dashboard: plain JavaScript, no build step, nothing loaded from elsewhere.
//
// Safety rule: record values reach the page only as text (textContent, text nodes, attribute
// values of names chosen here), never as HTML, so a record cannot inject markup or script.
// The Content-Security-Policy the peer sends (default-src 'self') is the second fence.
//
// Freshness: instances and nodes are watched with blocking reads (?index=N&wait=30s, N being
// the X-Registry-Index of the previous answer), one request in flight per kind; the cluster
// view is polled every few seconds. Errors back off exponentially (1 s to 30 s); a 401 asks
// for a token again. When the peer that served the page stops answering, the page moves to
// another reachable peer's dashboard, handing the token over in the URL fragment (never sent
// to a server) so that it need not be typed again.
//
// Actions (deregister an instance, remove a dead node) are offered only where the token's
// grants (GET /registry-svc/grants) allow them, and each asks for a confirmation.
"use strict";

(function () {
  const TOKEN_KEY = "registry-svc.token";
  const KNOWN_STATUSES = ["Healthy", "Degraded", "Unreachable", "Error", "Unknown", "Stale"];
  const WAIT = "30s";
  const CLUSTER_POLL_MS = 3000;
  const MAX_ROWS = 1000;
  const FILTER_DELAY_MS = 250;
  const TOKEN_FRAGMENT = "#token=";
  // Cluster polls that failed to reach this peer before the page moves to another.
  const FAILOVER_AFTER_FAILURES = 2;
  const FAILOVER_DELAY_MS = 1500;
  const RELATIVE_TIME_REFRESH_MS = 5000;
  const PERMISSION = {
    instanceDelete: "registry-svc:instance:delete",
    nodeDelete: "registry-svc:node:delete",
  };

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

  // The contract's timestamps carry nanoseconds; Date.parse takes milliseconds.
  function parseTime(text) {
    if (typeof text !== "string" || !text) return null;
    const time = Date.parse(text.replace(/(\.\d{3})\d+(?=Z|[+-]\d\d:\d\d$)/, "$1"));
    return isNaN(time) ? null : time;
  }

  function ago(ms) {
    if (typeof ms !== "number" || !isFinite(ms)) return "never";
    const seconds = Math.max(0, Math.round(ms / 1000));
    if (seconds < 60) return seconds + "s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m ago";
    if (seconds < 86400) return Math.floor(seconds / 3600) + "h ago";
    return Math.floor(seconds / 86400) + "d ago";
  }

  // A moment shown as "5s ago" (kept current by refreshTimes), the timestamp itself in its title.
  function timeText(text) {
    const at = parseTime(text);
    return el("span", { class: "ago", title: text || null, "data-time": at }, at === null ? text || "never" : ago(Date.now() - at));
  }

  function refreshTimes() {
    for (const node of document.querySelectorAll("[data-time]")) node.textContent = ago(Date.now() - Number(node.dataset.time));
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
  function watch(session, section, { request, render, pollMs, onFailure }) {
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
          if (onFailure) onFailure(error, failures);
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

  // Another peer's dashboard, with the token handed over in the fragment (a fragment is never
  // sent to a server, and the page there takes it out of the address at once).
  function openPeer(url, token) {
    window.location.assign(url.replace(/\/+$/, "") + "/ui" + TOKEN_FRAGMENT + encodeURIComponent(token));
  }

  function peerLink(session, url) {
    if (typeof url !== "string" || !/^https?:\/\//i.test(url)) return el("span", { class: "muted" }, url || "unknown");
    const link = el("a", { href: url.replace(/\/+$/, "") + "/ui", title: "this peer's own dashboard" }, url);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openPeer(url, session.token);
    });
    return link;
  }

  function quorumNotice(quorum) {
    const box = $("#quorum");
    box.className = "quorum";
    if (!quorum || typeof quorum.needed !== "number") {
      box.hidden = true;
      return;
    }
    const counted = quorum.reachable + " of " + quorum.members + " members reachable from this peer, " + quorum.needed + " needed";
    if (quorum.reachable < quorum.needed) {
      box.classList.add("lost");
      box.textContent = "No majority: " + counted + ". Writes fail until enough peers are back.";
      box.hidden = false;
    } else if (quorum.reachable === quorum.needed && quorum.members > 1) {
      box.classList.add("at-risk");
      box.textContent = "One more failure loses the majority: " + counted + ".";
      box.hidden = false;
    } else {
      box.hidden = true;
    }
  }

  function renderCluster(session, view) {
    session.view = view;
    const peers = Array.isArray(view.peers) ? view.peers : [];
    const self = view.self || {};
    const leader = view.leader || null;
    const leaderCommit = leader && typeof leader.commitIndex === "number" ? leader.commitIndex : null;
    const rows = peers.map((peer) => {
      const isSelf = peer.raft === self.raft;
      const down = peer.reachable === false;
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
        { class: "peer" + (peer.isLeader ? " is-leader" : "") + (down ? " is-down" : ""), "data-raft": peer.raft },
        el("td", null, peerLink(session, peer.url), isSelf ? el("span", { class: "badge self" }, "this peer") : null),
        el("td", { class: "mono" }, peer.raft || "–"),
        el("td", null, role),
        el("td", null, down ? el("span", { class: "badge down" }, "down") : el("span", { class: "badge up" }, "up")),
        el("td", { class: "num" }, formatNumber(peer.appliedIndex)),
        el("td", { class: "num", title: "leader commit index minus this peer's applied index, as last reported" }, behind),
        el("td", { class: "num" }, isSelf ? "–" : typeof peer.lastContactMs === "number" ? ago(peer.lastContactMs) : "never")
      );
    });
    $("#peer-rows").replaceChildren(...rows);
    const down = peers.filter((peer) => peer.reachable === false).length;
    $("#peers-summary").textContent =
      peers.length + (peers.length === 1 ? " peer" : " peers") + (down ? " (" + down + " down)" : "") + " · " +
      (leader ? "leader " + (leader.url || leader.raft) : "no leader known to this peer");
    quorumNotice(view.quorum);
    markLeaders(session);
  }

  // The page's own peer stopped answering: move to a peer that was reachable, the leader first.
  function failover(session) {
    const view = session.view;
    if (!view || session.movingTo) return;
    const here = window.location.origin;
    const others = (Array.isArray(view.peers) ? view.peers : []).filter((peer) =>
      typeof peer.url === "string" && /^https?:\/\//i.test(peer.url) && new URL(peer.url).origin !== here &&
      peer.reachable !== false);
    others.sort((a, b) => Number(b.isLeader) - Number(a.isLeader));
    if (!others.length) return;
    const target = others[0].url;
    session.movingTo = target;
    const banner = $("#failover");
    banner.textContent = "This peer (" + here + ") does not answer: moving to " + target + " …";
    banner.hidden = false;
    setTimeout(() => {
      if (current === session) openPeer(target, session.token);
    }, FAILOVER_DELAY_MS);
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

  // What the token may do, from GET /registry-svc/grants: {permission: reaches every instance}.
  function may(session, permission, slug) {
    const granted = session.grants && session.grants.permissions ? session.grants.permissions[permission] : undefined;
    if (granted === true) return true;
    return granted === false && slug !== undefined && slug === session.grants.slug;
  }

  // Run a confirmed action; its failure is shown in `box`.
  async function act(session, question, box, run) {
    if (!window.confirm(question)) return false;
    try {
      await run();
      box.hidden = true;
      return true;
    } catch (error) {
      if (error instanceof AuthError) {
        expire(session, error.message);
        return false;
      }
      box.textContent = describeError(error);
      box.hidden = false;
      return false;
    }
  }

  function nodeCard(session, node) {
    const usage = node.usage && typeof node.usage === "object" ? node.usage : {};
    const gpus = Array.isArray(node.gpus) ? node.gpus : [];
    const raft = node.raft && typeof node.raft === "object" ? node.raft : {};
    const meta = [node.hostname, node.os, node.region, node.availabilityZone].filter((v) => typeof v === "string" && v);
    const stale = node.status === "Stale";
    let remove = null;
    if (stale && may(session, PERMISSION.nodeDelete)) {
      remove = el("button", { type: "button", class: "danger small", "data-action": "remove-node" }, "Remove record");
      remove.addEventListener("click", () => act(session,
        "Remove the record of node " + node.url + "? It has sent no heartbeat for a while; a peer still running there " +
        "writes its record again at its next heartbeat.", $("#nodes [data-error]"),
        () => api(session, "DELETE", "/registry-svc/node/" + encodeURIComponent(node.url))));
    }
    return el(
      "article",
      { class: "node" + (stale ? " is-stale" : ""), "data-url": node.url, "data-raft": raft.address },
      el(
        "header",
        null,
        el("h3", { class: "mono" }, node.url || node.id || "unknown"),
        statusBadge(node.status),
        el("span", { class: "leader-slot" })
      ),
      meta.length ? el("p", { class: "muted small" }, meta.join(" · ")) : null,
      bar("CPU", percentOf(usage.cpu), cpuText(usage.cpu, node)),
      bar("Memory", percentOf(usage.memory), bytesText(usage.memory)),
      bar("Disk", percentOf(usage.disk), bytesText(usage.disk)),
      gpus.length
        ? el("div", { class: "gpus" }, gpus.map(gpuCard))
        : el("p", { class: "muted small" }, "no GPUs"),
      el("p", { class: "muted small node-instances" }, instancesHere(session, node.url)),
      el("p", { class: "muted small" }, "id " + (node.id || "?") + " · heartbeat ", timeText(node.lastHeartbeat)),
      remove
    );
  }

  function instancesHere(session, url) {
    const listed = (session.instances || []).filter((instance) => instance.nodeUrl === url).length;
    return listed + (listed === 1 ? " listed instance runs" : " listed instances run") + " here";
  }

  // After a new instance list: only each card's count changes, so the cards stay as they are.
  function countInstancesOnNodes(session) {
    for (const card of document.querySelectorAll("#node-cards article.node")) {
      $(".node-instances", card).textContent = instancesHere(session, card.dataset.url);
    }
  }

  // One leader badge, on the node the cluster view calls leader (a node record's own Raft
  // state is only what it last reported, and a dead leader's says leader for ever).
  function markLeaders(session) {
    const leader = session.view && session.view.leader ? session.view.leader.raft : null;
    for (const card of document.querySelectorAll("#node-cards article.node")) {
      const slot = $(".leader-slot", card);
      const isLeader = leader !== null && card.dataset.raft === leader;
      if (isLeader && !slot.childElementCount) slot.append(el("span", { class: "badge leader" }, "★ leader"));
      if (!isLeader) slot.replaceChildren();
    }
  }

  function renderNodes(session, data) {
    if (data) session.nodes = Array.isArray(data.nodes) ? data.nodes.slice() : [];
    const nodes = (session.nodes || []).slice();
    nodes.sort((a, b) => String(a.url).localeCompare(String(b.url)));
    const cards = nodes.map((node) => nodeCard(session, node));
    $("#node-cards").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "No node records yet.")]));
    markLeaders(session);
  }

  // -- instances ------------------------------------------------------------------------------

  // Status and tags go to the API as its own filters; the search (a substring of the slug, id,
  // URL, tags or details) and the sort are applied here, to what the API answered.
  function instanceFilters() {
    const params = [];
    const status = $("#filter-status").value;
    if (status) params.push(["status", status]);
    for (const tag of $("#filter-tags").value.split(",")) {
      if (tag.trim()) params.push(["tag", tag.trim()]);
    }
    return params;
  }

  function searched(instance, words) {
    const haystack = [instance.slug, instance.id, instance.url, instance.details]
      .concat(Array.isArray(instance.tags) ? instance.tags : [])
      .filter((value) => typeof value === "string").join("\n").toLowerCase();
    return words.every((word) => haystack.includes(word));
  }

  const STATUS_ORDER = ["Unreachable", "Error", "Degraded", "Unknown", "Healthy"];
  const SORTS = {
    status: (a, b) => statusRank(a) - statusRank(b) || byText(a.id, b.id),
    id: (a, b) => byText(a.id, b.id),
    url: (a, b) => byText(a.url, b.url),
    heartbeat: (a, b) => (parseTime(b.lastHeartbeat) || 0) - (parseTime(a.lastHeartbeat) || 0) || byText(a.id, b.id),
  };

  function statusRank(instance) {
    const rank = STATUS_ORDER.indexOf(instance.status);
    return rank < 0 ? STATUS_ORDER.indexOf("Unknown") : rank;
  }

  function byText(a, b) {
    return String(a || "").localeCompare(String(b || ""));
  }

  function instanceRow(session, instance) {
    const tags = Array.isArray(instance.tags) ? instance.tags : [];
    const row = el(
      "tr",
      { class: "instance" + (session.selected === instance.id ? " selected" : ""), "data-id": instance.id, tabindex: 0 },
      el("td", null, statusBadge(instance.status)),
      el("td", { class: "mono" }, instance.id || ""),
      el("td", { class: "mono" }, instance.url || ""),
      el("td", null, instance.slug || ""),
      el("td", null, tags.map((tag) => el("span", { class: "tag" }, tag))),
      el("td", { class: "details col-wide" }, instance.details || ""),
      el("td", { class: "mono small col-wide" }, instance.nodeUrl || ""),
      el("td", { class: "small" }, timeText(instance.lastHeartbeat))
    );
    const open = () => {
      session.selected = session.selected === instance.id ? null : instance.id;
      drawInstances(session);
    };
    row.addEventListener("click", open);
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") open();
    });
    return row;
  }

  function groupRow(slug, instances) {
    const healthy = instances.filter((instance) => instance.status === "Healthy").length;
    return el(
      "tr",
      { class: "group", "data-slug": slug === null ? "" : slug },
      el("td", { colspan: 8 },
        el("span", { class: "group-name" }, slug === null ? "(no slug)" : slug),
        el("span", { class: "badge " + (healthy === instances.length ? "up" : healthy ? "part" : "down"),
                     "data-healthy": healthy, "data-total": instances.length },
          healthy + " of " + instances.length + " healthy"))
    );
  }

  const DETAIL_FIELDS = [
    ["id", "ID"], ["url", "URL"], ["status", "Status"], ["details", "Details"], ["slug", "Owner slug"],
    ["tags", "Tags"], ["scheme", "Scheme"], ["host", "Host"], ["ip", "IP"], ["port", "Port"], ["path", "Path"],
    ["nodeUrl", "Node"], ["deploymentId", "Deployment"], ["ttl", "TTL"], ["deregisterAfter", "Deregister after"],
    ["lastHeartbeat", "Last heartbeat"], ["unreachableSince", "Unreachable since"],
  ];

  function detailValue(name, value) {
    if (name === "lastHeartbeat" || name === "unreachableSince") {
      return el("span", null, timeText(value), el("span", { class: "muted small" }, " · " + value));
    }
    if (Array.isArray(value)) return value.map((item) => el("span", { class: "tag" }, String(item)));
    return String(value);
  }

  function drawDetail(session) {
    const panel = $("#instance-detail");
    const id = session.selected;
    if (id === null || id === undefined) {
      panel.hidden = true;
      return;
    }
    const instance = (session.instances || []).find((candidate) => candidate.id === id);
    const fields = $("#detail-fields");
    const actions = $("#detail-actions");
    $("#detail-title").textContent = "Instance " + id;
    if (!instance) {
      fields.replaceChildren(el("p", { class: "muted" }, "This instance is no longer listed."));
      actions.replaceChildren();
      panel.hidden = false;
      return;
    }
    const rows = [];
    for (const [name, label] of DETAIL_FIELDS) {
      const value = instance[name];
      if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) continue;
      rows.push(el("dt", null, label), el("dd", { "data-field": name }, detailValue(name, value)));
    }
    fields.replaceChildren(el("dl", null, rows));
    const buttons = [];
    if (may(session, PERMISSION.instanceDelete, instance.slug)) {
      const deregister = el("button", { type: "button", class: "danger", "data-action": "deregister" }, "Deregister");
      deregister.addEventListener("click", async () => {
        const done = await act(session,
          "Deregister instance " + id + " (" + (instance.url || "no URL") + ")? Proxies stop sending it requests; " +
          "a service that is still running registers itself again at its next heartbeat.",
          $("#detail-error"), () => api(session, "DELETE", "/registry-svc/instance/" + encodeURIComponent(id)));
        if (done) {
          session.selected = null;
          drawInstances(session);
        }
      });
      buttons.push(deregister);
    }
    const close = el("button", { type: "button", "data-action": "close" }, "Close");
    close.addEventListener("click", () => {
      session.selected = null;
      drawInstances(session);
    });
    buttons.push(close);
    actions.replaceChildren(...buttons);
    panel.hidden = false;
  }

  function drawInstances(session) {
    const all = session.instances || [];
    const words = $("#filter-search").value.toLowerCase().split(/\s+/).filter(Boolean);
    const matching = all.filter((instance) => searched(instance, words));
    const order = SORTS[$("#sort").value] || SORTS.status;
    const groups = new Map();
    for (const instance of matching) {
      const slug = typeof instance.slug === "string" && instance.slug ? instance.slug : null;
      if (!groups.has(slug)) groups.set(slug, []);
      groups.get(slug).push(instance);
    }
    const slugs = Array.from(groups.keys()).sort((a, b) => (a === null) - (b === null) || byText(a, b));
    const rows = [];
    let drawn = 0;
    for (const slug of slugs) {
      const members = groups.get(slug).sort(order);
      if (drawn >= MAX_ROWS) break;
      rows.push(groupRow(slug, members));
      for (const instance of members) {
        if (drawn >= MAX_ROWS) break;
        rows.push(instanceRow(session, instance));
        drawn += 1;
      }
    }
    if (!rows.length) {
      rows.push(el("tr", { class: "empty" }, el("td", { colspan: 8, class: "muted" }, "No instances match.")));
    }
    $("#instance-rows").replaceChildren(...rows);
    const services = groups.size + (groups.size === 1 ? " service" : " services");
    $("#instance-count").textContent = matching.length > MAX_ROWS
      ? "showing the first " + MAX_ROWS + " of " + matching.length + " instances: filter to narrow"
      : matching.length + (matching.length === 1 ? " instance" : " instances") + " in " + services;
    drawDetail(session);
  }

  function renderInstances(session, data) {
    session.instances = Array.isArray(data.instances) ? data.instances : [];
    drawInstances(session);
    countInstancesOnNodes(session);
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
    const session = { token, controller: new AbortController(), grants: null, view: null };
    current = session;
    $("#login").hidden = true;
    $("#dashboard").hidden = false;
    $("#sign-out").hidden = false;
    $("#failover").hidden = true;
    $("#instance-detail").hidden = true;
    for (const box of document.querySelectorAll("[data-error]")) box.hidden = true;

    // What the token may do decides which actions are offered; asked once per sign-in.
    api(session, "GET", "/registry-svc/grants", { signal: session.controller.signal }).then((answer) => {
      session.grants = answer.data;
      if (session.nodes) renderNodes(session);
      drawInstances(session);
    }, (error) => {
      if (error instanceof AuthError) expire(session, error.message);
    });

    watch(session, $("#peers"), {
      pollMs: CLUSTER_POLL_MS,
      request: (index, signal) => api(session, "GET", "/registry-svc/cluster", { signal }),
      render: (view) => renderCluster(session, view),
      onFailure: (error, failures) => {
        if (!(error instanceof ApiError) && failures >= FAILOVER_AFTER_FAILURES) failover(session);
      },
    });
    watch(session, $("#nodes"), {
      request: (index, signal) =>
        api(session, "POST", "/registry-svc/nodes", {
          params: index === null ? [] : [["index", index], ["wait", WAIT]],
          signal,
        }),
      render: (data) => renderNodes(session, data),
    });
    const instances = watch(session, $("#instances"), {
      request: (index, signal) =>
        api(session, "GET", "/registry-svc/instances", {
          params: instanceFilters().concat(index === null ? [] : [["index", index], ["wait", WAIT]]),
          signal,
        }),
      render: (data) => renderInstances(session, data),
    });
    session.restartInstances = instances.restart;
  }

  // A token handed over by another peer's dashboard (openPeer): kept, and out of the address.
  function takeHandedToken() {
    if (!window.location.hash.startsWith(TOKEN_FRAGMENT)) return;
    let handed = "";
    try {
      handed = decodeURIComponent(window.location.hash.slice(TOKEN_FRAGMENT.length));
    } catch (_) {
      // a mangled fragment: sign in by hand
    }
    history.replaceState(null, "", window.location.pathname + window.location.search);
    if (handed) sessionStorage.setItem(TOKEN_KEY, handed);
  }

  function setup() {
    takeHandedToken();
    $("#served-by").textContent = "served by " + window.location.origin;
    setInterval(refreshTimes, RELATIVE_TIME_REFRESH_MS);

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
    // The search and the sort work on what was listed; status and tags ask the API again.
    const redraw = () => {
      if (current) drawInstances(current);
    };
    const local = (event) => event.target.id === "filter-search" || event.target.id === "sort";
    const filters = $("#filters");
    filters.addEventListener("input", (event) => (local(event) ? redraw() : refilter()));
    filters.addEventListener("change", (event) => (local(event) ? redraw() : refilter()));
    filters.addEventListener("reset", () => setTimeout(() => {
      redraw();
      refilter();
    }, 0)); // after the fields are cleared
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
