"""A module with no content: tests/unit/ops/test_fanout.py checks that an early-started worker imported it."""
