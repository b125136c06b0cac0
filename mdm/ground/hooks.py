"""Hook points: where a service lets other services react, inside the same transaction.

A service that lets others follow what it did (a device enrolled, a device moved unit) declares a
`HookPoint` and calls `point.hooks(session)` at that moment. Which functions run there is decided
by the application's wiring (mdm.roots.wiring), for one session factory at a time, never by
importing a module: two applications in one process (the tests build many) never run each
other's hooks, and a session of a factory nobody wired runs none.

The functions are kept with the factory's own Session class (each sessionmaker makes one), where
SQLAlchemy keeps the factory's listeners too; a factory derived with `class_=factory.class_` (the
scheduler's fenced one) inherits both.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

H = TypeVar("H", bound=Callable[..., Any])


class HookPoint(Generic[H]):
    def __init__(self, name: str) -> None:
        self.name = name
        # Weak keys: a factory that is gone takes its hooks with it.
        self._connected: weakref.WeakKeyDictionary[type[Session], list[H]] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"

    def connect(self, factory: sessionmaker[Session], *hooks: H) -> None:
        """Run `hooks` (in this order, after any connected before) in every session of `factory`."""
        connected = self._connected.setdefault(factory.class_, [])
        connected.extend(hook for hook in hooks if hook not in connected)

    def disconnect(self, factory: sessionmaker[Session], hook: H) -> None:
        connected = self._connected.get(factory.class_, [])
        if hook in connected:
            connected.remove(hook)

    def hooks(self, session: Session) -> list[H]:
        """What runs here for `session`: its factory's hooks, after those of the factory it derives from."""
        found: list[H] = []
        for cls in reversed(type(session).__mro__):
            found.extend(self._connected.get(cls, ()))
        return found
