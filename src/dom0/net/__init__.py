"""The only part of dom0 that speaks netlink: bridges, taps, rate limits."""
