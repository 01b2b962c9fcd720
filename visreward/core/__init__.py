"""The ground floor: errors, atomic writes, configs and their options, paths, precision, devices and ranks."""

__version__ = "0.1.0"  # recorded in every saved reward model
