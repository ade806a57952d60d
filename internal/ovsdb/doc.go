// Package ovsdb talks to Open vSwitch's database server (ovsdb-server) over
// its UNIX socket with JSON-RPC 1.0 as RFC 7047 specifies it, and on top of
// that does what an OVS network driver needs, each change in one
// transaction: ensure or delete a bridge, add or delete a port, list
// bridges, read the root row, wait for ovs-vswitchd to apply the database,
// and print what `ovs-vsctl show` prints.
//
// The socket is found as ovs-vsctl finds it: an explicit path, else
// $OVS_RUNDIR/db.sock, else /run/openvswitch/db.sock. A Client is safe for
// concurrent use; it answers the server's echo probes; every call takes a
// context, and a transaction whose context ends is cancelled on the server
// (so a waiting one never commits later).
//
// Like ovs-vsctl, the helpers never rewrite the root row's bridges set or a
// bridge's ports set: they insert into or delete from it (mutate), and rows
// nothing refers to any more (a deleted bridge's ports and interfaces, or
// the rows of a transaction whose bridge was missing) are collected by the
// server in the same commit. A read-then-write helper (ensure, delete)
// retries when its write finds the database changed in between.
//
// # The userspace datapath (datapath_type "netdev")
//
// Found on a kernel without the openvswitch module, with Open vSwitch 3.1,
// and proved by this package's tests:
//
//   - ovs-vswitchd needs no flag for it. It lists "system" in the root row's
//     datapath_types all the same; a system bridge is accepted by the
//     database, ovs-vswitchd logs that it failed, and its interface never gets
//     an ofport. Use KernelDatapath to choose, and CheckInterfaces after Sync
//     to catch the failure.
//   - It makes a tap "ovs-netdev" for the datapath itself (left until
//     ovs-vswitchd exits) and a persistent tap per bridge and per internal
//     port, down: bring it up as you would a kernel internal port. A killed
//     ovs-vswitchd leaves its taps behind and nothing forwards until it runs
//     again; a new one takes the bridges up again from the database.
//   - The host end of a veth is opened with a packet socket: it is not
//     enslaved (no master in `ip link`), and it must be up.
//   - TCP between veths stalls while ping works, unless other_config
//     userspace-tso-enable is true: without it the veths' partial checksums
//     are never filled in. ovs-vswitchd honours the key only for taps it opens
//     after it saw it, so EnsureBridge sets it in the transaction that makes a
//     netdev bridge (an administrator's "false" stays).
//   - MTU: an internal port without mtu_request takes the smallest MTU of its
//     bridge's other ports, so give the gateway port its MTU. Both ends of a
//     veth must have the same MTU: frames larger than the receiving port's MTU
//     are dropped, and a stream stalls on its first full-size segment.
//   - An internal port gets a random MAC each time it is made, and a port
//     deleted and added again quickly may keep its old tap (and addresses):
//     give a gateway a fixed MAC (PortSpec.MAC) and set addresses with
//     replace semantics.
//   - VLANs: an untagged port is a trunk of every VLAN, so a gateway port must
//     carry its network's tag; an untagged patch pair carries tagged frames
//     from one bridge to the other. Patch ports make no kernel device.
package ovsdb
