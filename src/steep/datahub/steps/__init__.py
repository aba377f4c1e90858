"""The Data Hub's processing steps, one module per family; ``base`` is their contract.

Steps register themselves by ``kind`` when their class is defined, so importing this
package (which every ``steep.datahub.steps.*`` import does first) makes every step here
usable in recipes.
"""

from steep.datahub.steps import (  # noqa: F401 - imported to register their steps
    c4,
    decontam,
    dedup_exact,
    fineweb,
    gopher,
    langid,
    minhash,
    normalize,
    pii,
)
