import sys
from pathlib import Path

import pytest
import torch

# Tests import the project as the scripts do: from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(2)


def pytest_configure(config):
    # The quick tier, `pytest -m "not slow"`, leaves these out (parity stays in it).
    config.addinivalue_line("markers", "slow: takes over ~10 s on 2 CPU cores, or runs torch.compile, Triton, "
                            "a whole training/ablation/demo run (left out by -m 'not slow')")


def pytest_sessionstart(session):
    from tests.helpers import PARITY
    if not any(PARITY.glob("*_reference.pt")):
        # Parity against these fixtures is how we know the model is right: never pass without them.
        pytest.exit(f"parity fixtures missing from {PARITY} (they are part of the repository: "
                    "is the checkout complete?)", returncode=4)
