"""hitl-connector: a self-hosted human-approval step for no-code and AI workflows."""

__version__ = "0.1.0"
