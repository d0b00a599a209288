"""Delivery: take spooled copies, rewrite them, relay them upstream, retry, bounce."""
