"""The SMTP front: aiosmtpd wiring, the handler that decides at each step, and intake."""
