"""Functions named on the command line or in a config as `module:function`."""

from __future__ import annotations

from steering.errors import SteeringError


def load_callable(spec: str, flag: str) -> object:
    """module:function → the function (the module is imported from the current directory or sys.path)."""
    import importlib
    import sys

    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise SteeringError(
            f"{flag} takes module:function", received=spec, fix=f"write e.g. {flag} rewards:positive"
        )
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SteeringError(
            f"cannot import {module_name!r} for {flag}",
            received=str(error),
            fix="check the module name and path",
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise SteeringError(
            f"{module_name} has no function {name!r}", received=spec, fix="check the function name"
        )
    return function
