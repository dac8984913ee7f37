"""qetool: entropy-driven mixed-precision search and sub-byte deployment for Cortex-M."""

__version__ = "0.1.0"
