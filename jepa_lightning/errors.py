"""Errors a user caused (a wrong key, type, path or size) are messages, not tracebacks.

The console script prints a :class:`UserError` in a few lines and exits with status 2, as argparse does; the
full traceback only with `--debug` (or `JEPA_LIGHTNING_DEBUG=1`). Anything else is an internal error and keeps
its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_USAGE = 2
DEBUG_ENV = "JEPA_LIGHTNING_DEBUG"

# Lines of jsonargparse's nested messages that say nothing to a user: the union's other member (None), the
# raw value echoed back, the list of accepted base types.
_NOISE = re.compile(r"^\s*(- )?(Expected a <class 'NoneType'>|Given value( type)?:|Subtypes:|Errors:\s*$|Does not validate against)")


class UserError(ValueError):
    """A configuration, data or size error the user can fix; its message says what and where."""


def condense(message: str, max_lines: int = 6) -> str:
    """jsonargparse's nested validation message without its noise, at most `max_lines` lines."""
    lines = [line.rstrip() for line in str(message).splitlines() if line.strip() and not _NOISE.match(line)]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + ["  ... (--debug shows the whole message)"]
    return "\n".join(lines)


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of an explicit `raise ... from ...` chain (a constructor's own message)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


@contextmanager
def config_errors() -> Iterator[None]:
    """Turns what a constructor raises while the config is being built (a bad value, a missing file) into a
    :class:`UserError` carrying the constructor's own message."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, TypeError, OSError, KeyError) as err:
        raise UserError(condense(str(root_cause(err)))) from err
