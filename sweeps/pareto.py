"""``python sweeps/pareto.py``: the Pareto sweep's command line (the code is :mod:`akdray.sweep.cli`)."""
import sys

from akdray.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
