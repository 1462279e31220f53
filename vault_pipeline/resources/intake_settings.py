"""Tunables of the reconciliation sweep, as a resource (values from VaultSettings, defaults declared there)."""

from __future__ import annotations

from dagster import ConfigurableResource


class IntakeSettingsResource(ConfigurableResource):
    sweep_listers: int
    sweep_page_size: int
