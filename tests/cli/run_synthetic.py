"""Run the CLI in a child process against a synthetic dataset (for kill/interrupt tests).

From the repository root: python -m tests.cli.run_synthetic DATA_DIR faltung-arguments...

Under mpiexec each rank writes its own copy of the data (below DATA_DIR/rank-R), drawn
with the seed in $SYNTHETIC_SEED (default 0), so that a test can give one rank other data.
"""

import os
import sys
from pathlib import Path

from faltung.cli import main
from faltung.datasets import catalog
from faltung.distributed import launched_rank, launched_size
from tests.synthetic import synthetic_arrays, write_dataset

if __name__ == "__main__":
    data_dir = Path(sys.argv[1])
    if launched_size() > 1:
        data_dir = data_dir / f"rank-{launched_rank()}"
    seed = int(os.environ.get("SYNTHETIC_SEED", "0"))
    catalog.DATASETS["mnist"] = write_dataset(data_dir, synthetic_arrays(600, 50, seed=seed))
    sys.exit(main([*sys.argv[2:], "--data", str(data_dir)]))
