// ovnvnet-cni-runtime drives a CNI network configuration list through libcni exactly as a
// container runtime (containerd, CRI-O, Multus) does: plugin lookup on the plugin path, result
// caching, prevResult chaining into later plugins, CHECK and DEL from the cached result.
//
// Usage:
//
//	ovnvnet-cni-runtime ACTION CONFLIST CONTAINER_ID NETNS IFNAME CNI_ARGS PLUGIN_DIRS [CACHE_DIR]
//
// ACTION is add, check or del. CNI_ARGS is "K=V;K=V" (may be empty). PLUGIN_DIRS is a
// colon-separated search path. CACHE_DIR defaults to libcni's /var/lib/cni.
// On success ADD prints the final result as JSON; on failure the CNI error JSON is printed on
// stdout, a message on stderr, and the exit code is 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func fail(err error) {
	if cniErr, ok := err.(*types.Error); ok {
		out, _ := json.Marshal(cniErr)
		fmt.Println(string(out))
	} else {
		out, _ := json.Marshal(map[string]interface{}{"code": 999, "msg": err.Error()})
		fmt.Println(string(out))
	}
	fmt.Fprintln(os.Stderr, "ovnvnet-cni-runtime:", err)
	os.Exit(1)
}

func parseArgs(s string) [][2]string {
	var args [][2]string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		parts := strings.SplitN(kv, "=", 2)
		if len(parts) != 2 {
			fail(fmt.Errorf("CNI_ARGS element %q is not K=V", kv))
		}
		args = append(args, [2]string{parts[0], parts[1]})
	}
	return args
}

func main() {
	if len(os.Args) < 8 || len(os.Args) > 9 {
		fmt.Fprintln(os.Stderr, "usage: ovnvnet-cni-runtime add|check|del CONFLIST CONTAINER_ID NETNS IFNAME CNI_ARGS PLUGIN_DIRS [CACHE_DIR]")
		os.Exit(2)
	}
	action, confPath, containerID, netns, ifName, cniArgs, pluginDirs := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], os.Args[7]
	cacheDir := ""
	if len(os.Args) == 9 {
		cacheDir = os.Args[8]
	}

	list, err := libcni.ConfListFromFile(confPath)
	if err != nil {
		fail(err)
	}
	cninet := libcni.NewCNIConfigWithCacheDir(strings.Split(pluginDirs, ":"), cacheDir, nil)
	rt := &libcni.RuntimeConf{
		ContainerID: containerID,
		NetNS:       netns,
		IfName:      ifName,
		Args:        parseArgs(cniArgs),
		CacheDir:    cacheDir,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	switch action {
	case "add":
		result, err := cninet.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		if err := result.Print(); err != nil {
			fail(err)
		}
	case "check":
		if err := cninet.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cninet.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown action %q (want add, check or del)\n", action)
		os.Exit(2)
	}
}
