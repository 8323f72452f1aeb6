"""Certificates, tokens and the credentials made of them (docs/security.md)."""
