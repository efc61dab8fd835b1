// Command pion is the Go comparison point of bench/forwarding: a minimal Pion v3 SFU built the
// way Pion's broadcast example (and the project's original Go design) forwards media.
//
// One webrtc.API for every peer connection: the default codecs and the default interceptors
// (NACK generator and responder, RTCP sender and receiver reports, TWCC). Each track a
// publisher sends gets one TrackLocalStaticRTP; OnTrack reads the remote track's RTP into a
// reused buffer and writes it to the local track, which fans the packet out to every
// subscriber bound to it (rewriting SSRC and payload type per binding). Subscribers get the
// local tracks by AddTrack on their own peer connection; their RTCP is read (PLI and FIR are
// forwarded to the publisher, throttled) and otherwise discarded.
//
// It speaks the subset of the SFU's WebSocket signalling (docs/api.md §3) that
// sfu/client/client.py needs, exactly as bench/relay_server.py does: one implicit room,
// GET /ws (any token or none), joined, publish_offer/publish_answer,
// subscribe_offer/subscribe_answer, ping/pong and leave; GET /health answers 200.
// ICE gathers host candidates on 127.0.0.1 only, UDP ports in [-rtc-min, -rtc-max], no STUN;
// SDPs are sent complete (no trickle), as the relay does.
//
// Build (Debian packages, GOPATH mode, offline): see PionServer in bench/servers.py.
// Run: pion -port 8091 -rtc-min 40200 -rtc-max 40399
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v2"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v3"
)

const (
	negotiationTimeout   = 10 * time.Second
	maxMessagesPerSocket = 10000
	keyframeInterval     = 500 * time.Millisecond // at most one PLI per published track per interval
	rtpBufferSize        = 1500
)

type message = map[string]interface{}

// published is one track a publisher sends, and the local track that fans it out.
type published struct {
	trackID       string
	participantID string
	source        string
	kind          string
	mid           string
	local         *webrtc.TrackLocalStaticRTP
	owner         *participant

	mu          sync.Mutex
	ssrc        webrtc.SSRC // of the remote track, once OnTrack fired
	lastRequest time.Time
}

// requestKeyframe sends a PLI for the track to its publisher (throttled).
func (t *published) requestKeyframe() {
	t.mu.Lock()
	ssrc := t.ssrc
	now := time.Now()
	if ssrc == 0 || now.Sub(t.lastRequest) < keyframeInterval {
		t.mu.Unlock()
		return
	}
	t.lastRequest = now
	t.mu.Unlock()
	pc := t.owner.publisherPC()
	if pc == nil {
		return
	}
	if err := pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}}); err != nil &&
		!errors.Is(err, io.ErrClosedPipe) {
		log.Printf("PLI to %s: %v", t.participantID, err)
	}
}

type participant struct {
	id   string
	conn *websocket.Conn

	writeMu sync.Mutex // one writer at a time on the socket
	pubMu   sync.Mutex // publisher negotiation
	subMu   sync.Mutex // subscriber negotiation

	stateMu    sync.Mutex
	publisher  *webrtc.PeerConnection
	subscriber *webrtc.PeerConnection
	byMid      map[string]*published // this participant's published tracks, by mid

	subscribed map[string]*webrtc.RTPSender // track id → sender on the subscriber PC (subMu)
	order      []string                     // track ids in the order they were added (subMu)
	offerOut   bool                         // (subMu)
}

func (p *participant) publisherPC() *webrtc.PeerConnection {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.publisher
}

func (p *participant) send(msg message) {
	data, err := json.Marshal(msg)
	if err != nil {
		log.Printf("marshal: %v", err)
		return
	}
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if err := p.conn.WriteMessage(websocket.TextMessage, data); err != nil {
		log.Printf("write to %s: %v", p.id, err)
	}
}

func (p *participant) sendError(code, text string) {
	p.send(message{"type": "error", "error": message{"code": code, "message": text}})
}

// room is the one implicit room.
type room struct {
	api *webrtc.API

	mu           sync.Mutex
	next         int
	participants map[string]*participant
	tracks       map[string]*published
	order        []string // published track ids, oldest first
}

