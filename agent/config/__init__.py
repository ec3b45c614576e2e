"""The agent's configuration: one TOML file (docs/configuration.md, deploy/smooth-edge.toml), read once at start
with the environment and the command line into frozen objects, every problem reported at once."""

from agent.config.fields import ConfigError
from agent.config.load import Flag, load_config
from agent.config.machines import CollectorConfig, MachineConfig, SecurityConfig, parse_collector_config
from agent.config.model import Config

__all__ = [
    "CollectorConfig",
    "Config",
    "ConfigError",
    "Flag",
    "MachineConfig",
    "SecurityConfig",
    "load_config",
    "parse_collector_config",
]
