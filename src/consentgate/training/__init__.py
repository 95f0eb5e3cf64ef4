"""The verified loader for training jobs: a snapshot is read only if it may be, and every read is kept.

``open_snapshot(S, purpose=P)`` returns S's records as a ``pyarrow.dataset.Dataset`` after checking
that S is registered, was built for P, still matches its manifest, and holds no member in debt at
the read (or only members covered by a recorded override); each successful open is a row of
``training_reads`` and an OpenLineage run. ``open_snapshot_run`` also returns that read (its run id).

The helpers for Hugging Face ``datasets`` (``training.hf``), PyTorch (``training.torch``) and Spark
(``training.spark``) go through the same open; each needs its extra (``pip install
'consentgate[hf]'``, ``[torch]``, ``[spark]``), imported only when the helper is used.
"""

from consentgate.training.loader import VerifiedSnapshot, open_snapshot, open_snapshot_run

__all__ = ["VerifiedSnapshot", "open_snapshot", "open_snapshot_run"]
