package driver

import "context"

// HostJoiner is a driver that can make an endpoint with both ends in the host
// namespace and nothing configured inside, for a caller that moves the inner
// end into the sandbox and configures it itself: Docker's remote driver
// protocol answers Join with the inner end's name, and dockerd moves it into
// the container's namespace, renames it (eth0, …) and sets its addresses and
// routes.
type HostJoiner interface {
	// JoinHost makes ep in the kernel: the host end as Join makes it, the
	// inner end in the host namespace under the temporary name peer, down,
	// with ep's MAC and the network's MTU. Failing, it leaves nothing.
	// Leave removes what it made.
	JoinHost(ctx context.Context, n Network, ep Endpoint, peer string) error
}
