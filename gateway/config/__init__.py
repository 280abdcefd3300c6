"""Config loading: TOML files in, one frozen :class:`Config` out."""

from gateway.config.loader import Config, ConfigError, Problem, load_config
from gateway.config.schema import parse_duration, parse_listen

__all__ = ["Config", "ConfigError", "Problem", "load_config", "parse_duration", "parse_listen"]
