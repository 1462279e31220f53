"""The SFTP intake's fixture: an Intake (sftp_harness.py) on each SFTP server flavour."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from vault_pipeline_tests.intake.sftp_harness import Intake, make_intake
from vault_pipeline_tests.sftpservers import SftpEndpoint


@pytest.fixture
def intake(sftp_server: SftpEndpoint, hot_site: Any, tracking_dsn: str) -> Iterator[Intake]:
    yield from make_intake(sftp_server, hot_site, tracking_dsn)
