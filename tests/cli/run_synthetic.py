"""Run the CLI in a child process against a synthetic dataset (for kill/interrupt tests).

python tests/cli/run_synthetic.py DATA_DIR faltung-arguments...
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from faltung.cli import main  # noqa: E402
from faltung.datasets import catalog  # noqa: E402
from tests.synthetic import synthetic_arrays, write_dataset  # noqa: E402

data_dir = Path(sys.argv[1])
catalog.DATASETS["mnist"] = write_dataset(data_dir, synthetic_arrays(600, 50))
sys.exit(main([*sys.argv[2:], "--data", str(data_dir)]))
