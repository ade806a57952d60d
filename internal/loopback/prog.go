package loopback

import (
	"encoding/binary"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Offsets in struct bpf_sock_addr (include/uapi/linux/bpf.h), the context of
// cgroup socket-address programs. user_ip6 and user_port are in network
// byte order; user_port is a u32 whose first two bytes hold the port.
const (
	ctxUserIP6  = 8
	ctxUserPort = 24
	ctxProtocol = 36
	ctxSk       = 64
)

// portsMap: key 16 bytes = netns cookie (u64, host order) | host port (be16)
// | protocol (u8) | 5 zero bytes; value 20 bytes = container address (IPv6,
// IPv4 as ::ffff:a.b.c.d) | container port (be16) | 2 zero bytes.
//
// socksMap (socket storage, per socket): the value of the port the socket
// was redirected to with the host port (be16) in its last two bytes, so that
// replies and getpeername can be shown as coming from [::1]:hostport.
const (
	keySize   = 16
	valueSize = 20
)

// loopbackWord is the last 32 bits of ::1 as the program loads them.
var loopbackWord = int32(binary.NativeEndian.Uint32([]byte{0, 0, 0, 1}))

// hook is one attachment: its program name (unique in the kernel's listing,
// so that a later ctnet finds it again) and whether it redirects or restores.
type hook struct {
	name     string
	attach   ebpf.AttachType
	redirect bool
}

// Versioned names: a ctnet with a different layout will not mistake these
// for its own. Restorers are attached before redirectors and detached after.
var hooks = []hook{
	{"ctnet1_getpeer6", ebpf.AttachCgroupInet6GetPeername, false},
	{"ctnet1_recvmsg6", ebpf.AttachCGroupUDP6Recvmsg, false},
	{"ctnet1_connect6", ebpf.AttachCGroupInet6Connect, true},
	{"ctnet1_sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, true},
}

const (
	portsName = "ctnet1_ports"
	socksName = "ctnet1_socks"
)

// redirectProgram: if the destination is [::1]:port and this namespace
// publishes port for the socket's protocol, send to the container instead
// and remember so in the socket's storage.
func redirectProgram(ports, socks *ebpf.Map) asm.Instructions {
	const out = "out"
	ins := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // ctx
	}
	for i := range 3 {
		ins = append(ins,
			asm.LoadMem(asm.R2, asm.R6, int16(ctxUserIP6+4*i), asm.Word),
			asm.JNE.Imm(asm.R2, 0, out))
	}
	ins = append(ins,
		asm.LoadMem(asm.R2, asm.R6, ctxUserIP6+12, asm.Word),
		asm.JNE.Imm(asm.R2, loopbackWord, out),
		// key at fp-16: cookie, port, protocol
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetNetnsCookie.Call(),
		asm.StoreMem(asm.RFP, -16, asm.R0, asm.DWord),
		asm.Mov.Imm(asm.R2, 0),
		asm.StoreMem(asm.RFP, -8, asm.R2, asm.DWord),
		asm.LoadMem(asm.R2, asm.R6, ctxUserPort, asm.Word),
		asm.StoreMem(asm.RFP, -8, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.R6, ctxProtocol, asm.Word),
		asm.StoreMem(asm.RFP, -6, asm.R2, asm.Byte),
		asm.LoadMapPtr(asm.R1, ports.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, out),
		asm.Mov.Reg(asm.R7, asm.R0), // the container's address and port
	)
	for i := range 4 {
		ins = append(ins,
			asm.LoadMem(asm.R2, asm.R7, int16(4*i), asm.Word),
			asm.StoreMem(asm.R6, int16(ctxUserIP6+4*i), asm.R2, asm.Word))
	}
	ins = append(ins,
		asm.LoadMem(asm.R2, asm.R7, 16, asm.Half),
		asm.StoreMem(asm.R6, ctxUserPort, asm.R2, asm.Word),
		// remember: socket storage = value with the host port in bytes 18..19
		asm.LoadMem(asm.R2, asm.R6, ctxSk, asm.DWord),
		asm.JEq.Imm(asm.R2, 0, out),
		asm.LoadMapPtr(asm.R1, socks.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 1), // BPF_SK_STORAGE_GET_F_CREATE
		asm.FnSkStorageGet.Call(),
		asm.JEq.Imm(asm.R0, 0, out),
	)
	for i := range 4 {
		ins = append(ins,
			asm.LoadMem(asm.R2, asm.R7, int16(4*i), asm.Word),
			asm.StoreMem(asm.R0, int16(4*i), asm.R2, asm.Word))
	}
	return append(ins,
		asm.LoadMem(asm.R2, asm.R7, 16, asm.Half),
		asm.StoreMem(asm.R0, 16, asm.R2, asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, -8, asm.Half),
		asm.StoreMem(asm.R0, 18, asm.R2, asm.Half),
		asm.Mov.Imm(asm.R0, 1).WithSymbol(out),
		asm.Return(),
	)
}

// restoreProgram: if the socket was redirected and the address shown to the
// application (peer, or source of a datagram) is the container's, show
// [::1]:hostport instead.
func restoreProgram(socks *ebpf.Map) asm.Instructions {
	const out = "out"
	ins := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, ctxSk, asm.DWord),
		asm.JEq.Imm(asm.R2, 0, out),
		asm.LoadMapPtr(asm.R1, socks.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkStorageGet.Call(),
		asm.JEq.Imm(asm.R0, 0, out),
	}
	for i := range 4 {
		ins = append(ins,
			asm.LoadMem(asm.R2, asm.R6, int16(ctxUserIP6+4*i), asm.Word),
			asm.LoadMem(asm.R3, asm.R0, int16(4*i), asm.Word),
			asm.JNE.Reg(asm.R2, asm.R3, out))
	}
	ins = append(ins,
		asm.LoadMem(asm.R2, asm.R6, ctxUserPort, asm.Word),
		asm.LoadMem(asm.R3, asm.R0, 16, asm.Half),
		asm.JNE.Reg(asm.R2, asm.R3, out),
		asm.LoadMem(asm.R2, asm.R0, 18, asm.Half),
		asm.StoreMem(asm.R6, ctxUserPort, asm.R2, asm.Word),
		asm.Mov.Imm(asm.R2, 0),
	)
	for i := range 3 {
		ins = append(ins, asm.StoreMem(asm.R6, int16(ctxUserIP6+4*i), asm.R2, asm.Word))
	}
	return append(ins,
		asm.Mov.Imm(asm.R2, loopbackWord),
		asm.StoreMem(asm.R6, ctxUserIP6+12, asm.R2, asm.Word),
		asm.Mov.Imm(asm.R0, 1).WithSymbol(out),
		asm.Return(),
	)
}
