"""The mail-tracking SMTP relay (see README.md). The version is the package's, one place."""

__version__ = "0.1.0"
