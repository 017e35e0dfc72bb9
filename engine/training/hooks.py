"""The hooks of a callback protocol, read from the protocol class itself.

A callback protocol is a plain class whose ``on_*`` methods are the hooks (the trainer's
:class:`engine.training.callbacks.Callback`, the race's ``engine.race.RaceCallback``). Whatever
forwards hooks (the training child's pipe, the studio's Qt adapters) asks this module for them
instead of listing them by hand, so a new hook is forwarded everywhere by adding it to the protocol.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

HOOK_PREFIX = "on_"


def callback_hooks(protocol: type) -> dict[str, inspect.Signature]:
    """``{hook name: signature without self}`` of ``protocol``'s ``on_*`` methods, in definition
    order (base classes first)."""
    hooks: dict[str, inspect.Signature] = {}
    for klass in reversed(protocol.__mro__):
        for name, member in vars(klass).items():
            if name.startswith(HOOK_PREFIX) and inspect.isfunction(member):
                signature = inspect.signature(member)
                hooks[name] = signature.replace(parameters=list(signature.parameters.values())[1:])
    return hooks


def bound_arguments(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """A hook call's arguments as one positional tuple, defaults filled in (``on_log("x")`` ->
    ``("x", "info")``)."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return tuple(bound.arguments.values())


def forwarding_hook(name: str, signature: inspect.Signature,
                    forward: Callable[[Any, str, tuple[Any, ...]], None]) -> Callable[..., None]:
    """A method for hook ``name`` that calls ``forward(self, name, arguments)``."""

    def hook(self: Any, *args: Any, **kwargs: Any) -> None:
        forward(self, name, bound_arguments(signature, args, kwargs))

    hook.__name__ = hook.__qualname__ = name
    return hook
