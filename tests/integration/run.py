"""Runs every integration test module and ends with the plain 'N passed, N failed' line."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

pattern = sys.argv[1] if len(sys.argv) > 1 else "test_*.py"
suite = unittest.defaultTestLoader.discover(HERE, pattern=pattern)
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
skipped = len(result.skipped)
passed = result.testsRun - failed - skipped
print("integration: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)
