"""The TF-SASM ablations: the tables' rows (`tables.py`) and the shell scripts that track them."""
