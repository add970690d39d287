"""Run the CLI in a child process against a synthetic dataset (for kill/interrupt tests).

From the repository root: python -m tests.cli.run_synthetic DATA_DIR faltung-arguments...
"""

import sys
from pathlib import Path

from faltung.cli import main
from faltung.datasets import catalog
from tests.synthetic import synthetic_arrays, write_dataset

if __name__ == "__main__":
    data_dir = Path(sys.argv[1])
    catalog.DATASETS["mnist"] = write_dataset(data_dir, synthetic_arrays(600, 50))
    sys.exit(main([*sys.argv[2:], "--data", str(data_dir)]))
