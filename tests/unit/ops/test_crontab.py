"""crontab.txt runs on UTC whatever the host's time zone (Debian/Ubuntu cron ignores CRON_TZ): simulated for
every whole and half-hour offset, the daily chain runs once per UTC day after the 00:00 close, the report
after it, and hourly candles never overlap the chain's hour."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CRONTAB = Path(__file__).resolve().parents[3] / "crontab.txt"
GUARD = re.compile(r'\[ "\$\(date -u \+\\%H\)" (=|!=) (\d\d) \]')


def jobs() -> dict[str, tuple[str, str, re.Match[str] | None]]:
    """script -> (minute field, hour field, the `date -u` guard if any)."""
    found = {}
    for line in CRONTAB.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or line.startswith("#") or "=" in fields[0]:
            continue
        script = next(name for name in ("run_pipeline", "fetch_prices", "report") if name in fields[5])
        found[script] = (fields[0], fields[1], GUARD.search(fields[5]))
    return found


def utc_minutes_run(minute: str, hour: str, guard: re.Match[str] | None, offset_min: int) -> list[int]:
    """Minutes of the UTC day at which cron (on local time = UTC + offset) starts the job."""
    runs = []
    for local_hour in range(24):
        if hour != "*" and int(hour) != local_hour:
            continue
        utc = (local_hour * 60 + int(minute) - offset_min) % (24 * 60)
        if guard is not None and (f"{utc // 60:02d}" == guard.group(2)) != (guard.group(1) == "="):
            continue
        runs.append(utc)
    return sorted(runs)


@pytest.mark.parametrize("offset_min", range(-12 * 60, 14 * 60 + 1, 30))
def test_the_schedule_is_utc_on_any_host_time_zone(offset_min: int) -> None:
    schedule = {script: utc_minutes_run(*job, offset_min) for script, job in jobs().items()}
    [chain] = schedule["run_pipeline"]
    [report] = schedule["report"]
    assert 0 < chain < 60 and chain < report  # after the 00:00 UTC close, report after the chain
    assert len(schedule["fetch_prices"]) == 23 and not [m for m in schedule["fetch_prices"] if m // 60 == 0]
