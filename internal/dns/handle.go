package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	localTTL   = 600 // as Docker's embedded server
	maxUDP     = 4096
	udpTry     = 2 * time.Second
	tcpTry     = 4 * time.Second
	headerSize = 12
	// maxQuery is the largest query accepted: a stub's query is one
	// question and an OPT record, a few hundred bytes even padded (RFC
	// 8467); a bigger one is only there to make the resolver buffer it.
	maxQuery = 4096
)

// local parses pkt and answers it from the records. It returns the reply,
// or nil and the parsed request when the query must be forwarded, or nil
// and nil when the packet deserves no reply (too short to answer, or itself
// a response).
func (s *Server) local(ns *Namespace, pkt []byte, tcp bool) ([]byte, *mdns.Msg) {
	if len(pkt) < headerSize || pkt[2]&0x80 != 0 {
		return nil, nil
	}
	req := new(mdns.Msg)
	if err := req.Unpack(pkt); err != nil {
		return headerReply(pkt, mdns.RcodeFormatError), nil
	}
	if req.Opcode != mdns.OpcodeQuery {
		return packReply(req, mdns.RcodeNotImplemented, tcp), nil
	}
	if len(req.Question) != 1 {
		return packReply(req, mdns.RcodeFormatError, tcp), nil
	}
	if resp := s.answerLocal(req, ns); resp != nil {
		return pack(resp, udpLimit(req, tcp)), nil
	}
	return nil, req
}

// respond turns one request packet into the reply packet, forwarding it if
// needed, without any limit (the serve loops apply those).
func (s *Server) respond(ctx context.Context, v *served, pkt []byte, tcp bool) []byte {
	reply, req := s.local(&v.Namespace, pkt, tcp)
	if req == nil {
		return reply
	}
	return s.forwardReply(ctx, v, req, pkt, tcp)
}

// origin is a namespace forwarded queries are sent from, other than the
// forwarding namespace: an internal-only container's own.
type origin struct {
	path string
	id   nsID
}

// route says where v's forwarded queries go and which namespace sends them
// (nil: the forwarding namespace, the host's).
func (s *Server) route(v *served) (*origin, []string) {
	if v.NoForward {
		return nil, nil
	}
	if s.internalOnly(&v.Namespace) {
		// As Docker since CVE-2024-29018: never through the host, whose
		// resolvers would make the resolver a way out of a network that
		// has none. Its own --dns servers are asked from inside it, where
		// they answer only if they are on one of its networks.
		return &origin{path: v.Path, id: v.id}, v.Upstreams
	}
	if len(v.Upstreams) > 0 {
		return nil, v.Upstreams
	}
	return nil, s.defaultUpstreams()
}

// forwardReply forwards req (whose packet is pkt) as v may and returns the
// reply to send back; SERVFAIL when no upstream answers, as Docker's.
func (s *Server) forwardReply(ctx context.Context, v *served, req *mdns.Msg, pkt []byte, tcp bool) []byte {
	from, upstreams := s.route(v)
	if len(upstreams) == 0 {
		return packReply(req, mdns.RcodeServerFailure, tcp)
	}
	query := slices.Clone(pkt)
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(query, id)
	raw, err := s.exchange(ctx, from, upstreams, query, tcp)
	if err != nil || len(raw) < headerSize || binary.BigEndian.Uint16(raw) != id {
		if err != nil {
			s.logRare("forward", "dns: forward %s %s: %v", req.Question[0].Name, mdns.TypeToString[req.Question[0].Qtype], err)
		}
		return packReply(req, mdns.RcodeServerFailure, tcp)
	}
	binary.BigEndian.PutUint16(raw, req.Id) // raw is ours: exchange returns a fresh slice
	if limit := udpLimit(req, tcp); len(raw) > limit {
		resp := new(mdns.Msg)
		if err := resp.Unpack(raw); err != nil {
			return packTruncated(req)
		}
		return pack(resp, limit)
	}
	return raw
}