func newAPI(rtcMin, rtcMax uint16) (*webrtc.API, error) {
	media := &webrtc.MediaEngine{}
	if err := media.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	registry := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(media, registry); err != nil {
		return nil, err
	}
	settings := webrtc.SettingEngine{}
	if err := settings.SetEphemeralUDPPortRange(rtcMin, rtcMax); err != nil {
		return nil, err
	}
	settings.SetIncludeLoopbackCandidate(true)
	loopback := net.IPv4(127, 0, 0, 1)
	settings.SetIPFilter(func(ip net.IP) bool { return ip.Equal(loopback) })
	settings.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	settings.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(
		webrtc.WithMediaEngine(media),
		webrtc.WithInterceptorRegistry(registry),
		webrtc.WithSettingEngine(settings),
	), nil
}

// complete sets the local description and waits for ICE gathering (no trickle).
func complete(pc *webrtc.PeerConnection, desc webrtc.SessionDescription) error {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return err
	}
	select {
	case <-gathered:
		return nil
	case <-time.After(negotiationTimeout):
		return errors.New("ICE gathering did not complete")
	}
}

type sdpTrack struct{ id, kind string }

// sdpTracks maps each m-line's mid to its msid track id and kind.
func sdpTracks(raw string) (map[string]sdpTrack, error) {
	var desc sdp.SessionDescription
	if err := desc.Unmarshal([]byte(raw)); err != nil {
		return nil, err
	}
	out := map[string]sdpTrack{}
	for _, media := range desc.MediaDescriptions {
		mid, _ := media.Attribute("mid")
		id := ""
		if msid, ok := media.Attribute("msid"); ok {
			if fields := strings.Fields(msid); len(fields) == 2 {
				id = fields[1]
			}
		}
		for _, attr := range media.Attributes {
			if id == "" && attr.Key == "ssrc" {
				if fields := strings.Fields(attr.Value); len(fields) == 3 && strings.HasPrefix(fields[1], "msid:") {
					id = fields[2]
				}
			}
		}
		out[mid] = sdpTrack{id: id, kind: media.MediaName.Media}
	}
	return out, nil
}

func firstMediaCodec(codecs []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	for _, codec := range codecs {
		if !strings.EqualFold(codec.MimeType, "video/rtx") {
			return codec, true
		}
	}
	return webrtc.RTPCodecParameters{}, false
}

func transceiverOf(pc *webrtc.PeerConnection, sender *webrtc.RTPSender, receiver *webrtc.RTPReceiver) *webrtc.RTPTransceiver {
	for _, t := range pc.GetTransceivers() {
		if (sender != nil && t.Sender() == sender) || (receiver != nil && t.Receiver() == receiver) {
			return t
		}
	}
	return nil
}

// forward pumps one remote track into its local track until the remote track ends.
func (r *room) forward(p *participant, remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	pc := p.publisherPC()
	if pc == nil {
		return
	}
	t := transceiverOf(pc, nil, receiver)
	p.stateMu.Lock()
	var track *published
	if t != nil {
		track = p.byMid[t.Mid()]
	}
	p.stateMu.Unlock()
	if track == nil {
		log.Printf("%s: track %s on an unknown m-line", p.id, remote.ID())
		return
	}
	if !strings.EqualFold(remote.Codec().MimeType, track.local.Codec().MimeType) {
		log.Printf("%s: track %s is %s, its local track %s", p.id, track.trackID,
			remote.Codec().MimeType, track.local.Codec().MimeType)
	}
	track.mu.Lock()
	track.ssrc = remote.SSRC()
	track.mu.Unlock()
	buf := make([]byte, rtpBufferSize)
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			return
		}
		if _, err := track.local.Write(buf[:n]); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			log.Printf("forward %s: %v", track.trackID, err)
		}
	}
}

