"""Webhooks per provider: :mod:`.github`, :mod:`.gitlab`; what they share in
:mod:`.core` (delivery dedup, the job that brings a pull request's database up)."""
