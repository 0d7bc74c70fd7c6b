"""The workload: the shop domain (`workloads.shop`) and the load that drives it."""
