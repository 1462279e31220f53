"""The progress display of the operator commands: quiet lines off a terminal, nothing extra for short work,
nothing after an error (the error line must be the last thing said)."""

from __future__ import annotations

import pytest

from vault_pipeline.cli.progress import Progress, format_amount


def test_amounts_are_human_readable() -> None:
    assert format_amount(0, "bytes") == "0 B"
    assert format_amount(1536, "bytes") == "1.5 KiB"
    assert format_amount(5 * 1024**3, "bytes") == "5.0 GiB"
    assert format_amount(1234567, "items") == "1,234,567"


def test_quiet_mode_prints_periodic_lines_and_a_last_one(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(live=False, quiet_interval=0.0) as display:
        task = display.task("reading", total=3 * 1024**2, unit="bytes")
        task.advance(1024**2)
        task.update(completed=3 * 1024**2, status="verifying")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["reading: 1.0 MiB / 3.0 MiB", "reading: 3.0 MiB / 3.0 MiB verifying",
                     "reading: 3.0 MiB / 3.0 MiB verifying"]


def test_short_work_and_errors_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(live=False, quiet_interval=3600) as display:
        display.task("runs", total=2).advance()
    with pytest.raises(RuntimeError), Progress(live=False, quiet_interval=0.0) as display:
        display.task("runs", total=2).advance()
        capsys.readouterr()
        raise RuntimeError("boom")
    assert capsys.readouterr().err == ""


def test_live_mode_draws_a_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(live=True) as display:
        display.task("segments", total=4).update(completed=2, status="1,000 entries")
    err = capsys.readouterr().err
    assert "segments" in err and "2 / 4" in err and "1,000 entries" in err
