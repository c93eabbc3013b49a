"""What a ``bench capacity`` search is asked to do: its search options (checked), the Locust workers it may
drive, and a scenario file's ``[capacity]`` table (the command line overrides it)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import UsageError


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    start_rate: float = 500.0
    factor: float = 2.0
    resolution: float = 0.05
    max_rate: float = 1_000_000.0
    min_rate: float = 0.0  # 0: start_rate / 16 (four halvings when the first step already fails)
    step_s: float = 10.0
    warmup_s: float = 2.0
    confirm: bool = True
    max_steps: int = 30

    def check(self) -> SearchOptions:
        problems = []
        if not self.start_rate > 0:
            problems.append(f"--start-rate {self.start_rate}: must be > 0")
        if not self.factor > 1:
            problems.append(f"--factor {self.factor}: must be > 1")
        if not 0 < self.resolution < 1:
            problems.append(f"--resolution {self.resolution}: use a share between 0 and 1, e.g. 0.05 for 5 %")
        if not 0 <= self.min_rate <= self.start_rate:
            problems.append(f"--min-rate {self.min_rate}: use 0 (start rate / 16) .. --start-rate")
        if not self.max_rate >= self.start_rate:
            problems.append(f"--max-rate {self.max_rate}: must be >= --start-rate {self.start_rate}")
        if not (self.step_s >= 1 and float(self.step_s).is_integer()):
            problems.append(f"--step-duration {self.step_s}: whole seconds >= 1")
        if not (self.warmup_s >= 0 and float(self.warmup_s).is_integer()):
            problems.append(f"--warmup {self.warmup_s}: whole seconds >= 0")
        if self.max_steps < 2:
            problems.append(f"--max-steps {self.max_steps}: must be >= 2")
        if problems:
            raise UsageError("; ".join(problems))
        return self


@dataclasses.dataclass(frozen=True)
class Workers:
    """Locust workers started elsewhere (``locust --worker --master-host …``): every step's Locust is then a
    master that waits for ``expect`` of them, instead of forking ``--processes`` itself."""

    expect: int
    bind_host: str = "*"
    bind_port: int = 5557
    max_wait_s: int = 120

    def args(self) -> list[str]:
        return [
            "--master",
            "--expect-workers",
            str(self.expect),
            "--master-bind-host",
            self.bind_host,
            "--master-bind-port",
            str(self.bind_port),
            "--expect-workers-max-wait",
            str(self.max_wait_s),
        ]


SETTINGS = {
    "slo": (str, list),
    "start_rate": (int, float),
    "max_rate": (int, float),
    "min_rate": (int, float),
    "factor": (int, float),
    "resolution": (int, float),
    "step_duration": (int, float),
    "warmup": (int, float),
    "max_steps": (int,),
    "max_error_rate": (int, float),
    "max_backlog_growth": (int, float),
}


def scenario_settings(name_or_file: str) -> dict[str, Any]:
    """A scenario's ``[capacity]`` table (SLO and search settings; the command line overrides them)."""
    import tomllib

    from . import scenario

    path = scenario.locate(name_or_file)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("capacity", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    if not isinstance(table, dict):
        raise UsageError(f'{path}: [capacity] must be a table, e.g. slo = "p99=5ms"')
    problems = []
    for key, value in table.items():
        if key not in SETTINGS:
            problems.append(f"[capacity] unknown key {key!r}; valid keys: {', '.join(SETTINGS)}")
        elif isinstance(value, bool) or not isinstance(value, SETTINGS[key]):
            problems.append(f"[capacity] {key} = {value!r}: wrong type")
    if problems:
        raise UsageError(f"{path}: " + "; ".join(problems))
    if isinstance(table.get("slo"), list):
        table["slo"] = ",".join(map(str, table["slo"]))
    return dict(table)
