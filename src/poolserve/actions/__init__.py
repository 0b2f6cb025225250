"""One module per user action, between the CLI and the targets (Helm's ``pkg/action``).

Each action takes a frozen request (what was asked: :class:`~poolserve.actions.common.Source`,
names, :class:`~poolserve.actions.common.Where`, options in their own types) and the
:class:`~poolserve.actions.common.Edges` it acts with, and returns a frozen result; none prints.
``deploy``, ``status``, ``wait``, ``logs``, ``delete``, ``diff``, ``test``, ``bench``, ``cache``,
``render`` and ``lint`` (with ``explain``). Importing this package imports none of them.
"""
