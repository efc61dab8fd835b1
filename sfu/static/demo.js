// CoTePT SFU demo page: one WebSocket and two RTCPeerConnections per participant
// (docs/api.md §3). The publisher connection is offered by the page (camera, microphone,
// screen); the subscriber connection is offered by the SFU and answered here.
"use strict";

(() => {
  const CLOSE_CODES = {
    1000: "normal closure",
    1001: "going away",
    1006: "connection lost",
    4401: "bad or expired token",
    4403: "token not valid for this room or action",
    4404: "room not found",
    4409: "replaced by a newer connection of the same user",
    4413: "message too large",
    4429: "rate limited",
    4503: "no capacity or node draining",
  };
  const ANSWER_TIMEOUT_MS = 10000; // publish_offer → publish_answer
  const GATHER_TIMEOUT_MS = 5000; // non-trickle: wait for ICE gathering at most this long
  const MEDIA_TIMEOUT_MS = 60000; // getUserMedia / getDisplayMedia (a person may be deciding)
  const LEAVE_TIMEOUT_MS = 3000; // leave → socket closed by the SFU
  const STATS_TIMEOUT_MS = 5000;
  const MAX_LOG_LINES = 400;

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("join-form"),
    token: $("token"),
    publish: $("publish"),
    trickle: $("trickle"),
    join: $("join"),
    share: $("share"),
    leave: $("leave"),
    status: $("status"),
    tiles: $("tiles"),
    audio: $("audio"),
    log: $("log"),
  };
  const events = []; // every log line, for tests: {at, text, error}

  // ------------------------------------------------------------------ helpers

  function log(text, isError = false) {
    const at = new Date();
    events.push({ at: at.toISOString(), text, error: isError });
    (isError ? console.error : console.log)(`[sfu-demo] ${text}`);
    const item = document.createElement("li");
    if (isError) item.className = "error";
    const time = document.createElement("time");
    time.textContent = at.toLocaleTimeString();
    item.append(time, text);
    ui.log.append(item);
    while (ui.log.childElementCount > MAX_LOG_LINES) ui.log.firstElementChild.remove();
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function withTimeout(promise, ms, what) {
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
    });
    return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
  }

  /** mid → msid track id of each media section (`a=msid:<stream> <track>`). */
  function msidByMid(sdp) {
    const out = new Map();
    for (const section of sdp.split(/\r?\nm=/).slice(1)) {
      const mid = /^a=mid:(\S+)/m.exec(section);
      const msid = /^a=msid:\S+ (\S+)/m.exec(section);
      if (mid && msid) out.set(mid[1], msid[1]);
    }
    return out;
  }

  function candidateInit(candidate) {
    if (!candidate || !candidate.candidate) return null; // end of candidates
    return {
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid,
      sdpMLineIndex: candidate.sdpMLineIndex,
    };
  }

  function errorText(err) {
    return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  }

  // ------------------------------------------------------------------ tiles

  const tiles = new Map(); // key (remote track id, or "local:<source>") → figure element

  function addTile(key, track, { label, participantId, source, local }) {
    removeTile(key);
    const figure = document.createElement("figure");
    figure.className = local ? "tile local" : "tile";
    figure.dataset.key = key;
    figure.dataset.participantId = participantId;
    figure.dataset.source = source;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true;
    video.srcObject = new MediaStream([track]);
    const caption = document.createElement("figcaption");
    caption.className = "label";
    caption.textContent = label;
    figure.append(video, caption);
    ui.tiles.append(figure);
    tiles.set(key, figure);
    video.play().catch((err) => log(`video of ${label} did not start: ${errorText(err)}`, true));
  }

  function removeTile(key) {
    const figure = tiles.get(key);
    if (!figure) return;
    const video = figure.querySelector("video");
    if (video) video.srcObject = null;
    figure.remove();
    tiles.delete(key);
  }

  function addAudio(key, track, participantId) {
    removeAudio(key);
    const audio = document.createElement("audio");
    audio.autoplay = true;
    audio.dataset.key = key;
    audio.dataset.participantId = participantId;
    audio.srcObject = new MediaStream([track]);
    ui.audio.append(audio);
    audio.play().catch(() => log("remote audio waits for a click on the page (autoplay policy)"));
  }

  function removeAudio(key) {
    const audio = ui.audio.querySelector(`audio[data-key="${CSS.escape(key)}"]`);
    if (audio) {
      audio.srcObject = null;
      audio.remove();
    }
  }

  function clearMedia() {
    for (const key of [...tiles.keys()]) removeTile(key);
    for (const audio of ui.audio.querySelectorAll("audio")) {
      audio.srcObject = null;
      audio.remove();
    }
  }

  // Browsers block audible autoplay until the person interacts with the page.
  document.addEventListener("click", () => {
    for (const audio of ui.audio.querySelectorAll("audio")) audio.play().catch(() => {});
  });

  // ------------------------------------------------------------------ session

  /** One join: the socket, both peer connections, and what is known about the room. */
  class Session {
    constructor(token, { publish, trickle }) {
      this.token = token;
      this.publishOnJoin = publish;
      this.trickle = trickle;
      this.state = "connecting";
      this.participantId = null;
      this.role = null;
      this.roomId = null;
      this.iceServers = [];
      this.participants = new Map(); // participant_id → {role, name, user_id}
      this.remoteByMid = new Map(); // subscriber mid → {trackId, participantId, source, kind}
      this.pub = null;
      this.sub = null;
      this.sourceOf = new Map(); // publisher transceiver → camera|microphone|screen
      this.localStream = null;
      this.screen = null; // {track, transceiver}
      this.msidChecks = []; // {mid, trackId, msid}: the page's track id vs the SDP's
      this.pendingAnswer = null; // {resolve, reject} while a publish_offer is out
      this.chains = { publisher: Promise.resolve(), subscriber: Promise.resolve() };
      this.trickleReady = { publisher: false, subscriber: false };
      this.queuedCandidates = { publisher: [], subscriber: [] };
      // What went out per connection: trickled candidates, end-of-candidates, and the
      // a=candidate lines of the last offer/answer sent.
      this.iceSent = {
        publisher: { trickled: 0, endOfCandidates: 0, inSdp: 0 },
        subscriber: { trickled: 0, endOfCandidates: 0, inSdp: 0 },
      };
      this.socketClosed = new Promise((resolve) => (this.resolveSocketClosed = resolve));
      this.lastError = null;
    }

    // -- socket

    open() {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const url = `${scheme}//${location.host}/ws?token=${encodeURIComponent(this.token)}`;
      this.ws = new WebSocket(url);
      this.ws.onopen = () => log("socket open; waiting for joined");
      this.ws.onmessage = (event) => this.onMessage(event.data);
      this.ws.onclose = (event) => this.onSocketClose(event);
      this.ws.onerror = () => log("socket error", true);
    }

    send(message) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        throw new Error(`socket not open; cannot send ${message.type}`);
      }
      this.ws.send(JSON.stringify(message));
    }

    onMessage(data) {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch (err) {
        log(`unreadable message: ${errorText(err)}`, true);
        return;
      }
      const handlers = {
        joined: () => this.onJoined(msg),
        publish_answer: () => this.onPublishAnswer(msg),
        subscribe_offer: () => this.onSubscribeOffer(msg),
        participant_joined: () => this.onParticipantJoined(msg.participant),
        participant_left: () => this.onParticipantLeft(msg.participant_id),
        track_published: () =>
          log(`${this.describe(msg.participant_id)} published ${msg.track.source} (${msg.track.kind})`),
        track_unpublished: () => this.onTrackUnpublished(msg),
        room_closed: () => {
          log(`room closed: ${msg.reason}`, msg.reason !== "deleted");
          this.setState("closed");
        },
        pong: () => log("pong"),
        error: () => this.onError(msg.error || {}),
      };
      const handler = handlers[msg.type];
      if (handler) handler();
      else log(`unknown message type ${msg.type}`, true);
    }

    onSocketClose(event) {
      const meaning = CLOSE_CODES[event.code] || "unknown";
      const bad = event.code >= 4000 || event.code === 1006;
      log(`socket closed: ${event.code} (${meaning})${event.reason ? ` “${event.reason}”` : ""}`, bad);
      this.resolveSocketClosed(event.code);
      if (this.pendingAnswer) this.pendingAnswer.reject(new Error("socket closed"));
      this.teardown();
      if (this.state !== "leaving" && this.state !== "left") {
        if (bad) this.lastError = `closed ${event.code}: ${meaning}`;
        this.setState(bad ? "error" : "closed");
      }
    }

    setState(state) {
      this.state = state;
      render();
    }

    describe(participantId) {
      if (participantId === this.participantId) return `you (${this.role})`;
      const p = this.participants.get(participantId);
      if (!p) return participantId || "someone";
      return `${p.role} ${p.name || p.user_id}`;
    }

    label(participantId, source) {
      return `${this.describe(participantId)} · ${source}`;
    }

    // -- room events

    onJoined(msg) {
      this.participantId = msg.participant.participant_id;
      this.role = msg.participant.role;
      this.roomId = msg.room.room_id;
      for (const p of msg.room.participants || []) this.participants.set(p.participant_id, p);
      this.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
      log(`joined room ${this.roomId} as ${this.role} (${this.participantId}); ` +
        `${this.participants.size - 1} other participant(s); ice servers ${JSON.stringify(this.iceServers)}`);
      this.sub = this.peerConnection("subscriber");
      this.sub.ontrack = (event) => this.onRemoteTrack(event);
      this.setState("joined");
      if (this.publishOnJoin && this.role !== "observer") {
        this.publishCamera().catch((err) => this.fail("camera/microphone", err));
      }
    }

    onParticipantJoined(participant) {
      this.participants.set(participant.participant_id, participant);
      log(`${this.describe(participant.participant_id)} joined`);
      this.refreshLabels();
    }

    onParticipantLeft(participantId) {
      log(`${this.describe(participantId)} left`);
      for (const [key, figure] of tiles) {
        if (!key.startsWith("local:") && figure.dataset.participantId === participantId) {
          removeTile(key);
        }
      }
      for (const audio of ui.audio.querySelectorAll("audio")) {
        if (audio.dataset.participantId === participantId) removeAudio(audio.dataset.key);
      }
      this.participants.delete(participantId);
      render();
    }

    onTrackUnpublished(msg) {
      log(`${this.describe(msg.participant_id)} stopped ${msg.track.source} (${msg.track.kind})`);
      removeTile(msg.track.track_id);
      removeAudio(msg.track.track_id);
      render();
    }

    onError(error) {
      this.lastError = `${error.code}: ${error.message}`;
      log(`error ${this.lastError}`, true);
      // Replies come in order: an error while a publish_offer is out answers that offer.
      if (this.pendingAnswer) this.pendingAnswer.reject(new Error(this.lastError));
      render();
    }

    fail(what, err) {
      this.lastError = `${what}: ${errorText(err)}`;
      log(this.lastError, true);
      render();
    }

    refreshLabels() {
      for (const [key, figure] of tiles) {
        if (key.startsWith("local:")) continue;
        const caption = figure.querySelector(".label");
        caption.textContent = this.label(figure.dataset.participantId, figure.dataset.source);
      }
    }

    // -- peer connections and ICE candidates

    peerConnection(target) {
      const config = { iceServers: this.iceServers, bundlePolicy: "max-bundle" };
      let pc;
      try {
        pc = new RTCPeerConnection(config);
      } catch (err) {
        log(`ice servers refused (${errorText(err)}); going on without them`, true);
        pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
      }
      pc.onicecandidate = (event) => this.onLocalCandidate(target, event.candidate);
      pc.onconnectionstatechange = () => {
        log(`${target} connection ${pc.connectionState}`, pc.connectionState === "failed");
        render();
      };
      return pc;
    }

    onLocalCandidate(target, candidate) {
      if (!this.trickle) return; // candidates travel inside the SDP
      const message = { type: "candidate", target, candidate: candidateInit(candidate) };
      if (this.trickleReady[target]) this.sendCandidate(message);
      else this.queuedCandidates[target].push(message);
    }

    /** The SFU accepts candidates once it has the offer (publisher) or answer (subscriber). */
    startTrickle(target) {
      if (!this.trickle || this.trickleReady[target]) return;
      this.trickleReady[target] = true;
      for (const message of this.queuedCandidates[target].splice(0)) this.sendCandidate(message);
    }

    sendCandidate(message) {
      try {
        this.send(message);
        const counts = this.iceSent[message.target];
        if (message.candidate) counts.trickled += 1;
        else counts.endOfCandidates += 1;
      } catch (err) {
        log(`candidate not sent: ${errorText(err)}`, true);
      }
    }

    /** The local SDP to send: at once when trickling, else once gathering is complete. */
    async localSdp(target) {
      const pc = target === "publisher" ? this.pub : this.sub;
      if (!this.trickle && pc.iceGatheringState !== "complete") {
        const complete = new Promise((resolve) => {
          const check = () => {
            if (pc.iceGatheringState === "complete") {
              pc.removeEventListener("icegatheringstatechange", check);
              resolve();
            }
          };
          pc.addEventListener("icegatheringstatechange", check);
        });
        try {
          await withTimeout(complete, GATHER_TIMEOUT_MS, "ICE gathering");
        } catch (err) {
          log(`${errorText(err)}; sending the candidates gathered so far`, true);
        }
      }
      const sdp = pc.localDescription.sdp;
      this.iceSent[target].inSdp = (sdp.match(/^a=candidate:/gm) || []).length;
      return sdp;
    }

    /** Run negotiation steps of one connection one after the other. */
    serial(target, step) {
      const run = this.chains[target].then(step);
      this.chains[target] = run.catch(() => {});
      return run;
    }

    // -- publisher: the page offers, the SFU answers

    ensurePublisher() {
      if (this.role === "observer") throw new Error("observers do not publish");
      if (!this.pub) this.pub = this.peerConnection("publisher");
      return this.pub;
    }

    async publishCamera() {
      const stream = await withTimeout(
        navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } }),
        MEDIA_TIMEOUT_MS,
        "getUserMedia",
      );
      if (this.state !== "joined") {
        stream.getTracks().forEach((track) => track.stop());
        return;
      }
      this.localStream = stream;
      const pc = this.ensurePublisher();
      for (const track of stream.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
        this.sourceOf.set(transceiver, track.kind === "video" ? "camera" : "microphone");
      }
      const video = stream.getVideoTracks()[0];
      if (video) {
        addTile("local:camera", video, {
          label: this.label(this.participantId, "camera"),
          participantId: this.participantId,
          source: "camera",
          local: true,
        });
      }
      await this.negotiatePublisher();
    }

    async shareScreen() {
      const pc = this.ensurePublisher();
      if (this.screen) return;
      const stream = await withTimeout(
        navigator.mediaDevices.getDisplayMedia({ video: true, audio: false }),
        MEDIA_TIMEOUT_MS,
        "getDisplayMedia",
      );
      const track = stream.getVideoTracks()[0];
      // A new transceiver per share: a fresh msid, never an id the SFU just unpublished.
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      this.sourceOf.set(transceiver, "screen");
      this.screen = { track, transceiver };
      track.addEventListener("ended", () => {
        if (this.screen && this.screen.track === track) {
          this.stopScreen().catch((err) => this.fail("stop sharing", err));
        }
      });
      addTile("local:screen", track, {
        label: this.label(this.participantId, "screen"),
        participantId: this.participantId,
        source: "screen",
        local: true,
      });
      render();
      await this.negotiatePublisher();
    }

    async stopScreen() {
      const screen = this.screen;
      if (!screen) return;
      this.screen = null;
      await screen.transceiver.sender.replaceTrack(null);
      screen.transceiver.direction = "inactive";
      screen.track.stop();
      removeTile("local:screen");
      render();
      await this.negotiatePublisher();
    }

    negotiatePublisher() {
      return this.serial("publisher", () => this.offerPublisher());
    }

    async offerPublisher() {
      const pc = this.pub;
      if (!pc || this.state !== "joined") return;
      await pc.setLocalDescription(await pc.createOffer());
      const sdp = await this.localSdp("publisher");
      const sources = this.sources(pc, sdp);
      const answered = new Promise((resolve, reject) => (this.pendingAnswer = { resolve, reject }));
      this.send({ type: "publish_offer", sdp, sources });
      log(`publish_offer sent: ${JSON.stringify(sources)}`);
      this.startTrickle("publisher");
      let answer;
      try {
        answer = await withTimeout(answered, ANSWER_TIMEOUT_MS, "publish_answer");
      } catch (err) {
        if (pc.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" });
        }
        throw err;
      } finally {
        this.pendingAnswer = null;
      }
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      log("publish_answer applied");
    }

    onPublishAnswer(msg) {
      if (!this.pendingAnswer) {
        log("publish_answer without a pending offer; ignored", true);
        return;
      }
      this.pendingAnswer.resolve(msg.sdp);
    }

    /** {msid track id: source} of every transceiver that sends; the ids as written in the SDP. */
    sources(pc, sdp) {
      const msids = msidByMid(sdp);
      const sources = {};
      this.msidChecks = [];
      for (const transceiver of pc.getTransceivers()) {
        const source = this.sourceOf.get(transceiver);
        const track = transceiver.sender.track;
        if (!source || !track || transceiver.direction !== "sendonly") continue;
        const msid = msids.get(transceiver.mid);
        this.msidChecks.push({ mid: transceiver.mid, trackId: track.id, msid: msid || null });
        if (msid && msid !== track.id) {
          log(`msid ${msid} of mid ${transceiver.mid} is not the track id ${track.id}; using the msid`);
        }
        sources[msid || track.id] = source;
      }
      return sources;
    }

    // -- subscriber: the SFU offers, the page answers

    onSubscribeOffer(msg) {
      this.serial("subscriber", () => this.answerSubscriber(msg)).catch((err) =>
        this.fail("subscribe_offer", err),
      );
    }

    async answerSubscriber(msg) {
      const pc = this.sub;
      if (!pc || this.state !== "joined") return;
      const current = new Map();
      for (const [trackId, info] of Object.entries(msg.tracks || {})) {
        current.set(info.mid, {
          trackId,
          participantId: info.participant_id,
          source: info.source,
          kind: info.kind,
        });
      }
      this.remoteByMid = current;
      const live = new Set([...current.values()].map((info) => info.trackId));
      for (const key of [...tiles.keys()]) {
        if (!key.startsWith("local:") && !live.has(key)) removeTile(key);
      }
      for (const audio of ui.audio.querySelectorAll("audio")) {
        if (!live.has(audio.dataset.key)) removeAudio(audio.dataset.key);
      }
      await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      const sdp = await this.localSdp("subscriber");
      this.send({ type: "subscribe_answer", sdp });
      this.startTrickle("subscriber");
      log(`subscribe_offer answered: ${current.size} remote track(s)`);
      render();
    }

    onRemoteTrack(event) {
      const { track, transceiver } = event;
      const info = this.remoteByMid.get(transceiver.mid) || {
        // Not announced (should not happen): the msid stream id is the publisher's id.
        trackId: track.id,
        participantId: event.streams[0] ? event.streams[0].id : "unknown",
        source: track.kind === "video" ? "camera" : "microphone",
        kind: track.kind,
      };
      log(`remote ${track.kind}: ${this.label(info.participantId, info.source)} (mid ${transceiver.mid})`);
      if (track.kind === "video") {
        addTile(info.trackId, track, {
          label: this.label(info.participantId, info.source),
          participantId: info.participantId,
          source: info.source,
          local: false,
        });
      } else {
        addAudio(info.trackId, track, info.participantId);
      }
      render();
    }

    // -- leaving

    async leave() {
      if (this.state === "leaving" || this.state === "left") return;
      this.setState("leaving");
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.send({ type: "leave" });
        try {
          await withTimeout(this.socketClosed, LEAVE_TIMEOUT_MS, "leave");
        } catch (err) {
          log(`${errorText(err)}; closing the socket`, true);
          this.ws.close(1000, "leave");
        }
      }
      this.teardown();
      log("left");
      this.setState("left");
    }

    teardown() {
      for (const pc of [this.pub, this.sub]) {
        if (pc) pc.close();
      }
      if (this.localStream) this.localStream.getTracks().forEach((track) => track.stop());
      if (this.screen) this.screen.track.stop();
      this.screen = null;
      if (session === this) clearMedia(); // a late close of an old session spares the new one
      render();
    }

    // -- stats for tests and the status line

    async stats() {
      const out = {
        state: this.state,
        participantId: this.participantId,
        publisherState: this.pub ? this.pub.connectionState : null,
        subscriberState: this.sub ? this.sub.connectionState : null,
        remote: [],
        framesDecoded: {},
        local: [],
        // The publisher connection's send-side bandwidth estimate (bit/s; the SFU's REMB caps it).
        availableOutgoingBitrate: null,
      };
      if (this.sub && this.sub.connectionState !== "closed") {
        const midOfTrack = new Map(
          this.sub.getTransceivers().map((t) => [t.receiver.track && t.receiver.track.id, t.mid]),
        );
        const report = await withTimeout(this.sub.getStats(), STATS_TIMEOUT_MS, "getStats");
        for (const stat of report.values()) {
          if (stat.type !== "inbound-rtp") continue;
          const mid = stat.mid || midOfTrack.get(stat.trackIdentifier) || null;
          const info = this.remoteByMid.get(mid) || {};
          const entry = {
            kind: stat.kind,
            mid,
            trackId: info.trackId || null,
            participantId: info.participantId || null,
            source: info.source || null,
            packetsReceived: stat.packetsReceived || 0,
            packetsLost: stat.packetsLost || 0,
            bytesReceived: stat.bytesReceived || 0,
            framesDecoded: stat.framesDecoded || 0,
            frameWidth: stat.frameWidth || 0,
            frameHeight: stat.frameHeight || 0,
          };
          out.remote.push(entry);
          if (entry.kind === "video" && entry.trackId) out.framesDecoded[entry.trackId] = entry.framesDecoded;
        }
      }
      if (this.pub && this.pub.connectionState !== "closed") {
        const report = await withTimeout(this.pub.getStats(), STATS_TIMEOUT_MS, "getStats");
        for (const stat of report.values()) {
          if (stat.type === "candidate-pair" && stat.nominated && stat.availableOutgoingBitrate) {
            out.availableOutgoingBitrate = stat.availableOutgoingBitrate;
          }
          if (stat.type !== "outbound-rtp") continue;
          const transceiver = this.pub.getTransceivers().find((t) => t.mid === stat.mid);
          out.local.push({
            kind: stat.kind,
            mid: stat.mid || null,
            source: (transceiver && this.sourceOf.get(transceiver)) || null,
            packetsSent: stat.packetsSent || 0,
            bytesSent: stat.bytesSent || 0,
            framesEncoded: stat.framesEncoded || 0,
          });
        }
      }
      return out;
    }
  }

  // ------------------------------------------------------------------ page

  let session = null;

  /** Between Join and the end of the session (left, closed by the SFU, or failed). */
  function active() {
    return session !== null && ["connecting", "joined", "leaving"].includes(session.state);
  }

  function render() {
    const s = session;
    const joined = s !== null && s.state === "joined";
    ui.join.disabled = active();
    ui.token.disabled = active();
    ui.leave.disabled = !active() || s.state === "leaving";
    ui.share.disabled = !joined || s.role === "observer";
    ui.share.textContent = joined && s.screen ? "Stop sharing" : "Share screen";
    let text = "idle: paste a token and press Join";
    if (s !== null) {
      const parts = [s.state];
      if (s.participantId) parts.push(`${s.role} ${s.participantId} in room ${s.roomId}`);
      if (s.pub) parts.push(`publisher ${s.pub.connectionState}`);
      if (s.sub) parts.push(`subscriber ${s.sub.connectionState}`);
      const remote = [...tiles.keys()].filter((key) => !key.startsWith("local:")).length;
      if (joined) parts.push(`${remote} remote video(s)`);
      if (s.lastError) parts.push(`last error: ${s.lastError}`);
      text = parts.join(" · ");
    }
    ui.status.textContent = text;
    ui.status.dataset.state = s ? s.state : "idle";
  }

  function join(token, options = {}) {
    token = (token || "").trim();
    if (!token) {
      log("no token", true);
      return;
    }
    if (active()) {
      log("already joined; leave first", true);
      return;
    }
    session = new Session(token, {
      publish: options.publish !== undefined ? options.publish : ui.publish.checked,
      trickle: options.trickle !== undefined ? options.trickle : ui.trickle.checked,
    });
    log(`joining (${session.trickle ? "trickle ICE" : "candidates in the SDP"})`);
    session.open();
    render();
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    join(ui.token.value);
  });
  ui.share.addEventListener("click", () => {
    if (!session) return;
    const step = session.screen ? session.stopScreen() : session.shareScreen();
    step.catch((err) => session.fail("screen share", err));
  });
  ui.leave.addEventListener("click", () => {
    if (session) session.leave().catch((err) => session.fail("leave", err));
  });

  window.sfuDemo = {
    get state() {
      return session ? session.state : "idle";
    },
    get participantId() {
      return session ? session.participantId : null;
    },
    get role() {
      return session ? session.role : null;
    },
    get lastError() {
      return session ? session.lastError : null;
    },
    /** [{mid, trackId, msid}] of the last publish_offer: is the msid the MediaStreamTrack id? */
    get msidChecks() {
      return session ? session.msidChecks.slice() : [];
    },
    /** Per connection: {trickled, endOfCandidates, inSdp} candidates sent to the SFU. */
    get iceSent() {
      return session ? JSON.parse(JSON.stringify(session.iceSent)) : null;
    },
    get sharing() {
      return Boolean(session && session.screen);
    },
    /** The mids of the subscriber connection's sections (one per track received, or reused). */
    get subscriberMids() {
      return session && session.sub ? session.sub.getTransceivers().map((t) => t.mid) : [];
    },
    events,
    join,
    leave: () => (session ? session.leave() : Promise.resolve()),
    shareScreen: () => session.shareScreen(),
    stopScreen: () => session.stopScreen(),
    tiles: () =>
      [...tiles.entries()].map(([key, figure]) => ({
        key,
        participantId: figure.dataset.participantId,
        source: figure.dataset.source,
        local: key.startsWith("local:"),
        label: figure.querySelector(".label").textContent,
      })),
    stats: () =>
      session
        ? session.stats()
        : Promise.resolve({ state: "idle", remote: [], framesDecoded: {}, local: [] }),
  };

  const params = new URLSearchParams(location.search);
  if (params.has("token")) ui.token.value = params.get("token");
  if (params.get("trickle") === "0") ui.trickle.checked = false;
  render();
  if (params.get("autojoin") === "1") join(ui.token.value, { publish: true });
})();