// answerLocal answers A, AAAA and PTR for the containers on ns's networks;
// nil means the query goes upstream. Docker forwards names it does not know,
// so a container of another network is answered by the upstream (NXDOMAIN).
func (s *Server) answerLocal(req *mdns.Msg, ns *Namespace) *mdns.Msg {
	q := req.Question[0]
	if q.Qclass != mdns.ClassINET {
		return nil
	}
	ix := s.index.Load()
	var rrs []mdns.RR
	hdr := mdns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: mdns.ClassINET, Ttl: localTTL}
	switch q.Qtype {
	case mdns.TypeA, mdns.TypeAAAA:
		addrs, found := ix.lookup(ns.Networks, q.Name)
		if !found {
			return nil
		}
		// A name known with only the other family gets an empty NOERROR
		// answer (NODATA), as from Docker, not a forwarded NXDOMAIN.
		var fam []netip.Addr
		for _, a := range addrs {
			if a.Is4() == (q.Qtype == mdns.TypeA) {
				fam = append(fam, a)
			}
		}
		for _, a := range ix.rotate(q.Name, fam) {
			if a.Is4() {
				rrs = append(rrs, &mdns.A{Hdr: hdr, A: a.AsSlice()})
			} else {
				rrs = append(rrs, &mdns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
	case mdns.TypePTR:
		addr, ok := ptrAddr(q.Name)
		if !ok {
			return nil
		}
		name, ok := ix.reverse(ns.Networks, addr)
		if !ok {
			return nil
		}
		rrs = append(rrs, &mdns.PTR{Hdr: hdr, Ptr: name})
	default:
		return nil
	}
	resp := reply(req, mdns.RcodeSuccess)
	resp.Answer = rrs
	return resp
}

func reply(req *mdns.Msg, rcode int) *mdns.Msg {
	resp := new(mdns.Msg)
	resp.SetRcode(req, rcode)
	resp.RecursionAvailable = true
	if req.IsEdns0() != nil {
		resp.SetEdns0(maxUDP, false)
	}
	return resp
}

func packReply(req *mdns.Msg, rcode int, tcp bool) []byte {
	return pack(reply(req, rcode), udpLimit(req, tcp))
}

// pack packs resp, truncating it (and setting TC) to fit limit; a reply that
// cannot be packed becomes a bare SERVFAIL.
func pack(resp *mdns.Msg, limit int) []byte {
	resp.Truncate(limit)
	b, err := resp.Pack()
	if err != nil {
		b, err = (&mdns.Msg{MsgHdr: mdns.MsgHdr{Id: resp.Id, Response: true, Opcode: resp.Opcode,
			Rcode: mdns.RcodeServerFailure}}).Pack()
		if err != nil {
			return nil
		}
	}
	return b
}

func packTruncated(req *mdns.Msg) []byte {
	resp := reply(req, mdns.RcodeSuccess)
	resp.Truncated = true
	b, _ := resp.Pack()
	return b
}

// headerReply answers a packet that does not parse, from its header alone.
func headerReply(pkt []byte, rcode int) []byte {
	var h [headerSize]byte
	copy(h[:2], pkt[:2])                 // id
	h[2] = 0x80 | pkt[2]&0x78 | pkt[2]&1 // QR, the opcode, RD
	h[3] = 0x80 | byte(rcode&0xf)        // RA
	return h[:]
}

// udpLimit is the largest reply the client accepts: 512 bytes, or what its
// EDNS0 record offers; TCP replies only have the 64 KiB message limit.
func udpLimit(req *mdns.Msg, tcp bool) int {
	if tcp {
		return mdns.MaxMsgSize
	}
	if opt := req.IsEdns0(); opt != nil {
		return max(mdns.MinMsgSize, min(int(opt.UDPSize()), maxUDP))
	}
	return mdns.MinMsgSize
}

// forward tries each upstream in turn until one answers with something
// better than SERVFAIL or REFUSED.
func (s *Server) forward(ctx context.Context, from *origin, upstreams []string, query []byte, tcp bool) ([]byte, error) {
	var last []byte
	var errs []error
	for _, u := range upstreams {
		try := udpTry
		if tcp {
			try = tcpTry
		}
		tctx, cancel := context.WithTimeout(ctx, try)
		resp, err := s.exchangeOne(tctx, from, u, query, tcp)
		cancel()
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if rc := resp[3] & 0xf; rc == mdns.RcodeServerFailure || rc == mdns.RcodeRefused {
			last = resp
			continue
		}
		return resp, nil
	}
	if last != nil {
		return last, nil
	}
	return nil, errors.Join(errs...)
}

// exchangeOne sends query to one upstream from the namespace from (nil: the
// forwarding namespace) and returns its raw reply.
func (s *Server) exchangeOne(ctx context.Context, from *origin, upstream string, query []byte, tcp bool) ([]byte, error) {
	ap, err := upstreamAddr(upstream)
	if err != nil {
		return nil, err
	}
	// 127.0.0.11:53 in a namespace this server listens in is the server
	// itself: each hop would forward again, without end, a slot each.
	if ap == Addr && (from != nil || s.servesFwd.Load() > 0) {
		return nil, fmt.Errorf("upstream %s is this resolver", ap)
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var c net.Conn
	dial := func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, ap.String())
		return err
	}
	if from != nil {
		err = inNSChecked(from.path, from.id, dial)
	} else {
		err = inNS(s.cfg.ForwardNS, dial)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", ap, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	id := binary.BigEndian.Uint16(query)
	if tcp {
		if err := writeTCP(c, query); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", ap, err)
		}
		resp, err := readTCP(c, mdns.MaxMsgSize)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", ap, err)
		}
		if len(resp) < headerSize || binary.BigEndian.Uint16(resp) != id {
			return nil, fmt.Errorf("upstream %s: reply does not match the query", ap)
		}
		return resp, nil
	}
	if _, err := c.Write(query); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", ap, err)
	}
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", ap, err)
		}
		// Late replies to earlier queries cannot arrive on this fresh
		// socket, but a stray or spoofed packet might.
		if n >= headerSize && binary.BigEndian.Uint16(buf) == id && buf[2]&0x80 != 0 {
			return slices.Clone(buf[:n]), nil
		}
	}
}

