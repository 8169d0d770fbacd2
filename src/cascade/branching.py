"""The branch model: which Nessie branch a job writes, and which dbt target and Trino catalog read it.

One table, decided here and nowhere else. The lakehouse keeps its tables on Nessie branches; dbt
builds a branch through the Trino catalog bound to it (one catalog per branch: Trino's Iceberg
REST catalog reads one ref, `{NESSIE_URI}/iceberg/{ref}`), chosen by the dbt target of the same
row. Write-audit-publish: jobs build and test on `dev`, then `dev` is merged into `main` in one
atomic Nessie commit; readers (`cascade publish`, Superset) read only `main`.

The Trino catalog files shipped under deploy/config/trino/catalog are named after
`trino_catalog` and point at `/iceberg/{ref}`; a test keeps them, and dbt's profiles.yml, in step
with this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cascade.exceptions import ConfigurationError

#: Nessie's rule for reference names (org.projectnessie.model.Validation.REF_NAME_RAW_REGEX,
#: which Java applies with `matches()`, i.e. to the whole name): starts with a letter, then
#: letters, digits and `./_-`, no `..`, not ending in `.` or `/`; or just `-`. Applied with
#: `fullmatch`: Python's `$` also matches before a trailing newline, which would let "dev\n"
#: through into a URL.
REF_NAME = re.compile(r"(?:[A-Za-z](?:(?:(?![.][.])[A-Za-z0-9./_-])*[A-Za-z0-9_-])?)|-")
#: Names Nessie refuses to create although they match REF_NAME
#: (Validation.validateForbiddenReferenceName): HEAD and DETACHED in any case, and anything that
#: reads as a commit hash (Validation.HASH_RAW_REGEX), which `name@hash` paths would confuse.
FORBIDDEN_REF_NAMES = frozenset({"HEAD", "DETACHED"})
HASH_LIKE = re.compile(r"[0-9a-fA-F]{8,64}")


@dataclass(frozen=True)
class Branch:
    """One Nessie branch of the lakehouse and how the transform reaches it."""

    ref: str  # the Nessie branch
    dbt_target: str  # the profiles.yml output that builds it on Trino
    trino_catalog: (
        str  # the Trino catalog bound to it (deploy/config/trino/catalog/<name>.properties)
    )


#: What readers read and what promotion merges into: the validated lake.
MAIN = Branch(ref="main", dbt_target="prod", trino_catalog="iceberg")
#: Where jobs write and test before promotion.
DEV = Branch(ref="dev", dbt_target="dev", trino_catalog="iceberg_dev")

BRANCHES: tuple[Branch, ...] = (MAIN, DEV)


def check_ref_name(name: str, variable: str = "NESSIE_REF") -> str:
    """`name` if Nessie accepts it as a reference name, else a ConfigurationError naming the rule."""
    if not REF_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{variable}={name!r} is not a valid Nessie branch name: it must start with a letter and "
            "hold only letters, digits and . / _ - (no '..', not ending in '.' or '/'), or be just '-'"
        )
    if name.upper() in FORBIDDEN_REF_NAMES or HASH_LIKE.fullmatch(name):
        raise ConfigurationError(
            f"{variable}={name!r} is not a valid Nessie branch name: Nessie reserves HEAD, "
            "DETACHED and names that read as a commit hash (8 to 64 hex digits)"
        )
    return name


def branch_for(ref: str) -> Branch:
    """The row of the table for Nessie branch `ref`, or a clear refusal naming the choices."""
    for branch in BRANCHES:
        if branch.ref == ref:
            return branch
    choices = ", ".join(
        f"`{b.ref}` (dbt target {b.dbt_target}, Trino catalog {b.trino_catalog})" for b in BRANCHES
    )
    raise ConfigurationError(
        f"NESSIE_REF={ref!r} has no Trino catalog: dbt builds on {choices}. "
        f"Set NESSIE_REF to one of them, or merge your branch into {DEV.ref} first."
    )
