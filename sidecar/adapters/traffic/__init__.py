"""The pod's inbound traffic as the kernel sees it: netlink sock_diag, /proc as a fallback."""