var udpBufs = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}

func upstreamAddr(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("upstream %q is not an IP address or IP:port", s)
	}
	return netip.AddrPortFrom(a.Unmap().WithZone(""), 53), nil
}

func writeTCP(w io.Writer, msg []byte) error {
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}

var errTooBig = errors.New("message over the size limit")

// readTCP reads one length-prefixed message of at most limit bytes.
func readTCP(r io.Reader, limit int) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n > limit {
		return nil, errTooBig
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// serveUDP answers datagrams until the listener closes. Local names are
// answered here; a query to forward gets a goroutine of its own, if the
// namespace is within its limit, since forwarding waits on the network.
// Nothing here ever waits for another namespace.
func (s *Server) serveUDP(l *listener) {
	buf := make([]byte, 65535)
	for {
		n, from, err := l.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n > maxQuery {
			continue
		}
		v := l.conf.Load()
		reply, req := s.local(&v.Namespace, buf[:n], false)
		if req == nil {
			if reply != nil {
				l.udp.WriteToUDPAddrPort(reply, from)
			}
			continue
		}
		if !s.lim.take(&l.use, queries) {
			s.refused(v, queries)
			l.udp.WriteToUDPAddrPort(packReply(req, mdns.RcodeRefused, false), from)
			continue
		}
		pkt := slices.Clone(buf[:n])
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer s.lim.give(&l.use, queries)
			if resp := s.forwardReply(l.ctx, v, req, pkt, false); resp != nil {
				l.udp.WriteToUDPAddrPort(resp, from)
			}
		}()
	}
}

// refused notes that v went over its limit of k.
func (s *Server) refused(v *served, k kind) {
	s.logRare("limit "+k.String(), "dns: netns %s is at its limit of %s; refusing more", v.Path, k)
}

func (s *Server) serveTCP(l *listener) {
	var delay time.Duration
	for {
		c, err := l.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or memory: wait, as net/http does,
			// rather than spin on a listener that stays readable.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.logRare("accept", "dns: accept in netns %s: %v", l.conf.Load().Path, err)
			select {
			case <-time.After(delay):
			case <-l.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		if !s.lim.take(&l.use, conns) {
			s.refused(l.conf.Load(), conns)
			reset(c)
			continue
		}
		if !l.track(c) {
			s.lim.give(&l.use, conns)
			c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer s.lim.give(&l.use, conns)
			defer l.untrack(c)
			s.serveConn(l, c)
		}()
	}
}

// reset closes c with a RST: no FIN handshake, no TIME_WAIT left behind.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// serveConn answers the length-prefixed queries of one TCP connection in
// order until the client closes it, stays idle (or too slow to complete a
// query), or reaches its number of queries or its time.
func (s *Server) serveConn(l *listener, c net.Conn) {
	end := time.Now().Add(s.cfg.TCPMaxLife)
	deadline := func() time.Time {
		if d := time.Now().Add(s.cfg.TCPIdleTimeout); d.Before(end) {
			return d
		}
		return end
	}
	for range s.cfg.TCPMaxQueries {
		c.SetReadDeadline(deadline())
		pkt, err := readTCP(c, maxQuery)
		if err != nil {
			return
		}
		v := l.conf.Load()
		reply, req := s.local(&v.Namespace, pkt, true)
		if req != nil {
			if s.lim.take(&l.use, queries) {
				reply = s.forwardReply(l.ctx, v, req, pkt, true)
				s.lim.give(&l.use, queries)
			} else {
				s.refused(v, queries)
				reply = packReply(req, mdns.RcodeRefused, true)
			}
		}
		if reply == nil {
			continue
		}
		c.SetWriteDeadline(deadline())
		if err := writeTCP(c, reply); err != nil {
			return
		}
	}
}