func (r *room) publish(p *participant, sdpText string, sources map[string]string) error {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	pc := p.publisherPC()
	if pc == nil {
		created, err := r.api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return err
		}
		created.OnTrack(func(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
			r.forward(p, remote, receiver)
		})
		p.stateMu.Lock()
		p.publisher = created
		p.stateMu.Unlock()
		pc = created
	}
	lines, err := sdpTracks(sdpText)
	if err != nil {
		return err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdpText}); err != nil {
		return err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := complete(pc, answer); err != nil {
		return err
	}
	var added []*published
	for _, t := range pc.GetTransceivers() {
		mid := t.Mid()
		line, ok := lines[mid]
		p.stateMu.Lock()
		_, known := p.byMid[mid]
		p.stateMu.Unlock()
		if !ok || known || t.Direction() != webrtc.RTPTransceiverDirectionRecvonly {
			continue
		}
		codec, ok := firstMediaCodec(t.Receiver().GetParameters().Codecs)
		if !ok {
			continue
		}
		trackID := line.id
		if trackID == "" {
			trackID = fmt.Sprintf("%s-%s", p.id, mid)
		}
		local, err := webrtc.NewTrackLocalStaticRTP(codec.RTPCodecCapability, trackID, "pion-"+p.id)
		if err != nil {
			return err
		}
		source, ok := sources[trackID]
		if !ok {
			source = map[bool]string{true: "camera", false: "mic"}[line.kind == "video"]
		}
		track := &published{
			trackID: trackID, participantID: p.id, source: source, kind: line.kind, mid: mid,
			local: local, owner: p,
		}
		p.stateMu.Lock()
		p.byMid[mid] = track
		p.stateMu.Unlock()
		added = append(added, track)
	}
	r.mu.Lock()
	for _, track := range added {
		r.tracks[track.trackID] = track
		r.order = append(r.order, track.trackID)
	}
	others := make([]*participant, 0, len(r.participants))
	for _, other := range r.participants {
		if other != p {
			others = append(others, other)
		}
	}
	r.mu.Unlock()
	p.send(message{"type": "publish_answer", "sdp": pc.LocalDescription().SDP})
	for _, other := range others {
		if err := r.offer(other); err != nil {
			log.Printf("offer to %s: %v", other.id, err)
		}
	}
	return nil
}

// readRTCP drains a subscriber sender's RTCP, forwarding keyframe requests to the publisher.
func readRTCP(sender *webrtc.RTPSender, track *published) {
	for {
		packets, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, packet := range packets {
			switch packet.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				track.requestKeyframe()
			}
		}
	}
}

// offer sends one subscribe_offer with every track the participant does not have yet (none
// while an offer is out: the answer triggers the next one).
func (r *room) offer(p *participant) error {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if p.offerOut {
		return nil
	}
	r.mu.Lock()
	var fresh []*published
	for _, id := range r.order {
		track := r.tracks[id]
		if _, have := p.subscribed[id]; !have && track.participantID != p.id {
			fresh = append(fresh, track)
		}
	}
	labels := message{}
	r.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	p.stateMu.Lock()
	pc := p.subscriber
	p.stateMu.Unlock()
	if pc == nil {
		created, err := r.api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return err
		}
		p.stateMu.Lock()
		p.subscriber = created
		p.stateMu.Unlock()
		pc = created
	}
	for _, track := range fresh {
		sender, err := pc.AddTrack(track.local)
		if err != nil {
			return err
		}
		p.subscribed[track.trackID] = sender
		p.order = append(p.order, track.trackID)
		go readRTCP(sender, track)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	if err := complete(pc, offer); err != nil {
		return err
	}
	r.mu.Lock()
	for _, id := range p.order {
		track, live := r.tracks[id]
		t := transceiverOf(pc, p.subscribed[id], nil)
		if !live || t == nil {
			continue
		}
		labels[id] = message{
			"participant_id": track.participantID, "source": track.source,
			"kind": track.kind, "mid": t.Mid(),
		}
	}
	r.mu.Unlock()
	p.offerOut = true
	p.send(message{"type": "subscribe_offer", "sdp": pc.LocalDescription().SDP, "tracks": labels})
	return nil
}

func (r *room) answer(p *participant, sdpText string) error {
	p.subMu.Lock()
	p.stateMu.Lock()
	pc := p.subscriber
	p.stateMu.Unlock()
	if pc == nil || !p.offerOut {
		p.subMu.Unlock()
		p.sendError("out_of_order", "subscribe_answer without an offer")
		return nil
	}
	err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdpText})
	p.offerOut = false
	p.subMu.Unlock()
	if err != nil {
		return err
	}
	return r.offer(p) // tracks published while the offer was out
}

