"""Name -> class or builder function, filled by a decorator beside each definition (methods, evaluation protocols,
backbones). A duplicate name is a programming error, raised when the second definition is imported; an unknown name
comes from the config and is reported as a :class:`~genview.errors.ConfigError` listing the known names.

A registry of a package (``package=__name__``) imports the package's modules on demand, so a job imports only what
it uses: a lookup first imports the module of that name (one definition per module is the usual layout), then, if the
name is still unknown, every module; listing the names imports every module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator

from genview.errors import ConfigError


class Registry:
    """``what`` names the kind of entry in messages ("method"); ``name_attribute``, if given, is set on each
    registered object to its name (classes that report their own name)."""

    def __init__(self, what: str, *, package: str | None = None, name_attribute: str | None = None):
        self.what, self.package, self.name_attribute = what, package, name_attribute
        self._entries: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator: register the decorated class or function under ``name``."""

        def decorate(entry: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.what} {name!r} registered twice: {self._entries[name]!r} and {entry!r}")
            if self.name_attribute:
                setattr(entry, self.name_attribute, name)
            self._entries[name] = entry
            return entry

        return decorate

    def _module_names(self) -> list[str]:
        path = importlib.import_module(self.package).__path__
        return [module.name for module in pkgutil.iter_modules(path)]

    def _import_all(self) -> None:
        if self.package:
            for module in self._module_names():
                importlib.import_module(f"{self.package}.{module}")

    def __getitem__(self, name: str) -> Callable:
        if name not in self._entries and self.package and name in self._module_names():
            importlib.import_module(f"{self.package}.{name}")
        if name not in self._entries:
            self._import_all()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.what} {name!r} (known: {', '.join(self)})")
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        """Every registered name, sorted (a package's modules are all imported first)."""
        self._import_all()
        return iter(sorted(self._entries))
