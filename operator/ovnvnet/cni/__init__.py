"""The CNI side: the node agent behind the ``ovn-k8s-cni-overlay`` shim.

- :mod:`.protocol`  CNI request parsing, results and errors (spec 1.0.0, 0.4.0, 0.3.x)
- :mod:`.pods`      where the agent learns a pod's ``ovnIfaceList`` (kube watch cache, static)
- :mod:`.netlink`   veth plumbing in the host and pod network namespaces (pyroute2)
- :mod:`.ovs`       ports on br-int and the ovn-installed wait (ovsdbapp, Open_vSwitch schema)
- :mod:`.agent`     the asyncio unix-socket server and ADD/DEL/CHECK/VERSION
"""
