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
	tcpIdle    = 10 * time.Second
	headerSize = 12
)

// respond turns one request packet into the reply packet, or nil when the
// packet deserves no reply (too short to answer, or itself a response).
func (s *Server) respond(ctx context.Context, ns *Namespace, pkt []byte, tcp bool) []byte {
	if len(pkt) < headerSize || pkt[2]&0x80 != 0 {
		return nil
	}
	req := new(mdns.Msg)
	if err := req.Unpack(pkt); err != nil {
		return headerReply(pkt, mdns.RcodeFormatError)
	}
	if req.Opcode != mdns.OpcodeQuery {
		return packReply(req, mdns.RcodeNotImplemented, tcp)
	}
	if len(req.Question) != 1 {
		return packReply(req, mdns.RcodeFormatError, tcp)
	}
	if resp := s.answerLocal(req, ns); resp != nil {
		return pack(resp, udpLimit(req, tcp))
	}

	upstreams := ns.Upstreams
	if len(upstreams) == 0 {
		upstreams = s.defaultUpstreams()
	}
	if ns.NoForward || len(upstreams) == 0 {
		return packReply(req, mdns.RcodeServerFailure, tcp)
	}
	query := slices.Clone(pkt)
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(query, id)
	raw, err := s.exchange(ctx, upstreams, query, tcp)
	if err != nil || len(raw) < headerSize || binary.BigEndian.Uint16(raw) != id {
		if err != nil {
			s.logf("dns: forward %s %s: %v", req.Question[0].Name, mdns.TypeToString[req.Question[0].Qtype], err)
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
func (s *Server) forward(ctx context.Context, upstreams []string, query []byte, tcp bool) ([]byte, error) {
	var last []byte
	var errs []error
	for _, u := range upstreams {
		try := udpTry
		if tcp {
			try = tcpTry
		}
		tctx, cancel := context.WithTimeout(ctx, try)
		resp, err := s.exchangeOne(tctx, u, query, tcp)
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

// exchangeOne sends query to one upstream from the forwarding namespace and
// returns its raw reply.
func (s *Server) exchangeOne(ctx context.Context, upstream string, query []byte, tcp bool) ([]byte, error) {
	ap, err := upstreamAddr(upstream)
	if err != nil {
		return nil, err
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var c net.Conn
	err = inNS(s.cfg.ForwardNS, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, ap.String())
		return err
	})
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
		resp, err := readTCP(c)
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
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("upstream %q is not an IP address or IP:port", s)
	}
	return netip.AddrPortFrom(a.WithZone(""), 53), nil
}

func writeTCP(w io.Writer, msg []byte) error {
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}

func readTCP(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// serveUDP answers datagrams until the listener closes; each query runs on
// its own goroutine because forwarding waits on the network.
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
		pkt := slices.Clone(buf[:n])
		select {
		case s.sem <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-s.sem }()
			if resp := s.respond(l.ctx, l.conf.Load(), pkt, false); resp != nil {
				l.udp.WriteToUDPAddrPort(resp, from)
			}
		}()
	}
}

func (s *Server) serveTCP(l *listener) {
	for {
		c, err := l.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !l.track(c) {
			c.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.untrack(c)
			s.serveConn(l, c)
		}()
	}
}

// serveConn answers the length-prefixed queries of one TCP connection in
// order until the client closes it or stays idle.
func (s *Server) serveConn(l *listener, c net.Conn) {
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		pkt, err := readTCP(c)
		if err != nil {
			return
		}
		select {
		case s.sem <- struct{}{}:
		case <-l.ctx.Done():
			return
		}
		resp := s.respond(l.ctx, l.conf.Load(), pkt, true)
		<-s.sem
		if resp == nil {
			continue
		}
		c.SetWriteDeadline(time.Now().Add(tcpIdle))
		if err := writeTCP(c, resp); err != nil {
			return
		}
	}
}
