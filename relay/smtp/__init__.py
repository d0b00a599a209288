"""The SMTP front: aiosmtpd wiring and the handler that picks every reply code."""
