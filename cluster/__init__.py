"""The replicated registry: PySyncObj replica, write submission, node self-report, local clusters."""
