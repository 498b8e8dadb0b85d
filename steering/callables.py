"""Functions named on the command line or in a config as `module:function`."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from steering.errors import InvalidArgument, did_you_mean


def load_callable(spec: str, flag: str) -> object:
    """module:function → the function; the module is imported from the current directory or sys.path.

    The current directory is on `sys.path` only while the module is imported: a `peft.py` or `tty.py`
    lying there must not shadow the real module for the rest of the process.

    Raises:
        InvalidArgument: `spec` is not module:function; the module cannot be found or fails to import;
            it has no such attribute, or the attribute is not callable.
    """
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise InvalidArgument(
            f"{flag} takes module:function", received=spec, fix=f"write e.g. {flag} rewards:positive"
        )
    module = _import(module_name, spec, flag)
    if not hasattr(module, name):
        public = [n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise InvalidArgument(
            f"the module {module_name} ({getattr(module, '__file__', None) or 'no file'}) has no "
            f"function {name!r}." + did_you_mean(name, public),
            received=spec,
            fix="its functions: " + (", ".join(sorted(public)) or "none") + "; check the name after ':'",
        )
    function = getattr(module, name)
    if not callable(function):
        raise InvalidArgument(
            f"{module_name}.{name} is not a function (it is a {type(function).__name__})",
            received=spec,
            fix=f"point {flag} at a function: (prompts, completions) -> list of floats",
        )
    return function


def _import(module_name: str, spec: str, flag: str) -> Any:
    """Import `module_name` with the current directory first on sys.path, then put sys.path back."""
    here = os.getcwd()
    sys.path.insert(0, here)
    importlib.invalidate_caches()  # a file written since the last import is seen
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name or module_name.startswith(f"{error.name}."):
            raise InvalidArgument(
                f"no module named {module_name!r} for {flag}, in the current directory ({os.getcwd()}) "
                "or among the installed packages",
                received=spec,
                fix="run from the directory that holds the .py file, or check the module name before ':'",
            ) from None
        raise InvalidArgument(
            f"importing {module_name} for {flag} failed: it imports {error.name!r}, which is not installed",
            received=str(error),
            fix=f"install {error.name}, or remove that import from {module_name}",
        ) from None
    except Exception as error:
        raise InvalidArgument(
            f"importing {module_name} for {flag} failed: {type(error).__name__}: {error}",
            received=spec,
            fix=f"fix the error in {module_name}; `python -c 'import {module_name}'` shows where it is",
        ) from None
    finally:
        if here in sys.path:
            sys.path.remove(here)  # the first occurrence: the one inserted above