func (r *room) leave(p *participant) {
	r.mu.Lock()
	delete(r.participants, p.id)
	kept := r.order[:0]
	for _, id := range r.order {
		if r.tracks[id].participantID == p.id {
			delete(r.tracks, id)
		} else {
			kept = append(kept, id)
		}
	}
	r.order = kept
	r.mu.Unlock()
	p.stateMu.Lock()
	pcs := []*webrtc.PeerConnection{p.publisher, p.subscriber}
	p.stateMu.Unlock()
	for _, pc := range pcs {
		if pc != nil {
			if err := pc.Close(); err != nil {
				log.Printf("close %s: %v", p.id, err)
			}
		}
	}
}

type incoming struct {
	Type    string            `json:"type"`
	SDP     *string           `json:"sdp"`
	Sources map[string]string `json:"sources"`
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (r *room) handleWS(w http.ResponseWriter, req *http.Request) {
	conn, err := upgrader.Upgrade(w, req, nil)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.next++
	p := &participant{
		id: fmt.Sprintf("p%d", r.next), conn: conn,
		byMid: map[string]*published{}, subscribed: map[string]*webrtc.RTPSender{},
	}
	r.participants[p.id] = p
	r.mu.Unlock()
	defer func() {
		r.leave(p)
		_ = conn.Close()
	}()
	p.send(message{
		"type":        "joined",
		"participant": message{"participant_id": p.id, "role": "mentee"},
		"room":        message{"room_id": "pion", "participants": []interface{}{}},
		"ice_servers": []interface{}{},
	})
	if err := r.offer(p); err != nil {
		log.Printf("offer to %s: %v", p.id, err)
	}
	for i := 0; i < maxMessagesPerSocket; i++ {
		kind, data, err := conn.ReadMessage()
		if err != nil || kind != websocket.TextMessage {
			return
		}
		var msg incoming
		if err := json.Unmarshal(data, &msg); err != nil {
			p.sendError("invalid_message", "not JSON or malformed fields")
			continue
		}
		switch msg.Type {
		case "publish_offer":
			if msg.SDP == nil || msg.Sources == nil {
				p.sendError("invalid_message", "publish_offer needs sdp and sources")
			} else if err := r.publish(p, *msg.SDP, msg.Sources); err != nil {
				log.Printf("publish %s: %v", p.id, err)
				p.sendError("negotiation_failed", err.Error())
			}
		case "subscribe_answer":
			if msg.SDP == nil {
				p.sendError("out_of_order", "subscribe_answer without sdp")
			} else if err := r.answer(p, *msg.SDP); err != nil {
				log.Printf("answer %s: %v", p.id, err)
			}
		case "ping":
			p.send(message{"type": "pong"})
		case "leave":
			return
		case "candidate", "request_keyframe":
		default:
			p.sendError("unknown_type", fmt.Sprintf("unsupported message %q", msg.Type))
		}
	}
}

func main() {
	port := flag.Int("port", 8091, "HTTP and WebSocket port on 127.0.0.1")
	rtcMin := flag.Int("rtc-min", 40200, "lowest UDP port for ICE")
	rtcMax := flag.Int("rtc-max", 40399, "highest UDP port for ICE")
	maxSeconds := flag.Float64("max-seconds", 1800, "exit after this long (a forgotten bench)")
	flag.Parse()
	if *rtcMin < 1 || *rtcMax > 65535 || *rtcMin > *rtcMax {
		log.Fatalf("bad UDP port range %d-%d", *rtcMin, *rtcMax)
	}
	api, err := newAPI(uint16(*rtcMin), uint16(*rtcMax))
	if err != nil {
		log.Fatalf("webrtc API: %v", err)
	}
	r := &room{api: api, participants: map[string]*participant{}, tracks: map[string]*published{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("/ws", r.handleWS)
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("serve: %v", err)
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-stop:
	case <-time.After(time.Duration(*maxSeconds * float64(time.Second))):
		log.Printf("exiting after %g s", *maxSeconds)
	}
	_ = server.Close()
	r.mu.Lock()
	everyone := make([]*participant, 0, len(r.participants))
	for _, p := range r.participants {
		everyone = append(everyone, p)
	}
	r.mu.Unlock()
	for _, p := range everyone {
		_ = p.conn.Close() // its handler leaves the room and closes its peer connections
	}
	time.Sleep(200 * time.Millisecond)
}
