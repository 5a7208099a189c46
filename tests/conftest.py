import sys
from pathlib import Path

import torch

# Tests import the project as the scripts do: from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(2)
