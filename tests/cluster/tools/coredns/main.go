// Command coredns is CoreDNS v1.15.0 with only the plugins the local test cluster's DNS uses
// (see tests/cluster/up's Corefile), the standard way CoreDNS documents for custom builds. The
// full plugin set pulls in every cloud DNS SDK and roughly doubles the cold build time.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
