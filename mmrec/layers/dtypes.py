"""Dtype policies for functional networks, so that mixed precision survives save/load.

Keras' functional ``Model.__init__`` ignores a ``dtype`` argument, and layers
created without one take the *global* policy at construction time. A network
trained under ``mixed_bfloat16`` would then reload (under the default global
``float32``) with every layer in float32. mmrec's networks therefore take an
explicit ``dtype``, build every sublayer with the resolved policy, keep it as
their own ``dtype_policy`` and write it into their config.
"""

from __future__ import annotations

import keras


def resolve_policy(dtype=None) -> keras.DTypePolicy:
    """``dtype`` (a policy, its name or its config) as a policy; ``None`` → the global policy."""
    if dtype is None:
        return keras.config.dtype_policy()
    return keras.dtype_policies.get(dtype)


def serialize_policy(policy) -> dict:
    """A policy as it goes into a ``get_config`` (``from_config`` gets it back)."""
    return keras.dtype_policies.serialize(resolve_policy(policy))
