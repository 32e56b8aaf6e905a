// Parley demo client: join a conference, publish camera+microphone, view every other stream.
//
// Flow (the same one the official clients follow):
//   push channel (WebSocket) or long poll  ->  create (409 = exists)  ->  join
//   -> publishStream (MIC_AND_CAM, trickle ICE)  and, in parallel,  GET conference (version V + streams)
//   -> view each other stream (recvonly offer, viewStream, trickle ICE)
//   -> follow events with conferenceVersion >= V: view on ConferenceStreamPublishedEvent, drop the tile on
//      ConferenceStreamUnpublishedEvent / ConferenceLeftEvent.
// For tests: `window.parleyDemo.stats()` and `?report=<url>` (POSTs the same JSON every `reportMs` ms).
//
// Meeting tokens (`?access_token=`, as a Coviu entry_url carries it): the token's `meeting` grant names the
// conference and the role. A guest (grant `lobby`) is answered `{lobby: true}` by join: it shows "waiting to
// be let in" until its ConferenceLobbyAdmittedEvent, then goes on as joined. A host (moderator, or a user
// without a grant) is shown the waiting endpoints with Admit / Reject buttons.
"use strict";

(() => {
  const API = "/rtc-api/conferences";
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const MAX_ERRORS = 50;

  const state = {
    phase: "idle", // idle | joining | waiting | joined | leaving | left | failed
    grant: null, // the meeting token's grant (claim `meeting`), if any
    lobby: new Map(), // endpointId -> list item, of the endpoints waiting to be let in (hosts only)
    session: 0, // bumped by every join/leave: async work of an older session stops where it is
    token: "",
    conferenceId: "",
    endpointId: "",
    localStream: null,
    publisher: null, // {pc, streamId, trickle}
    remotes: new Map(), // streamId -> {streamId, endpointId, type, pc, viewerId, trickle, tile, closed}
    version: null, // next conferenceVersion expected; null until the conference was read
    syncing: true, // events arriving while the conference is being read wait in `buffered`
    buffered: [],
    transport: params.get("transport") === "poll" ? "poll" : "ws",
    socket: null,
    polling: false,
    errors: [],
    // Milestones in ms since the page started loading (performance.now()), for people and tests.
    timings: {},
  };

  const mark = (name) => {
    state.timings[name] = Math.round(performance.now());
  };

  // ------------------------------------------------------------------ page

  function setStatus(text) {
    $("status").textContent = text;
  }

  function showError(message) {
    const text = `${new Date().toISOString().slice(11, 19)} ${message}`;
    state.errors.push(text);
    if (state.errors.length > MAX_ERRORS) state.errors.shift();
    const item = document.createElement("li");
    item.textContent = text;
    $("errors").prepend(item);
    while ($("errors").children.length > MAX_ERRORS) $("errors").lastChild.remove();
    console.warn("parley demo:", message);
  }

  function randomId(prefix) {
    const bytes = crypto.getRandomValues(new Uint8Array(5));
    return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setPhase(phase) {
    state.phase = phase;
    $("join").disabled = phase === "joining" || phase === "joined" || phase === "leaving";
    $("leave").disabled = !(phase === "joining" || phase === "waiting" || phase === "joined");
    for (const id of ["token", "conference", "endpoint"]) $(id).disabled = $("join").disabled;
  }

  // The grant a meeting token carries (claim `meeting`); the page only reads it, the server checks it.
  function grantOf(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(payload + "=".repeat((4 - (payload.length % 4)) % 4)));
      return claims.meeting && typeof claims.meeting === "object" ? claims.meeting : null;
    } catch {
      return null;
    }
  }

  // Hosts run the lobby: a moderator's grant, or a conference API user without one.
  const hosts = () => !state.grant || state.grant.role === "moderator";

  // ------------------------------------------------------------------ lobby (host side)

  function showWaiting(endpointId, metadata) {
    if (!hosts() || endpointId === state.endpointId || state.lobby.has(endpointId)) return;
    const item = document.createElement("li");
    item.dataset.endpointId = endpointId;
    const name = metadata && metadata.name ? `${metadata.name} (${endpointId})` : endpointId;
    const label = document.createElement("span");
    label.textContent = `${name} is waiting to be let in `;
    const admit = document.createElement("button");
    admit.type = "button";
    admit.textContent = "Admit";
    admit.className = "admit";
    admit.onclick = () => decide("admitLobbyEndpoint", endpointId);
    const reject = document.createElement("button");
    reject.type = "button";
    reject.textContent = "Reject";
    reject.className = "reject";
    reject.onclick = () => decide("rejectLobbyEndpoint", endpointId);
    item.append(label, admit, reject);
    $("lobby-list").append(item);
    state.lobby.set(endpointId, item);
    $("lobby").hidden = false;
  }

  function dropWaiting(endpointId) {
    const item = state.lobby.get(endpointId);
    if (item) item.remove();
    state.lobby.delete(endpointId);
    $("lobby").hidden = state.lobby.size === 0;
  }

  async function decide(op, endpointId) {
    try {
      await post(op, { lobbyEndpointId: endpointId });
    } catch (err) {
      showError(`${op}: ${err.message}`);
    }
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, message) {
      super(`${status} ${message}`);
      this.status = status;
    }
  }

  async function call(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${state.token}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, `network error on ${path}: ${err.message}`);
    }
    const text = await response.text();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (!response.ok) {
      const message = parsed && parsed.message ? parsed.message : response.statusText;
      throw new ApiError(response.status, `${path.split("?")[0]}: ${message}`);
    }
    return parsed;
  }

  const post = (op, body) =>
    call("POST", `${API}/${op}`, { conferenceId: state.conferenceId, userEndpointId: state.endpointId, ...body });

  const streamIdOf = (value) => (value && typeof value === "object" ? value.id : value);

  // ------------------------------------------------------------------ trickle ICE

  // Candidates are gathered before the server has named the stream (or the viewer): they wait here,
  // then go out in batches, one request at a time.
  class Trickle {
    constructor(send) {
      this.send = send;
      this.queue = [];
      this.ready = false;
      this.sending = false;
    }

    add(candidate) {
      if (!candidate || !candidate.candidate) return; // end-of-candidates
      this.queue.push({
        candidate: candidate.candidate,
        sdpMid: candidate.sdpMid,
        sdpMLineIndex: candidate.sdpMLineIndex,
      });
      this.flush();
    }

    start() {
      this.ready = true;
      this.flush();
    }

    async flush() {
      if (!this.ready || this.sending) return;
      this.sending = true;
      try {
        while (this.queue.length) {
          const batch = this.queue.splice(0);
          try {
            await this.send(batch);
          } catch (err) {
            showError(`ICE candidates: ${err.message}`);
          }
        }
      } finally {
        this.sending = false;
      }
    }
  }

  // ------------------------------------------------------------------ publishing

  async function publish(session) {
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: { ideal: 640 }, height: { ideal: 480 } },
      });
    } catch (err) {
      showError(`camera/microphone unavailable (${err.name}): viewing only`);
      return;
    }
    if (session !== state.session) {
      media.getTracks().forEach((t) => t.stop());
      return;
    }
    state.localStream = media;
    $("local").srcObject = media;

    const pc = new RTCPeerConnection({ iceServers: [] });
    const publisher = { pc, streamId: null, trickle: null };
    publisher.trickle = new Trickle((iceCandidates) =>
      post("addPublishStreamIceCandidates", { streamId: { id: publisher.streamId }, iceCandidates }),
    );
    state.publisher = publisher;
    pc.onicecandidate = (e) => publisher.trickle.add(e.candidate);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") showError("publishing connection failed");
    };
    for (const track of media.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [media] });
    await pc.setLocalDescription(await pc.createOffer());
    const result = await post("publishStream", {
      conferenceStreamType: "MIC_AND_CAM",
      sdpOffer: pc.localDescription.sdp,
    });
    if (session !== state.session) return;
    publisher.streamId = streamIdOf(result.streamId);
    $("local-stream").textContent = publisher.streamId;
    await pc.setRemoteDescription({ type: "answer", sdp: result.sdpAnswer });
    publisher.trickle.start();
    mark("published");
  }

  // ------------------------------------------------------------------ viewing

  function kindsFor(type) {
    if (type === "MIC") return ["audio"];
    if (type === "CAM" || type === "SCREEN") return ["video"];
    return ["audio", "video"];
  }

  function addTile(remote) {
    const tile = document.createElement("figure");
    tile.className = "tile remote";
    tile.dataset.streamId = remote.streamId;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    const caption = document.createElement("figcaption");
    caption.textContent = `${remote.endpointId} · ${remote.type} · ${remote.streamId}`;
    tile.append(video, caption);
    $("videos").append(tile);
    remote.tile = tile;
    return video;
  }

  async function view(session, streamId, endpointId, type) {
    if (!streamId || endpointId === state.endpointId || state.remotes.has(streamId)) return;
    const pc = new RTCPeerConnection({ iceServers: [] });
    const remote = {
      streamId,
      endpointId,
      type,
      pc,
      viewerId: null,
      trickle: null,
      tile: null,
      closed: false,
      timings: { asked: Math.round(performance.now()) },
    };
    state.remotes.set(streamId, remote);
    remote.trickle = new Trickle((iceCandidates) =>
      post("addViewStreamIceCandidates", { streamId: { id: streamId }, viewerId: remote.viewerId, iceCandidates }),
    );
    const video = addTile(remote);
    const incoming = new MediaStream();
    video.srcObject = incoming;
    pc.ontrack = (e) => {
      incoming.addTrack(e.track);
      video.play().catch(() => {}); // autoplay policy: muted or flagged; nothing to do otherwise
    };
    pc.onicecandidate = (e) => remote.trickle.add(e.candidate);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") showError(`viewing ${streamId}: connection failed`);
    };
    for (const kind of kindsFor(type)) pc.addTransceiver(kind, { direction: "recvonly" });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const result = await post("viewStream", { streamId: { id: streamId }, sdpOffer: pc.localDescription.sdp });
      remote.viewerId = result.viewerId;
      if (remote.closed || session !== state.session) {
        // Gone while we asked: release the viewer the server just made.
        post("stopViewStream", { streamId: { id: streamId }, viewerId: remote.viewerId }).catch(() => {});
        return;
      }
      await pc.setRemoteDescription({ type: "answer", sdp: result.sdpAnswer });
      remote.trickle.start();
      remote.timings.answered = Math.round(performance.now());
    } catch (err) {
      if (session !== state.session || remote.closed) return;
      showError(`viewing ${streamId} of ${endpointId}: ${err.message}`);
      removeRemote(streamId);
    }
  }

  function removeRemote(streamId) {
    const remote = state.remotes.get(streamId);
    if (!remote) return;
    state.remotes.delete(streamId);
    remote.closed = true;
    remote.pc.close();
    if (remote.tile) remote.tile.remove();
  }

  // ------------------------------------------------------------------ conference state and events

  // Reads the conference and makes the tiles match it; events from its version on are applied after.
  async function resync(session) {
    state.syncing = true;
    const conference = await call(
      "GET",
      `${API}/${encodeURIComponent(state.conferenceId)}?userEndpointId=${encodeURIComponent(state.endpointId)}`,
    );
    if (session !== state.session) return;
    const present = new Map();
    for (const participant of conference.participants || []) {
      for (const stream of participant.streams || []) {
        present.set(streamIdOf(stream.id), { endpointId: participant.id, type: stream.type });
      }
    }
    for (const streamId of [...state.remotes.keys()]) if (!present.has(streamId)) removeRemote(streamId);
    for (const [streamId, s] of present) view(session, streamId, s.endpointId, s.type);
    for (const endpointId of [...state.lobby.keys()]) dropWaiting(endpointId);
    for (const waiting of conference.lobby || []) showWaiting(waiting.id, waiting.metadata);
    state.version = conference.version;
    state.syncing = false;
    const buffered = state.buffered.splice(0);
    for (const event of buffered) apply(session, event);
  }

  function onEvent(session, event) {
    if (event.conferenceId !== state.conferenceId) return;
    if (ownLobbyDecision(session, event)) return;
    if (state.syncing) state.buffered.push(event);
    else apply(session, event);
  }

  // While waiting, the server sends this endpoint only its own lobby events: admitted, it goes on as joined.
  function ownLobbyDecision(session, event) {
    const about = event.lobbyEndpointId || event.userEndpointId;
    if (state.phase !== "waiting" || about !== state.endpointId) return state.phase === "waiting";
    if (event.type === "ConferenceLobbyAdmittedEvent") {
      admitted(session);
    } else if (event.type === "ConferenceLobbyRejectedEvent") {
      showError(`not let in (${event.reason || "the host turned this endpoint away"})`);
      teardown("left");
    }
    return true;
  }

  function apply(session, event) {
    const v = event.conferenceVersion;
    if (typeof v === "number") {
      if (v < state.version) return; // already in what we read, or a duplicate
      state.version = v + 1;
    }
    switch (event.type) {
      case "ConferenceStreamPublishedEvent":
        view(session, streamIdOf(event.streamId), event.userEndpointId, event.streamType);
        break;
      case "ConferenceStreamUnpublishedEvent":
        const mine = state.publisher && streamIdOf(event.streamId) === state.publisher.streamId;
        if (mine && state.phase !== "leaving") {
          showError(`my stream was unpublished (${event.reason || "no reason given"})`);
        }
        removeRemote(streamIdOf(event.streamId));
        break;
      case "ConferenceLeftEvent":
        if (event.userEndpointId === state.endpointId) {
          if (state.phase === "leaving") return; // our own leave: leave() tears down
          showError(`removed from the conference (${event.reason || "no reason given"})`);
          teardown("left");
          return;
        }
        for (const remote of [...state.remotes.values()]) {
          if (remote.endpointId === event.userEndpointId) removeRemote(remote.streamId);
        }
        break;
      case "ConferenceLobbyEnteredEvent":
        showWaiting(event.userEndpointId, event.metadata);
        break;
      case "ConferenceLobbyAdmittedEvent":
      case "ConferenceLobbyRejectedEvent":
        dropWaiting(event.lobbyEndpointId);
        break;
      case "ConferenceEndedEvent":
        showError(`conference ended (${event.reason || "no reason given"})`);
        teardown("left");
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ push channel / long poll

  function pushUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ access_token: state.token, userEndpointId: state.endpointId });
    return `${scheme}://${location.host}/rtc-api/events/ws?${query}`;
  }

  // Resolves once the socket is open; rejects if it never opens.
  function openSocket(session) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(pushUrl());
      let opened = false;
      socket.onopen = () => {
        opened = true;
        state.socket = socket;
        resolve();
      };
      socket.onmessage = (message) => {
        let frame;
        try {
          frame = JSON.parse(message.data);
        } catch {
          return;
        }
        if (typeof frame.type === "string" && frame.type.startsWith("Conference")) {
          onEvent(session, frame);
        } else if (frame.id) {
          // A sendEvent event: acknowledge it, or an AT_LEAST_ONCE one comes back.
          socket.send(JSON.stringify({ ack: frame.id }));
        }
      };
      socket.onclose = (close) => {
        if (!opened) {
          reject(new Error(`push channel refused (close code ${close.code})`));
          return;
        }
        if (state.socket === socket) state.socket = null;
        if (session !== state.session || state.phase !== "joined") return;
        // Reconnect, then read the conference again: what happened meanwhile is in it.
        showError(`push channel closed (code ${close.code}), reconnecting`);
        setTimeout(() => reconnect(session), 1000);
      };
    });
  }

  async function reconnect(session) {
    if (session !== state.session) return;
    try {
      state.syncing = true;
      await openSocket(session);
      await resync(session);
    } catch (err) {
      showError(`reconnect: ${err.message}`);
      setTimeout(() => reconnect(session), 2000);
    }
  }

  async function pollForever(session) {
    state.polling = true;
    while (session === state.session && (state.phase === "joined" || state.phase === "waiting")) {
      try {
        // Waiting, the server answers only this endpoint's lobby events, from the start.
        const v = state.phase === "waiting" ? 0 : state.version;
        const query = new URLSearchParams({ v: String(v), userEndpointId: state.endpointId });
        const events = await call("GET", `${API}/${encodeURIComponent(state.conferenceId)}/events?${query}`);
        if (session !== state.session) break;
        for (const event of events || []) {
          if (!ownLobbyDecision(session, event)) apply(session, event);
        }
      } catch (err) {
        if (session !== state.session) break;
        showError(`events: ${err.message}`);
        if (err.status === 404 || err.status === 403 || err.status === 401) {
          teardown("failed");
          break;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    state.polling = false;
  }

  // ------------------------------------------------------------------ join / leave

  async function join() {
    state.token = $("token").value.trim();
    state.grant = grantOf(state.token);
    if (state.grant && !$("conference").value.trim()) $("conference").value = state.grant.conferenceId;
    state.conferenceId = $("conference").value.trim();
    state.endpointId = $("endpoint").value.trim() || randomId("ep");
    $("endpoint").value = state.endpointId;
    if (!state.token || !state.conferenceId) {
      showError("token and conference id are required");
      return;
    }
    const session = ++state.session;
    state.timings = { join: Math.round(performance.now()) };
    state.version = null;
    state.syncing = true;
    state.buffered = [];
    setPhase("joining");
    setStatus(`joining ${state.conferenceId} as ${state.endpointId}`);
    try {
      if (state.transport === "ws") {
        // Open before joining: the endpoint's own ConferenceJoinedEvent starts the flow, nothing is missed.
        try {
          await openSocket(session);
        } catch (err) {
          showError(`${err.message}: falling back to long poll`);
          state.transport = "poll";
        }
      }
      if (!state.grant) {
        // A meeting's conference exists already (and a meeting token may not create one).
        try {
          await post("create", {});
        } catch (err) {
          if (err.status !== 409) throw err; // 409: it exists already, which is what we want
        }
      }
      const name = params.get("name") || state.endpointId;
      const answer = await post("join", { metadata: { type: "demo", name } });
      if (session !== state.session) return;
      if (answer && answer.lobby) {
        setPhase("waiting");
        mark("waiting");
        setStatus(`waiting to be let in to ${state.conferenceId}`);
        if (state.transport === "poll") pollForever(session);
        return;
      }
      await admitted(session);
    } catch (err) {
      if (session !== state.session) return;
      showError(`join: ${err.message}`);
      teardown("failed");
    }
  }

  // In the call (straight away, or once let in from the lobby): publish (unless a subscriber) and view.
  async function admitted(session) {
    const polling = state.phase === "waiting" && state.polling;
    setPhase("joined");
    mark("joined");
    setStatus(`joined ${state.conferenceId} as ${state.endpointId}`);
    const mayPublish = !state.grant || state.grant.role !== "subscriber";
    const publishing = mayPublish ? publish(session).catch((err) => showError(`publishing: ${err.message}`)) : null;
    try {
      await resync(session);
    } catch (err) {
      if (session !== state.session) return;
      showError(`join: ${err.message}`);
      teardown("failed");
      return;
    }
    if (state.transport === "poll" && !polling) pollForever(session);
    await publishing;
  }

  function teardown(phase) {
    state.session++;
    if (state.socket) {
      state.socket.onclose = null;
      state.socket.close();
      state.socket = null;
    }
    for (const streamId of [...state.remotes.keys()]) removeRemote(streamId);
    if (state.publisher) {
      state.publisher.pc.close();
      state.publisher = null;
    }
    if (state.localStream) {
      state.localStream.getTracks().forEach((t) => t.stop());
      state.localStream = null;
    }
    $("local").srcObject = null;
    $("local-stream").textContent = "not published";
    for (const endpointId of [...state.lobby.keys()]) dropWaiting(endpointId);
    setPhase(phase);
    setStatus(phase === "failed" ? "failed (see errors)" : "left");
  }

  async function leave() {
    const publisher = state.publisher;
    setPhase("leaving");
    try {
      if (publisher && publisher.streamId) await post("unpublishStream", { streamId: { id: publisher.streamId } });
      await post("leave", {});
    } catch (err) {
      showError(`leave: ${err.message}`);
    }
    teardown("left");
  }

  // Closing the tab: tell the server now instead of waiting for the keep-alive timeout.
  window.addEventListener("pagehide", () => {
    if (state.phase !== "joined" && state.phase !== "waiting") return;
    fetch(`${API}/leave`, {
      method: "POST",
      keepalive: true,
      headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ conferenceId: state.conferenceId, userEndpointId: state.endpointId }),
    });
  });

  // ------------------------------------------------------------------ stats (for people and tests)

  async function stats() {
    const remotes = {};
    for (const [streamId, remote] of state.remotes) {
      const entry = {
        endpointId: remote.endpointId,
        type: remote.type,
        viewerId: remote.viewerId,
        connectionState: remote.pc.connectionState,
        framesDecoded: 0,
        frameWidth: null,
        frameHeight: null,
        videoBytesReceived: 0,
        audioPacketsReceived: 0,
      };
      try {
        (await remote.pc.getStats()).forEach((s) => {
          if (s.type !== "inbound-rtp") return;
          if (s.kind === "video") {
            entry.framesDecoded += s.framesDecoded || 0;
            entry.frameWidth = s.frameWidth ?? entry.frameWidth;
            entry.frameHeight = s.frameHeight ?? entry.frameHeight;
            entry.videoBytesReceived += s.bytesReceived || 0;
          } else if (s.kind === "audio") {
            entry.audioPacketsReceived += s.packetsReceived || 0;
          }
        });
      } catch {
        // closed meanwhile
      }
      if (entry.framesDecoded > 0 && remote.timings.firstFrame === undefined) {
        remote.timings.firstFrame = Math.round(performance.now()); // as seen by this (sampled) call
      }
      entry.timings = { ...remote.timings };
      remotes[streamId] = entry;
    }
    let published = null;
    if (state.publisher) {
      const { pc, streamId } = state.publisher;
      published = { streamId, connectionState: pc.connectionState, framesEncoded: 0, audioPacketsSent: 0 };
      try {
        (await pc.getStats()).forEach((s) => {
          if (s.type !== "outbound-rtp") return;
          if (s.kind === "video") published.framesEncoded += s.framesEncoded || 0;
          else if (s.kind === "audio") published.audioPacketsSent += s.packetsSent || 0;
        });
      } catch {
        // closed meanwhile
      }
    }
    return {
      at: Date.now(),
      phase: state.phase,
      lobby: [...state.lobby.keys()],
      conferenceId: state.conferenceId,
      endpointId: state.endpointId,
      transport: state.transport,
      version: state.version,
      published,
      remotes,
      errors: state.errors.slice(),
      timings: { ...state.timings },
    };
  }

  function startReporting(url) {
    const every = Math.max(100, Number(params.get("reportMs")) || 500);
    let busy = false;
    setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        // A simple request (text/plain, no-cors): no preflight, the collector needs no CORS headers.
        await fetch(url, { method: "POST", mode: "no-cors", body: JSON.stringify(await stats()) });
      } catch {
        // the collector went away: keep trying, it may come back
      } finally {
        busy = false;
      }
    }, every);
  }

  // ------------------------------------------------------------------ start

  window.parleyDemo = { stats, join, leave, state: () => state.phase };

  // `access_token` is how a meeting's entry_url hands the page its token; it joins at once.
  $("token").value = params.get("token") || params.get("access_token") || "";
  $("conference").value = params.get("conference") || "";
  $("endpoint").value = params.get("endpoint") || params.get("userEndpointId") || randomId("ep");
  $("controls").addEventListener("submit", (e) => {
    e.preventDefault();
    join();
  });
  $("leave").addEventListener("click", () => leave());
  setPhase("idle");
  if (params.get("report")) startReporting(params.get("report"));
  if (params.get("autojoin") === "1" || params.get("access_token")) join();
})();
