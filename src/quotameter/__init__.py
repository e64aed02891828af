"""quotameter: exact usage metering and live allowance enforcement for real-time media."""

__version__ = "0.1.0"
