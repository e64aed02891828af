"""Delivering recorded notices: e-mail over SMTP and signed webhooks, at least once."""
