// Package lab builds a small but real Kubernetes cluster out of processes
// and Linux network namespaces, for end-to-end tests and demos.
//
// Nothing of the lab lives in the root network namespace: every host is a
// network namespace, every layer-2 segment is a Linux bridge in a namespace
// of its own, and every link is a veth pair between those namespaces. Tests
// in the root namespace reach the API server through [Lab.RESTConfig], whose
// dialer opens its sockets inside the control-plane namespace; people reach
// it through a loopback forwarder (127.0.0.1 in the root namespace, which
// adds no address and no route) that the written kubeconfig points at.
//
// # What runs
//
//   - control plane ("cp" namespace): etcd, kube-apiserver (dual stack,
//     static token file, self-signed serving certificate) and the real
//     kube-controller-manager running only the endpointslice controller;
//   - nodes ("node1".."nodeN"): a Node object kept Ready by the lab, the real
//     kube-proxy in iptables mode, a bridge cni0 for the node's pods, and
//     bin/speaker when it exists (see [Lab.Restart]);
//   - pods: the lab is scheduler and kubelet for Pods labelled
//     lab.barelb.io/run=true ([RunLabel]). It binds those without a nodeName
//     (honouring a nodeSelector on kubernetes.io/hostname, otherwise the node
//     with the fewest lab pods), starts each as a process of the lab binary
//     in "podserver" mode in a namespace of its own (an HTTP server answering
//     with the pod's name on every containerPort, 80 when none is listed),
//     writes its status (Running, Ready) and stops it when the Pod is
//     deleted. Pods without the label are left alone;
//   - real nodes, with Options.Kubelets (node.go): every node runs
//     containerd, runc and the real kubelet instead of the lab's loops
//     (which then neither keep Nodes Ready nor run pods); the control plane
//     adds kube-scheduler, the workload controllers and kube-proxy; nothing
//     of barelb is installed, tests install it from its manifests;
//   - client: a host on the LAN (the laptop);
//   - router: FRR (zebra, bgpd, bfdd) on a second segment that every node
//     joins with a second link, AS 64500, accepting BGP sessions from any
//     address of the router segment (peer group NODES, remote AS 64512),
//     spreading flows over equal-cost routes by ports too
//     (fib_multipath_hash_policy 1). Tests change its configuration with
//     [Lab.ConfigureRouter] (vtysh) and restart bgpd, back to this
//     configuration, with [Lab.RestartRouter];
//   - ext: a host behind the router, on a third link.
//
// # Address plan
//
// Only documentation and benchmarking ranges; Up refuses to start when any
// of them overlaps a route of the root namespace.
//
//	LAN (eth0 of every host)     198.51.100.0/24   2001:db8:100::/64
//	  control plane              .10               ::10
//	  node i                     .(10+i)           ::(10+i)
//	  client                     .100              ::100
//	  free for address pools     .200-.239         ::200-::239
//	router segment (eth1)        203.0.113.0/26    2001:db8:200::/64
//	  router                     .1                ::1
//	  node i                     .(10+i)           ::(10+i)
//	behind the router            203.0.113.64/26   2001:db8:300::/64
//	  router .65 ::1, ext host .66 ::2
//	pods of node i               198.18.i.0/24     2001:db8:10:i::/64  (cni0 .1 ::1)
//	Service ClusterIPs           198.19.0.0/16     2001:db8:ffff::/108
//
// With Options.SecondLAN the even nodes' eth0 and a second client sit on a
// second LAN (bridge PREFIX-lan2, as another VLAN would be), and the router
// joins both LANs (eth2, eth3) and routes between them:
//
//	second LAN (eth0)            203.0.113.128/26  2001:db8:400::/64
//	  router                     .129              ::1     (first LAN: .1 ::1)
//	  node i (even)              .(138+i)          ::(10+i)
//	  client2                    .178              ::50
//
// MAC addresses are fixed: 02:00:00:00:SS:HH with SS the segment (01 LAN,
// 02 router segment, 03 behind the router, 04 second LAN, 05 a node's pods'
// bridge cni0) and HH the host's last address byte (0a control plane, 0b
// node1, …, 64 client, 01 router). cni0 has a fixed address because a
// bridge without one changes it to a new port's lower one, which IPv6
// pods notice only tens of seconds later.
//
// # Names
//
// Every lab has a prefix "blb" + 4 hex digits. Namespaces are PREFIX-cp,
// PREFIX-node1, PREFIX-client, PREFIX-router, PREFIX-ext, PREFIX-lan and
// PREFIX-rtr (the two segment bridges), PREFIX-xlnk, PREFIX-pN (pods); bridge
// ports are named PREFIX-… too; inside a host the links are eth0 (LAN) and
// eth1 (router segment) as on a real machine. State (certificates,
// kubeconfigs, logs, state.json) lives in /tmp/barelb-lab/PREFIX/; every
// process the lab starts has that path in its arguments, so [Cleanup] can
// find whatever a crashed run left behind.
package lab
