import sys
from pathlib import Path

import pytest
import torch

# Tests import the project as the scripts do: from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(2)


def pytest_sessionstart(session):
    from tests.helpers import PARITY
    if not PARITY.is_dir():
        # Parity against these fixtures is how we know the model is right: never pass without them.
        pytest.exit(f"shared fixtures not found at {PARITY.parent}: clone this repository next to shared/ "
                    "or set MOTR_SHARED_DIR", returncode=4)


def pytest_configure(config):
    # Also registered by other branches; a duplicate registration is harmless.
    config.addinivalue_line("markers", "slow: trains a model for a few steps (seconds to minutes)")
