"""The config layer: TOML files in, one frozen :class:`Config` out.

It imports only ``gateway.core``: the checks that need a feature or a vendor are handed to its
loader (:func:`gateway.config.loader.load_checked`). The gateway loads its config with
``gateway.server.config.load_config``, which hands over all of them.
"""

from gateway.config.loaded import Config, Located
from gateway.config.problems import ConfigError, Problem
from gateway.config.schema import parse_listen

__all__ = ["Config", "ConfigError", "Located", "Problem", "parse_listen"]
