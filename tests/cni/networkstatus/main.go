// networkstatus turns one delegate's CNI ADD result into the entries Multus writes for it in a
// pod's k8s.v1.cni.cncf.io/network-status, both ways Multus has done it, so tests can check what
// Multus would report for a result the agent returned. Multus itself is not installable here;
// this is the project's own statement of the rules of the NetworkAttachmentDefinition client's
// pkg/utils (which Multus calls with the delegate's result), on Debian's libcni result types
// (github.com/containernetworking/cni 1.1.2, the version Multus 4.0.2 builds with):
//
//   - "4.0": Multus 4.0.x (NAD client v1.4.0, CreateNetworkStatus): one entry per delegate call:
//     interface and mac of the LAST interface that has a sandbox, ips = every address of the
//     result, whatever interface it points at.
//   - "4.1": Multus 4.1+ (NAD client v1.7, CreateNetworkStatuses): a result with exactly one
//     interface as above; otherwise one entry per sandbox interface, in order, each with the
//     addresses whose "interface" index points at it; an address without an index goes to the
//     last entry; an address pointing at a host interface is in no entry.
//
// Usage: networkstatus NETWORK_NAME < result.json; prints {"4.0": [...], "4.1": [...]}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

type entry struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface"`
	IPs       []string `json:"ips"`
	Mac       string   `json:"mac"`
}

func multus40(r *types100.Result, name string) []entry {
	e := entry{Name: name, IPs: []string{}}
	for _, iface := range r.Interfaces {
		if iface.Sandbox != "" {
			e.Interface, e.Mac = iface.Name, iface.Mac
		}
	}
	for _, ip := range r.IPs {
		e.IPs = append(e.IPs, ip.Address.IP.String())
	}
	return []entry{e}
}

func multus41(r *types100.Result, name string) []entry {
	if len(r.Interfaces) == 1 {
		return multus40(r, name)
	}
	var out []entry
	slot := map[int]int{}
	for i, iface := range r.Interfaces {
		if iface.Sandbox != "" {
			slot[i] = len(out)
			out = append(out, entry{Name: name, Interface: iface.Name, Mac: iface.Mac, IPs: []string{}})
		}
	}
	for _, ip := range r.IPs {
		if ip.Interface == nil {
			if len(out) > 0 {
				out[len(out)-1].IPs = append(out[len(out)-1].IPs, ip.Address.IP.String())
			}
		} else if k, ok := slot[*ip.Interface]; ok {
			out[k].IPs = append(out[k].IPs, ip.Address.IP.String())
		}
	}
	return out
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: networkstatus NETWORK_NAME < result.json")
		os.Exit(2)
	}
	cur, err := readResult(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "networkstatus:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string][]entry{"4.0": multus40(cur, os.Args[1]), "4.1": multus41(cur, os.Args[1])})
	fmt.Println(string(out))
}

// readResult parses a result of any supported version and converts it to 1.0.0, as Multus does.
func readResult(in io.Reader) (*types100.Result, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	var head struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, err
	}
	res, err := version.NewResult(head.CNIVersion, data)
	if err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(res)
}
