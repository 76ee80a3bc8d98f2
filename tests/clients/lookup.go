// Go's own resolver (built with CGO_ENABLED=0, run with GODEBUG=netdns=go), as a Go service
// in a scratch or distroless image resolves:
//
//	lookup host NAME   net.LookupHost: each address, one a line
//	lookup srv NAME    net.LookupSRV("", "", NAME): "PRIORITY WEIGHT PORT TARGET" lines
//
// Exit status 0 found, 2 the name does not exist (DNSError.IsNotFound), 1 any other failure
// (message on stderr). Built by tests/integration/support/clients.rs.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: lookup host|srv NAME")
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	switch os.Args[1] {
	case "host":
		var addrs []string
		addrs, err = net.DefaultResolver.LookupHost(ctx, os.Args[2])
		for _, a := range addrs {
			fmt.Println(a)
		}
	case "srv":
		var srvs []*net.SRV
		_, srvs, err = net.DefaultResolver.LookupSRV(ctx, "", "", os.Args[2])
		for _, s := range srvs {
			fmt.Printf("%d %d %d %s\n", s.Priority, s.Weight, s.Port, s.Target)
		}
	default:
		err = fmt.Errorf("unknown lookup %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
