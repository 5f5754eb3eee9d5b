import sys
from pathlib import Path

# Test apps live in tests/apps and are imported by module name, in-process and
# in the server subprocesses (tests/server.py puts the same folder on PYTHONPATH).
sys.path.insert(0, str(Path(__file__).parent / "apps"))
sys.path.insert(0, str(Path(__file__).parent))
