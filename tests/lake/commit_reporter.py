"""`cascade <args>` that prints `committed <table>` on stdout after each Iceberg commit.

The crash test waits on these lines (an event from the child itself) instead of polling the
catalog on a clock, and kills the child once it has committed enough.
"""

from __future__ import annotations

import sys

from pyiceberg.table import Transaction

_commit = Transaction.commit_transaction


def _reporting_commit(self: Transaction) -> object:
    table = _commit(self)
    print(f"committed {'.'.join(self._table.name())}", flush=True)
    return table


Transaction.commit_transaction = _reporting_commit  # type: ignore[method-assign]

if __name__ == "__main__":
    from cascade.cli.app import main

    sys.argv = ["cascade", *sys.argv[1:]]
    main()
