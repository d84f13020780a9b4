"""What the `fuelsim` commands share: error reporting and the top-level settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from cardcore.errors import FuelsimError
from host_sim.pg import is_url
from hsm_mock.hsm import MockHsm
from hsm_mock.keymap import KeyMap, hsm_from_key_map, load_key_map

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(command: F) -> F:
    """Turn fuelsim's own errors into a one-line message and exit status 1."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FuelsimError as exc:
            raise click.ClickException(f"{exc.title}: {exc}") from exc

    return run  # type: ignore[return-value]


@dataclass
class Settings:
    """What the top-level options set for every command."""

    key_map: Path | None = None
    _hsm: MockHsm | None = None

    def hsm(self) -> MockHsm:
        """The HSM: DEV, plus the key sets of the key map when one is given."""
        if self._hsm is None:
            self._hsm = hsm_from_key_map(self.key_map)[0] if self.key_map else MockHsm()
        return self._hsm

    def key_map_or_dev(self) -> KeyMap:
        return load_key_map(self.key_map) if self.key_map else KeyMap()


def settings() -> Settings:
    return click.get_current_context().ensure_object(Settings)


class DatabaseLocation(click.ParamType[str]):
    """The host's database: an SQLite file, or a postgresql:// URL."""

    name = "FILE|URL"

    def __init__(self, exists: bool = True) -> None:
        self.exists = exists

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if is_url(text) or not self.exists or Path(text).is_file():
            return text
        self.fail(f"{text!r} is no SQLite file (or give a postgresql:// URL)", param, ctx)
