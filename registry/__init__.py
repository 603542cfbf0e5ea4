"""The registry domain: pure data, validation and the deterministic state machine.

Nothing here performs I/O, reads a clock, draws randomness or imports Flask or PySyncObj:
everything that varies is decided by the proposing peer and carried inside a command.
"""

VERSION = "0.1.0"
